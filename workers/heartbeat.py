"""A worker's heartbeat: its row in worker_heartbeats, written when it starts consuming, renewed by
a daemon thread, deleted when it stops cleanly; /ready counts the workers heard from lately."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from models.base import utc_now
from models.crud import beat_worker, forget_workers, remove_worker

logger = logging.getLogger(__name__)
FORGET_AFTER = timedelta(days=1)  # a worker that died without a clean stop keeps its row this long


@dataclass(frozen=True, kw_only=True)
class WorkerIdentity:
    """Who beats: one `phononscreen worker` (its main process, not its pool children)."""

    name: str  # the Celery node name, unique among running workers
    queues: str  # comma-separated
    concurrency: int  # pool processes
    pid: int = field(default_factory=os.getpid)
    host: str = field(default_factory=socket.gethostname)
    started_at: datetime = field(default_factory=utc_now)


class Heartbeat:
    """Beats for one worker every `every_s` seconds, each in its own committed session."""

    def __init__(
        self,
        session_scope: Callable[[], AbstractContextManager[Session]],
        *,
        identity: WorkerIdentity,
        every_s: float,
    ) -> None:
        self.identity = identity
        self.every_s = every_s
        self._session_scope = session_scope
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        """Record now as this worker's last sign of life (inserting its row if it has none)."""
        who = self.identity
        with self._session_scope() as session:
            beat_worker(
                session,
                name=who.name,
                pid=who.pid,
                host=who.host,
                queues=who.queues,
                concurrency=who.concurrency,
                started_at=who.started_at,
                now=utc_now(),
            )

    def start(self) -> None:
        """Forget long-dead workers, beat once, then keep beating from a daemon thread.

        A thread, not the worker's own loop, so that a busy or blocked consumer cannot starve it;
        a failed beat (the database away) is logged and retried at the next one.
        """
        try:
            with self._session_scope() as session:
                forget_workers(session, seen_before=utc_now() - FORGET_AFTER)
            self.beat()
        except Exception:  # the thread retries; a worker must not die of a missed beat
            logger.exception("first heartbeat of worker %s failed", self.identity.name)
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop beating and delete this worker's row: it is gone at once, not three beats later."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)  # at most one beat in flight; none may follow the delete
        try:
            with self._session_scope() as session:
                remove_worker(session, name=self.identity.name)
        except Exception:  # shutting down: the row then ages out by itself
            logger.exception("removing the heartbeat of worker %s failed", self.identity.name)

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.beat()
            except Exception:  # the next beat tries again; /ready allows missed ones
                logger.exception("heartbeat of worker %s failed", self.identity.name)


_CURRENT: Heartbeat | None = None


def start_heartbeat(
    session_scope: Callable[[], AbstractContextManager[Session]], *, identity: WorkerIdentity, every_s: float
) -> Heartbeat:
    """Start this process's heartbeat (the worker's main process calls it once it consumes)."""
    global _CURRENT
    if _CURRENT is not None:
        _CURRENT.stop()
    _CURRENT = Heartbeat(session_scope, identity=identity, every_s=every_s)
    _CURRENT.start()
    return _CURRENT


def stop_heartbeat() -> None:
    """Stop this process's heartbeat, if it has one, and delete its row."""
    global _CURRENT
    if _CURRENT is not None:
        _CURRENT.stop()
        _CURRENT = None
