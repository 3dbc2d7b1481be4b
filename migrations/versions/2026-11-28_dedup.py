"""Dedup: screenings.duplicate_of_id, and candidate fingerprints recomputed with the dedup core's key.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("screenings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("duplicate_of_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_screenings_duplicate_of_id_screenings"),
            "screenings",
            ["duplicate_of_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.create_index(batch_op.f("ix_screenings_duplicate_of_id"), ["duplicate_of_id"], unique=False)
    _recompute_fingerprints()


def _recompute_fingerprints() -> None:
    """The old key (space group + 2 % volume bin) split near-duplicates; stored rows get the new one."""
    import json

    connection = op.get_bind()
    candidates = sa.table(
        "candidates", sa.column("id", sa.Integer), sa.column("structure", sa.JSON), sa.column("fingerprint", sa.String)
    )
    last = 0
    while True:  # in pages, so a large table never sits in memory at once
        rows = connection.execute(
            sa.select(candidates.c.id, candidates.c.structure)
            .where(candidates.c.id > last)
            .order_by(candidates.c.id)
            .limit(500)
        ).all()
        if not rows:
            return
        from pymatgen.core import Structure  # only when there are rows: an empty database needs no science

        for row_id, structure in rows:
            data = json.loads(structure) if isinstance(structure, str) else structure
            connection.execute(
                sa.update(candidates)
                .where(candidates.c.id == row_id)
                .values(fingerprint=fingerprint_v1(Structure.from_dict(data)))
            )
        last = rows[-1][0]


def fingerprint_v1(structure) -> str:
    """The dedup bucket key as this migration wrote it (workers.screening.dedup, FINGERPRINT_VERSION
    "v1"), frozen here so that replaying the migration later gives the same rows whatever that code
    becomes: reduced composition + number of sites of the primitive, Niggli-reduced cell, hashed."""
    import hashlib

    from pymatgen.analysis.structure_matcher import StructureMatcher

    reduced = StructureMatcher._get_reduced_structure(structure, primitive_cell=True, niggli=True)
    counts = structure.composition.reduced_composition.get_el_amt_dict()
    species = ",".join(f"{el}{counts[el]:g}" for el in sorted(counts))
    return hashlib.sha256(f"v1|{species}|{len(reduced)}".encode()).hexdigest()[:32]


def downgrade() -> None:
    # fingerprints keep the new key: they are only a lookup hint, and the old code never matched on them
    with op.batch_alter_table("screenings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_screenings_duplicate_of_id"))
        batch_op.drop_constraint(batch_op.f("fk_screenings_duplicate_of_id_screenings"), type_="foreignkey")
        batch_op.drop_column("duplicate_of_id")
