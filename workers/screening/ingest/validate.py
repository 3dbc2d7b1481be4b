"""Per-structure checks before screening: size, order, elements, cell sanity, overlapping atoms."""

from __future__ import annotations

import numpy as np
from pymatgen.core import Structure

from workers.screening.ingest.formats import MIN_VOLUME_A3, too_many_atoms
from workers.screening.types import IngestError

DEFAULT_MAX_ATOMS = 200
MIN_DISTANCE_A = 0.5  # closer than this, two atoms are one atom twice (or a broken generator)
MIN_CELL_WIDTH_A = 0.1  # thinner, and the neighbour search would enumerate huge image counts
MAX_CELL_LENGTH_A = 1000.0  # longer, and it is no crystal a potential can screen (LLL overflows near 1e308)


def validate_structure(
    structure: Structure,
    *,
    max_atoms: int = DEFAULT_MAX_ATOMS,
    allowed_elements: frozenset[str] | None = None,
) -> IngestError | None:
    """Why `structure` cannot be screened, or None. Cheap checks first: the site count is
    checked before anything that scales with it."""
    from pymatgen.core.periodic_table import DummySpecies

    n = len(structure)
    if n == 0:
        return IngestError("empty", "structure has no sites")
    if n > max_atoms:
        return too_many_atoms(n, max_atoms)
    matrix = np.asarray(structure.lattice.matrix, dtype=float)
    if not (np.isfinite(matrix).all() and np.isfinite(structure.frac_coords).all()):
        return IngestError("degenerate_cell", "lattice or coordinates contain NaN or infinity")
    longest = float(np.linalg.norm(matrix, axis=1).max())
    if not longest <= MAX_CELL_LENGTH_A:
        return IngestError(
            "degenerate_cell", f"a lattice vector is {longest:.3g} Å long, beyond {MAX_CELL_LENGTH_A:g} Å"
        )
    volume = abs(float(np.linalg.det(matrix)))
    if volume < MIN_VOLUME_A3:
        return IngestError("degenerate_cell", f"cell volume {volume:.3g} Å^3 is (nearly) zero")
    for index, site in enumerate(structure):
        if not site.is_ordered:
            return IngestError(
                "partial_occupancy",
                f"site {index} is disordered ({site.species}); only ordered structures can be screened",
            )
    species = structure.composition.keys()
    dummies = sorted(str(sp) for sp in species if isinstance(sp, DummySpecies))
    if dummies:
        return IngestError("unsupported_element", f"not chemical elements: {', '.join(dummies)}")
    if allowed_elements is not None:
        symbols = {getattr(sp, "element", sp).symbol for sp in species}
        missing = sorted(symbols - set(allowed_elements))
        if missing:
            return IngestError("unsupported_element", f"elements not supported by the potential: {', '.join(missing)}")
    width = _min_cell_width(matrix)
    if width < MIN_CELL_WIDTH_A:
        # A skewed but valid basis can be thin; judge the reduced cell, and search in it too
        # (neighbour search over a thin cell would enumerate thousands of images).
        matrix = np.asarray(structure.lattice.lll_matrix)
        width = _min_cell_width(matrix)
        if width < MIN_CELL_WIDTH_A:
            return IngestError("degenerate_cell", f"cell is {width:.3g} Å thin in one direction")
        structure = structure.get_reduced_structure("LLL")
    # wrapped into the cell: the neighbour search's work grows with how far outside it a site lies
    # (a fractional coordinate of 1e6 made it allocate 17 GB)
    return _overlap(Structure(structure.lattice, structure.species, np.mod(structure.frac_coords, 1.0)))


def _min_cell_width(matrix: np.ndarray) -> float:
    """Smallest distance between opposite faces of the cell, in Å (1/|reciprocal vector|)."""
    return float(1.0 / np.linalg.norm(np.linalg.inv(matrix), axis=0).max())


def _overlap(structure: Structure) -> IngestError | None:
    centers, points, _images, distances = structure.get_neighbor_list(MIN_DISTANCE_A)
    if len(distances) == 0:
        return None
    k = int(np.argmin(distances))
    i, j, d = int(centers[k]), int(points[k]), float(distances[k])
    if i == j:
        return IngestError(
            "degenerate_cell",
            f"site {i} ({structure[i].species_string}) is {d:.3f} Å from its own periodic image",
        )
    a, b = sorted((i, j))
    return IngestError(
        "overlapping_atoms",
        f"sites {a} ({structure[a].species_string}) and {b} ({structure[b].species_string})"
        f" are {d:.3f} Å apart, below {MIN_DISTANCE_A} Å",
    )
