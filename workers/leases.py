"""A task's hold on its screenings: a daemon thread renews their leases while the task works."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta

from models.base import utc_now
from models.crud import renew_leases
from workers.runtime import WorkerContext

logger = logging.getLogger(__name__)


def lease_until(lease_s: float) -> datetime:
    """When a lease of `lease_s` seconds taken now expires (UTC)."""
    return utc_now() + timedelta(seconds=lease_s)


@contextmanager
def hold_leases(context: WorkerContext, *, ids: Sequence[int], task_id: str) -> Iterator[None]:
    """Renew the leases of `ids` (claimed by `task_id`) every lease_s / 3 until the block ends.

    A thread, not the task's own code, so that a long force call cannot starve the renewal; when
    the process dies the renewals stop and the reconciler takes the screenings back.
    """
    lease_s = context.config.lease_s
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(lease_s / 3):
            try:
                with context.session() as session:
                    renew_leases(session, ids=ids, task_id=task_id, until=lease_until(lease_s))
            except Exception:  # a missed renewal is retried next time; the lease is 3 periods long
                logger.exception("renewing the leases of screenings %s failed", list(ids))

    thread = threading.Thread(target=renew, name=f"leases-{task_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)  # at most one renewal in flight
