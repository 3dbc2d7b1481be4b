"""Leases: screenings.lease_expires_at (a running screening's worker renews it) and
screenings.enqueued_at (when its message was sent), for the reconciler.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("screenings") as batch:
        batch.add_column(sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True))
    # rows from before: queued since they were created (running ones have no lease: the reconciler
    # then counts their lease from started_at)
    op.execute("UPDATE screenings SET enqueued_at = created_at")


def downgrade() -> None:
    with op.batch_alter_table("screenings") as batch:
        batch.drop_column("enqueued_at")
        batch.drop_column("lease_expires_at")
