"""FIRE vs BFGS under the default protocol's relaxation: steps, time, same minimum?

    python benchmarks/relax_optimizers.py [--n 6] [--potential sevennet-0] [--max-atoms 8]

Relaxes the first N MatterGen outputs (standard primitive cells, FixSymmetry + FrechetCellFilter)
with both optimisers and prints steps, seconds, energy per atom and space group for each, then
the step and time ratios FIRE/BFGS measured in this run.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    from workers.screening.ingest.read import read_structures
    from workers.screening.physics.cells import standardize_primitive, to_ase
    from workers.screening.physics.relax import relax_structure
    from workers.screening.potentials.registry import load_potential
    from workers.screening.protocols import DEFAULT

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=6)
    parser.add_argument("--potential", default="sevennet-0")
    parser.add_argument("--max-atoms", type=int, default=8)
    args = parser.parse_args()

    pot = load_potential(args.potential, device="cpu")
    source = DATA / "mattergen_unconditional_pr54" / "generated_crystals_cif.zip"
    records = [
        r for r in read_structures(source, allowed_elements=pot.elements) if r.ok and len(r.structure) <= args.max_atoms
    ]
    totals = {"FIRE": [0, 0.0], "BFGS": [0, 0.0]}
    same = 0
    for record in records[: args.n]:
        atoms = standardize_primitive(to_ase(record.structure), symprec=DEFAULT.symprec).atoms
        row = {}
        for optimizer in totals:
            start = time.perf_counter()
            out = relax_structure(atoms, calculator=pot.calculator, settings=DEFAULT.replace(relax_optimizer=optimizer))
            seconds = time.perf_counter() - start
            totals[optimizer][0] += out.summary.steps
            totals[optimizer][1] += seconds
            row[optimizer] = out.summary
            print(
                f"{record.name:45s} {optimizer:4s} converged={out.summary.converged} steps={out.summary.steps:4d} "
                f"{seconds:7.1f} s  E={out.summary.energy_per_atom_ev:.5f} eV/atom  {out.summary.spacegroup_after}",
                flush=True,
            )
        same += (
            abs(row["FIRE"].energy_per_atom_ev - row["BFGS"].energy_per_atom_ev) < 1e-4
            and row["FIRE"].spacegroup_after == row["BFGS"].spacegroup_after
        )
    n = min(args.n, len(records))
    print(
        f"same minimum {same}/{n}; steps FIRE/BFGS {totals['FIRE'][0] / max(1, totals['BFGS'][0]):.2f}; "
        f"time FIRE/BFGS {totals['FIRE'][1] / max(1e-9, totals['BFGS'][1]):.2f}"
    )


if __name__ == "__main__":
    main()
