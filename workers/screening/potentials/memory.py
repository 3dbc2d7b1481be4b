"""A potential's memory for one call, estimated before the call, so that a cell too large for the
machine fails with its reason instead of taking the worker down with it (the kernel's OOM killer
gives no reason, and a worker killed on every try fails the structure only after its attempts).

Only CHGNet needs it: its graph has an edge per neighbour within 6 Å and an angle per pair of
bonds within 3 Å, and its memory grows with them (diamond C, forces + stress: 8 atoms 1.0 GB,
64 atoms 5.3 GB, 216 atoms over 8.3 GB; `python benchmarks/model_memory.py` measures the cost per
edge and per angle that `CHGNET_GRAPH_COST` holds). SevenNet's memory stays far below the machine's
for the cells the service accepts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from workers.screening.types import PotentialRefused

MIB = 1024.0 * 1024.0


class ModelMemoryError(PotentialRefused):
    """The potential would need more memory for this cell than this process may use."""


@dataclass(frozen=True)
class GraphCost:
    """Peak memory of one forces+stress call above the loaded model, from its graph's size."""

    per_edge_mib: float
    per_angle_mib: float
    base_mib: float

    def estimate_mib(self, *, edges: int, angles: int) -> float:
        return self.base_mib + self.per_edge_mib * edges + self.per_angle_mib * angles


# Fitted to the peak RSS of CHGNet 0.3.0 calls on CPU (`python benchmarks/model_memory.py`, which
# prints measured against estimated; 2026-12-03: 0.0866 MiB per edge, 0.0829 per angle, -11 base on
# diamond C 8-64 atoms, Si, NaCl, Cu), rounded up so that the estimate errs towards refusing.
CHGNET_GRAPH_COST = GraphCost(per_edge_mib=0.09, per_angle_mib=0.09, base_mib=50.0)


def physical_memory_mib() -> float | None:
    """This machine's RAM, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / MIB
    except (ValueError, OSError, AttributeError):
        return None


def share_of_memory_mib(processes: int, *, fraction: float = 0.8) -> float | None:
    """The budget of one of `processes` processes that share the machine: `fraction` of its RAM
    split evenly (the rest for the OS, the database and the parent). None: no limit known."""
    total = physical_memory_mib()
    return None if total is None else fraction * total / max(1, processes)


def budget_mib(gigabytes: float | None, *, processes: int) -> float | None:
    """The per-process budget an edge passes to `load_potential`: `gigabytes` when given (0: no
    limit), else this machine's share for `processes` processes."""
    if gigabytes is None:
        return share_of_memory_mib(processes)
    return None if gigabytes <= 0 else gigabytes * 1024.0


def too_large_message(name: str, *, need_mib: float, budget_mib: float, n_atoms: int, detail: str) -> str:
    return (
        f"{name} would need about {_size(need_mib)} for this {n_atoms}-atom cell ({detail}), more than "
        f"this process's {_size(budget_mib)} (PHONONSCREEN_MODEL_MEMORY_GB, --model-memory-gb); screen it "
        "with a SevenNet potential, or on a machine with more memory"
    )


def _size(mib: float) -> str:
    return f"{mib / 1024:.1f} GB" if mib >= 1024 else f"{mib:.0f} MB"


def budgeted_converter(converter: Any, *, name: str, budget_mib: float, cost: GraphCost = CHGNET_GRAPH_COST) -> Any:
    """CHGNet's graph converter, refusing (ModelMemoryError) a graph whose call would exceed
    `budget_mib`: the graph is built anyway before each call, so counting it costs nothing."""
    import torch

    class BudgetedConverter(torch.nn.Module):  # a module: it replaces the model's submodule
        def __init__(self) -> None:
            super().__init__()
            self.inner = converter

        def forward(self, structure: Any, graph_id: Any = None, mp_id: Any = None) -> Any:
            graph = self.inner(structure, graph_id=graph_id, mp_id=mp_id)
            edges, angles = len(graph.atom_graph), len(graph.bond_graph)
            need = cost.estimate_mib(edges=edges, angles=angles)
            if need > budget_mib:
                detail = f"{edges} edges and {angles} angles in its graph"
                raise ModelMemoryError(
                    too_large_message(name, need_mib=need, budget_mib=budget_mib, n_atoms=len(structure), detail=detail)
                )
            return graph

        def __getattr__(self, item: str) -> Any:  # the converter's settings (cutoffs, algorithm)
            try:
                return super().__getattr__(item)
            except AttributeError:
                return getattr(self.inner, item)

    return BudgetedConverter()
