"""The `api_keys` table: who may call the API, stored as a hash, with its rate-limit and quota counters."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, TimestampMixin


class ApiKey(TimestampMixin, Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # the key's first characters: not secret, shown in listings
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex of the key; the key itself is not kept
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # counters live in the row so every API process (and the embedded SQLite) shares them; windows
    # are integers (minutes / days since the Unix epoch, UTC) so comparing them needs no time zones
    rate_window_min: Mapped[int] = mapped_column(default=0, server_default="0")
    rate_count: Mapped[int] = mapped_column(default=0, server_default="0")
    quota_day: Mapped[int] = mapped_column(default=0, server_default="0")
    quota_used: Mapped[int] = mapped_column(default=0, server_default="0")
