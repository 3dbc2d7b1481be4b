"""Sending work to the workers by task name (the API never imports task bodies)."""

from __future__ import annotations

from collections.abc import Sequence

from celery import Celery

from workers.celery_app import send_screenings


def enqueue_screenings(celery: Celery, *, screening_ids: Sequence[int], chunk: int) -> int:
    """Send the screenings in tasks of `chunk` ids each; returns the number of tasks sent.

    Call only after the rows are committed: a worker may pick a task up at once. The one way of
    sending screenings (the reconciler re-sends through it too): `workers.celery_app.send_screenings`.
    """
    return send_screenings(celery, screening_ids=screening_ids, chunk=chunk)
