"""Duplicates within a list are screened once: `match` in default, `exact` in phononbench."""

from __future__ import annotations

import pytest
from ase.build import bulk

from workers.screening.physics.cells import to_pymatgen
from workers.screening.pipeline import find_duplicates, screen_structures
from workers.screening.protocols import DEFAULT, PHONONBENCH
from workers.screening.types import IngestError, StructureRecord


def _record(name, atoms):
    return StructureRecord(name=name, source="test", index=0, structure=to_pymatgen(atoms))


def _variants():
    si = bulk("Si", "diamond", a=5.43)
    moved = si.copy()
    moved.translate([0.3, 0.1, 0.2])
    moved.wrap()
    swapped = si[[1, 0]]
    rotated = si.copy()
    rotated.rotate(30, "z", rotate_cell=True)
    rattled = si.copy()
    rattled.rattle(0.01, seed=0)
    return [
        _record("si", si),
        _record("si-moved", moved),
        _record("si-swapped", swapped),
        _record("si-rotated", rotated),
        _record("si-supercell", si * (2, 1, 1)),
        _record("si-rattled", rattled),
        _record("si-expanded", bulk("Si", "diamond", a=6.00)),
        StructureRecord(name="bad", source="test", index=0, error=IngestError("parse_error", "x")),
    ]


def test_exact_dedup_keeps_cells_that_would_change_the_phononbench_verdict():
    dup = find_duplicates(_variants(), protocol=PHONONBENCH)
    # same input cell up to translation, atom order, rotation: provably the same screen
    assert dup[:4] == [None, 0, 0, 0]
    # a supercell gives another 2x2x2 supercell; a rattled cell relaxes differently
    assert dup[4:] == [None, None, None, None]


def test_match_dedup_in_default():
    dup = find_duplicates(_variants(), protocol=DEFAULT)
    assert dup[:5] == [None, 0, 0, 0, 0]  # primitive-cell StructureMatcher at default tolerances
    # rattled by 0.01 Å it matches, but at symprec 0.01 Å it is no longer Fd-3m: the screen would
    # relax it in a lower group, so it is screened, not handed diamond's verdict
    assert dup[5] is None
    assert dup[6] is None  # 35 % more volume: not the same crystal at the same density
    assert dup[7] is None


def test_match_dedup_keeps_a_parent_phase_apart_from_its_distortion():
    """Cubic KNbO3 and its polar R3m/P4mm/Amm2 phases, cubic and Pbnm CaTiO3: StructureMatcher at
    pymatgen's tolerances calls a 0.1 Å distortion the same crystal, yet the parent is unstable and
    the child stable. The protocol's dedup keeps them apart by the space group its relaxation keeps."""
    from pathlib import Path

    from pymatgen.core import Structure

    from workers.screening.dedup import DuplicateIndex, group_duplicates

    folder = Path(__file__).resolve().parents[2] / "benchmarks" / "validation"
    names = ["knbo3_cubic", "knbo3_r3m", "knbo3_p4mm", "knbo3_amm2", "litao3_r-3c", "litao3_r3c"]
    records = [_record(n, Structure.from_file(folder / f"{n}.cif").to_ase_atoms()) for n in names]
    # what pymatgen's tolerances alone say: every KNbO3 is one crystal, both LiTaO3 one
    assert group_duplicates([r.structure for r in records], index=DuplicateIndex()) == [None, 0, 0, 0, None, 4]
    assert find_duplicates(records, protocol=DEFAULT) == [None] * len(names)
    # and each still matches a copy of itself, shifted
    shifted = []
    for name, record in zip(names, records, strict=True):
        copy = record.structure.copy()
        copy.translate_sites(list(range(len(copy))), [0.31, 0.17, 0.05])
        shifted.append(_record(f"{name}-shifted", copy.to_ase_atoms()))
    twice = records + shifted
    assert find_duplicates(twice, protocol=DEFAULT) == [None] * len(names) + list(range(len(names)))


def test_off_means_off():
    assert find_duplicates(_variants(), protocol=DEFAULT.replace(dedup="off")) == [None] * 8


@pytest.mark.slow
def test_duplicate_costs_nothing_and_links_to_original():
    from workers.screening.potentials.registry import load_potential

    records = _variants()[:2]
    first, second = screen_structures(records, protocol=DEFAULT, potential=load_potential("sevennet-0", device="cpu"))
    assert first.verdict == "stable"
    assert second.verdict == first.verdict and second.min_frequency_thz == first.min_frequency_thz
    assert second.name == "si-moved" and second.extra["duplicate_of"] == "si"
    assert second.timings_s == {"total": 0.0}
