"""Phonons: displaced-supercell forces, force constants, and frequencies across the Brillouin zone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np

from workers.screening.physics.cells import to_phonopy

if TYPE_CHECKING:
    from ase import Atoms
    from ase.calculators.calculator import Calculator
    from numpy.typing import ArrayLike
    from phonopy import Phonopy
    from phonopy.phonon.mesh import MeshDict

    from workers.screening.protocols import ProtocolSettings

Where = Literal["path", "mesh", "commensurate", "gamma"]


def build_phonopy(unitcell: Atoms, *, supercell_matrix: ArrayLike, settings: ProtocolSettings) -> Phonopy:
    """Phonopy object whose primitive cell is `unitcell` itself, displacements generated.

    PhononBench ran phonopy 3, whose default primitive matrix was the identity. phonopy >= 4
    reduces to the primitive cell by default, and in the version installed here even an explicit
    None means 'auto' (it warns so), hence 'P', the identity. The default protocol has already
    reduced the cell to its standard primitive, so the identity is right for it too.
    """
    from phonopy import Phonopy

    phonon = Phonopy(to_phonopy(unitcell), supercell_matrix=np.asarray(supercell_matrix), primitive_matrix="P")
    phonon.generate_displacements(
        distance=settings.displacement_angstrom, is_diagonal=settings.displacement_is_diagonal
    )
    return phonon


def compute_displaced_forces(
    phonon: Phonopy,
    *,
    calculator: Calculator,
    subtract_drift: bool,
    batched: bool = False,
    max_batch_atoms: int = 2048,
) -> np.ndarray:
    """Forces (n_displacements, n_supercell_atoms, 3) in eV/Å on every displaced supercell.

    With `subtract_drift` the mean force of each supercell is removed, as PhononBench does.
    `batched` evaluates several supercells per forward pass through the potential's own batch
    API (see batching.py: a GPU lever, slower on a CPU); otherwise one ASE call per supercell.
    """
    from workers.screening.physics.cells import phonopy_to_ase

    displaced = phonon.supercells_with_displacements
    assert displaced is not None, "no displacements: build the Phonopy object with build_phonopy"
    cells = [phonopy_to_ase(sc) for sc in displaced]
    if batched:
        from workers.screening.potentials.multi_cell import batched_forces

        raw = batched_forces(calculator, cells, max_atoms=max_batch_atoms)
    else:
        raw = []
        for atoms in cells:
            atoms.calc = calculator
            raw.append(np.array(atoms.get_forces(), dtype=float))
    forces = np.array(raw, dtype=float)
    if subtract_drift:
        forces -= forces.mean(axis=1, keepdims=True)
    return forces


def count_symmetry_blind_displacements(phonon: Phonopy, *, settings: ProtocolSettings) -> int:
    """How many displaced supercells the same supercell needs when symmetry is ignored (P1)."""
    from phonopy import Phonopy

    blind = Phonopy(phonon.unitcell, supercell_matrix=phonon.supercell_matrix, primitive_matrix="P", is_symmetry=False)
    blind.generate_displacements(distance=settings.displacement_angstrom, is_diagonal=settings.displacement_is_diagonal)
    return len(blind.displacements)


def produce_force_constants(phonon: Phonopy, forces: np.ndarray) -> None:
    """Force constants from `forces`, then symmetrised (translational invariance, index permutation)."""
    phonon.forces = forces
    phonon.produce_force_constants()
    phonon.symmetrize_force_constants()


@dataclass(frozen=True)
class QSet:
    """Frequencies at a set of q-points: qpoints (nq, 3) reduced, frequencies (nq, nbands) THz."""

    where: Where
    qpoints: np.ndarray
    frequencies: np.ndarray


def reciprocal_rows(phonon: Phonopy) -> np.ndarray:
    """Reciprocal lattice vectors of the primitive cell as rows, 1/Å, without 2π."""
    rows: np.ndarray = np.linalg.inv(phonon.primitive.cell).T
    return rows


def q_norms(phonon: Phonopy, qpoints: np.ndarray) -> np.ndarray:
    """|q| in Cartesian 1/Å with 2π included, for reduced `qpoints` (nq, 3)."""
    norms: np.ndarray = 2 * np.pi * np.linalg.norm(np.asarray(qpoints) @ reciprocal_rows(phonon), axis=1)
    return norms


def is_commensurate(qpoints: np.ndarray, supercell_matrix: ArrayLike, *, tol: float = 1e-6) -> np.ndarray:
    """q is commensurate with the supercell M iff M q is an integer vector."""
    mq = np.asarray(qpoints) @ np.asarray(supercell_matrix, dtype=float).T
    commensurate: np.ndarray = np.all(np.abs(mq - np.rint(mq)) < tol, axis=1)
    return commensurate


# --- band paths ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BandPath:
    segments: list[np.ndarray]  # each (npoints, 3) reduced q of the phonopy primitive cell
    labels: list[str]
    path_connections: list[bool]


def phononbench_band_path(phonon: Phonopy, *, npoints: int) -> BandPath:
    """PhononBench's path, reproduced as is: phonopy's seekpath helper on the primitive cell.

    For low-symmetry cells these q-points are in seekpath's standardised basis, not the cell's
    (PROTOCOL.md): a valid set of q-points, not the labelled path. Kept for fidelity.
    """
    from phonopy.phonon.band_structure import get_band_qpoints_by_seekpath

    bands, labels, connections = get_band_qpoints_by_seekpath(phonon.primitive, npoints, is_const_interval=True)
    return BandPath([np.asarray(b) for b in bands], [_pretty(x) for x in labels], list(connections))


def seekpath_band_path(phonon: Phonopy, *, npoints: int, symprec: float = 1e-3) -> BandPath:
    """The seekpath (HPKOT) high-symmetry path expressed in the phonopy primitive cell's basis.

    seekpath works in its own standardised (possibly rotated) cell; `get_path_orig_cell` maps
    the special points back to the reciprocal basis of the cell we computed, so the labels sit
    where they belong. `npoints` points per segment, ends included.
    """
    import seekpath

    prim = phonon.primitive
    cell = (prim.cell, prim.scaled_positions, prim.numbers)
    res = seekpath.get_path_orig_cell(cell, with_time_reversal=True, symprec=symprec)
    coords = {k: np.asarray(v, dtype=float) for k, v in res["point_coords"].items()}
    segments: list[np.ndarray] = []
    labels: list[str] = []
    connections: list[bool] = []
    path = res["path"]
    for i, (start, end) in enumerate(path):
        segments.append(np.linspace(coords[start], coords[end], npoints))
        connected = i + 1 < len(path) and path[i + 1][0] == end
        if not labels or not connections[-1]:
            labels.append(_pretty(start))
        labels.append(_pretty(end))
        connections.append(connected)
    return BandPath(segments, labels, connections)


def _pretty(label: str) -> str:
    """'GAMMA', '$\\Gamma$', '$\\mathrm{X}$', 'S_0' -> 'Γ', 'Γ', 'X', 'S0'."""
    plain = label.replace("$", "").replace("\\mathrm{", "").replace("}", "").replace("_", "")
    return "Γ" if plain in ("GAMMA", "\\Gamma", "G") else plain


def run_band_path(phonon: Phonopy, path: BandPath) -> dict[str, Any]:
    """phonopy band structure along `path`; returns phonopy's band-structure dict (callers add keys)."""
    phonon.run_band_structure(path.segments, labels=path.labels, path_connections=path.path_connections)
    return cast("dict[str, Any]", phonon.get_band_structure_dict())


# --- mesh and commensurate points -----------------------------------------------------------


def mesh_numbers(phonon: Phonopy, *, spacing_inv_angstrom: float, minimum: int) -> list[int]:
    """Γ-centred mesh with |b_i| / n_i <= spacing (2π included), at least `minimum` per axis."""
    lengths = 2 * np.pi * np.linalg.norm(reciprocal_rows(phonon), axis=1)
    return [int(max(minimum, np.ceil(x / spacing_inv_angstrom))) for x in lengths]


def run_mesh_frequencies(phonon: Phonopy, mesh: list[int]) -> QSet:
    """Frequencies on the irreducible part of a Γ-centred mesh (symmetry reduces the work)."""
    phonon.run_mesh(mesh, is_gamma_center=True, with_eigenvectors=False)
    d = cast("MeshDict", phonon.get_mesh_dict())  # a plain mesh (not phonopy's IterMesh): frequencies included
    return QSet("mesh", np.asarray(d["qpoints"]), np.asarray(d["frequencies"]))


def run_qpoint_frequencies(phonon: Phonopy, qpoints: np.ndarray, *, where: Where) -> QSet:
    phonon.run_qpoints(np.asarray(qpoints, dtype=float))
    return QSet(where, np.asarray(qpoints, dtype=float), np.asarray(phonon.get_qpoints_dict()["frequencies"]))


def commensurate_points(supercell_matrix: ArrayLike) -> np.ndarray:
    from phonopy.harmonic.dynmat_to_fc import get_commensurate_points

    return np.asarray(get_commensurate_points(np.asarray(supercell_matrix)))


def acoustic_mask(phonon: Phonopy, qpoint: np.ndarray) -> np.ndarray:
    """Which bands at `qpoint` are the three acoustic ones (largest translational character).

    Near Γ the acoustic modes are in-phase translations: in the mass-weighted eigenvectors of the
    dynamical matrix they project onto sqrt(m_i) e_alpha. Ranking by that projection, not by
    frequency, keeps a soft optical mode from being mistaken for an acoustic one.
    """
    phonon.run_qpoints(np.asarray([qpoint], dtype=float), with_eigenvectors=True)
    eigenvectors = phonon.get_qpoints_dict()["eigenvectors"]
    assert eigenvectors is not None  # asked for above
    vecs = eigenvectors[0]  # (3N, 3N), columns are modes
    masses = np.asarray(phonon.primitive.masses)
    n = len(masses)
    weight = np.sqrt(masses / masses.sum())
    translations = np.zeros((3, 3 * n))
    for alpha in range(3):
        translations[alpha, alpha::3] = weight
    overlap = (np.abs(translations @ vecs) ** 2).sum(axis=0)
    mask = np.zeros(3 * n, dtype=bool)
    mask[np.argsort(overlap)[-3:]] = True
    return mask
