"""Describe a parsed structure for the database: formula, symmetry and a cheap dedup fingerprint."""

from __future__ import annotations

import hashlib
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

    try:
        analyzer = SpacegroupAnalyzer(structure, symprec=SYMPREC)
        number, symbol, system = (
            analyzer.get_space_group_number(), analyzer.get_space_group_symbol(), analyzer.get_crystal_system()
        )
    except Exception:  # spglib gives up on some broken generator outputs; symmetry stays unknown
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
        fingerprint=get_fingerprint(structure, spacegroup_number=number),
        submitted_path=submitted_path,
    )


def get_fingerprint(structure: Structure, *, spacegroup_number: int | None) -> str:
    """Space group + reduced species counts + volume per atom (2 %): equal for obvious duplicates.

    Cheap and coarse on purpose: it only narrows the candidates a StructureMatcher must compare.
    """
    counts = structure.composition.reduced_composition.get_el_amt_dict()
    species = ",".join(f"{el}{counts[el]:g}" for el in sorted(counts))
    volume_bin = round(_log_bin(structure.volume / len(structure)))
    key = f"{spacegroup_number or 0}|{species}|{volume_bin}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def _log_bin(volume_per_atom: float) -> float:
    import math

    return math.log(max(volume_per_atom, 1e-6)) / math.log(1.02)
