"""Batched forces through MatterSim's own batch API equal the serial ASE loop (random weights)."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

from tests.screening.mattersim_ckpt import write_random_mattersim_checkpoint
from workers.screening.physics import phonons
from workers.screening.potentials import multi_cell as batching
from workers.screening.protocols import DEFAULT, PHONONBENCH


@pytest.fixture(scope="module")
def mattersim(tmp_path_factory):
    from workers.screening.potentials.registry import load_potential

    path = write_random_mattersim_checkpoint(tmp_path_factory.mktemp("ckpt") / "random.pth", seed=3)
    return load_potential("mattersim-v1.0.0-5m", device="cpu", checkpoint=path)


def test_auto_batches_only_on_cuda(mattersim):
    assert batching.supports_batching(mattersim.calculator)
    assert not batching.use_batching(mattersim.calculator, mode="auto", device="cpu")
    assert batching.use_batching(mattersim.calculator, mode="auto", device="cuda")
    assert not batching.use_batching(mattersim.calculator, mode="serial", device="cuda")


def test_sevennet_has_no_batch_path():
    from workers.screening.potentials.registry import load_potential

    calc = load_potential("sevennet-0", device="cpu").calculator
    assert not batching.use_batching(calc, mode="auto", device="cuda")
    with pytest.raises(ValueError, match="no batch API"):
        batching.use_batching(calc, mode="batched", device="cpu")


def test_chunks_respect_the_atom_budget():
    cells = [bulk("Si", "diamond", 5.43) * (n, 1, 1) for n in (1, 2, 3, 1, 4)]  # 2, 4, 6, 2, 8 atoms
    chunks = batching._chunks(cells, max_atoms=8)
    assert [sum(len(a) for a in c) for c in chunks] == [6, 8, 8]
    assert [a for c in chunks for a in c] == cells


@pytest.mark.parametrize("max_atoms", [16, 10_000])
def test_batched_equals_serial_on_displaced_supercells(mattersim, max_atoms):
    cell = bulk("GaAs", "zincblende", a=5.65)
    cell.rattle(0.02, seed=1)  # low symmetry: many displaced supercells
    ph = phonons.build_phonopy(cell, supercell_matrix=np.diag([2, 2, 1]), settings=PHONONBENCH)
    assert len(ph.displacements) >= 6
    serial = phonons.compute_displaced_forces(ph, calculator=mattersim.calculator, subtract_drift=True)
    batched = phonons.compute_displaced_forces(
        ph, calculator=mattersim.calculator, subtract_drift=True, batched=True, max_batch_atoms=max_atoms
    )
    assert batched.shape == serial.shape
    np.testing.assert_allclose(batched, serial, atol=1e-5)


@pytest.mark.slow
def test_pipeline_verdict_same_batched_or_serial(mattersim):
    from workers.screening.physics.cells import to_pymatgen
    from workers.screening.pipeline import screen_structures
    from workers.screening.types import StructureRecord

    records = [
        StructureRecord(name="Si", source="test", index=0, structure=to_pymatgen(bulk("Si", "diamond", 5.43))),
        StructureRecord(name="Al", source="test", index=1, structure=to_pymatgen(bulk("Al", "fcc", 4.05))),
    ]
    results = {
        mode: screen_structures(records, protocol=DEFAULT.replace(force_batching=mode), potential=mattersim)
        for mode in ("serial", "batched")
    }
    assert all(r.extra.get("relax_batched") for r in results["batched"])  # relaxed together
    for serial, batched in zip(results["serial"], results["batched"], strict=True):
        assert serial.verdict == batched.verdict != "failed"
        assert serial.relax.steps == batched.relax.steps
        if serial.min_frequency_thz is not None:
            assert batched.min_frequency_thz == pytest.approx(serial.min_frequency_thz, abs=1e-3)
