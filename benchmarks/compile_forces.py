"""Eager against torch.compile: one potential's force + stress calls on real generator cells.

    python benchmarks/compile_forces.py [--n 16] [--potential sevennet-0] [--threads 1] [--seed 1]

Takes a seeded sample of generator outputs (the throughput benchmark's sampler), each cell as
given and its 2x2x2 supercell (the sizes the relaxation and the displaced supercells see), and
evaluates forces and stress on all of them with the eager model and with the compiled one, in
one process, in alternating order (eager, compiled, eager, compiled) so that machine load hits
both. Prints the compile warm-up, the seconds of each pass, the ratio, and the largest force and
stress differences. The last line reads `compile speedup <ratio> max_force_diff <eV/Å>`.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=16, help="generator cells (each also as a 2x2x2 supercell)")
    p.add_argument("--potential", default="sevennet-0")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the CPU worker layout uses 1)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-atoms", type=int, default=12)
    args = p.parse_args(argv)

    import numpy as np
    import torch
    from throughput import DATA, sample_structures

    from workers.screening.cells import to_ase
    from workers.screening.potentials import load_potential

    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    eager = load_potential(args.potential, device="cpu", compile="off")
    start = time.perf_counter()
    fast = load_potential(args.potential, device="cpu", compile="on")
    warm_up = time.perf_counter() - start
    records = sample_structures(n=args.n, seed=args.seed, data=DATA, max_atoms=args.max_atoms, elements=eager.elements)
    cells = []
    for rec in records:
        atoms = to_ase(rec.structure)
        cells += [atoms, atoms * (2, 2, 2)]

    def run(pot) -> tuple[float, list]:
        calc, out = pot.new_calculator(), []
        t = time.perf_counter()
        for atoms in cells:
            probe = atoms.copy()
            probe.calc = calc
            out.append((probe.get_forces(), probe.get_stress()))
        return time.perf_counter() - t, out

    seconds = {"eager": 0.0, "compiled": 0.0}
    results = {}
    for _ in range(2):
        for label, pot in (("eager", eager), ("compiled", fast)):
            dt, results[label] = run(pot)
            seconds[label] += dt
    df = max(float(np.abs(a[0] - b[0]).max()) for a, b in zip(results["eager"], results["compiled"]))
    ds = max(float(np.abs(a[1] - b[1]).max()) for a, b in zip(results["eager"], results["compiled"]))
    sizes = sorted({len(c) for c in cells})
    print(f"potential {args.potential}, {args.threads} torch thread(s), {len(cells)} cells of {sizes[0]}-{sizes[-1]} atoms, two passes each")
    print(f"load with compile (model load + warm-up compile; torch's on-disk cache may be warm): {warm_up:.1f} s")
    print(f"eager {seconds['eager']:.2f} s, compiled {seconds['compiled']:.2f} s; execution: {fast.current_info().execution}")
    print(f"max |force difference| {df:.2e} eV/Å, max |stress difference| {ds:.2e} eV/Å^3")
    print(f"compile speedup {seconds['eager'] / seconds['compiled']:.2f} max_force_diff {df:.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
