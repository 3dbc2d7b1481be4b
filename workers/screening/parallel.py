"""Screening in one or several processes, each with its own copy of the potential and a thread budget.

Measured on 2 CPU cores (issue 4): two 1-thread processes give more structures per hour than one
2-thread process, because much of a small-cell force call is Python and graph building that one
thread cannot overlap. On a GPU one process per device is the right layout instead.

The caller's environment must already hold OPENBLAS_NUM_THREADS=1 before numpy is imported (the
CLI, the worker and the benchmarks set it at start-up): spawned children inherit it. This module
reads and writes no environment variable; thread pools are capped in each child at run time.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from workers.screening.opinions import DEFAULT_PRESCREEN_MARGIN_THZ, Opinions
from workers.screening.protocols import ProtocolSettings
from workers.screening.types import ScreeningResult, StructureRecord

if TYPE_CHECKING:
    from workers.screening.potentials import LoadedPotential


@dataclass(frozen=True, kw_only=True)
class Layout:
    """Worker processes x torch threads per process."""

    processes: int
    threads_per_process: int

    @classmethod
    def for_device(cls, device: str, *, cores: int | None = None) -> Layout:
        """CPU: one 1-thread process per core (measured best here); GPU: one process."""
        cores = cores or os.cpu_count() or 1
        if device.startswith("cuda"):
            return cls(processes=1, threads_per_process=min(cores, 4))
        return cls(processes=cores, threads_per_process=1)


@dataclass(frozen=True, kw_only=True)
class PotentialSpec:
    """What each process needs to load the potential itself (models are not sent between processes)."""

    name: str
    device: str = "cpu"
    checkpoint: str | None = None
    compile: str = "off"  # load_potential's: auto / on / off
    compile_cache: Path | None = None  # where compiled graphs are kept between processes
    memory_budget_mib: float | None = None  # load_potential's: what one call may use in the process


@dataclass(frozen=True, kw_only=True)
class OpinionSpecs:
    """The other potentials of a run, as each process loads them (workers.screening.opinions)."""

    prescreen: PotentialSpec | None = None
    prescreen_margin_thz: float = DEFAULT_PRESCREEN_MARGIN_THZ
    second_opinion: PotentialSpec | None = None

    def load(self) -> Opinions:
        return Opinions(
            prescreen=_load(self.prescreen) if self.prescreen else None,
            prescreen_margin_thz=self.prescreen_margin_thz,
            second_opinion=_load(self.second_opinion) if self.second_opinion else None,
        )


def screen_parallel(
    items: Sequence[StructureRecord],
    *,
    protocol: ProtocolSettings,
    potential: PotentialSpec,
    layout: Layout,
    progress: Callable[[ScreeningResult], None] | None = None,
    keep_force_constants: bool = False,
    stage_log: Path | None = None,
    opinions: OpinionSpecs | None = None,
) -> list[ScreeningResult]:
    """`pipeline.screen_structures` over the whole list, in `layout.processes` processes.

    One process (or at most one structure to compute): the list goes to the pipeline in this
    process, so in-run dedup and batched relaxation see all of it. Several: duplicates are found
    first (the same rule), each process loads the potential once and screens one structure per
    task, longest first, so a slow structure never holds up the others. Results come back in the
    order of `items`; `progress` is called in this process as each one finishes. `opinions`: the
    prescreen and second-opinion potentials, loaded by each process beside the main one.
    """
    opinions = opinions or OpinionSpecs()
    from workers.screening.pipeline import as_duplicate, find_duplicates, screen_structures

    duplicates = find_duplicates(items, protocol=protocol)
    # processes only pay when at least two structures need the potential (failed reads do not)
    if layout.processes <= 1 or sum(item.ok and d is None for item, d in zip(items, duplicates, strict=True)) <= 1:
        _limit_threads(layout.threads_per_process)
        return screen_structures(
            items, protocol=protocol, potential=_load(potential), progress=progress,
            keep_force_constants=keep_force_constants, stage_log=stage_log, duplicates=duplicates,
            opinions=opinions.load(),
        )  # fmt: skip

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
    # Spawned, not forked: torch and forked threads do not mix.
    with ProcessPoolExecutor(
        max_workers=min(layout.processes, max(1, len(originals))),
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(potential, layout.threads_per_process, opinions, os.getpid()),
    ) as pool:
        futures = {pool.submit(_screen_one, items[i], protocol, keep_force_constants, stage_log): i for i in originals}
        for future in as_completed(futures):
            i = futures[future]
            done = [(i, future.result())]
            done += [(j, as_duplicate(done[0][1], name=items[j].name)) for j in copies.get(i, [])]
            for j, result in done:
                results[j] = result
                if progress is not None:
                    progress(result)
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

        structure = item.structure
        cell = (structure.lattice.matrix.tolist(), structure.frac_coords.tolist(), list(structure.atomic_numbers))
        dataset = spglib.get_symmetry_dataset(cell, symprec=protocol.symprec)
        distinct = len(set(dataset.equivalent_atoms)) if dataset is not None else n
    except Exception:  # noqa: BLE001 - ordering is a heuristic; never fail a screen over it
        distinct = n
    return float(n * distinct)


_POTENTIAL: LoadedPotential | None = None
_OPINIONS: Opinions | None = None


def _limit_threads(threads: int) -> None:
    """torch's intra-op threads and every BLAS/OpenMP pool of this process, capped at `threads`."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(limits=threads)


def _load(spec: PotentialSpec) -> LoadedPotential:
    from workers.screening.potentials import load_potential

    return load_potential(
        spec.name, device=spec.device, checkpoint=spec.checkpoint, compile=spec.compile,
        compile_cache=spec.compile_cache, memory_budget_mib=spec.memory_budget_mib,
    )  # fmt: skip


def _exit_with_parent(parent: int, *, every_s: float = 1.0) -> None:
    """End this worker when the process that started it is gone (killed, Ctrl-C'd twice): its
    results would have nowhere to go, and a structure can take minutes. The pool notices a dead
    worker, not a dead parent."""
    import threading

    def watch() -> None:
        while True:
            time.sleep(every_s)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _init_worker(potential: PotentialSpec, threads: int, opinions: OpinionSpecs, parent: int) -> None:
    global _POTENTIAL, _OPINIONS
    _exit_with_parent(parent)
    _limit_threads(threads)
    _POTENTIAL = _load(potential)
    _OPINIONS = opinions.load()


def _screen_one(
    item: StructureRecord, protocol: ProtocolSettings, keep_force_constants: bool, stage_log: Path | None
) -> ScreeningResult:
    from workers.screening.pipeline import screen_structures

    assert _POTENTIAL is not None, "worker process not initialised"
    (result,) = screen_structures(
        [item], protocol=protocol, potential=_POTENTIAL, keep_force_constants=keep_force_constants,
        stage_log=stage_log, opinions=_OPINIONS,
    )  # fmt: skip
    return result
