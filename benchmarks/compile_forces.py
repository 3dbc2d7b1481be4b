"""Eager against torch.compile: one potential's force + stress calls on real generator cells.

    python benchmarks/compile_forces.py [--n 16] [--potential sevennet-0] [--threads 1] [--seed 1]
        [--compile-cache DIR]

Takes a seeded sample of generator outputs (the throughput benchmark's sampler), each cell as
given and its 2x2x2 supercell (the sizes the relaxation and the displaced supercells see), and
evaluates forces and stress on all of them with the eager model and with the compiled one, in
one process, in alternating order so that machine load hits both: a first pass (each cell's
first call, recompiles included) and two steady-state passes. Prints the compile warm-up, the
seconds of each, per-call times for the small cells and the supercells, and the largest force
and stress differences. The last line reads `compile speedup <steady ratio> max_force_diff <eV/Å>`.
With `--compile-cache DIR` the compiled graph is loaded from (or saved to) DIR, as the CLI and the
workers do; without it the graph is compiled in this process and not kept.
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
    p.add_argument("--n", type=int, default=16, help="generator cells (each also as a 2x2x2 supercell)")
    p.add_argument("--potential", default="sevennet-0")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the CPU worker layout uses 1)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-atoms", type=int, default=12)
    p.add_argument("--compile-cache", type=Path, default=None, help="folder of saved compiled graphs")
    p.add_argument(
        "--realize-opcount",
        type=int,
        default=None,
        help="compile with this inductor realize_opcount_threshold instead of the pipeline's "
        "(compiled afresh into a temporary cache; torch's default is 30)",
    )
    args = p.parse_args(argv)

    import numpy as np
    import torch
    from throughput import DATA, sample_structures

    from workers.screening.physics.cells import to_ase
    from workers.screening.potentials.registry import load_potential

    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    cache = args.compile_cache
    if args.realize_opcount is not None:
        import tempfile

        from workers.screening.potentials import compiled

        compiled._INDUCTOR = {**compiled._INDUCTOR, "realize_opcount_threshold": args.realize_opcount}
        cache = Path(tempfile.mkdtemp(prefix="compile-forces-"))
    eager = load_potential(args.potential, device="cpu", compile="off")
    start = time.perf_counter()
    fast = load_potential(args.potential, device="cpu", compile="on", compile_cache=cache)
    warm_up = time.perf_counter() - start
    records = sample_structures(n=args.n, seed=args.seed, data=DATA, max_atoms=args.max_atoms, elements=eager.elements)
    cells = []
    for rec in records:
        atoms = to_ase(rec.structure)
        cells += [atoms, atoms * (2, 2, 2)]

    def run(pot) -> tuple[list[float], list]:
        calc, out, times = pot.new_calculator(), [], []
        for atoms in cells:
            probe = atoms.copy()
            probe.calc = calc
            t = time.perf_counter()
            out.append((probe.get_forces(), probe.get_stress()))
            times.append(time.perf_counter() - t)
        return times, out

    # Pass 1: each cell's first call (a compiled model recompiles for size classes it has not
    # seen: a 1-atom cell, sizes equal by coincidence; once per process). Passes 2-3: steady state,
    # what a worker sees over thousands of structures.
    first = {"eager": np.zeros(len(cells)), "compiled": np.zeros(len(cells))}
    steady = {"eager": np.zeros(len(cells)), "compiled": np.zeros(len(cells))}
    results = {}
    for rep in range(3):
        for label, pot in (("eager", eager), ("compiled", fast)):
            dt, results[label] = run(pot)
            (first if rep == 0 else steady)[label] += dt
    small = np.array([i % 2 == 0 for i in range(len(cells))])  # the cells as given; odd: supercells
    df = max(float(np.abs(a[0] - b[0]).max()) for a, b in zip(results["eager"], results["compiled"], strict=True))
    ds = max(float(np.abs(a[1] - b[1]).max()) for a, b in zip(results["eager"], results["compiled"], strict=True))
    sizes = sorted({len(c) for c in cells})
    print(
        f"potential {args.potential}, {args.threads} torch thread(s), {len(cells)} cells of {sizes[0]}-{sizes[-1]} atoms"
    )
    print(
        f"load with compile (model load + compile or load of the saved graph, warm-up call): {warm_up:.1f} s; "
        f"{fast._compiled.how if fast._compiled is not None else 'not compiled'}"
    )
    print(
        f"first call per cell: eager {first['eager'].sum():.2f} s, compiled {first['compiled'].sum():.2f} s "
        "(includes recompiles for new size classes, once per process)"
    )
    print(
        f"steady state (2 more passes): eager {steady['eager'].sum():.2f} s, compiled {steady['compiled'].sum():.2f} s; "
        f"execution: {fast.current_info().execution}"
    )
    for name, mask in (("cells as given", small), ("2x2x2 supercells", ~small)):
        e, c = steady["eager"][mask].sum() / 2, steady["compiled"][mask].sum() / 2
        atoms = [len(cells[i]) for i in np.flatnonzero(mask)]
        print(
            f"  steady, {name} ({min(atoms)}-{max(atoms)} atoms): eager {e / mask.sum() * 1e3:.1f} ms, "
            f"compiled {c / mask.sum() * 1e3:.1f} ms per call, ratio {e / c:.2f}"
        )
    if fast._compiled is not None:  # what really ran: a graph whose guards fail runs eager, counted
        print(f"model calls: {fast._compiled.compiled_calls} compiled, {fast._compiled.eager_calls} eager")
    print(f"max |force difference| {df:.2e} eV/Å, max |stress difference| {ds:.2e} eV/Å^3")
    print(f"compile speedup {steady['eager'].sum() / steady['compiled'].sum():.2f} max_force_diff {df:.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
