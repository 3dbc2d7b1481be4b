"""The schedule of watched sources, kept in the database by sqlalchemy-celery-beat: one periodic
task per source, which Celery beat (`phononscreen beat`, or the one `serve` runs) reads and sends.

The `sources` table is the truth; `sync_schedules` makes the periodic tasks match it (run after
every change of a source, and by the reconciler each tick, so a failed write heals itself).
The scan task checks the source again when it runs: a paused or deleted source is never scanned,
whatever the schedule says."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from models.source import Source
from workers.celery_app import DEFAULT_QUEUE, SCAN_SOURCE_TASK

logger = logging.getLogger(__name__)

PREFIX = "phononscreen.source."  # the periodic tasks this module owns; beat's others are left alone


@dataclass(frozen=True, kw_only=True)
class SourceSchedule:
    source_id: int
    interval_s: float | None
    cron: str | None  # five fields: minute hour day-of-month month day-of-week (UTC)
    paused: bool


def parse_cron(cron: str) -> dict[str, str]:
    """The crontab fields of a five-field expression; ValueError naming the problem."""
    from celery.schedules import crontab

    fields = cron.split()
    if len(fields) != 5:
        raise ValueError(f"a cron expression has 5 fields (minute hour day month weekday), not {len(fields)}")
    names = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")
    values = dict(zip(names, fields, strict=True))
    crontab(**values)  # raises ValueError on a field it cannot parse
    return values


def sync_schedules(connection: Connection, *, sources: list[SourceSchedule]) -> int:
    """Make the periodic tasks match `sources` (created, changed, enabled, removed) inside the
    transaction `connection` is in; returns how many were written or removed. The library's tables
    are created by migration 0009."""
    from sqlalchemy_celery_beat.models import CrontabSchedule, IntervalSchedule, Period, PeriodicTask

    changed = 0
    # the library's tables name a schema; they live in the default one
    bind = connection.execution_options(schema_translate_map={"celery_schema": None})
    with Session(bind, join_transaction_mode="create_savepoint") as session:
        existing = {
            t.name: t for t in session.scalars(select(PeriodicTask).where(PeriodicTask.name.startswith(PREFIX)))
        }
        wanted = {f"{PREFIX}{s.source_id}": s for s in sources}
        for name in existing.keys() - wanted.keys():
            _delete(session, existing[name])
            changed += 1
        for name, source in wanted.items():
            task = existing.get(name)
            if task is not None and _matches(task, source):
                continue
            if task is not None:
                _delete(session, task)
                session.flush()
            if source.cron is not None:
                model: CrontabSchedule | IntervalSchedule = CrontabSchedule(**parse_cron(source.cron), timezone="UTC")
            else:
                model = IntervalSchedule(every=max(1, round(source.interval_s or 0)), period=Period.SECONDS)
            session.add(model)
            session.flush()
            task = PeriodicTask(
                name=name,
                task=SCAN_SOURCE_TASK,
                args=json.dumps([source.source_id]),
                queue=DEFAULT_QUEUE,
                enabled=not source.paused,
                description=f"scan watched source {source.source_id}",
            )
            task.schedule_model = model
            session.add(task)
            changed += 1
        session.commit()  # releases the savepoint: the caller's transaction commits it all
    return changed


def sync_source_schedules(session: Session) -> int:
    """`sync_schedules` for every source `session` sees, in its transaction: a change of a source
    and of its periodic task are committed together."""
    sources = [
        SourceSchedule(source_id=s.id, interval_s=s.interval_s, cron=s.cron, paused=s.paused)
        for s in session.scalars(select(Source).order_by(Source.id))
    ]
    return sync_schedules(session.connection(), sources=sources)


def _matches(task, source: SourceSchedule) -> bool:
    model = task.schedule_model
    if task.enabled == source.paused or model is None:
        return False
    if source.cron is not None:
        fields = parse_cron(source.cron)
        return model.discriminator == "crontabschedule" and all(getattr(model, k) == v for k, v in fields.items())
    return model.discriminator == "intervalschedule" and model.every == max(1, round(source.interval_s or 0))


def _delete(session: Session, task) -> None:
    model = task.schedule_model
    session.delete(task)
    if model is not None:
        session.delete(model)
