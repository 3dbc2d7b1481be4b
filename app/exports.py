"""Downloads built from API answers: the candidate table as CSV (the columns the results page
shows, from this one list), the stability report as CSV, and one candidate's zip bundle."""

from __future__ import annotations

import csv
import io
import math
import zipfile
from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import Response

from app.schemas import CandidateOut, ReportRow

# (header, dotted path into CandidateOut's JSON, format): the results page renders exactly these
# columns with the same formats (app/web/static/js/common.js `formatCell`), so the CSV is what is shown
CANDIDATE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("id", "id", "int"),
    ("name", "name", "text"),
    ("generator", "generator", "text"),
    ("batch", "batch_id", "int"),
    ("formula", "reduced_formula", "text"),
    ("atoms", "n_sites", "int"),
    ("space group (relaxed)", "verdict.spacegroup_after", "text"),
    ("crystal system", "verdict.crystal_system", "text"),
    ("status", "status", "text"),
    ("verdict", "verdict.verdict", "text"),
    ("reason", "verdict.reason", "text"),
    ("worst mode (THz)", "verdict.min_frequency_thz", "float3"),
    ("worst q-point", "verdict.worst_mode.qpoint", "vector"),
    ("PhononBench -1e-3 THz", "verdict.stable_phononbench", "bool"),
    ("PhononBench v3 -0.1 THz", "verdict.stable_phononbench_v3", "bool"),
    ("second opinion", "verdict.second_opinion.verdict", "text"),
    ("agreement", "verdict.agreement", "bool"),
    ("potential", "verdict.potential", "text"),
    ("duplicate of", "duplicate_of", "int"),
)


def format_cell(value: Any, kind: str) -> str:
    """One cell as the page shows it: empty for nothing, yes/no, 3 decimals, a vector as (a, b, c)."""
    if value is None:
        return ""
    if kind == "bool":
        return "yes" if value else "no"
    if kind == "float3":  # + 0.0: -0.0 prints as 0.000, as JavaScript's toFixed does
        return f"{value + 0.0:.3f}" if math.isfinite(value) else str(value)
    if kind == "vector":
        return "(" + ", ".join(f"{x + 0.0:.3f}" for x in value) + ")"
    return str(value)


def _get(data: dict[str, Any], path: str) -> Any:
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def candidates_csv(items: Iterable[CandidateOut]) -> str:
    rows = []
    for item in items:
        data = item.model_dump(mode="json")
        rows.append([format_cell(_get(data, path), kind) for _, path, kind in CANDIDATE_COLUMNS])
    return _csv([h for h, _, _ in CANDIDATE_COLUMNS], rows)


REPORT_COLUMNS: tuple[str, ...] = (
    "group", "generated", "submitted", "unique", "screened", "relaxed", "stable", "stable_phononbench",
    "stable_phononbench_v3", "second_opinions", "stable_by_both", "stable_rate", "stable_rate_relaxed",
    "stable_phononbench_rate", "stable_phononbench_v3_rate",
)  # fmt: skip


def report_csv(rows: Sequence[ReportRow], total: ReportRow, *, group_by: str) -> str:
    data = [r.model_dump() for r in (*rows, total)]
    header = [group_by if c == "group" else c for c in REPORT_COLUMNS]
    return _csv(header, [[_plain(d.get(c)) for c in REPORT_COLUMNS] for d in data])


def _plain(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _csv(header: list[str], rows: list[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def csv_response(text: str, *, filename: str) -> Response:
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def candidate_bundle(detail_json: str, files: dict[str, bytes]) -> bytes:
    """verdict.json and the candidate's files, in one zip."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("verdict.json", detail_json)
        for name, data in files.items():
            zf.writestr(name, data)
    return out.getvalue()
