"""Data functions that write: keyword-only, verb-first; they flush but never commit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased, selectinload

from models.api_key import ApiKey
from models.base import utc_now
from models.batch import Batch
from models.candidate import Candidate
from models.formulas import alphabetical_formula, anonymous_formula
from models.generator import Generator
from models.screening import DUPLICATE, Screening
from models.source import Source
from models.verdict import Verdict
from models.worker import WorkerHeartbeat


@dataclass(frozen=True, kw_only=True)
class CandidateValues:
    """One accepted structure, already parsed and described (plain values, no pymatgen)."""

    name: str
    source_file: str
    source_index: int
    structure: dict[str, Any]
    cif: str
    reduced_formula: str
    elements: list[str]
    n_sites: int
    spacegroup_number: int | None
    spacegroup_symbol: str | None
    crystal_system: str | None
    fingerprint: str
    submitted_path: str | None = None


def get_or_create_generator(session: Session, *, name: str, version: str | None = None) -> Generator:
    """The generator called `name`, created on first use, inside the caller's transaction.

    Insert-or-ignore then select, so concurrent first uses of a new name all get the one row: on
    Postgres a second insert waits for the first transaction and then does nothing (no unique-key
    error, no aborted transaction); SQLite serialises writers.
    """
    generator = session.scalar(select(Generator).where(Generator.name == name))
    if generator is not None:
        return generator
    values = {"name": name, "version": version, "created_at": utc_now()}
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(postgresql.insert(Generator).values(values).on_conflict_do_nothing(index_elements=["name"]))
    elif dialect == "sqlite":
        session.execute(sqlite.insert(Generator).values(values).on_conflict_do_nothing(index_elements=["name"]))
    else:  # no portable insert-or-ignore: a savepoint keeps a lost race from aborting the caller's transaction
        try:
            with session.begin_nested():
                session.add(Generator(**values))
        except IntegrityError:
            pass
    return session.scalars(select(Generator).where(Generator.name == name)).one()


def create_batch(
    session: Session,
    *,
    source: str,
    generator: Generator | None,
    protocol: str,
    potential: str,
    n_submitted: int,
    rejected: list[dict[str, Any]],
    generator_version: str | None = None,
    prescreen: str | None = None,
    prescreen_margin_thz: float | None = None,
    second_opinion: str | None = None,
    source_id: int | None = None,
) -> Batch:
    """A new batch row (flushed, so it has an id)."""
    batch = Batch(
        source=source,
        source_id=source_id,
        generator_id=generator.id if generator else None,
        generator_version=generator_version,
        protocol=protocol,
        potential=potential,
        prescreen=prescreen,
        prescreen_margin_thz=prescreen_margin_thz,
        second_opinion=second_opinion,
        n_submitted=n_submitted,
        n_accepted=n_submitted - len(rejected),
        n_rejected=len(rejected),
        rejected=rejected,
    )
    session.add(batch)
    session.flush()
    return batch


def add_candidates(session: Session, *, batch: Batch, candidates: Sequence[CandidateValues]) -> list[Screening]:
    """Candidate rows for `batch`, each with one queued screening under the batch's settings."""
    screenings = []
    for values in candidates:
        fields = asdict(values)
        candidate = Candidate(
            batch_id=batch.id,
            generator_id=batch.generator_id,
            chemsys="-".join(sorted(values.elements)),
            alphabetical_formula=alphabetical_formula(values.structure),
            anonymous_formula=anonymous_formula(values.structure),
            **fields,
        )
        screening = Screening(
            candidate=candidate, batch_id=batch.id, protocol=batch.protocol, potential=batch.potential
        )
        session.add_all([candidate, screening])
        screenings.append(screening)
    session.flush()
    return screenings


def mark_duplicates(session: Session, *, links: Sequence[tuple[Screening, int]]) -> None:
    """Make each (screening, original screening id) a duplicate: no compute, the original's verdict."""
    for screening, original_id in links:
        screening.duplicate_of_id = original_id
        screening.status = DUPLICATE
    session.flush()


MAX_ATTEMPTS = 3  # claims of one screening: a structure that kills its worker every time stops here


def claim_screenings(
    session: Session,
    *,
    ids: Sequence[int],
    worker: str,
    task_id: str,
    max_attempts: int = MAX_ATTEMPTS,
    lease_until: datetime | None = None,
    sent_at: datetime | None = None,
) -> list[int]:
    """Atomically mark queued screenings as running for this task; returns the ids it got.

    A single UPDATE ... RETURNING, so two workers can never both claim a row. Rows already running
    under the same task id are reclaimed: that is a redelivery of a message whose worker died.
    A structure that kills its worker every time (out of memory) stops after `max_attempts`.
    `lease_until`: the lease the claim starts with (renew it with `renew_leases`); `sent_at`: when
    the claiming message was sent, kept in `enqueued_at` (the reconciler's "consumed up to here").
    """
    stmt = (
        update(Screening)
        .where(
            Screening.id.in_(list(ids)),
            or_(
                Screening.status == "queued",
                and_(Screening.status == "running", Screening.task_id == task_id, Screening.attempts < max_attempts),
            ),
        )
        .values(
            status="running",
            worker=worker,
            task_id=task_id,
            attempts=Screening.attempts + 1,
            started_at=utc_now(),
            error=None,
            lease_expires_at=lease_until,
            enqueued_at=Screening.enqueued_at if sent_at is None else sent_at,
        )
        .returning(Screening.id)
    )
    return sorted(session.scalars(stmt, execution_options={"synchronize_session": False}).all())


def renew_leases(session: Session, *, ids: Sequence[int], task_id: str, until: datetime) -> int:
    """Extend the leases of these screenings while this task still holds them; returns how many."""
    result = session.execute(
        update(Screening)
        .where(Screening.id.in_(list(ids)), Screening.status == "running", Screening.task_id == task_id)
        .values(lease_expires_at=until),
        execution_options={"synchronize_session": False},
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def _lease_expired(*, now: datetime, lease_s: float) -> ColumnElement[bool]:
    # a row claimed before leases existed has none: its lease then runs from its start
    return and_(
        Screening.status == "running",
        or_(
            Screening.lease_expires_at < now,
            and_(Screening.lease_expires_at.is_(None), Screening.started_at < now - timedelta(seconds=lease_s)),
        ),
    )


def requeue_expired(session: Session, *, now: datetime, lease_s: float, max_attempts: int = MAX_ATTEMPTS) -> list[int]:
    """Put running screenings whose lease expired (their worker died) back in the queue, sent at
    `now`, unless they used up their attempts; returns their ids (send them after the commit)."""
    stmt = (
        update(Screening)
        .where(_lease_expired(now=now, lease_s=lease_s), Screening.attempts < max_attempts)
        .values(status="queued", lease_expires_at=None, enqueued_at=now, worker=None)
        .returning(Screening.id)
    )
    return sorted(session.scalars(stmt, execution_options={"synchronize_session": False}).all())


def fail_expired(session: Session, *, now: datetime, lease_s: float, max_attempts: int = MAX_ATTEMPTS) -> list[int]:
    """Mark failed the running screenings whose lease expired on their last attempt; returns their ids."""
    stmt = (
        update(Screening)
        .where(_lease_expired(now=now, lease_s=lease_s), Screening.attempts >= max_attempts)
        .values(
            status="failed",
            finished_at=now,
            lease_expires_at=None,
            error=f"lease expired {max_attempts} times: the worker died (killed, out of memory or past the "
            "hard time limit)",
        )
        .returning(Screening.id)
    )
    return sorted(session.scalars(stmt, execution_options={"synchronize_session": False}).all())


def resend_lost(session: Session, *, now: datetime, grace_s: float, probe: int = 1) -> list[int]:
    """Queued screenings whose message was lost, stamped as sent at `now`; returns their ids (send
    them after the commit).

    Messages are consumed in the order they were sent, so a screening queued `grace_s` before one
    that a worker has already claimed lost its message (a broker outage at submission, a broker
    that lost its data). When no screening holds a live lease, none was claimed and none sent for
    `grace_s`, nothing consumes: the workers are down, or every message is lost; then only the
    `probe` oldest are re-sent, so a long worker outage adds one message per `grace_s` rather than
    one per screening, and once a probe is claimed the rule above re-sends the rest.
    """
    cutoff = now - timedelta(seconds=grace_s)
    # the newest message a worker took: a screening requeued after its worker died has a start of
    # its earlier attempt and a message sent now, still waiting (counting it made every healthy
    # backlog look lost after any worker death)
    consumed = session.scalar(
        select(func.max(Screening.enqueued_at)).where(Screening.started_at.is_not(None), Screening.status != "queued")
    )
    stale = Screening.status == "queued", Screening.enqueued_at < cutoff
    ids: list[int] = []
    if consumed is not None:
        ids = list(
            session.scalars(
                select(Screening.id).where(*stale, Screening.enqueued_at < consumed - timedelta(seconds=grace_s))
            )
        )
    busy = session.scalar(
        select(Screening.id)
        .where(
            or_(
                and_(Screening.status == "running", Screening.lease_expires_at >= now),
                Screening.started_at >= cutoff,
                and_(Screening.status == "queued", Screening.enqueued_at >= cutoff),  # a message in flight
            )
        )
        .limit(1)
    )
    if not ids and busy is None:
        ids = list(
            session.scalars(
                select(Screening.id).where(*stale).order_by(Screening.enqueued_at, Screening.id).limit(probe)
            )
        )
    if not ids:
        return []
    stmt = (
        update(Screening)
        .where(Screening.id.in_(ids), Screening.status == "queued")  # a worker may have claimed one meanwhile
        .values(enqueued_at=now)
        .returning(Screening.id)
    )
    return sorted(session.scalars(stmt, execution_options={"synchronize_session": False}).all())


def get_screenings(session: Session, *, ids: Sequence[int]) -> list[Screening]:
    """Screenings with their candidates and batches, in the order of `ids`."""
    rows = session.scalars(
        select(Screening)
        .where(Screening.id.in_(list(ids)))
        .options(selectinload(Screening.candidate), selectinload(Screening.batch))
    ).all()
    by_id = {row.id: row for row in rows}
    return [by_id[i] for i in ids if i in by_id]


def save_verdict(session: Session, *, screening_id: int, values: dict[str, Any]) -> bool:
    """Store a verdict and mark its screening done; False (and no change) if one exists already."""
    if session.scalar(select(Verdict.id).where(Verdict.screening_id == screening_id)) is not None:
        return False
    candidate_id = session.scalar(select(Screening.candidate_id).where(Screening.id == screening_id))
    try:
        with session.begin_nested():  # a concurrent insert loses on the unique key, harmlessly
            session.add(Verdict(screening_id=screening_id, candidate_id=candidate_id, **values))
    except IntegrityError:
        return False
    session.execute(
        update(Screening).where(Screening.id == screening_id).values(status="done", finished_at=utc_now(), error=None),
        execution_options={"synchronize_session": False},
    )
    return True


def fail_screenings(session: Session, *, ids: Sequence[int], error: str) -> None:
    """Mark running screenings failed (a crash or time limit, not a physics verdict)."""
    session.execute(
        update(Screening)
        .where(Screening.id.in_(list(ids)), Screening.status == "running")
        .values(status="failed", finished_at=utc_now(), error=error[:4000]),
        execution_options={"synchronize_session": False},
    )


def finish_batches(session: Session, *, batch_ids: Sequence[int]) -> list[int]:
    """Set `finished_at` on batches whose screenings have all ended (a duplicate's: its original's);
    returns those ids."""
    effective = aliased(Screening)
    open_counts = dict(
        session.execute(
            select(Screening.batch_id, func.count())
            .join(effective, effective.id == func.coalesce(Screening.duplicate_of_id, Screening.id))
            .where(Screening.batch_id.in_(list(batch_ids)), effective.status.in_(("queued", "running")))
            .group_by(Screening.batch_id)
        ).all()
    )
    done = [b for b in batch_ids if not open_counts.get(b)]
    if done:
        session.execute(
            update(Batch).where(Batch.id.in_(done), Batch.finished_at.is_(None)).values(finished_at=utc_now()),
            execution_options={"synchronize_session": False},
        )
    return done


def beat_worker(
    session: Session,
    *,
    name: str,
    pid: int,
    host: str,
    queues: str,
    concurrency: int,
    started_at: datetime,
    now: datetime,
) -> None:
    """Record that worker `name` is alive at `now`: its row is refreshed, or inserted on its first
    beat (or after it was forgotten), so starting and renewing are the same call."""
    fields = {
        "pid": pid,
        "host": host,
        "queues": queues,
        "concurrency": concurrency,
        "started_at": started_at,
        "last_seen_at": now,
    }
    result = session.execute(
        update(WorkerHeartbeat).where(WorkerHeartbeat.name == name).values(**fields),
        execution_options={"synchronize_session": False},
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        # only the worker itself writes its row (node names are unique), so no insert races this one
        session.add(WorkerHeartbeat(name=name, **fields))
        session.flush()


def remove_worker(session: Session, *, name: str) -> bool:
    """Delete the heartbeat of worker `name` (it stopped cleanly); False if it had none."""
    result = session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.name == name))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def forget_workers(session: Session, *, seen_before: datetime) -> int:
    """Delete the heartbeats of workers silent since before `seen_before` (they died without a
    clean stop); returns how many."""
    result = session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.last_seen_at < seen_before))
    return int(result.rowcount)  # type: ignore[attr-defined]


def create_api_key(session: Session, *, name: str, prefix: str, key_hash: str) -> ApiKey | None:
    """A new key row (flushed); None, and no change, when a key called `name` exists (revoked or not)."""
    try:
        with session.begin_nested():  # a lost race on the unique name must not abort the caller's transaction
            key = ApiKey(name=name, prefix=prefix, key_hash=key_hash)
            session.add(key)
    except IntegrityError:
        return None
    return key


def revoke_api_key(session: Session, *, name: str) -> ApiKey | None:
    """Mark the key called `name` revoked (once: a second revoke keeps the first time); None if unknown."""
    key = session.scalar(select(ApiKey).where(ApiKey.name == name))
    if key is not None and key.revoked_at is None:
        key.revoked_at = utc_now()
        session.flush()
    return key


def count_key_request(session: Session, *, key_id: int, window_min: int, now: datetime) -> int:
    """Count one request in the key's rate window `window_min` (minutes since the Unix epoch) and set
    its last use; returns the requests counted in that window, this one included.

    One UPDATE ... RETURNING: concurrent requests, from any API process, each see their own count.
    A request in a new window starts the count again at 1.
    """
    stmt = (
        update(ApiKey)
        .where(ApiKey.id == key_id)
        .values(
            rate_window_min=window_min,
            rate_count=case((ApiKey.rate_window_min == window_min, ApiKey.rate_count + 1), else_=1),
            last_used_at=now,
        )
        .returning(ApiKey.rate_count)
    )
    return int(session.execute(stmt, execution_options={"synchronize_session": False}).scalar_one())


def charge_key_quota(session: Session, *, key_id: int, day: int, structures: int, limit: int) -> int | None:
    """Add `structures` to the key's count for `day` (days since the Unix epoch, UTC) unless that
    would pass `limit`; returns the new count, or None (and no change) when it would.

    One conditional UPDATE ... RETURNING, so two batches charged at once can never both fit into
    the last of the quota.
    """
    used_today = case((ApiKey.quota_day == day, ApiKey.quota_used), else_=0)
    stmt = (
        update(ApiKey)
        .where(ApiKey.id == key_id, used_today + structures <= limit)
        .values(quota_day=day, quota_used=used_today + structures)
        .returning(ApiKey.quota_used)
    )
    used = session.execute(stmt, execution_options={"synchronize_session": False}).scalar_one_or_none()
    return None if used is None else int(used)


def create_source(
    session: Session,
    *,
    path: str,
    patterns: list[str],
    generator: Generator | None,
    generator_version: str | None,
    protocol: str,
    potential: str,
    interval_s: float | None,
    cron: str | None,
) -> Source:
    """A new watched source (flushed, so it has an id)."""
    source = Source(
        path=path,
        patterns=patterns,
        generator_id=generator.id if generator else None,
        generator_version=generator_version,
        protocol=protocol,
        potential=potential,
        interval_s=interval_s,
        cron=cron,
    )
    session.add(source)
    session.flush()
    return source
