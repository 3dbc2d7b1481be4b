"""The reconciler: the database is the source of truth for work, so it puts back what a dead
worker or a lost message left behind. Runs from beat (production) or a thread of `serve`."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime

from celery import Celery
from sqlalchemy.orm import Session

from models.base import utc_now
from models.crud import MAX_ATTEMPTS, fail_expired, finish_batches, requeue_expired, resend_lost
from models.queries import get_open_batch_ids
from workers.celery_app import send_screenings

logger = logging.getLogger(__name__)
MARGIN_S = 60.0  # how late a message may be claimed after a later one (API commit-to-send, worker jitter)


@dataclass(frozen=True, kw_only=True)
class ReconcileReport:
    """What one pass changed (ids); `to_send` must be sent after the commit."""

    requeued: list[int] = field(default_factory=list)  # running, lease expired: back in the queue
    failed: list[int] = field(default_factory=list)  # lease expired on the last attempt
    resent: list[int] = field(default_factory=list)  # queued, message lost
    finished_batches: list[int] = field(default_factory=list)

    @property
    def to_send(self) -> list[int]:
        return sorted(self.requeued + self.resent)

    def counts(self) -> dict[str, int]:
        return {
            "requeued": len(self.requeued),
            "failed": len(self.failed),
            "resent": len(self.resent),
            "finished_batches": len(self.finished_batches),
        }


def grace_for(reconcile_every_s: float) -> float:
    """How long a queued screening may wait behind a consumed later message before it counts as lost."""
    return reconcile_every_s + MARGIN_S


def reconcile(
    session: Session, *, now: datetime, lease_s: float, max_attempts: int = MAX_ATTEMPTS, grace_s: float = 120
) -> ReconcileReport:
    """One pass, in the caller's transaction: expired leases back to `queued` (or `failed` after
    `max_attempts`), lost messages stamped for re-sending, ended batches stamped finished.

    Idempotent: a second pass at the same `now` finds nothing more to do. Sending a screening twice
    is harmless (the claim's UPDATE ... WHERE status='queued' lets one message run it).
    """
    failed = fail_expired(session, now=now, lease_s=lease_s, max_attempts=max_attempts)
    requeued = requeue_expired(session, now=now, lease_s=lease_s, max_attempts=max_attempts)
    resent = resend_lost(session, now=now, grace_s=grace_s)
    finished = finish_batches(session, batch_ids=get_open_batch_ids(session))
    return ReconcileReport(requeued=requeued, failed=failed, resent=resent, finished_batches=finished)


def reconcile_and_send(
    session_scope: Callable[[], AbstractContextManager[Session]],
    *,
    celery: Celery,
    lease_s: float,
    reconcile_every_s: float,
    chunk: int,
    max_attempts: int = MAX_ATTEMPTS,
) -> ReconcileReport:
    """A pass committed by `session_scope`, then its screenings sent (a failed send is retried by a
    later pass: the rows stay queued)."""
    with session_scope() as session:
        now = utc_now()
        report = reconcile(
            session, now=now, lease_s=lease_s, max_attempts=max_attempts, grace_s=grace_for(reconcile_every_s)
        )
    if report.to_send:
        send_screenings(celery, screening_ids=report.to_send, chunk=chunk, sent_at=now)
    if any(report.counts().values()):
        logger.info("reconciled: %s", report.counts())
    return report


def start_reconciler_thread(
    session_scope: Callable[[], AbstractContextManager[Session]],
    *,
    celery: Celery,
    lease_s: float,
    reconcile_every_s: float,
    chunk: int,
) -> threading.Event:
    """Run `reconcile_and_send` every `reconcile_every_s` in a daemon thread; set the returned event to stop it."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(reconcile_every_s):
            try:
                reconcile_and_send(
                    session_scope, celery=celery, lease_s=lease_s, reconcile_every_s=reconcile_every_s, chunk=chunk
                )
            except Exception:  # a database or broker outage: the next pass tries again
                logger.exception("reconciler pass failed")

    threading.Thread(target=loop, name="reconciler", daemon=True).start()
    return stop
