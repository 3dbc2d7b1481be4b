"""Sending work to the workers by task name (the API never imports task bodies)."""

from __future__ import annotations

from collections.abc import Sequence

from celery import Celery

from workers.celery_app import SCREEN_QUEUE, SCREEN_TASK


def enqueue_screenings(celery: Celery, *, screening_ids: Sequence[int], chunk: int) -> int:
    """Send the screenings in tasks of `chunk` ids each; returns the number of tasks sent.

    Call only after the rows are committed: a worker may pick a task up at once.
    """
    ids = list(screening_ids)
    chunks = [ids[i : i + chunk] for i in range(0, len(ids), chunk)]
    for part in chunks:
        celery.send_task(SCREEN_TASK, args=[part], queue=SCREEN_QUEUE)
    return len(chunks)
