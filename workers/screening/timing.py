"""Stage timings: a context manager that adds wall seconds to a dict under a stage name.

With the environment variable PHONONSCREEN_STAGE_LOG set to a folder, every stage is also appended
as `stage<TAB>start<TAB>end` (Unix seconds) to `stages-<pid>.tsv` there: the throughput benchmark
uses it to tell which GPU-utilisation samples fall inside the force stage.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

STAGE_LOG_ENV = "PHONONSCREEN_STAGE_LOG"


@contextmanager
def timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    start = time.perf_counter()
    wall = time.time()
    try:
        yield
    finally:
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start
        log_stage(stage, wall, time.time())


def log_stage(stage: str, start: float, end: float) -> None:
    """Append one stage interval to this process's stage log, if PHONONSCREEN_STAGE_LOG is set."""
    folder = os.environ.get(STAGE_LOG_ENV)
    if folder:
        with open(os.path.join(folder, f"stages-{os.getpid()}.tsv"), "a") as handle:
            handle.write(f"{stage}\t{start:.3f}\t{end:.3f}\n")
