"""Initial schema: generators, batches, candidates, screenings, verdicts.

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-28 07:37:12.446030
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "generators",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_generators")),
        sa.UniqueConstraint("name", name=op.f("uq_generators_name")),
    )
    op.create_table(
        "batches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("generator_id", sa.Integer(), nullable=True),
        sa.Column("protocol", sa.String(length=32), nullable=False),
        sa.Column("potential", sa.String(length=256), nullable=False),
        sa.Column("n_submitted", sa.Integer(), nullable=False),
        sa.Column("n_accepted", sa.Integer(), nullable=False),
        sa.Column("n_rejected", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.JSON(), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["generator_id"], ["generators.id"], name=op.f("fk_batches_generator_id_generators")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batches")),
    )
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_batches_generator_id"), ["generator_id"], unique=False)

    op.create_table(
        "candidates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("generator_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(length=512), nullable=False),
        sa.Column("source_file", sa.String(length=512), nullable=False),
        sa.Column("source_index", sa.Integer(), nullable=False),
        sa.Column("submitted_path", sa.String(length=1024), nullable=True),
        sa.Column("structure", sa.JSON(), nullable=False),
        sa.Column("cif", sa.Text(), nullable=False),
        sa.Column("reduced_formula", sa.String(length=256), nullable=False),
        sa.Column("elements", sa.JSON(), nullable=False),
        sa.Column("chemsys", sa.String(length=256), nullable=False),
        sa.Column("n_sites", sa.Integer(), nullable=False),
        sa.Column("spacegroup_number", sa.Integer(), nullable=True),
        sa.Column("spacegroup_symbol", sa.String(length=32), nullable=True),
        sa.Column("crystal_system", sa.String(length=16), nullable=True),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batches.id"], name=op.f("fk_candidates_batch_id_batches"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["generator_id"], ["generators.id"], name=op.f("fk_candidates_generator_id_generators")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_candidates")),
    )
    with op.batch_alter_table("candidates", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_candidates_batch_id"), ["batch_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_candidates_chemsys"), ["chemsys"], unique=False)
        batch_op.create_index("ix_candidates_formula_fingerprint", ["reduced_formula", "fingerprint"], unique=False)
        batch_op.create_index(batch_op.f("ix_candidates_generator_id"), ["generator_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_candidates_reduced_formula"), ["reduced_formula"], unique=False)

    op.create_table(
        "screenings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("candidate_id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("protocol", sa.String(length=32), nullable=False),
        sa.Column("potential", sa.String(length=256), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(length=256), nullable=True),
        sa.Column("task_id", sa.String(length=64), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batches.id"], name=op.f("fk_screenings_batch_id_batches"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["candidate_id"], ["candidates.id"], name=op.f("fk_screenings_candidate_id_candidates"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_screenings")),
        sa.UniqueConstraint(
            "candidate_id", "protocol", "potential", name=op.f("uq_screenings_candidate_id_protocol_potential")
        ),
    )
    with op.batch_alter_table("screenings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_screenings_batch_id"), ["batch_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_screenings_candidate_id"), ["candidate_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_screenings_status"), ["status"], unique=False)

    op.create_table(
        "verdicts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("screening_id", sa.Integer(), nullable=False),
        sa.Column("candidate_id", sa.Integer(), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=512), nullable=True),
        sa.Column("stable_phononbench", sa.Boolean(), nullable=False),
        sa.Column("min_frequency_thz", sa.Double(), nullable=True),
        sa.Column("worst_qpoint", sa.JSON(), nullable=True),
        sa.Column("worst_branch", sa.Integer(), nullable=True),
        sa.Column("worst_q_norm_inv_angstrom", sa.Double(), nullable=True),
        sa.Column("formula", sa.String(length=256), nullable=False),
        sa.Column("spacegroup_after", sa.String(length=32), nullable=True),
        sa.Column("spacegroup_number", sa.Integer(), nullable=True),
        sa.Column("crystal_system", sa.String(length=16), nullable=True),
        sa.Column("energy_per_atom_ev", sa.Double(), nullable=True),
        sa.Column("potential_name", sa.String(length=256), nullable=False),
        sa.Column("potential_warning", sa.String(length=1024), nullable=True),
        sa.Column("settings_hash", sa.String(length=32), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("relaxed_cif_path", sa.String(length=1024), nullable=True),
        sa.Column("bands_path", sa.String(length=1024), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["candidate_id"], ["candidates.id"], name=op.f("fk_verdicts_candidate_id_candidates"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["screening_id"], ["screenings.id"], name=op.f("fk_verdicts_screening_id_screenings"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_verdicts")),
        sa.UniqueConstraint("screening_id", name=op.f("uq_verdicts_screening_id")),
    )
    with op.batch_alter_table("verdicts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_verdicts_candidate_id"), ["candidate_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_verdicts_crystal_system"), ["crystal_system"], unique=False)
        batch_op.create_index(batch_op.f("ix_verdicts_min_frequency_thz"), ["min_frequency_thz"], unique=False)
        batch_op.create_index(batch_op.f("ix_verdicts_spacegroup_number"), ["spacegroup_number"], unique=False)
        batch_op.create_index(batch_op.f("ix_verdicts_verdict"), ["verdict"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("verdicts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_verdicts_verdict"))
        batch_op.drop_index(batch_op.f("ix_verdicts_spacegroup_number"))
        batch_op.drop_index(batch_op.f("ix_verdicts_min_frequency_thz"))
        batch_op.drop_index(batch_op.f("ix_verdicts_crystal_system"))
        batch_op.drop_index(batch_op.f("ix_verdicts_candidate_id"))

    op.drop_table("verdicts")
    with op.batch_alter_table("screenings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_screenings_status"))
        batch_op.drop_index(batch_op.f("ix_screenings_candidate_id"))
        batch_op.drop_index(batch_op.f("ix_screenings_batch_id"))

    op.drop_table("screenings")
    with op.batch_alter_table("candidates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_candidates_reduced_formula"))
        batch_op.drop_index(batch_op.f("ix_candidates_generator_id"))
        batch_op.drop_index("ix_candidates_formula_fingerprint")
        batch_op.drop_index(batch_op.f("ix_candidates_chemsys"))
        batch_op.drop_index(batch_op.f("ix_candidates_batch_id"))

    op.drop_table("candidates")
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_batches_generator_id"))

    op.drop_table("batches")
    op.drop_table("generators")
