"""Route for the PhononBench-style stability table, grouped by generator or symmetry."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from app.api.deps import SessionDep
from app.schemas import ID_MAX, ReportRow, StabilityReport
from models.queries import get_stability_report
from workers.screening.report.summary import stability_rates

router = APIRouter(prefix="/reports", tags=["reports"])


@router.get("/stability", response_model=StabilityReport)
def read_stability(
    session: SessionDep,
    group_by: Literal["generator", "crystal_system", "space_group"] = "generator",
    batch_id: Annotated[int | None, Query(ge=1, le=ID_MAX)] = None,
) -> StabilityReport:
    """Per group: submitted, screened, relaxed, stable, and the stability rates (stable/all,
    stable/relaxed, PhononBench/all: the definitions the CLI's summary uses)."""
    rows = [
        _row(r.group, r.submitted, r.screened, r.relaxed, r.stable, r.stable_phononbench)
        for r in get_stability_report(session, group_by=group_by, batch_id=batch_id)
    ]
    total = _row(
        "all",
        *(
            sum(getattr(r, f) for r in rows)
            for f in ("submitted", "screened", "relaxed", "stable", "stable_phononbench")
        ),
    )
    return StabilityReport(group_by=group_by, rows=rows, total=total)


def _row(group: str, submitted: int, screened: int, relaxed: int, stable: int, stable_pb: int) -> ReportRow:
    rates = stability_rates(n=submitted, n_relaxed=relaxed, n_stable=stable, n_stable_phononbench=stable_pb)
    return ReportRow(
        group=group,
        submitted=submitted,
        screened=screened,
        relaxed=relaxed,
        stable=stable,
        stable_phononbench=stable_pb,
        **rates.as_dict(),
    )
