"""The `batches` table: one submission (an upload or a scheduled scan) of candidate structures."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, TimestampMixin
from models.generator import Generator


class Batch(TimestampMixin, Base):
    __tablename__ = "batches"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(32))  # "upload", "json", "scan"
    generator_id: Mapped[int | None] = mapped_column(ForeignKey("generators.id"), index=True)
    protocol: Mapped[str] = mapped_column(String(32))
    potential: Mapped[str] = mapped_column(String(256))  # as requested, e.g. "auto"
    n_submitted: Mapped[int] = mapped_column(default=0)
    n_accepted: Mapped[int] = mapped_column(default=0)
    n_rejected: Mapped[int] = mapped_column(default=0)
    # [{name, code, message}] of the structures refused at ingest; they have no candidate row
    rejected: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    generator: Mapped[Generator | None] = relationship(lazy="joined")
