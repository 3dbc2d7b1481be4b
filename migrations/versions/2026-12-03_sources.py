"""Watched sources: folders of generator output scanned on a schedule, the files seen in them and
the contents ingested; batches point to the source they came from.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 19:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def _beat_tables() -> tuple[sa.MetaData, sa.Connection]:
    """sqlalchemy-celery-beat's tables (pinned <0.10), in the default schema: beat's schedule lives in
    this database, where the API writes the sources' periodic tasks in the same transaction."""
    from sqlalchemy_celery_beat.session import ModelBase

    return ModelBase.metadata, op.get_bind().execution_options(schema_translate_map={"celery_schema": None})


def upgrade() -> None:
    op.create_table(
        "sources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=False),
        sa.Column("patterns", sa.JSON(), nullable=False),
        sa.Column("generator_id", sa.Integer(), nullable=True),
        sa.Column("generator_version", sa.String(length=64), nullable=True),
        sa.Column("protocol", sa.String(length=32), nullable=False),
        sa.Column("potential", sa.String(length=256), nullable=False),
        sa.Column("interval_s", sa.Float(), nullable=True),
        sa.Column("cron", sa.String(length=128), nullable=True),
        sa.Column("paused", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("last_scan_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["generator_id"], ["generators.id"], name="fk_sources_generator_id_generators"),
        sa.PrimaryKeyConstraint("id", name="pk_sources"),
    )
    op.create_index("ix_sources_generator_id", "sources", ["generator_id"])
    op.create_table(
        "source_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mtime_ns", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("batch_id", sa.Integer(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["source_id"], ["sources.id"], name="fk_source_files_source_id_sources", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batches.id"], name="fk_source_files_batch_id_batches", ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_source_files"),
        sa.UniqueConstraint("source_id", "path", name="uq_source_files_source_id_path"),
    )
    op.create_index("ix_source_files_source_id", "source_files", ["source_id"])
    op.create_table(
        "source_contents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["source_id"], ["sources.id"], name="fk_source_contents_source_id_sources", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batches.id"], name="fk_source_contents_batch_id_batches", ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_source_contents"),
        sa.UniqueConstraint("source_id", "sha256", name="uq_source_contents_source_id_sha256"),
    )
    op.create_index("ix_source_contents_source_id", "source_contents", ["source_id"])
    with op.batch_alter_table("batches") as batch:
        batch.add_column(sa.Column("source_id", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_batches_source_id_sources", "sources", ["source_id"], ["id"], ondelete="SET NULL")
        batch.create_index("ix_batches_source_id", ["source_id"])
    metadata, bind = _beat_tables()
    metadata.create_all(bind)


def downgrade() -> None:
    metadata, bind = _beat_tables()
    metadata.drop_all(bind)
    with op.batch_alter_table("batches") as batch:
        batch.drop_index("ix_batches_source_id")
        batch.drop_constraint("fk_batches_source_id_sources", type_="foreignkey")
        batch.drop_column("source_id")
    op.drop_table("source_contents")
    op.drop_table("source_files")
    op.drop_table("sources")
