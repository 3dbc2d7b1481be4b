"""Batched relaxation takes exactly the serial steps (random-weight MatterSim, CPU)."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

from tests.screening.mattersim_ckpt import write_random_mattersim_checkpoint
from workers.screening.physics.relax import relax_structure
from workers.screening.physics.relax_together import relax_batch
from workers.screening.protocols import DEFAULT, PHONONBENCH


@pytest.fixture(scope="module")
def mattersim(tmp_path_factory):
    from workers.screening.potentials.registry import load_potential

    path = write_random_mattersim_checkpoint(tmp_path_factory.mktemp("ckpt") / "random.pth", seed=5)
    return load_potential("mattersim-v1.0.0-5m", device="cpu", checkpoint=path)


def _cells():
    gaas = bulk("GaAs", "zincblende", a=5.9)
    gaas.rattle(0.03, seed=2)
    return [bulk("Si", "diamond", a=5.6), bulk("NaCl", "rocksalt", a=5.9), bulk("Al", "fcc", a=4.3), gaas]


@pytest.mark.parametrize("settings", [DEFAULT, PHONONBENCH], ids=lambda s: s.name)
@pytest.mark.parametrize("max_atoms", [4, 1000])  # 4: refill as structures finish; 1000: all at once
def test_batched_equals_serial(mattersim, settings, max_atoms):
    settings = settings.replace(relax_steps_per_cycle=60, relax_max_cycles=2)  # random weights: keep it short
    cells = _cells()
    batched = relax_batch(cells, calculator=mattersim.calculator, settings=settings, max_atoms=max_atoms)
    for atoms, b in zip(cells, batched, strict=True):
        s = relax_structure(atoms, calculator=mattersim.calculator, settings=settings)
        assert (b.summary.steps, b.summary.cycles, b.summary.converged) == (
            s.summary.steps,
            s.summary.cycles,
            s.summary.converged,
        )
        np.testing.assert_allclose(b.atoms.cell.array, s.atoms.cell.array, atol=1e-5)
        np.testing.assert_allclose(b.atoms.positions, s.atoms.positions, atol=1e-5)
        assert b.summary.energy_per_atom_ev == pytest.approx(s.summary.energy_per_atom_ev, abs=1e-5)
