"""The `screenings` table: one candidate x protocol x potential job and its life cycle."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sqlalchemy import DateTime, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, TimestampMixin, utc_now
from models.batch import Batch
from models.candidate import Candidate

ScreeningStatus = Literal["queued", "running", "done", "failed", "duplicate"]
STATUSES: tuple[str, ...] = ("queued", "running", "done", "failed")
# stored on a screening that links to an equivalent one instead of running; its effective status
# and verdict are those of `duplicate_of` (queries resolve the link)
DUPLICATE = "duplicate"


class Screening(TimestampMixin, Base):
    __tablename__ = "screenings"
    __table_args__ = (UniqueConstraint("candidate_id", "protocol", "potential"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id", ondelete="CASCADE"), index=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"), index=True)
    protocol: Mapped[str] = mapped_column(String(32))
    potential: Mapped[str] = mapped_column(String(256))  # as requested
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    worker: Mapped[str | None] = mapped_column(String(256))  # hostname of the claiming worker
    # the Celery task id that claimed it: a redelivered message (same id) may reclaim its own rows
    task_id: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    error: Mapped[str | None] = mapped_column(Text)
    # a running screening is its worker's only while this lies ahead: the worker renews it as it
    # works; past it the reconciler takes the screening back (workers.reconcile)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # when the message that will run this queued screening was sent (or, once claimed, when the
    # message that claimed it was): the reconciler compares these to find messages that were lost
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=utc_now)
    # the screening (same protocol and potential, never itself a duplicate) whose verdict this one
    # shares; SET NULL so deleting that batch leaves this row behind, orphaned rather than gone
    duplicate_of_id: Mapped[int | None] = mapped_column(ForeignKey("screenings.id", ondelete="SET NULL"), index=True)

    candidate: Mapped[Candidate] = relationship()
    batch: Mapped[Batch] = relationship()  # whose settings (other potentials' opinions) it runs under
