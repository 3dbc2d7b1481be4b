"""The worker process's runtime: its settings, database engine and artifact store, built once at start."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from models.artifacts import ArtifactStore
from models.session import create_db_engine, create_session_factory


@dataclass(frozen=True, kw_only=True)
class WorkerConfig:
    """What a worker process needs, read from Settings once at start-up (the core reads nothing)."""

    database_url: str
    artifacts_dir: Path
    device: str = "auto"
    compile: str = "auto"  # torch.compile of the potential: auto/on/off (workers.screening.potentials.compiled)
    compile_cache: Path | None = None  # where compiled graphs are kept between worker processes
    memory_budget_mib: float | None = None  # what one potential call may use in a worker process
    keep_force_constants: bool = False  # phonopy_params yaml (xz) of each screening in the store
    lease_s: float = 600  # a claimed screening's lease, renewed every lease_s / 3 while its task runs
    reconcile_every_s: float = 60  # how often the reconciler runs (its grace for lost messages follows)
    screen_chunk: int = 4  # screenings per task when the reconciler re-sends them
    heartbeat_s: float = 10  # how often the worker's main process records that it is alive (workers.heartbeat)
    # what one watched file may cost to read (workers.scan): the API's limits for one request
    max_atoms: int = 500
    max_structures: int = 100_000
    max_decompressed_bytes: int = 200_000_000


class WorkerContext:
    """Per-process database engine and artifact store (a forked child builds its own engine)."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.store = ArtifactStore(config.artifacts_dir)
        self._engine: Engine | None = None
        self._sessions: sessionmaker[Session] | None = None
        self._pid = -1

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One session per unit of work, committed here at the edge, rolled back on error."""
        if self._engine is None or self._sessions is None or self._pid != os.getpid():
            if self._engine is not None:
                # forked from a process that used the engine (the heartbeat of the worker's main
                # process): drop the inherited connections without closing them, they are the parent's
                self._engine.dispose(close=False)
            self._engine, self._pid = create_db_engine(self.config.database_url), os.getpid()
            self._sessions = create_session_factory(self._engine)
        with self._sessions() as session, session.begin():
            yield session


_CONTEXT: WorkerContext | None = None


def configure_worker(config: WorkerConfig) -> WorkerContext:
    global _CONTEXT
    _CONTEXT = WorkerContext(config)
    return _CONTEXT


def get_worker_context() -> WorkerContext:
    if _CONTEXT is None:
        raise RuntimeError("worker not configured: start it with `phononscreen worker`")
    return _CONTEXT
