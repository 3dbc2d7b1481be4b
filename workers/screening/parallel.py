"""Screening in several processes, each with its own copy of the potential and a thread budget.

Measured on 2 CPU cores (issue 4): two 1-thread processes give more structures per hour than one
2-thread process, because much of a small-cell force call is Python and graph building that one
thread cannot overlap. On a GPU one process per device is the right layout instead.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass

from workers.screening.protocols import ProtocolSettings
from workers.screening.types import ScreeningResult, StructureRecord

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass(frozen=True, kw_only=True)
class Layout:
    """Worker processes x torch threads per process."""

    processes: int
    threads_per_process: int

    @classmethod
    def for_device(cls, device: str, *, cores: int | None = None) -> "Layout":
        """CPU: one 1-thread process per core (measured best here); GPU: one process."""
        cores = cores or os.cpu_count() or 1
        if device.startswith("cuda"):
            return cls(processes=1, threads_per_process=min(cores, 4))
        return cls(processes=cores, threads_per_process=1)


def screen_parallel(
    items: Sequence[StructureRecord],
    *,
    protocol: ProtocolSettings,
    potential_name: str,
    device: str = "cpu",
    checkpoint: str | None = None,
    layout: Layout,
    progress: Callable[[ScreeningResult], None] | None = None,
    keep_force_constants: bool = False,
    compile: str = "auto",
) -> list[ScreeningResult]:
    """Like `pipeline.screen_structures`, spread over `layout.processes` processes.

    Each process loads the potential once (by name: models are not sent between processes)
    and screens one structure per task, so a slow structure never holds up the others. Results
    come back in the order of `items`. `compile` is `load_potential`'s, applied in each process.
    """
    if layout.processes <= 1 or len(items) <= 1:
        _set_threads(layout.threads_per_process)
        from workers.screening.pipeline import screen_structures
        from workers.screening.potentials.registry import load_potential

        potential = load_potential(potential_name, device=device, checkpoint=checkpoint, compile=compile)
        return screen_structures(
            items, protocol=protocol, potential=potential, progress=progress, keep_force_constants=keep_force_constants
        )

    from workers.screening.pipeline import as_duplicate, find_duplicates

    duplicates = find_duplicates(items, protocol=protocol)
    # Longest first: a big low-symmetry cell started last would leave the other workers idle
    # while it finishes (the last structures of a batch set its wall time).
    originals = sorted(
        (i for i, d in enumerate(duplicates) if d is None), key=lambda i: -expected_cost(items[i], protocol)
    )
    copies: dict[int, list[int]] = {}
    for i, d in enumerate(duplicates):
        if d is not None:
            copies.setdefault(d, []).append(i)
    results: list[ScreeningResult | None] = [None] * len(items)
    # Children are spawned (not forked: torch and forked threads do not mix) and inherit the
    # thread variables from this environment, which must be set before they import numpy.
    saved = {k: os.environ.get(k) for k in _THREAD_VARIABLES}
    os.environ.update({k: str(layout.threads_per_process) for k in _THREAD_VARIABLES})
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    try:
        with ProcessPoolExecutor(
            max_workers=min(layout.processes, max(1, len(originals))),
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(potential_name, device, checkpoint, layout.threads_per_process, compile),
        ) as pool:
            futures = {pool.submit(_screen_one, items[i], protocol, keep_force_constants): i for i in originals}
            for future in as_completed(futures):
                i = futures[future]
                done = [(i, future.result())]
                done += [(j, as_duplicate(done[0][1], name=items[j].name)) for j in copies.get(i, [])]
                for j, result in done:
                    results[j] = result
                    if progress is not None:
                        progress(result)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return [r for r in results if r is not None]


def expected_cost(item: StructureRecord, protocol: ProtocolSettings) -> float:
    """A relative cost of screening `item`, for ordering work: sites x symmetry-distinct sites.

    Displaced supercells dominate, and there is one per (symmetry-distinct atom, direction), each
    of a size proportional to the cell's; relaxation is not predictable from the input and is left
    out. Unreadable or failed records cost nothing (they are reported at once).
    """
    if not item.ok or item.structure is None:
        return 0.0
    n = len(item.structure)
    try:
        import spglib

        cell = (item.structure.lattice.matrix, item.structure.frac_coords, item.structure.atomic_numbers)
        dataset = spglib.get_symmetry_dataset(cell, symprec=protocol.symprec)
        distinct = len(set(dataset.equivalent_atoms)) if dataset is not None else n
    except Exception:  # noqa: BLE001 - ordering is a heuristic; never fail a screen over it
        distinct = n
    return float(n * distinct)


_POTENTIAL = None


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _init_worker(potential_name: str, device: str, checkpoint: str | None, threads: int, compile: str) -> None:
    global _POTENTIAL
    _set_threads(threads)
    from workers.screening.potentials.registry import load_potential

    _POTENTIAL = load_potential(potential_name, device=device, checkpoint=checkpoint, compile=compile)


def _screen_one(item: StructureRecord, protocol: ProtocolSettings, keep_force_constants: bool) -> ScreeningResult:
    from workers.screening.pipeline import screen_structures

    assert _POTENTIAL is not None, "worker process not initialised"
    (result,) = screen_structures(
        [item], protocol=protocol, potential=_POTENTIAL, keep_force_constants=keep_force_constants
    )
    return result
