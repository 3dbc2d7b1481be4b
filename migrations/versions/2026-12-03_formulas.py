"""Candidates keep their reduced formula in alphabetical order ("ClNa") and their anonymous formula
("AB"), searchable (OPTIMADE's chemical_formula_reduced and chemical_formula_anonymous); backfilled
from each stored structure.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 20:00:00
"""

from __future__ import annotations

import math
from collections import defaultdict
from itertools import count, product
from string import ascii_lowercase
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

BACKFILL_ROWS = 500  # structures read and rows updated per round trip

_candidates = sa.table(
    "candidates",
    sa.column("id", sa.Integer),
    sa.column("structure", sa.JSON),
    sa.column("alphabetical_formula", sa.String),
    sa.column("anonymous_formula", sa.String),
)


def upgrade() -> None:
    with op.batch_alter_table("candidates") as batch:
        batch.add_column(sa.Column("alphabetical_formula", sa.String(length=256), nullable=True))
        batch.add_column(sa.Column("anonymous_formula", sa.String(length=256), nullable=True))
        batch.create_index("ix_candidates_alphabetical_formula", ["alphabetical_formula"])
        batch.create_index("ix_candidates_anonymous_formula", ["anonymous_formula"])
    backfill(op.get_bind())


def backfill(connection: sa.Connection) -> None:
    """Both formulas of every candidate, from its stored structure."""
    update = (
        sa.update(_candidates)
        .where(_candidates.c.id == sa.bindparam("row_id"))
        .values(alphabetical_formula=sa.bindparam("alpha"), anonymous_formula=sa.bindparam("anon"))
    )
    last_id = 0
    while True:  # keyset pages: no cursor held open while the same table is updated
        rows = connection.execute(
            sa.select(_candidates.c.id, _candidates.c.structure)
            .where(_candidates.c.id > last_id)
            .order_by(_candidates.c.id)
            .limit(BACKFILL_ROWS)
        ).all()
        if not rows:
            return
        values = [
            {"row_id": row_id, "alpha": alphabetical_formula(structure), "anon": anonymous_formula(structure)}
            for row_id, structure in rows
        ]
        connection.execute(update, values)
        last_id = rows[-1][0]


# frozen here: the formulas as this migration wrote them (models.formulas, 2026-12-03; a test keeps
# the two equal while the live rule is unchanged)
OCCUPANCY_TOL = 1e-6


def alphabetical_formula(structure: dict[str, Any]) -> str | None:
    reduced = _reduced(structure)
    return None if reduced is None else "".join(_term(e, n) for e, n in sorted(reduced.items()))


def anonymous_formula(structure: dict[str, Any]) -> str | None:
    reduced = _reduced(structure)
    if reduced is None:
        return None
    names = (s[0].upper() + "".join(s[1:]) for size in count(1) for s in product(ascii_lowercase, repeat=size))
    return "".join(_term(name, n) for name, n in zip(names, sorted(reduced.values(), reverse=True), strict=False))


def _reduced(structure: dict[str, Any]) -> dict[str, int] | None:
    totals: defaultdict[str, float] = defaultdict(float)
    for site in structure.get("sites", ()):
        for species in site.get("species", ()):
            totals[str(species["element"])] += float(species.get("occu", 1.0))
    counts = {element: round(total) for element, total in totals.items()}
    if not counts or any(abs(totals[e] - n) > OCCUPANCY_TOL or n < 1 for e, n in counts.items()):
        return None
    divisor = math.gcd(*counts.values())
    return {element: n // divisor for element, n in counts.items()}


def _term(symbol: str, n: int) -> str:
    return symbol if n == 1 else f"{symbol}{n}"


def downgrade() -> None:
    with op.batch_alter_table("candidates") as batch:
        batch.drop_index("ix_candidates_anonymous_formula")
        batch.drop_index("ix_candidates_alphabetical_formula")
        batch.drop_column("anonymous_formula")
        batch.drop_column("alphabetical_formula")
