"""The worker child of `phononscreen serve`: started, restarted when it dies, stopped with serve."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)


def start_worker_process(*, queues: str, concurrency: int) -> subprocess.Popen:
    """`phononscreen worker` as a child process, with this process's environment."""
    command = [sys.executable, "-m", "app.cli", "worker", "--queues", queues, "--concurrency", str(concurrency)]
    return subprocess.Popen(command, env=dict(os.environ), start_new_session=True)


def stop_process(process: subprocess.Popen, *, timeout_s: float = 20) -> None:
    """Warm shutdown (SIGTERM), then kill if it does not finish in time."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class WorkerSupervisor:
    """Keeps one child process running: a daemon thread polls it every `poll_s` and, when it has
    exited (killed, out of memory, crashed), starts another with `start`.

    A child that keeps dying quickly is restarted after a back-off that doubles from
    `min_backoff_s` up to `max_backoff_s`; one that lived `healthy_after_s` starts the back-off
    again from the bottom. After `stop()` nothing is restarted.
    """

    def __init__(
        self,
        start: Callable[[], subprocess.Popen],
        *,
        poll_s: float = 1.0,
        min_backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        healthy_after_s: float = 60.0,
    ) -> None:
        self._start = start
        self.poll_s, self.min_backoff_s, self.max_backoff_s = poll_s, min_backoff_s, max_backoff_s
        self.healthy_after_s = healthy_after_s
        self.current: subprocess.Popen | None = None
        self.restarts = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> subprocess.Popen:
        """Start the child and the thread that watches it; returns the child."""
        self.current = self._start()
        self._thread = threading.Thread(target=self._watch, name="worker-supervisor", daemon=True)
        self._thread.start()
        return self.current

    def stop(self, *, timeout_s: float = 20) -> None:
        """Restart nothing more, then stop the current child (SIGTERM, SIGKILL after `timeout_s`)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()  # returns promptly: the thread only waits on the stop event
        if self.current is not None:
            stop_process(self.current, timeout_s=timeout_s)

    def _watch(self) -> None:
        started, backoff = time.monotonic(), self.min_backoff_s
        while not self._stop.wait(self.poll_s):
            process = self.current
            if process is None or (code := process.poll()) is None:
                continue
            lived_s = time.monotonic() - started
            if lived_s >= self.healthy_after_s:
                backoff = self.min_backoff_s
            logger.warning(
                "worker (pid %d) exited with code %s after %.0f s; starting a new one in %g s",
                process.pid,
                code,
                lived_s,
                backoff,
            )
            if self._stop.wait(backoff):
                return
            try:
                self.current, started = self._start(), time.monotonic()
            except Exception:  # the dead child stays current: the next poll tries again, later
                logger.exception("starting a new worker failed")
            else:
                self.restarts += 1
                logger.warning("worker restarted (pid %d)", self.current.pid)
            backoff = min(2 * backoff, self.max_backoff_s)
