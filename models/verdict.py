"""The `verdicts` table: what the core said about one screening; bulky arrays live as artifacts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, ForeignKey, String, false
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, TimestampMixin


class Verdict(TimestampMixin, Base):
    __tablename__ = "verdicts"

    id: Mapped[int] = mapped_column(primary_key=True)
    # unique: saving the same screening's verdict twice (a redelivered task) is a no-op
    screening_id: Mapped[int] = mapped_column(ForeignKey("screenings.id", ondelete="CASCADE"), unique=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id", ondelete="CASCADE"), index=True)
    verdict: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str | None] = mapped_column(String(512))
    stable_phononbench: Mapped[bool]  # path only, every frequency >= -1e-3 THz (PhononBench's scripts)
    # path only, >= -0.1 THz (PhononBench v3's headline); None only on a verdict stored before it
    # existed whose stored frequencies cannot decide it (migration 0006)
    stable_phononbench_v3: Mapped[bool | None]
    min_frequency_thz: Mapped[float | None] = mapped_column(index=True)
    worst_qpoint: Mapped[list[float] | None] = mapped_column(JSON)  # reduced coordinates
    worst_branch: Mapped[int | None]
    worst_q_norm_inv_angstrom: Mapped[float | None]
    formula: Mapped[str] = mapped_column(String(256))
    spacegroup_after: Mapped[str | None] = mapped_column(String(32))  # "Fm-3m (225)"
    spacegroup_number: Mapped[int | None] = mapped_column(index=True)  # after relaxation
    crystal_system: Mapped[str | None] = mapped_column(String(16), index=True)
    energy_per_atom_ev: Mapped[float | None]
    potential_name: Mapped[str] = mapped_column(String(256))  # resolved, e.g. "sevennet-0"
    potential_warning: Mapped[str | None] = mapped_column(String(1024))
    settings_hash: Mapped[str] = mapped_column(String(32))
    # the batch's prescreen gave this verdict (unstable beyond its margin); the main potential never ran
    settled_by_prescreen: Mapped[bool] = mapped_column(default=False, server_default=false())
    # the second opinion (the batch's `second_opinion` potential on the main relaxed structure)
    second_potential: Mapped[str | None] = mapped_column(String(256))
    second_verdict: Mapped[str | None] = mapped_column(String(16), index=True)
    second_min_frequency_thz: Mapped[float | None]
    agreement: Mapped[bool | None] = mapped_column(index=True)  # same verdict; None when either failed
    result: Mapped[dict[str, Any]] = mapped_column(JSON)  # ScreeningResult.as_dict(bulky=False)
    # artifact store paths, relative to its root
    relaxed_cif_path: Mapped[str | None] = mapped_column(String(1024))
    bands_path: Mapped[str | None] = mapped_column(String(1024))
