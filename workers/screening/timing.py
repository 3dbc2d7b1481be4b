"""Stage timings: wall seconds per stage name, optionally logged as intervals for the benchmark.

`StageTimes` is the dict a result keeps as `timings_s`. Given a `log` folder (the throughput
benchmark passes one; the core reads no environment), every stage is also appended as
`stage<TAB>start<TAB>end` (Unix seconds) to `stages-<pid>.tsv` there, so the benchmark can tell
which GPU-utilisation samples fall inside the force stage.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class StageTimes(dict[str, float]):
    """Seconds per stage; `stage(name)` adds the wall time of its block under `name`."""

    def __init__(self, *args: Any, log: Path | None = None) -> None:
        super().__init__(*args)
        self.log = log

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        wall = time.time()
        try:
            yield
        finally:
            self[name] = self.get(name, 0.0) + time.perf_counter() - start
            if self.log is not None:
                log_stage(self.log, name, wall, time.time())

    def close(self) -> None:
        """Set `total` to the sum of every other stage."""
        self["total"] = sum(v for k, v in self.items() if k != "total")


def log_stage(folder: Path, stage: str, start: float, end: float) -> None:
    """Append one stage interval to this process's stage log in `folder`."""
    with open(os.path.join(folder, f"stages-{os.getpid()}.tsv"), "a") as handle:
        handle.write(f"{stage}\t{start:.3f}\t{end:.3f}\n")
