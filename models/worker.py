"""The `worker_heartbeats` table: each running `phononscreen worker` and when it last said it was alive."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base

MISSED_BEATS = 3  # a worker whose last heartbeat is older than this many intervals counts as gone


class WorkerHeartbeat(Base):
    __tablename__ = "worker_heartbeats"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(256), unique=True)  # the Celery node name, e.g. phononscreen-42@host
    pid: Mapped[int]  # of the worker's main process (not of its pool children)
    host: Mapped[str] = mapped_column(String(256))
    queues: Mapped[str] = mapped_column(String(256))  # comma-separated, as given to `phononscreen worker -Q`
    concurrency: Mapped[int]  # pool processes
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # renewed every PHONONSCREEN_HEARTBEAT_S by a thread of the worker; a worker silent for
    # MISSED_BEATS intervals counts as gone (killed, frozen or cut off from the database)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
