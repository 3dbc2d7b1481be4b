"""CHGNet's memory per call against the size of its graph: the measurement behind
`workers.screening.potentials.memory.CHGNET_GRAPH_COST`.

    python benchmarks/model_memory.py

Each cell runs in a fresh process: CHGNet is loaded and warmed up on a 2-atom cell, the kernel's
peak-RSS mark is reset (/proc/self/clear_refs), one forces+stress call runs, and the new peak
above the RSS before the call is that call's memory. A least-squares fit of it on the graph's
edges and angles is printed with the estimate `CHGNET_GRAPH_COST` gives for each cell, which must
not fall below what was measured.
"""

from __future__ import annotations

import os

os.environ["OPENBLAS_NUM_THREADS"] = "1"

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# (label, ASE bulk name, crystal structure, lattice constant Å, repeat): dense to open, 8 to 64 atoms
CELLS = [
    ("C diamond 8", "C", "diamond", 3.567, (1, 1, 1)),
    ("C diamond 16", "C", "diamond", 3.567, (2, 1, 1)),
    ("C diamond 32", "C", "diamond", 3.567, (2, 2, 1)),
    ("C diamond 64", "C", "diamond", 3.567, (2, 2, 2)),
    ("Si diamond 64", "Si", "diamond", 5.431, (2, 2, 2)),
    ("NaCl rocksalt 64", "NaCl", "rocksalt", 5.64, (2, 2, 2)),
    ("Cu fcc 108", "Cu", "fcc", 3.615, (3, 3, 3)),
]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker is not None:
        print(json.dumps(measure(CELLS[args.worker])))
        return 0
    rows = []
    for i in range(len(CELLS)):
        out = subprocess.run(
            [sys.executable, __file__, "--worker", str(i)], capture_output=True, text=True, check=True, cwd=ROOT
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"{r['label']:<18} {r['atoms']:>5} atoms {r['edges']:>7} edges {r['angles']:>8} angles "
              f"{r['call_mib']:>8.0f} MiB", flush=True)  # fmt: skip
    report(rows)
    return 0


def measure(cell: tuple) -> dict:
    import torch
    from ase.build import bulk
    from pymatgen.io.ase import AseAtomsAdaptor

    from workers.screening.potentials.registry import load_potential

    torch.set_num_threads(1)
    label, name, kind, a, repeat = cell
    potential = load_potential("chgnet-0.3.0", device="cpu", memory_budget_mib=None)
    warm = bulk("Si", "diamond", a=5.431)
    warm.calc = potential.new_calculator()
    warm.get_forces()
    atoms = bulk(name, kind, a=a, cubic=True).repeat(repeat)
    atoms.rattle(0.02, seed=1)
    model = potential.calculator.model
    graph = model.graph_converter(AseAtomsAdaptor.get_structure(atoms))
    before = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    atoms.calc = potential.new_calculator()
    atoms.get_forces()
    atoms.get_stress()
    peak = _status("VmHWM")
    return {
        "label": label,
        "atoms": len(atoms),
        "edges": len(graph.atom_graph),
        "angles": len(graph.bond_graph),
        "call_mib": (peak - before) / 1024.0,
    }


def _status(field: str) -> float:
    """A /proc/self/status memory field, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def report(rows: list[dict]) -> None:
    import numpy as np

    from workers.screening.potentials.memory import CHGNET_GRAPH_COST

    x = np.array([[r["edges"], r["angles"], 1.0] for r in rows])
    y = np.array([r["call_mib"] for r in rows])
    (per_edge, per_angle, base), *_ = np.linalg.lstsq(x, y, rcond=None)
    print(f"least-squares fit: {per_edge:.5f} MiB/edge, {per_angle:.5f} MiB/angle, {base:.0f} MiB base")
    c = CHGNET_GRAPH_COST
    print(f"CHGNET_GRAPH_COST: {c.per_edge_mib} MiB/edge, {c.per_angle_mib} MiB/angle, {c.base_mib} MiB base")
    under = 0
    for r in rows:
        est = c.estimate_mib(edges=r["edges"], angles=r["angles"])
        under += est < r["call_mib"]
        print(
            f"  {r['label']:<18} measured {r['call_mib']:>8.0f} MiB, estimated {est:>8.0f} MiB ({est / max(r['call_mib'], 1):.2f}x)"
        )
    print(f"cells the estimate falls below: {under} of {len(rows)}")


if __name__ == "__main__":
    sys.exit(main())
