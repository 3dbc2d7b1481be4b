"""Random displacements + symfc against phonopy's systematic displacements, same supercells.

    python benchmarks/random_displacements.py [--n 8] [--seed 3] [--potential sevennet-0]

Issue 4 asked whether phonopy's random displacements with symfc fitting need fewer supercells for
the low-symmetry cells generators produce, and to keep them only if the verdicts agree. For a
seeded sample of generator outputs (the throughput benchmark's sampler), each structure is relaxed
under the `default` protocol, then, in the same supercell (the protocol's cubic choice), its force
constants are computed both ways: systematic displacements (the pipeline) and
`generate_displacements(number_of_snapshots="auto")` (symfc's own estimate of the snapshots it
needs) fitted by `produce_force_constants(fc_calculator="symfc")`. Printed per structure: the
number of displaced supercells, the lowest frequency on the seekpath band path and on an 8x8x8
mesh, the largest frequency difference on the path, and the seconds of each.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--potential", default="sevennet-0")
    p.add_argument("--max-atoms", type=int, default=12)
    args = p.parse_args(argv)

    import numpy as np
    from phonopy import Phonopy
    from throughput import DATA, sample_structures

    from workers.screening.physics import phonons
    from workers.screening.physics.cells import to_phonopy
    from workers.screening.physics.relax import relax_structure
    from workers.screening.physics.supercells import choose_matrix
    from workers.screening.pipeline import prepare_cell
    from workers.screening.potentials.registry import load_potential
    from workers.screening.protocols import get_protocol

    warnings.simplefilter("ignore")
    pot = load_potential(args.potential, device="cpu")
    protocol = get_protocol("default")
    records = sample_structures(n=args.n, seed=args.seed, data=DATA, max_atoms=args.max_atoms, elements=pot.elements)
    tol = protocol.imaginary_tol_thz
    fewer = flips = 0
    print(
        f"{'structure':32s} {'atoms':>5} {'sc':>4} {'supercells':>11} {'path min THz':>19} {'mesh min THz':>19} {'max |df|':>9} {'seconds':>13}"
    )
    for rec in records:
        atoms, _ = prepare_cell(rec.structure, protocol=protocol)
        outcome = relax_structure(atoms, calculator=pot.calculator, settings=protocol)
        if not outcome.summary.converged:
            print(f"{rec.name[-32:]:32s} relax failed ({outcome.summary.reason})")
            continue
        relaxed = outcome.atoms
        matrix, _ = choose_matrix(relaxed, protocol, confirm=False)
        rows = {}
        for method in ("finite", "random"):
            start = time.perf_counter()
            ph = Phonopy(to_phonopy(relaxed), supercell_matrix=matrix, primitive_matrix="P")
            if method == "finite":
                ph.generate_displacements(
                    distance=protocol.displacement_angstrom, is_diagonal=protocol.displacement_is_diagonal
                )
            else:
                ph.generate_displacements(
                    distance=protocol.displacement_angstrom, number_of_snapshots="auto", random_seed=0
                )
            ph.forces = phonons.compute_displaced_forces(ph, calculator=pot.calculator, subtract_drift=True)
            if method == "finite":
                ph.produce_force_constants()
                ph.symmetrize_force_constants()
            else:
                ph.produce_force_constants(fc_calculator="symfc", fc_calculator_log_level=0)
            band = phonons.run_band_path(ph, phonons.seekpath_band_path(ph, npoints=51))
            path = np.concatenate(band["frequencies"])
            ph.run_mesh([8, 8, 8])
            mesh = ph.get_mesh_dict()["frequencies"]
            rows[method] = (len(ph.supercells_with_displacements), path, float(mesh.min()), time.perf_counter() - start)
            n_sc = len(ph.supercell)
        (n0, f0, m0, t0), (n1, f1, m1, t1) = rows["finite"], rows["random"]
        fewer += n1 < n0
        flips += (min(f0.min(), m0) >= -tol) != (min(f1.min(), m1) >= -tol)
        print(
            f"{rec.name[-32:]:32s} {len(relaxed):>5} {n_sc:>4} {n0:>5} vs {n1:>3} {f0.min():>8.3f} vs {f1.min():>7.3f} "
            f"{m0:>8.3f} vs {m1:>7.3f} {np.abs(f0 - f1).max():>9.3f} {t0:>5.1f} vs {t1:>5.1f}",
            flush=True,
        )
    print(f"random needed fewer supercells for {fewer}; stable-vs-not changed (tol {tol} THz) for {flips}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
