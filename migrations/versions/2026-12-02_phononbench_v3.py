"""PhononBench v3: verdicts.stable_phononbench_v3 (band path only, every frequency >= -0.1 THz),
backfilled from what each stored verdict recorded.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 22:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# frozen here: the v3 headline threshold as this migration applied it (THz)
V3_TOL_THZ = 0.1


def upgrade() -> None:
    with op.batch_alter_table("verdicts") as batch:
        batch.add_column(sa.Column("stable_phononbench_v3", sa.Boolean(), nullable=True))
    op.get_bind().execute(sa.update(_verdicts).values(stable_phononbench_v3=backfill_value()))


_verdicts = sa.table(
    "verdicts",
    sa.column("verdict", sa.String),
    sa.column("stable_phononbench", sa.Boolean),
    sa.column("stable_phononbench_v3", sa.Boolean),
    sa.column("min_frequency_thz", sa.Float),
    sa.column("result", sa.JSON),
)


def backfill_value() -> sa.ColumnElement[bool]:
    """The v3 criterion from a stored verdict, or NULL where what was stored cannot decide it.

    In order: stable at -1e-3 THz is stable at -0.1; a failed relaxation or run is not stable (as
    PhononBench counts it); a result decided by the Γ check alone (one q-point) is unstable when
    that mode is below -0.1 THz, and otherwise unknown (the band path was never computed); else the
    band-path minimum the result stored; else the minimum over every q-point, which bounds the
    path's from below.
    """
    result = _verdicts.c.result
    path = result[("phonons", "worst_path_frequency_thz")].as_float()
    n_qpoints = result[("phonons", "n_qpoints_checked")].as_integer()
    return sa.case(
        (_verdicts.c.stable_phononbench.is_(True), sa.true()),
        (_verdicts.c.verdict.in_(("relax_failed", "failed")), sa.false()),
        (n_qpoints == 1, sa.case((path < -V3_TOL_THZ, sa.false()), else_=sa.null())),
        (path.is_not(None), path >= -V3_TOL_THZ),
        (_verdicts.c.min_frequency_thz >= -V3_TOL_THZ, sa.true()),
        else_=sa.null(),
    )


def downgrade() -> None:
    with op.batch_alter_table("verdicts") as batch:
        batch.drop_column("stable_phononbench_v3")
