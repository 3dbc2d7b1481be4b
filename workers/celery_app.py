"""The Celery app: queues, routing and reliability settings; configured at process start-up.

Importing this module imports no task bodies (the API sends tasks by name), only Celery.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from celery import Celery

SCREEN_TASK = "phononscreen.screen_screenings"
FINISH_BATCHES_TASK = "phononscreen.finish_batches"
RECONCILE_TASK = "phononscreen.reconcile"
SCAN_SOURCE_TASK = "phononscreen.scan_source"
# Celery beat's scheduler: the periodic tasks live in the database (sqlalchemy-celery-beat), where
# the API writes the watched sources' schedules (workers.schedule)
SCHEDULER = "sqlalchemy_celery_beat.schedulers:DatabaseScheduler"
SCREEN_QUEUE = "screen"  # heavy: one potential per worker process, GPU workers listen here
DEFAULT_QUEUE = "default"  # light bookkeeping

celery_app = Celery("phononscreen", include=["workers.tasks"])
celery_app.conf.update(
    task_default_queue=DEFAULT_QUEUE,
    task_routes={
        SCREEN_TASK: {"queue": SCREEN_QUEUE},
        FINISH_BATCHES_TASK: {"queue": DEFAULT_QUEUE},
        RECONCILE_TASK: {"queue": DEFAULT_QUEUE},
        SCAN_SOURCE_TASK: {"queue": DEFAULT_QUEUE},
    },
    task_acks_late=True,  # a worker that dies mid-task leaves the message for another
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,  # screening tasks take minutes: never hoard them
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,  # results live in the database
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


def configure_celery(
    *,
    broker_url: str,
    soft_time_limit_s: int,
    time_limit_s: int,
    reconcile_every_s: float = 60,
    schedule_url: str | None = None,
) -> Celery:
    """Point the app at a broker, set the task time limits, the reconciler's beat and the database
    that holds beat's schedule (`schedule_url`, read by beat only); returns the app."""
    if celery_app.conf.broker_url not in (None, broker_url):
        _forget_connections(celery_app)
    celery_app.conf.update(
        broker_url=broker_url,
        task_soft_time_limit=soft_time_limit_s,
        task_time_limit=time_limit_s,
        # read by `phononscreen beat` only; a tick that finds the last one still waiting just adds a
        # harmless second pass (the reconciler is idempotent), so it expires after one interval
        beat_schedule={
            "reconcile": {
                "task": RECONCILE_TASK,
                "schedule": reconcile_every_s,
                "options": {"queue": DEFAULT_QUEUE, "expires": reconcile_every_s},
            }
        },
        # Redis re-delivers an unacked message after the visibility timeout: it must exceed the
        # longest task. (kombu's SQLAlchemy transport would pass this on to create_engine.)
        broker_transport_options=(
            {"visibility_timeout": time_limit_s + 600} if broker_url.startswith(("redis", "rediss")) else {}
        ),
    )
    if schedule_url is not None:
        celery_app.conf.update(
            beat_scheduler=SCHEDULER,
            beat_dburi=schedule_url,
            # SQLite: wait for the API's and workers' writes instead of failing at the driver's 5 s
            beat_engine_options={"connect_args": {"timeout": 30}} if schedule_url.startswith("sqlite") else {},
            beat_max_loop_interval=5,  # how soon a new, paused or resumed source's schedule is read
        )
    return celery_app


def _forget_connections(app: Celery) -> None:
    """Drop the pooled broker connections of `app`: after a change of broker they lead to the old
    one, and sends would silently go there (Celery builds the pools once, from the first URL)."""
    from kombu import pools

    pools.reset()  # kombu's registries hand out pools by connection: closed ones must not be handed out again
    app._pool = None
    app.amqp._producer_pool = None


def send_screenings(
    celery: Celery, *, screening_ids: Sequence[int], chunk: int, sent_at: datetime | None = None
) -> int:
    """Send the screenings in tasks of `chunk` ids each, stamped with when they were sent (the
    reconciler's clue to lost messages); returns the number of tasks sent.

    Call only after the rows are committed: a worker may pick a task up at once.
    """
    ids = list(screening_ids)
    stamp = (sent_at or datetime.now(UTC)).isoformat()
    chunks = [ids[i : i + chunk] for i in range(0, len(ids), chunk)]
    for part in chunks:
        celery.send_task(SCREEN_TASK, args=[part], kwargs={"sent_at": stamp}, queue=SCREEN_QUEUE)
    return len(chunks)
