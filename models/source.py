"""The `sources` table and its bookkeeping: watched folders of generator output, the files seen in
them and the contents already ingested (each at most once per source)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, TimestampMixin
from models.generator import Generator

# states of a file in a watched folder
WAITING = "waiting"  # seen, or changed since the last scan: read once its size and mtime hold still
INGESTED = "ingested"  # read into a batch of its own
SAME_CONTENT = "same_content"  # its bytes were ingested before (this path or another): nothing to do
UNREADABLE = "unreadable"  # read, and not one structure in it could be used (see `message`)
FILE_STATES = (WAITING, INGESTED, SAME_CONTENT, UNREADABLE)


class Source(TimestampMixin, Base):
    __tablename__ = "sources"

    id: Mapped[int] = mapped_column(primary_key=True)
    path: Mapped[str] = mapped_column(String(1024))  # an absolute directory
    patterns: Mapped[list[str]] = mapped_column(JSON)  # globs relative to `path` ("**/*.cif")
    generator_id: Mapped[int | None] = mapped_column(ForeignKey("generators.id"), index=True)
    generator_version: Mapped[str | None] = mapped_column(String(64))
    protocol: Mapped[str] = mapped_column(String(32))
    potential: Mapped[str] = mapped_column(String(256))
    interval_s: Mapped[float | None]  # exactly one of interval_s and cron is set
    cron: Mapped[str | None] = mapped_column(String(128))  # five fields: minute hour day month weekday
    paused: Mapped[bool] = mapped_column(default=False, server_default=false())
    last_scan_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)  # of the last scan; None when it went through

    generator: Mapped[Generator | None] = relationship(lazy="joined")


class SourceFile(TimestampMixin, Base):
    """One path in a watched folder, as last seen: its size and mtime, and what was done with it."""

    __tablename__ = "source_files"
    __table_args__ = (UniqueConstraint("source_id", "path"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(String(1024))  # relative to the source's path
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16))  # FILE_STATES
    sha256: Mapped[str | None] = mapped_column(String(64))  # once read
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id", ondelete="SET NULL"))
    message: Mapped[str | None] = mapped_column(Text)
    changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # when state last changed


class SourceContent(Base):
    """Bytes a source has ingested: the unique key makes every content a batch at most once per
    source, whatever the path and however many scans race."""

    __tablename__ = "source_contents"
    __table_args__ = (UniqueConstraint("source_id", "sha256"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"), index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(1024))  # where it was first seen
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
