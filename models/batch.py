"""The `batches` table: one submission (an upload or a scheduled scan) of candidate structures."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, TimestampMixin
from models.generator import Generator


class Batch(TimestampMixin, Base):
    __tablename__ = "batches"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(32))  # "upload", "json", "scan"
    # the watched folder a "scan" batch came from (models.source); kept when the source is deleted
    source_id: Mapped[int | None] = mapped_column(ForeignKey("sources.id", ondelete="SET NULL"), index=True)
    generator_id: Mapped[int | None] = mapped_column(ForeignKey("generators.id"), index=True)
    # the generator's version or checkpoint as the submitter gave it: one generator, many versions
    generator_version: Mapped[str | None] = mapped_column(String(64))
    protocol: Mapped[str] = mapped_column(String(32))
    potential: Mapped[str] = mapped_column(String(256))  # as requested, e.g. "auto"
    # other potentials' opinions on every screening of the batch (workers.screening.opinions): a
    # cheap first pass that settles clear instabilities, and a second verdict after the main one
    prescreen: Mapped[str | None] = mapped_column(String(256))
    prescreen_margin_thz: Mapped[float | None] = mapped_column(Float)  # set with `prescreen`
    second_opinion: Mapped[str | None] = mapped_column(String(256))
    n_submitted: Mapped[int] = mapped_column(default=0)
    n_accepted: Mapped[int] = mapped_column(default=0)
    n_rejected: Mapped[int] = mapped_column(default=0)
    # [{name, code, message}] of the structures refused at ingest; they have no candidate row
    rejected: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    generator: Mapped[Generator | None] = relationship(lazy="joined")
