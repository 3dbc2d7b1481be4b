"""Other potentials' opinions: batches.prescreen / prescreen_margin_thz / second_opinion (the
settings), and on verdicts settled_by_prescreen, second_potential, second_verdict,
second_min_frequency_thz and agreement (what they said). Existing rows had neither: no prescreen,
no second opinion.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 23:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.add_column(sa.Column("prescreen", sa.String(length=256), nullable=True))
        batch.add_column(sa.Column("prescreen_margin_thz", sa.Float(), nullable=True))
        batch.add_column(sa.Column("second_opinion", sa.String(length=256), nullable=True))
    with op.batch_alter_table("verdicts") as batch:
        batch.add_column(sa.Column("settled_by_prescreen", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("second_potential", sa.String(length=256), nullable=True))
        batch.add_column(sa.Column("second_verdict", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("second_min_frequency_thz", sa.Float(), nullable=True))
        batch.add_column(sa.Column("agreement", sa.Boolean(), nullable=True))
        batch.create_index("ix_verdicts_second_verdict", ["second_verdict"])
        batch.create_index("ix_verdicts_agreement", ["agreement"])


def downgrade() -> None:
    with op.batch_alter_table("verdicts") as batch:
        batch.drop_index("ix_verdicts_agreement")
        batch.drop_index("ix_verdicts_second_verdict")
        for column in ("agreement", "second_min_frequency_thz", "second_verdict", "second_potential"):
            batch.drop_column(column)
        batch.drop_column("settled_by_prescreen")
    with op.batch_alter_table("batches") as batch:
        for column in ("second_opinion", "prescreen_margin_thz", "prescreen"):
            batch.drop_column(column)
