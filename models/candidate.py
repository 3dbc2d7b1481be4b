"""The `candidates` table: one submitted structure, as submitted and as parsed, with provenance."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, TimestampMixin
from models.batch import Batch
from models.generator import Generator


class Candidate(TimestampMixin, Base):
    __tablename__ = "candidates"
    # Cheap dedup lookups now; a later StructureMatcher pass narrows within the same key.
    __table_args__ = (Index("ix_candidates_formula_fingerprint", "reduced_formula", "fingerprint"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"), index=True)
    generator_id: Mapped[int | None] = mapped_column(ForeignKey("generators.id"), index=True)
    name: Mapped[str] = mapped_column(String(512))  # stable within its source: "gen.zip:gen_3.cif"
    source_file: Mapped[str] = mapped_column(String(512))  # the file name as uploaded
    source_index: Mapped[int]  # position within that file, 0-based
    submitted_path: Mapped[str | None] = mapped_column(String(1024))  # artifact: the raw upload
    structure: Mapped[dict[str, Any]] = mapped_column(JSON)  # as parsed: pymatgen Structure.as_dict()
    cif: Mapped[str] = mapped_column(Text)  # as parsed, written back as CIF
    reduced_formula: Mapped[str] = mapped_column(String(256), index=True)
    elements: Mapped[list[str]] = mapped_column(JSON)
    chemsys: Mapped[str] = mapped_column(String(256), index=True)  # "Al-O-Si", for element filters
    # for formula search (models.formulas): reduced, alphabetical "ClNa", and anonymous "AB2"; None
    # only where the cell's element totals are not whole numbers
    alphabetical_formula: Mapped[str | None] = mapped_column(String(256), index=True)
    anonymous_formula: Mapped[str | None] = mapped_column(String(256), index=True)
    n_sites: Mapped[int]
    spacegroup_number: Mapped[int | None]  # of the input, spglib symprec 0.01
    spacegroup_symbol: Mapped[str | None] = mapped_column(String(32))
    crystal_system: Mapped[str | None] = mapped_column(String(16))
    fingerprint: Mapped[str] = mapped_column(String(64))

    batch: Mapped[Batch] = relationship()
    generator: Mapped[Generator | None] = relationship()
