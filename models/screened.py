"""Screened candidates: each candidate whose latest screening (or the one it duplicates) has a
verdict, with that verdict, its batch and generator; and the SQL expressions that search them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, case, func, literal, select
from sqlalchemy.orm import Session

from models.batch import Batch
from models.candidate import Candidate
from models.generator import Generator
from models.queries import _effective_screening, _latest_screening
from models.screening import Screening
from models.verdict import Verdict


@dataclass(frozen=True)
class Screened:
    candidate: Candidate
    verdict: Verdict  # of the latest screening (for a duplicate: of the screening it links to)
    batch: Batch
    generator: Generator | None
    last_modified: datetime  # last_modified()
    n_sites: int  # published_n_sites()


def published_n_sites() -> ColumnElement[Any]:
    """Sites of the structure a screened candidate is published with: the relaxed cell where one
    was written (the standard primitive cell, where the protocol relaxed that), else the input."""
    primitive = Verdict.result[("extra", "input_to_primitive", "n_primitive_atoms")].as_integer()
    relaxed = func.coalesce(primitive, Candidate.n_sites)
    return case((Verdict.relaxed_cif_path.is_not(None), relaxed), else_=Candidate.n_sites)


def last_modified() -> ColumnElement[Any]:
    """When a screened candidate last changed: its verdict was saved, or, for a duplicate of an
    older screening, the candidate was added."""
    return case((Verdict.created_at > Candidate.created_at, Verdict.created_at), else_=Candidate.created_at)


def n_elements() -> ColumnElement[Any]:
    """Distinct elements of a candidate, counted from its chemical system "Al-O-Si"."""
    chemsys = Candidate.chemsys
    return func.length(chemsys) - func.length(func.replace(chemsys, "-", "")) + 1


def has_element(symbol: str) -> ColumnElement[bool]:
    """The candidate contains `symbol` (exactly: "S" is not "Si")."""
    return text_contains(literal("-") + Candidate.chemsys + literal("-"), f"-{symbol}-")


def text_contains(column: ColumnElement[Any], text: str) -> ColumnElement[bool]:
    """`text` occurs in `column`: case-sensitive on SQLite too (whose LIKE ignores ASCII case), and
    no character is a wildcard; NULL where `column` is."""
    if not text:
        return column.is_not(None)
    return func.replace(column, text, "") != column


def text_starts(column: ColumnElement[Any], text: str) -> ColumnElement[bool]:
    return func.substr(column, 1, len(text)) == text


def text_ends(column: ColumnElement[Any], text: str) -> ColumnElement[bool]:
    # a start before the first character gives the whole string (Postgres) or its tail (SQLite):
    # shorter than `text` either way, so unequal
    return func.substr(column, func.length(column) - len(text) + 1) == text


def count_screened(session: Session, *, where: ColumnElement[bool] | None = None) -> int:
    """Screened candidates, all or those matching `where`."""
    stmt = _joined(select(func.count(Candidate.id)).select_from(Candidate))
    if where is not None:
        stmt = stmt.where(where)
    return int(session.scalar(stmt) or 0)


def list_screened(
    session: Session,
    *,
    where: ColumnElement[bool] | None = None,
    order_by: Sequence[tuple[ColumnElement[Any], bool]] = (),
    offset: int = 0,
    limit: int = 20,
) -> list[Screened]:
    """One page of screened candidates matching `where`, ordered by `order_by` ((expression,
    descending) pairs; NULLs last either way, ties by candidate id)."""
    stmt = _screened()
    if where is not None:
        stmt = stmt.where(where)
    for column, descending in order_by:
        stmt = stmt.order_by(case((column.is_(None), 1), else_=0), column.desc() if descending else column.asc())
    rows = session.execute(stmt.order_by(Candidate.id).offset(offset).limit(limit)).all()
    return [Screened(*row) for row in rows]


def get_screened(session: Session, *, candidate_id: int) -> Screened | None:
    """One screened candidate, or None when it does not exist or has no verdict."""
    row = session.execute(_screened().where(Candidate.id == candidate_id)).first()
    return Screened(*row) if row else None


def _screened() -> Select[Any]:
    columns = (Candidate, Verdict, Batch, Generator, last_modified(), published_n_sites())
    return _joined(select(*columns).select_from(Candidate))


def _joined(stmt: Select[Any]) -> Select[Any]:
    effective, on = _effective_screening()
    return (
        stmt.join(Screening, _latest_screening())
        .join(effective, on)
        .join(Verdict, Verdict.screening_id == effective.id)
        .join(Batch, Batch.id == Candidate.batch_id)
        .outerjoin(Generator, Generator.id == Candidate.generator_id)
    )
