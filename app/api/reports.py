"""Route for the PhononBench-style stability table, grouped by generator or symmetry."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from app.api.deps import SessionDep
from app.exports import csv_response, report_csv
from app.schemas import ID_MAX, ReportRow, StabilityReport
from models.queries import ReportRow as StabilityCounts
from models.queries import get_stability_report
from workers.screening.report.summary import stability_rates

router = APIRouter(prefix="/reports", tags=["reports"])


GroupBy = Literal["generator", "generator_version", "crystal_system", "space_group"]
BatchScope = Annotated[int | None, Query(ge=1, le=ID_MAX, description="Only this batch")]
SourceScope = Annotated[int | None, Query(ge=1, le=ID_MAX, description="Only the batches of this watched source")]


@router.get("/stability", response_model=StabilityReport)
def read_stability(
    session: SessionDep,
    group_by: GroupBy = "generator",
    batch_id: BatchScope = None,
    source_id: SourceScope = None,
) -> StabilityReport:
    """Generators side by side, as PhononBench's table: per group, generated, valid (`submitted`),
    unique, screened, relaxed, stable, and the stability rates (stable/all, stable/relaxed,
    PhononBench/all at -1e-3 THz and at v3's -0.1 THz: the definitions the CLI's summary uses)."""
    found = get_stability_report(session, group_by=group_by, batch_id=batch_id, source_id=source_id)
    rows = [_row(r) for r in found]
    counts = {f: sum(getattr(r, f) for r in rows) for f in _COUNTS}
    generated = None if any(r.generated is None for r in found) else sum(r.generated or 0 for r in found)
    total = _row(StabilityCounts(group="all", generated=generated, **counts))
    return StabilityReport(group_by=group_by, rows=rows, total=total)


@router.get("/stability.csv", response_class=Response, responses={200: {"content": {"text/csv": {}}}})
def read_stability_csv(
    session: SessionDep,
    group_by: GroupBy = "generator",
    batch_id: BatchScope = None,
    source_id: SourceScope = None,
) -> Response:
    """The same table as GET /reports/stability, as CSV (its last row: all)."""
    report = read_stability(session, group_by=group_by, batch_id=batch_id, source_id=source_id)
    return csv_response(
        report_csv(report.rows, report.total, group_by=group_by), filename=f"stability-by-{group_by}.csv"
    )


_COUNTS = (
    "submitted", "unique", "screened", "relaxed", "stable", "stable_phononbench", "stable_phononbench_v3",
    "second_opinions", "stable_by_both",
)  # fmt: skip


def _row(counts: StabilityCounts) -> ReportRow:
    rates = stability_rates(
        n=counts.submitted,
        n_relaxed=counts.relaxed,
        n_stable=counts.stable,
        n_stable_phononbench=counts.stable_phononbench,
        n_stable_phononbench_v3=counts.stable_phononbench_v3,
    )
    return ReportRow(
        group=counts.group, generated=counts.generated, **{f: getattr(counts, f) for f in _COUNTS}, **rates.as_dict()
    )
