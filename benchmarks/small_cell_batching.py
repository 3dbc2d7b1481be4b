"""Probe: SevenNet-0 forces for several small generator cells, one call each against one batch.

    python benchmarks/small_cell_batching.py [--n 8] [--seed 0] [--repeats 5]

Relaxations and Γ checks evaluate small cells (2-12 atoms), where a force call's fixed cost
dominates; issue 4's measurements that batching does not pay on this CPU were for 96-atom
supercells. This probe takes a seeded sample of generator cells (the throughput benchmark's
sampler), evaluates them with the eager model one call per cell and as one torch_geometric batch
(SevenNet's batch mode, a separate copy of the model), alternating, and prints milliseconds per
sample and the largest force difference. It measures; nothing in the pipeline uses it yet.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import copy
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)

    import numpy as np
    import torch
    from sevenn.atom_graph_data import AtomGraphData
    from sevenn.train.dataload import unlabeled_atoms_to_graph
    from throughput import DATA, sample_structures
    from torch_geometric.data import Batch

    from workers.screening.physics.cells import to_ase
    from workers.screening.potentials.registry import load_potential

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    pot = load_potential("sevennet-0", device="cpu", compile="off")
    model = pot.calculator.model
    batch_model = copy.deepcopy(model)
    batch_model.set_is_batch_data(True)
    cells = [
        to_ase(r.structure)
        for r in sample_structures(n=args.n, seed=args.seed, data=DATA, max_atoms=12, elements=pot.elements)
    ]
    graphs = [unlabeled_atoms_to_graph(a, pot.calculator.cutoff, with_shift=False) for a in cells]
    bounds = np.cumsum([0] + [len(c) for c in cells])

    def single() -> list:
        return [model(AtomGraphData.from_numpy_dict(g))["inferred_force"].detach().numpy() for g in graphs]

    def batched() -> list:
        out = batch_model(Batch.from_data_list([AtomGraphData.from_numpy_dict(g) for g in graphs]))
        forces = out["inferred_force"].detach().numpy()
        return [forces[bounds[i] : bounds[i + 1]] for i in range(len(cells))]

    diff = max(float(np.abs(a - b).max()) for a, b in zip(single(), batched(), strict=True))
    seconds = {"single": 0.0, "batched": 0.0}
    for _ in range(args.repeats):
        for name, fn in (("single", single), ("batched", batched)):
            t = time.perf_counter()
            fn()
            seconds[name] += time.perf_counter() - t
    ms = {k: v / args.repeats * 1e3 for k, v in seconds.items()}
    print(
        f"{len(cells)} cells of {sorted(len(c) for c in cells)} atoms, eager, 1 thread, {args.repeats} alternating repeats"
    )
    print(
        f"one call per cell {ms['single']:.1f} ms, one batch {ms['batched']:.1f} ms, max |force difference| {diff:.1e} eV/Å"
    )
    print(f"batch speedup {ms['single'] / ms['batched']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
