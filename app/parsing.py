"""Reading uploads off the event loop: each request's files are read in a process of a small pool,
under the request's budgets (files, structures, inflated bytes) and a time limit past which that
process is killed. One hostile upload costs one pool process for `parse_timeout_s` at most; the
event loop, `/health` and other clients' reads never wait on it.

This module imports little at its top: the pool's processes import it to find `_read`."""

from __future__ import annotations

import asyncio
import atexit
import logging
import multiprocessing
import threading
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pebble import ProcessPool

    from app.submissions import SubmissionRejected
    from workers.screening.types import StructureRecord


@dataclass(frozen=True, kw_only=True)
class ReadLimits:
    """What one request may cost to read (PHONONSCREEN_MAX_* settings)."""

    max_atoms: int
    max_files: int
    max_structures: int
    max_decompressed_bytes: int
    timeout_s: float


def check_file_count(n_files: int, *, limits: ReadLimits) -> None:
    """413 before anything is read when a request carries more files than allowed."""
    if n_files > limits.max_files:
        raise too_many_files(max_files=limits.max_files, n_files=n_files)


def too_many_files(*, max_files: int, n_files: int | None = None) -> SubmissionRejected:
    from app.submissions import SubmissionRejected

    count = f"{n_files} files" if n_files is not None else "more files"
    return SubmissionRejected(
        413,
        {
            "code": "too_many_files",
            "message": f"{count} in one request, more than the {max_files} allowed (PHONONSCREEN_MAX_FILES); "
            "split the upload, or put the files in one archive",
        },
    )


async def read_upload(
    files: list[tuple[str, bytes]], *, limits: ReadLimits, workers: int
) -> list[list[StructureRecord]]:
    """The records of each file of one request, read in a pool process; SubmissionRejected (413)
    when a budget is exceeded or reading takes longer than `limits.timeout_s`."""
    from pebble import ProcessExpired

    from app.submissions import SubmissionRejected

    check_file_count(len(files), limits=limits)
    future = _pool(workers).schedule(_read, args=(files, limits), timeout=limits.timeout_s)
    try:
        records, exceeded = await asyncio.wrap_future(future)
    except FutureTimeout:
        raise SubmissionRejected(
            413,
            {
                "code": "too_costly",
                "message": f"reading the upload took more than {limits.timeout_s:g} s (PHONONSCREEN_PARSE_TIMEOUT_S) "
                "and was stopped; nothing was stored. Split the upload.",
            },
        ) from None
    except asyncio.CancelledError:
        future.cancel()  # the client went away: stop the process working for it
        raise
    except ProcessExpired as exc:  # the reading process died: out of memory, or killed
        logger.warning("the process reading an upload died: %r", exc)
        raise SubmissionRejected(
            413,
            {"code": "too_costly", "message": "reading the upload exhausted its process (memory?); nothing was stored"},
        ) from None
    except Exception as exc:
        logger.exception("reading an upload raised")
        raise SubmissionRejected(
            422,
            {"code": "unreadable", "message": f"the upload could not be read ({type(exc).__name__}); nothing stored"},
        ) from None
    if exceeded:
        raise SubmissionRejected(413, {"code": "too_large", "message": f"{exceeded}; nothing was stored"})
    return records


def _read(files: list[tuple[str, bytes]], limits: ReadLimits) -> tuple[list[list[StructureRecord]], str | None]:
    """Runs in a pool process: every file under one budget; the first limit hit, if any."""
    from workers.screening.ingest.read import ReadBudget, read_files

    budget = ReadBudget(
        max_atoms=limits.max_atoms, max_bytes=limits.max_decompressed_bytes, max_structures=limits.max_structures
    )
    return read_files(files, budget=budget), budget.exceeded


logger = logging.getLogger(__name__)
_pools: dict[int, ProcessPool] = {}
_lock = threading.Lock()


def _pool(workers: int) -> ProcessPool:
    """One pool per process and size, started on first use (spawned: the API's threads and open
    connections are not forked into it), stopped at exit. Each process reads a small cell before it
    takes a request (`_warm`), so a request's time limit never pays a process's start-up: not the
    first one's, nor that of one started to replace a process killed at its limit."""
    from pebble import ProcessPool

    with _lock:
        pool = _pools.get(workers)
        if pool is None or not pool.active:
            pool = _pools[workers] = ProcessPool(
                max_workers=workers, context=multiprocessing.get_context("spawn"), initializer=_warm
            )
        return pool


_WARM_CIF = b"""data_Si
_cell_length_a 3.867
_cell_length_b 3.867
_cell_length_c 3.867
_cell_angle_alpha 60
_cell_angle_beta 60
_cell_angle_gamma 60
_symmetry_space_group_name_H-M 'P 1'
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
Si1 Si 0 0 0
Si2 Si 0.25 0.25 0.25
"""


def _warm() -> None:
    """Runs in each pool process before its first task (pebble starts a task's clock after it):
    reading one cell imports everything reading needs."""
    limits = ReadLimits(max_atoms=2, max_files=1, max_structures=1, max_decompressed_bytes=len(_WARM_CIF), timeout_s=0)
    records, exceeded = _read([("warm.cif", _WARM_CIF)], limits)
    if exceeded or len(records[0]) != 1 or not records[0][0].ok:  # logged, not raised: pebble would respawn forever
        logger.warning("the upload reader failed on a known-good cell: %s", exceeded or records)


@atexit.register
def _stop_pools() -> None:
    for pool in _pools.values():
        pool.stop()
        pool.join(timeout=5)
