"""Data functions that read: batch progress, candidate search, the stability report."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, and_, case, func, literal, or_, select, tuple_
from sqlalchemy.orm import Session, aliased

from models.api_key import ApiKey
from models.base import utc_now
from models.batch import Batch
from models.candidate import Candidate
from models.generator import Generator
from models.screening import DUPLICATE, STATUSES, Screening
from models.source import Source, SourceFile
from models.verdict import Verdict
from models.worker import MISSED_BEATS, WorkerHeartbeat

SORTS = {  # API sort key -> column
    "id": Candidate.id,
    "formula": Candidate.reduced_formula,
    "n_sites": Candidate.n_sites,
    "min_frequency_thz": Verdict.min_frequency_thz,
    "verdict": Verdict.verdict,
    "space_group": func.coalesce(Verdict.spacegroup_number, Candidate.spacegroup_number),
    "energy_per_atom_ev": Verdict.energy_per_atom_ev,
    "created_at": Candidate.created_at,
}
GroupBy = Literal["generator", "generator_version", "crystal_system", "space_group"]


@dataclass(frozen=True, kw_only=True)
class CandidateFilters:
    batch_id: int | None = None
    source_id: int | None = None  # the batches of one watched source
    generator: str | None = None
    verdict: str | None = None
    reason: str | None = None  # the verdict's reason, e.g. optical / acoustic / elastic
    formula: str | None = None
    elements: Sequence[str] = ()  # every one of these must be present
    space_group: int | None = None  # after relaxation when known, else of the input
    crystal_system: str | None = None
    min_frequency_gte: float | None = None
    min_frequency_lte: float | None = None
    stable_by_both: bool | None = None  # True: stable by the main potential and the second opinion
    agreement: bool | None = None  # the second opinion agrees (True) or not (False: the list for DFT)
    settled_by_prescreen: bool | None = None
    stable_phononbench: bool | None = None  # PhononBench's criterion at -1e-3 THz
    stable_phononbench_v3: bool | None = None  # and at v3's -0.1 THz


def stable_by_both() -> ColumnElement[bool]:
    """SQL of workers.screening.opinions.stable_by_both: both verdicts `stable`."""
    return and_(Verdict.verdict == "stable", Verdict.second_verdict == "stable")


@dataclass(frozen=True)
class BatchCounts:
    by_status: dict[str, int]  # queued / running / done / failed
    by_verdict: dict[str, int]  # verdicts present in the batch (absent kinds are not listed)
    # of the verdicts: settled by the prescreen, second opinion agrees / disagrees, stable by both
    opinions: dict[str, int] = field(default_factory=dict)
    # the pace of the batch's own screenings (not of those its duplicates link to): when the first
    # started, and how many have ended since
    first_started_at: datetime | None = None
    ended_here: int = 0

    @property
    def total(self) -> int:
        return sum(self.by_status.values())


@dataclass(frozen=True)
class ReportRow:
    group: str
    submitted: int  # valid: structures accepted (a candidate each)
    screened: int  # a verdict exists
    relaxed: int  # stable or unstable: relaxation converged and phonons ran
    stable: int
    stable_phononbench: int
    stable_phononbench_v3: int
    second_opinions: int = 0  # verdicts with a second opinion
    stable_by_both: int = 0
    unique: int = 0  # not a duplicate of a structure screened before (or earlier in its batch)
    generated: int | None = None  # structures in the files, refused ones too (grouped by generator only)


def _latest_screening():
    # The most recent screening of each candidate is the one lists and reports show.
    latest = (
        select(func.max(Screening.id))
        .where(Screening.candidate_id == Candidate.id)
        .correlate(Candidate)
        .scalar_subquery()
    )
    return Screening.id == latest


def _effective_screening(screening=Screening):
    """An alias for the screening that does the work for `screening`: its `duplicate_of`, else itself."""
    effective = aliased(Screening, name="effective")
    return effective, effective.id == func.coalesce(screening.duplicate_of_id, screening.id)


def effective_status(effective: Any) -> ColumnElement[Any]:
    # a duplicate whose original was deleted with its batch will never get a verdict: it has ended
    return case((effective.status == DUPLICATE, literal("failed")), else_=effective.status)


def count_batch(session: Session, *, batch_id: int) -> BatchCounts:
    """Screenings of a batch by status and verdicts by kind; a duplicate counts as what it links to."""
    effective, on = _effective_screening()
    status = effective_status(effective)
    by_status = dict.fromkeys(STATUSES, 0)
    by_status.update(
        session.execute(
            select(status, func.count())
            .select_from(Screening)
            .join(effective, on)
            .where(Screening.batch_id == batch_id)
            .group_by(status)
        ).all()
    )
    verdicts = (
        select(Verdict.verdict, Verdict.settled_by_prescreen, Verdict.agreement, Verdict.second_verdict)
        .select_from(Screening)
        .join(Verdict, Verdict.screening_id == func.coalesce(Screening.duplicate_of_id, Screening.id))
        .where(Screening.batch_id == batch_id)
        .subquery()
    )
    by_verdict: dict[str, int] = dict(
        session.execute(select(verdicts.c.verdict, func.count()).group_by(verdicts.c.verdict)).all()
    )
    settled, agree, disagree, both = session.execute(
        select(
            func.count().filter(verdicts.c.settled_by_prescreen.is_(True)),
            func.count().filter(verdicts.c.agreement.is_(True)),
            func.count().filter(verdicts.c.agreement.is_(False)),
            func.count().filter(and_(verdicts.c.verdict == "stable", verdicts.c.second_verdict == "stable")),
        )
    ).one()
    opinions = {"settled_by_prescreen": settled, "agree": agree, "disagree": disagree, "stable_by_both": both}
    first, ended = session.execute(
        select(func.min(Screening.started_at), func.count().filter(Screening.status.in_(("done", "failed")))).where(
            Screening.batch_id == batch_id, Screening.status != DUPLICATE
        )
    ).one()
    return BatchCounts(
        by_status=by_status,
        by_verdict=by_verdict,
        opinions={k: int(v) for k, v in opinions.items()},
        first_started_at=first,
        ended_here=int(ended or 0),
    )


def get_batch_ids(session: Session, *, screening_ids: Sequence[int]) -> list[int]:
    """Batches of these screenings and of every duplicate linked to them (they end together)."""
    ids = list(screening_ids)
    rows = session.scalars(
        select(Screening.batch_id).where(Screening.id.in_(ids) | Screening.duplicate_of_id.in_(ids)).distinct()
    ).all()
    return sorted(rows)


def get_dedup_candidates(
    session: Session,
    *,
    keys: Collection[tuple[str, str]],
    protocol: str,
    potential: str,
    prescreen: str | None = None,
    prescreen_margin_thz: float | None = None,
    second_opinion: str | None = None,
    now: datetime | None = None,
) -> list[tuple[int, int, str, dict]]:
    """(screening id, candidate id, fingerprint, structure dict) of every screening under `protocol`
    and `potential`, in a batch with the same prescreen (and margin) and second opinion, that ran
    or will run (not a duplicate, not crashed, not running on a lease that expired at `now`,
    default the current time: its worker died) for a candidate with one of these
    (reduced_formula, fingerprint) keys; oldest first, so the first match is the original.

    The key pair is indexed (ix_candidates_formula_fingerprint), so this stays cheap at 100,000 rows.
    """
    if not keys:
        return []
    rows = session.execute(
        select(Screening.id, Candidate.id, Candidate.fingerprint, Candidate.structure)
        .join(Candidate, Candidate.id == Screening.candidate_id)
        .join(Batch, Batch.id == Screening.batch_id)
        .where(
            tuple_(Candidate.reduced_formula, Candidate.fingerprint).in_(list(keys)),
            Screening.protocol == protocol,
            Screening.potential == potential,
            Batch.prescreen.is_not_distinct_from(prescreen),
            Batch.prescreen_margin_thz.is_not_distinct_from(prescreen_margin_thz),
            Batch.second_opinion.is_not_distinct_from(second_opinion),
            Screening.duplicate_of_id.is_(None),
            or_(
                Screening.status.in_(("queued", "done")),
                and_(Screening.status == "running", Screening.lease_expires_at >= (now or utc_now())),
            ),
        )
        .order_by(Screening.id)
    ).all()
    return [tuple(row) for row in rows]


def get_open_batch_ids(session: Session) -> list[int]:
    """Batches not yet stamped finished (some may have ended: `crud.finish_batches` decides)."""
    return list(session.scalars(select(Batch.id).where(Batch.finished_at.is_(None)).order_by(Batch.id)).all())


def _candidate_query(filters: CandidateFilters) -> Select:
    # a duplicate shows the screening it links to (status and verdict); its candidate_id tells which
    effective, on = _effective_screening()
    stmt = (
        select(Candidate, effective, Verdict)
        .outerjoin(Screening, _latest_screening())
        .outerjoin(effective, on)
        .outerjoin(Verdict, Verdict.screening_id == effective.id)
    )
    if filters.batch_id is not None:
        stmt = stmt.where(Candidate.batch_id == filters.batch_id)
    if filters.source_id is not None:
        stmt = stmt.join(Batch, Batch.id == Candidate.batch_id).where(Batch.source_id == filters.source_id)
    if filters.generator is not None:
        stmt = stmt.join(Generator, Generator.id == Candidate.generator_id).where(Generator.name == filters.generator)
    if filters.verdict is not None:
        stmt = stmt.where(Verdict.verdict == filters.verdict)
    if filters.reason is not None:
        stmt = stmt.where(Verdict.reason == filters.reason)
    if filters.formula is not None:
        stmt = stmt.where(Candidate.reduced_formula == filters.formula)
    padded = literal("-") + Candidate.chemsys + literal("-")
    for element in filters.elements:  # autoescape: `%` or `_` in a filter is a character, not a wildcard
        stmt = stmt.where(padded.contains(f"-{element}-", autoescape=True))
    if filters.space_group is not None:
        stmt = stmt.where(func.coalesce(Verdict.spacegroup_number, Candidate.spacegroup_number) == filters.space_group)
    if filters.crystal_system is not None:
        stmt = stmt.where(func.coalesce(Verdict.crystal_system, Candidate.crystal_system) == filters.crystal_system)
    if filters.min_frequency_gte is not None:
        stmt = stmt.where(Verdict.min_frequency_thz >= filters.min_frequency_gte)
    if filters.min_frequency_lte is not None:
        stmt = stmt.where(Verdict.min_frequency_thz <= filters.min_frequency_lte)
    if filters.stable_by_both is not None:
        both = stable_by_both()
        stmt = stmt.where(both if filters.stable_by_both else ~both)
    if filters.agreement is not None:
        stmt = stmt.where(Verdict.agreement.is_(filters.agreement))
    if filters.settled_by_prescreen is not None:
        stmt = stmt.where(Verdict.settled_by_prescreen.is_(filters.settled_by_prescreen))
    for column, wanted in (
        (Verdict.stable_phononbench, filters.stable_phononbench),
        (Verdict.stable_phononbench_v3, filters.stable_phononbench_v3),
    ):
        if wanted is not None:  # a verdict that cannot say (NULL) is not stable
            stmt = stmt.where(column.is_(True) if wanted else or_(column.is_(False), column.is_(None)))
    return stmt


def list_candidates(
    session: Session, *, filters: CandidateFilters, sort: str = "id", offset: int = 0, limit: int = 50
) -> tuple[list[tuple[Candidate, Screening | None, Verdict | None]], int]:
    """One page of candidates with their latest screening and verdict, and the total count.

    `sort` is a key of SORTS, prefixed with "-" for descending; ties break on id.
    """
    stmt = _candidate_query(filters)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    column = SORTS[sort.lstrip("-")]
    order = column.desc() if sort.startswith("-") else column.asc()
    # NULLs (no verdict yet) last either way, portably
    rows = session.execute(
        stmt.order_by(case((column.is_(None), 1), else_=0), order, Candidate.id).offset(offset).limit(limit)
    ).all()
    return [tuple(row) for row in rows], total


def get_candidate_screening(session: Session, *, candidate_id: int) -> tuple[Screening | None, Verdict | None]:
    """The latest screening of a candidate and its verdict, if any; for a duplicate, the screening it
    links to (whose candidate_id is then another candidate's)."""
    effective, on = _effective_screening()
    row = session.execute(
        select(effective, Verdict)
        .select_from(Screening)
        .join(effective, on)
        .outerjoin(Verdict, Verdict.screening_id == effective.id)
        .where(Screening.candidate_id == candidate_id)
        .order_by(Screening.id.desc())
        .limit(1)
    ).first()
    return (row[0], row[1]) if row else (None, None)


def get_stability_report(
    session: Session, *, group_by: GroupBy, batch_id: int | None = None, source_id: int | None = None
) -> list[ReportRow]:
    """The PhononBench-style table: per group, generated / valid / unique / screened / relaxed /
    stable, and stable by PhononBench's criteria (-1e-3 THz and v3's -0.1 THz; a v3 flag not known
    counts as not stable); over everything, one batch, or the batches of one watched source."""
    gen = aliased(Generator)
    by_generator = func.coalesce(gen.name, literal("(none)"))
    keys: dict[str, ColumnElement[Any]] = {
        "generator": by_generator,
        "generator_version": by_generator + literal(" ") + func.coalesce(Batch.generator_version, literal("-")),
        "crystal_system": func.coalesce(Verdict.crystal_system, Candidate.crystal_system, literal("(unknown)")),
        "space_group": func.coalesce(Verdict.spacegroup_number, Candidate.spacegroup_number, literal(0)),
    }
    key = keys[group_by]
    stmt = (
        select(
            key.label("group"),
            func.count(Candidate.id),
            func.count(Verdict.id),
            func.sum(case((Verdict.verdict.in_(("stable", "unstable")), 1), else_=0)),
            func.sum(case((Verdict.verdict == "stable", 1), else_=0)),
            func.sum(case((Verdict.stable_phononbench.is_(True), 1), else_=0)),
            func.sum(case((Verdict.stable_phononbench_v3.is_(True), 1), else_=0)),
            func.count(Verdict.second_verdict),
            func.sum(case((stable_by_both(), 1), else_=0)),
            func.sum(case((Screening.duplicate_of_id.is_(None), 1), else_=0)),
        )
        .select_from(Candidate)
        .join(Batch, Batch.id == Candidate.batch_id)
        .outerjoin(gen, gen.id == Candidate.generator_id)
        .outerjoin(Screening, _latest_screening())
        .outerjoin(Verdict, Verdict.screening_id == func.coalesce(Screening.duplicate_of_id, Screening.id))
        .group_by(key)
        .order_by(key)
    )
    stmt = _batch_scope(stmt, batch_id=batch_id, source_id=source_id)
    rows = [ReportRow(str(g), *(int(x or 0) for x in counts)) for g, *counts in session.execute(stmt).all()]
    if group_by not in ("generator", "generator_version"):
        return rows  # a structure refused at ingest has no symmetry to be grouped by
    # generated: what the files held, refused structures included (they have no candidate row)
    gen_key = func.coalesce(gen.name, literal("(none)"))
    batch_key = gen_key if group_by == "generator" else keys["generator_version"]
    generated_stmt = (
        select(batch_key, func.sum(Batch.n_submitted))
        .select_from(Batch)
        .outerjoin(gen, gen.id == Batch.generator_id)
        .group_by(batch_key)
    )
    generated = dict(session.execute(_batch_scope(generated_stmt, batch_id=batch_id, source_id=source_id)).all())
    return [replace(r, generated=int(generated.get(r.group, r.submitted))) for r in rows]


def _batch_scope(stmt: Select, *, batch_id: int | None, source_id: int | None) -> Select:
    if batch_id is not None:
        stmt = stmt.where(Batch.id == batch_id)
    if source_id is not None:
        stmt = stmt.where(Batch.source_id == source_id)
    return stmt


@dataclass(frozen=True)
class QueueDepth:
    queued: int  # screenings waiting for a worker (a duplicate never runs: not counted)
    running: int  # screenings a worker has claimed


def count_open_screenings(session: Session) -> QueueDepth:
    """Screenings queued and running, across all batches (two index counts on `status`)."""
    counts = dict(
        session.execute(
            select(Screening.status, func.count())
            .where(Screening.status.in_(("queued", "running")))
            .group_by(Screening.status)
        ).all()
    )
    return QueueDepth(queued=int(counts.get("queued", 0)), running=int(counts.get("running", 0)))


def list_live_workers(session: Session, *, heartbeat_s: float, now: datetime | None = None) -> list[WorkerHeartbeat]:
    """Workers alive at `now` (default the current time): heard from within MISSED_BEATS heartbeat
    intervals of `heartbeat_s` seconds; by name."""
    since = (now or utc_now()) - timedelta(seconds=MISSED_BEATS * heartbeat_s)
    return list(
        session.scalars(
            select(WorkerHeartbeat).where(WorkerHeartbeat.last_seen_at >= since).order_by(WorkerHeartbeat.name)
        ).all()
    )


def get_api_key(session: Session, *, key_hash: str) -> ApiKey | None:
    """The key whose hash is `key_hash` (revoked or not), or None."""
    # populate_existing: the counters as stored now, even if this session loaded the row before
    return session.scalar(select(ApiKey).where(ApiKey.key_hash == key_hash).execution_options(populate_existing=True))


def list_api_keys(session: Session) -> list[ApiKey]:
    """Every key, oldest first."""
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id)).all())


@dataclass(frozen=True)
class SourceCounts:
    files: dict[str, int]  # by state
    batches: int


def count_sources(session: Session, *, source_ids: Collection[int]) -> dict[int, SourceCounts]:
    """Files by state and batches made, for each of these sources."""
    files: dict[int, dict[str, int]] = {i: {} for i in source_ids}
    for source_id, state, n in session.execute(
        select(SourceFile.source_id, SourceFile.state, func.count())
        .where(SourceFile.source_id.in_(source_ids))
        .group_by(SourceFile.source_id, SourceFile.state)
    ):
        files[source_id][state] = n
    batches = dict(
        session.execute(
            select(Batch.source_id, func.count()).where(Batch.source_id.in_(source_ids)).group_by(Batch.source_id)
        ).all()
    )
    return {i: SourceCounts(files=files[i], batches=int(batches.get(i, 0))) for i in source_ids}


def list_sources(session: Session) -> list[Source]:
    return list(session.scalars(select(Source).order_by(Source.id)))


def list_source_files(session: Session, *, source_id: int, limit: int, offset: int = 0) -> list[SourceFile]:
    return list(
        session.scalars(
            select(SourceFile)
            .where(SourceFile.source_id == source_id)
            .order_by(SourceFile.path)
            .limit(limit)
            .offset(offset)
        )
    )
