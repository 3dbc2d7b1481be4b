"""Celery tasks: thin, named, take ids; the logic lives in workers.jobs and the core."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_ready, worker_shutdown
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy.exc import OperationalError as DatabaseError

from workers.celery_app import (
    FINISH_BATCHES_TASK,
    RECONCILE_TASK,
    SCAN_SOURCE_TASK,
    SCREEN_TASK,
    celery_app,
    send_screenings,
)
from workers.heartbeat import WorkerIdentity, start_heartbeat, stop_heartbeat
from workers.jobs import TIME_LIMIT, batch_ids_of, claim, load_jobs, mark_failed, run_jobs
from workers.leases import hold_leases
from workers.reconcile import reconcile_and_send
from workers.runtime import get_worker_context
from workers.scan import ScanLimits, scan_source
from workers.schedule import sync_source_schedules

logger = logging.getLogger(__name__)
TRANSIENT = (DatabaseError, BrokerError, ConnectionError)  # worth a retry; nothing else is
MAX_RETRIES = 5


@celery_app.task(
    name=SCREEN_TASK,
    bind=True,
    autoretry_for=TRANSIENT,
    max_retries=MAX_RETRIES,
    retry_backoff=15,
    retry_backoff_max=600,
    retry_jitter=True,
)
def screen_screenings(self, screening_ids: list[int], sent_at: str | None = None) -> dict[str, int]:
    """Claim these screenings, run the core once on all of them (holding their leases), save each verdict."""
    context = get_worker_context()
    # the task id survives retries and redeliveries, so this task can reclaim its own rows
    claimed = claim(
        context,
        ids=screening_ids,
        worker=self.request.hostname or "?",
        task_id=self.request.id,
        sent_at=datetime.fromisoformat(sent_at) if sent_at else None,
    )
    if not claimed:
        return {"claimed": 0, "saved": 0}
    try:
        with hold_leases(context, ids=claimed, task_id=self.request.id):
            saved = run_jobs(context, jobs=load_jobs(context, ids=claimed))
    except Exception as exc:  # SoftTimeLimitExceeded included
        if isinstance(exc, TRANSIENT) and self.request.retries < MAX_RETRIES:
            raise  # autoretry_for backs off and retries; the rows stay claimed by this task id
        error = TIME_LIMIT if isinstance(exc, SoftTimeLimitExceeded) else f"{type(exc).__name__}: {exc}"
        mark_failed(context, ids=claimed, error=error)
        self.app.send_task(FINISH_BATCHES_TASK, args=[batch_ids_of(context, ids=claimed)])
        raise
    self.app.send_task(FINISH_BATCHES_TASK, args=[batch_ids_of(context, ids=claimed)])
    return {"claimed": len(claimed), "saved": saved}


@celery_app.task(name=FINISH_BATCHES_TASK, autoretry_for=TRANSIENT, max_retries=MAX_RETRIES, retry_backoff=5)
def finish_batches(batch_ids: list[int]) -> list[int]:
    """Stamp `finished_at` on the batches whose screenings have all ended."""
    from models.crud import finish_batches as finish

    with get_worker_context().session() as session:
        return finish(session, batch_ids=batch_ids)


@celery_app.task(name=RECONCILE_TASK, ignore_result=True)
def reconcile() -> dict[str, int]:
    """Take back screenings whose worker died, re-send lost messages, stamp ended batches (beat runs it)."""
    context = get_worker_context()
    config = context.config
    report = reconcile_and_send(
        context.session,
        celery=celery_app,
        lease_s=config.lease_s,
        reconcile_every_s=config.reconcile_every_s,
        chunk=config.screen_chunk,
    )
    try:  # the watched sources' periodic tasks heal here if a write of them was lost
        with context.session() as session:
            sync_source_schedules(session)
    except Exception:  # the reconciler's own work is done; the next tick tries again
        logger.exception("the watched sources' schedule could not be synchronised")
    return report.counts()


@celery_app.task(name=SCAN_SOURCE_TASK, autoretry_for=TRANSIENT, max_retries=MAX_RETRIES, retry_backoff=15)
def scan_source_task(source_id: int, manual: bool = False) -> dict[str, int]:
    """Scan a watched source (beat sends it on the source's schedule; the API on "scan now"), then
    queue the screenings of the batches it stored."""
    context = get_worker_context()
    config = context.config
    limits = ScanLimits(
        max_atoms=config.max_atoms, max_structures=config.max_structures, max_bytes=config.max_decompressed_bytes
    )
    report = scan_source(context.session, source_id=source_id, store=context.store, limits=limits, manual=manual)
    if report.screening_ids:  # committed: a lost send is re-sent by the reconciler
        send_screenings(celery_app, screening_ids=report.screening_ids, chunk=config.screen_chunk)
    return report.counts()


@worker_ready.connect
def start_worker_heartbeat(sender: Any, **_: Any) -> None:
    """The worker's main process consumes (its pool is up): it starts beating (workers.heartbeat)."""
    context = get_worker_context()
    identity = WorkerIdentity(
        name=sender.hostname,
        queues=",".join(sender.app.amqp.queues.consume_from),
        concurrency=sender.pool.num_processes,  # 1 for the solo pool, whatever --concurrency says
    )
    start_heartbeat(context.session, identity=identity, every_s=context.config.heartbeat_s)


@worker_shutdown.connect
def stop_worker_heartbeat(**_: Any) -> None:
    """A warm shutdown has finished its tasks: the worker's row goes (a killed worker's ages out)."""
    stop_heartbeat()
