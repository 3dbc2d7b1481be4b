"""Describe a parsed structure for the database: formula, symmetry and the dedup bucket key."""

from __future__ import annotations

from typing import TYPE_CHECKING

from models.crud import CandidateValues

if TYPE_CHECKING:
    from pymatgen.core import Structure

SYMPREC = 0.01  # Å, as the protocols use


def describe_structure(
    structure: Structure, *, name: str, source_file: str, source_index: int, submitted_path: str | None
) -> CandidateValues:
    """Row values for one accepted structure."""
    from pymatgen.io.cif import CifWriter
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from workers.screening.dedup import fingerprint

    try:
        analyzer = SpacegroupAnalyzer(structure, symprec=SYMPREC)
        number, symbol, system = (
            analyzer.get_space_group_number(),
            analyzer.get_space_group_symbol(),
            analyzer.get_crystal_system(),
        )
    except Exception:  # noqa: BLE001 - spglib gives up on some broken generator outputs; symmetry stays unknown
        number = symbol = system = None
    composition = structure.composition
    return CandidateValues(
        name=name,
        source_file=source_file,
        source_index=source_index,
        structure=structure.as_dict(),
        cif=str(CifWriter(structure)),
        reduced_formula=composition.reduced_formula,
        elements=sorted(el.symbol for el in composition.elements),
        n_sites=len(structure),
        spacegroup_number=number,
        spacegroup_symbol=symbol,
        crystal_system=system,
        # the dedup core's bucket key: candidates are compared only within (reduced_formula, fingerprint)
        fingerprint=fingerprint(structure),
        submitted_path=submitted_path,
    )
