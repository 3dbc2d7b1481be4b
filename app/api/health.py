"""Liveness and readiness probes (outside the versioned API)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal

from celery import Celery
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.orm import Session

from app.api.deps import CeleryDep, SessionDep, SettingsDep
from models.base import utc_now
from models.queries import count_open_screenings, list_live_workers
from models.worker import MISSED_BEATS
from workers.celery_app import SCREEN_QUEUE

router = APIRouter(tags=["health"])


class WorkerSeen(BaseModel):
    name: str = Field(description="Celery node name, e.g. phononscreen-42@host")
    last_seen_s: float = Field(description="Seconds since its last heartbeat")
    queues: list[str]
    concurrency: int = Field(description="Its pool processes")


class QueueDepthOut(BaseModel):
    queued: int = Field(description="Screenings waiting for a worker")
    running: int = Field(description="Screenings a worker has claimed")


class Readiness(BaseModel):
    status: Literal["ok", "unavailable"]
    database: str = Field(description='"ok" or the error')
    broker: str = Field(description='"ok" or the error')
    workers: list[WorkerSeen] = Field(description="Workers heard from lately (empty when the database is down)")
    queue: QueueDepthOut | None = Field(description="From the database; null when it cannot be read")
    reason: str | None = Field(None, description="Why it is unavailable")


@router.get("/health")
def health() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@router.get(
    "/ready",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Database or broker unreachable, or no worker alive"}},
)
def ready(session: SessionDep, celery: CeleryDep, settings: SettingsDep) -> JSONResponse:
    """The database and the broker are reachable and at least one worker is alive (it beat within
    three PHONONSCREEN_HEARTBEAT_S); with the workers seen and the queue depth."""
    readiness = check_readiness(session, celery, heartbeat_s=settings.heartbeat_s)
    return JSONResponse(readiness.model_dump(), status_code=200 if readiness.status == "ok" else 503)


def check_readiness(session: Session, celery: Celery, *, heartbeat_s: float) -> Readiness:
    """Every check, each caught: readiness reports a failure, it never raises."""
    database, broker = _check(lambda: session.execute(text("SELECT 1"))), _check(lambda: _connect(celery))
    workers: list[WorkerSeen] = []
    queue: QueueDepthOut | None = None
    if database == "ok":
        try:
            workers, queue = _read_work(session, heartbeat_s=heartbeat_s)
        except Exception as exc:  # noqa: BLE001 - e.g. a schema not yet migrated: reported, not raised
            database = _error(exc)
    reasons = [f"{name} unreachable" for name, check in (("database", database), ("broker", broker)) if check != "ok"]
    if database == "ok" and not any(SCREEN_QUEUE in worker.queues for worker in workers):
        # the bookkeeper (`phononscreen beat`) beats too, but screens nothing
        reasons.append(f"no worker of the `{SCREEN_QUEUE}` queue seen in the last {MISSED_BEATS * heartbeat_s:g} s")
    return Readiness(
        status="unavailable" if reasons else "ok",
        database=database,
        broker=broker,
        workers=workers,
        queue=queue,
        reason="; ".join(reasons) or None,
    )


def _read_work(session: Session, *, heartbeat_s: float) -> tuple[list[WorkerSeen], QueueDepthOut]:
    now = utc_now()
    workers = [
        WorkerSeen(
            name=worker.name,
            last_seen_s=round(max(0.0, (now - _as_utc(worker.last_seen_at)).total_seconds()), 1),
            queues=[q for q in worker.queues.split(",") if q],
            concurrency=worker.concurrency,
        )
        for worker in list_live_workers(session, heartbeat_s=heartbeat_s, now=now)
    ]
    depth = count_open_screenings(session)
    return workers, QueueDepthOut(queued=depth.queued, running=depth.running)


def _as_utc(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; what was stored is UTC
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _connect(celery: Celery) -> None:
    with celery.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, timeout=3)


def _check(probe: Callable[[], object]) -> str:
    try:
        probe()
    except Exception as exc:  # noqa: BLE001 - readiness reports any failure, it never raises
        return _error(exc)
    return "ok"


def _error(exc: Exception) -> str:
    return f"error: {type(exc).__name__}: {exc}"[:300]
