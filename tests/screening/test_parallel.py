"""Process-parallel screening gives the serial verdicts, in order (slow: real SevenNet-0)."""

from __future__ import annotations

import pytest

from workers.screening.ingest.read import read_structures
from workers.screening.parallel import Layout, PotentialSpec, expected_cost, screen_parallel
from workers.screening.protocols import DEFAULT

pytestmark = pytest.mark.slow


def test_layout_by_device():
    assert Layout.for_device("cpu", cores=2) == Layout(processes=2, threads_per_process=1)
    assert Layout.for_device("cuda", cores=16).processes == 1


def test_expected_cost_orders_low_symmetry_first(examples_dir):
    """Work is handed out longest first: a low-symmetry generator cell before a same-size
    high-symmetry one, and a failed record last."""
    from pymatgen.core import Structure

    from workers.screening.types import StructureRecord

    (srtio3,) = read_structures(examples_dir / "SrTiO3_cubic.cif")  # 5 sites, 3 distinct
    rattled = srtio3.structure.copy()
    rattled.perturb(0.05, min_distance=0.05)  # P1: all 5 distinct
    p1 = StructureRecord(name="p1", source="x", index=0, structure=Structure.from_sites(rattled))
    failed = StructureRecord(name="bad", source="x", index=1, structure=None, error=None)
    assert expected_cost(srtio3, DEFAULT) == 5 * 3
    assert expected_cost(p1, DEFAULT) == 5 * 5
    assert expected_cost(failed, DEFAULT) == 0.0


def test_two_processes_same_verdicts_in_order(examples_dir):
    records = [
        r for name in ("Al_fcc.cif", "SrTiO3_cubic.cif", "Si_diamond.cif") for r in read_structures(examples_dir / name)
    ]
    seen = []
    spec = PotentialSpec(name="sevennet-0", compile="off")
    parallel = screen_parallel(
        records,
        protocol=DEFAULT,
        potential=spec,
        layout=Layout(processes=2, threads_per_process=1),
        progress=lambda r: seen.append(r.name),
    )
    serial = screen_parallel(
        records, protocol=DEFAULT, potential=spec, layout=Layout(processes=1, threads_per_process=1)
    )
    assert [r.name for r in parallel] == [r.name for r in records] == [r.name for r in serial]
    assert sorted(seen) == sorted(r.name for r in records)
    assert [r.verdict for r in parallel] == [r.verdict for r in serial] == ["stable", "unstable", "stable"]
    for a, b in zip(parallel, serial, strict=True):
        assert a.min_frequency_thz == pytest.approx(b.min_frequency_thz, abs=1e-3)
