"""Cells: conversions between pymatgen/ASE/phonopy, symmetry, standard primitive, supercell choice."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import spglib

if TYPE_CHECKING:
    from ase import Atoms
    from phonopy.structure.atoms import PhonopyAtoms
    from pymatgen.core import Structure

CRYSTAL_SYSTEMS = (
    (2, "triclinic"),
    (15, "monoclinic"),
    (74, "orthorhombic"),
    (142, "tetragonal"),
    (167, "trigonal"),
    (194, "hexagonal"),
    (230, "cubic"),
)


def to_ase(structure: Structure) -> Atoms:
    from pymatgen.io.ase import AseAtomsAdaptor

    return AseAtomsAdaptor.get_atoms(structure)


def to_pymatgen(atoms: Atoms) -> Structure:
    from pymatgen.io.ase import AseAtomsAdaptor

    return AseAtomsAdaptor.get_structure(atoms)


def to_phonopy(atoms: Atoms) -> PhonopyAtoms:
    from phonopy.structure.atoms import PhonopyAtoms

    return PhonopyAtoms(
        symbols=atoms.get_chemical_symbols(),
        cell=np.array(atoms.cell),
        scaled_positions=atoms.get_scaled_positions(wrap=False),
    )


def phonopy_to_ase(cell: PhonopyAtoms) -> Atoms:
    from ase import Atoms

    return Atoms(symbols=cell.symbols, cell=cell.cell, scaled_positions=cell.scaled_positions, pbc=True)


def spglib_cell(atoms: Atoms) -> tuple[Any, Any, Any]:
    """spglib's (lattice (3, 3) Å, fractional positions (N, 3), atomic numbers (N,)), as arrays.

    Any: spglib's annotations ask for sequences, and numpy arrays are not typed as such.
    """
    return (np.array(atoms.cell), atoms.get_scaled_positions(), atoms.numbers)


def crystal_system(spacegroup_number: int) -> str:
    for last, name in CRYSTAL_SYSTEMS:
        if spacegroup_number <= last:
            return name
    raise ValueError(f"not a space-group number: {spacegroup_number}")


def get_spacegroup(atoms: Atoms, *, symprec: float) -> tuple[str, int]:
    """International symbol and number at tolerance `symprec` (Å); ('P1', 1) when spglib fails."""
    dataset = spglib.get_symmetry_dataset(spglib_cell(atoms), symprec=symprec)
    if dataset is None:
        return "P1", 1
    return dataset.international, int(dataset.number)


def format_spacegroup(symbol_number: tuple[str, int]) -> str:
    return f"{symbol_number[0]} ({symbol_number[1]})"


@dataclass(frozen=True)
class StandardCell:
    """The symmetrised standard primitive cell and how it relates to the input cell."""

    atoms: Atoms
    spacegroup: tuple[str, int]
    transformation_matrix: list[list[float]]  # spglib: (a_s b_s c_s) = (a b c) P^-1 of the input
    origin_shift: list[float]
    n_input_atoms: int


def standardize_primitive(atoms: Atoms, *, symprec: float) -> StandardCell:
    """spglib's idealised standard primitive cell of `atoms` at tolerance `symprec`."""
    from ase import Atoms as AseAtoms

    cell = spglib_cell(atoms)
    dataset = spglib.get_symmetry_dataset(cell, symprec=symprec)
    if dataset is None:
        raise ValueError(f"spglib found no symmetry at symprec={symprec}")
    standard = spglib.standardize_cell(cell, to_primitive=True, no_idealize=False, symprec=symprec)
    if standard is None:
        raise ValueError(f"spglib could not standardise the cell at symprec={symprec}")
    lattice, positions, numbers = standard
    prim = AseAtoms(numbers=numbers, cell=lattice, scaled_positions=positions, pbc=True)
    return StandardCell(
        atoms=prim,
        spacegroup=(dataset.international, int(dataset.number)),
        transformation_matrix=np.asarray(dataset.transformation_matrix).tolist(),
        origin_shift=np.asarray(dataset.origin_shift).tolist(),
        n_input_atoms=len(atoms),
    )


def perpendicular_widths(lattice: np.ndarray) -> np.ndarray:
    """Distances between opposite faces of the cell (Å): V / |a_j x a_k|."""
    lattice = np.asarray(lattice, dtype=float)
    volume = abs(np.linalg.det(lattice))
    crosses = [np.cross(lattice[1], lattice[2]), np.cross(lattice[2], lattice[0]), np.cross(lattice[0], lattice[1])]
    return np.array([volume / np.linalg.norm(c) for c in crosses])


@dataclass(frozen=True)
class SupercellChoice:
    matrix: tuple[tuple[int, int, int], ...]
    n_atoms: int
    min_width_angstrom: float
    warning: str | None = None


def choose_supercell(atoms: Atoms, *, min_width: float, max_atoms: int) -> SupercellChoice:
    """Most nearly cubic supercell whose perpendicular widths are all >= `min_width` Å.

    pymatgen's CubicSupercellTransformation searches near-cubic integer matrices (non-diagonal
    allowed); its length criterion is an in-plane projection, which can exceed the true face
    distance for skewed cells, so the target is raised until the true widths pass. When no such
    cell fits under `max_atoms`, the widest diagonal supercell under the cap is taken and a
    warning says the cap bound.
    """
    from pymatgen.transformations.advanced_transformations import CubicSupercellTransformation

    structure = to_pymatgen(atoms)
    n = len(atoms)
    lattice = np.array(atoms.cell)
    target = min_width
    while True:
        transformation = CubicSupercellTransformation(min_length=target, max_atoms=max_atoms, min_atoms=n)
        try:
            transformation.apply_transformation(structure)
        except AttributeError:
            break
        found = transformation.transformation_matrix
        assert found is not None  # apply_transformation sets it or raises
        matrix = np.rint(found).astype(int)
        widths = perpendicular_widths(matrix @ lattice)
        if widths.min() >= min_width - 1e-6:
            return SupercellChoice(
                matrix=_as_tuple(matrix),
                n_atoms=n * round(abs(np.linalg.det(matrix))),
                min_width_angstrom=float(widths.min()),
            )
        target += max(0.25, min_width - widths.min())
    matrix = _widest_diagonal(lattice, n_atoms=n, max_atoms=max_atoms)
    widths = perpendicular_widths(matrix @ lattice)
    return SupercellChoice(
        matrix=_as_tuple(matrix),
        n_atoms=n * round(abs(np.linalg.det(matrix))),
        min_width_angstrom=float(widths.min()),
        warning=(
            f"supercell cap binds: no supercell with widths >= {min_width:g} A fits in {max_atoms} atoms; "
            f"using diagonal {np.diag(matrix).tolist()} ({n * round(abs(np.linalg.det(matrix)))} atoms, "
            f"min width {widths.min():.2f} A)"
        ),
    )


def _widest_diagonal(lattice: np.ndarray, *, n_atoms: int, max_atoms: int) -> np.ndarray:
    widths = perpendicular_widths(lattice)
    best, best_width = np.eye(3, dtype=int), widths.min()
    limit = max(1, max_atoms // n_atoms)
    for i in range(1, limit + 1):
        for j in range(1, limit // i + 1):
            for k in range(1, limit // (i * j) + 1):
                w = (widths * (i, j, k)).min()
                if w > best_width + 1e-9:
                    best, best_width = np.diag([i, j, k]), w
    return best


def _as_tuple(matrix: np.ndarray) -> tuple[tuple[int, int, int], ...]:
    rows = tuple(tuple(int(x) for x in row) for row in np.asarray(matrix))
    return cast("tuple[tuple[int, int, int], ...]", rows)  # a (3, 3) matrix
