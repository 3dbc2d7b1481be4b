"""Find duplicate structures before any compute: a cheap bucket key, then StructureMatcher within it."""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

if TYPE_CHECKING:
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.core import Structure

Ref = TypeVar("Ref", bound=Hashable)

DedupMode = Literal["off", "exact", "match"]
FINGERPRINT_VERSION = "v1"  # bump when the key changes; stored keys must then be recomputed
VOLUME_TOLERANCE = 0.1  # relative difference of volume per atom beyond which two cells are not the same crystal


def reduce_structure(structure: Structure) -> Structure:
    """The primitive, Niggli-reduced cell exactly as StructureMatcher(primitive_cell=True) builds it.

    Computed once per structure so matching can skip the reduction (the expensive part of `fit`).
    Sites are reduced with pymatgen's primitive tolerance (0.25 Å), so a 0.01 Å rattle or a
    supercell of a generator output reduces to the same cell as the original.
    """
    from pymatgen.analysis.structure_matcher import StructureMatcher

    return StructureMatcher._get_reduced_structure(structure, primitive_cell=True, niggli=True)


def fingerprint(structure: Structure, *, reduced: Structure | None = None) -> str:
    """Bucket key: reduced composition + number of sites of the primitive cell, hashed (32 hex chars).

    Only invariants a StructureMatcher(primitive_cell=True, attempt_supercell=False) match must
    preserve: it refuses to map primitive cells with different site counts, so putting the count in
    the key loses no match. No space group (tight symprec splits rattled copies) and no volume bin
    (a bin edge splits near-duplicates); volume is compared as a pre-filter instead.
    """
    reduced = reduce_structure(structure) if reduced is None else reduced
    counts = structure.composition.reduced_composition.get_el_amt_dict()
    species = ",".join(f"{el}{counts[el]:g}" for el in sorted(counts))
    key = f"{FINGERPRINT_VERSION}|{species}|{len(reduced)}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class _Entry(Generic[Ref]):
    ref: Ref
    reduced: Structure
    volume_per_atom: float
    spacegroup: int | None


def input_spacegroup(structure: Structure, *, symprec: float) -> int:
    """The space group number the screen finds in `structure` and keeps while relaxing it."""
    from workers.screening.physics.cells import get_spacegroup, to_ase

    return get_spacegroup(to_ase(structure), symprec=symprec)[1]


@dataclass(kw_only=True)
class DuplicateIndex(Generic[Ref]):
    """Structures indexed by `fingerprint`; `find` runs StructureMatcher only within one bucket.

    `scale=False`: generator outputs are unrelaxed, and a duplicate must be the same crystal at the
    same density, not the same topology at another volume (that one may relax elsewhere, and a
    false match hands it a verdict it never earned; a missed match only costs a screening).
    Structures whose volumes per atom differ by more than `volume_tolerance` are never compared.
    Tolerances default to pymatgen's (ltol 0.2, stol 0.3, angle_tol 5°). `same_cell=True` also
    requires the same number of sites in the cell as given (so a supercell is not its primitive).

    `symprec` (Å, the protocol's): also require the same space group at that tolerance. The screen
    relaxes a cell keeping the symmetry it finds there, so a cubic perovskite and its polar
    distortion by 0.1 Å, which StructureMatcher's tolerances call one crystal, relax to different
    minima and have different phonons (the parent unstable, the child stable).
    """

    ltol: float = 0.2
    stol: float = 0.3
    angle_tol: float = 5.0
    volume_tolerance: float = VOLUME_TOLERANCE
    same_cell: bool = False
    symprec: float | None = None
    _buckets: dict[str, list[_Entry[Ref]]] = field(default_factory=dict, init=False, repr=False)
    _matcher: StructureMatcher | None = field(default=None, init=False, repr=False)
    _size: int = field(default=0, init=False, repr=False)

    def __len__(self) -> int:
        return self._size

    @property
    def matcher(self) -> StructureMatcher:
        if self._matcher is None:
            from pymatgen.analysis.structure_matcher import StructureMatcher

            self._matcher = StructureMatcher(
                ltol=self.ltol,
                stol=self.stol,
                angle_tol=self.angle_tol,
                primitive_cell=True,
                scale=False,
                attempt_supercell=False,
            )
        return self._matcher

    def add(self, structure: Structure, ref: Ref, *, key: str | None = None) -> str:
        """Index `structure` under `ref`; returns its fingerprint."""
        reduced = reduce_structure(structure)
        key = key or fingerprint(structure, reduced=reduced)
        entry = _Entry(ref, reduced, structure.volume / len(structure), self._spacegroup(structure))
        self._buckets.setdefault(self._bucket(key, structure), []).append(entry)
        self._size += 1
        return key

    def find(self, structure: Structure) -> Ref | None:
        """The ref of the first indexed structure equivalent to `structure`, or None."""
        return self._find(structure, reduce_structure(structure), self._spacegroup(structure))[0]

    def find_or_add(self, structure: Structure, ref: Ref) -> Ref | None:
        """`find`, and index `structure` under `ref` when nothing matched (one reduction for both)."""
        reduced = reduce_structure(structure)
        spacegroup = self._spacegroup(structure)
        found, key = self._find(structure, reduced, spacegroup)
        if found is None:
            entry = _Entry(ref, reduced, structure.volume / len(structure), spacegroup)
            self._buckets.setdefault(self._bucket(key, structure), []).append(entry)
            self._size += 1
        return found

    def _find(self, structure: Structure, reduced: Structure, spacegroup: int | None) -> tuple[Ref | None, str]:
        key = fingerprint(structure, reduced=reduced)
        volume = structure.volume / len(structure)
        for entry in self._buckets.get(self._bucket(key, structure), ()):
            if abs(entry.volume_per_atom / volume - 1) > self.volume_tolerance or entry.spacegroup != spacegroup:
                continue
            if self.matcher.fit(reduced, entry.reduced, skip_structure_reduction=True):
                return entry.ref, key
        return None, key

    def _spacegroup(self, structure: Structure) -> int | None:
        return None if self.symprec is None else input_spacegroup(structure, symprec=self.symprec)

    def _bucket(self, key: str, structure: Structure) -> str:
        return f"{key}|{len(structure)}" if self.same_cell else key


def duplicate_index(mode: DedupMode, *, symprec: float) -> DuplicateIndex[Any] | None:
    """The index that decides what is a duplicate under a protocol's `dedup` setting; None for "off".

    The one rule every front door uses (the CLI's run, the service's uploads against the database):
    "match" is StructureMatcher at pymatgen's default tolerances on primitive cells, within one
    space group at the protocol's `symprec`; "exact" is the same input cell up to rotation,
    translation and atom order (tolerances 1e-3, same number of sites), where the verdict provably
    cannot differ because the protocol screens the cell as given.
    """
    if mode == "off":
        return None
    if mode == "exact":
        return DuplicateIndex(ltol=1e-3, stol=1e-3, angle_tol=0.05, volume_tolerance=1e-3, same_cell=True)
    if mode == "match":
        return DuplicateIndex(symprec=symprec)
    raise ValueError(f"unknown dedup mode {mode!r}")


def find_duplicates(structures: Sequence[Structure | None], *, mode: DedupMode, symprec: float) -> list[int | None]:
    """For each structure, the position of an earlier one it duplicates under `mode`, or None."""
    index = duplicate_index(mode, symprec=symprec)
    if index is None:
        return [None] * len(structures)
    return group_duplicates(structures, index=index)


def group_duplicates(
    structures: Sequence[Structure | None], *, index: DuplicateIndex[int] | None = None
) -> list[int | None]:
    """For each item, the index of the first equivalent earlier item; None for representatives and Nones.

    Pass an `index` to choose tolerances; it is filled with the representatives (refs = positions).
    """
    index = DuplicateIndex() if index is None else index
    return [None if s is None else index.find_or_add(s, i) for i, s in enumerate(structures)]
