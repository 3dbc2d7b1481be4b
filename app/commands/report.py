"""`phononscreen report`: generators side by side, as PhononBench's table, from a running service
(GET /api/v1/reports/stability)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from app.commands import call_service, service_client, service_options

# (header, field, width): the table's columns, PhononBench's order
COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("generated", "generated", 9),
    ("valid", "submitted", 7),
    ("unique", "unique", 7),
    ("screened", "screened", 8),
    ("relaxed", "relaxed", 7),
    ("stable", "stable", 7),
    ("PB", "stable_phononbench", 6),
    ("PB v3", "stable_phononbench_v3", 6),
    ("rate", "stable_rate", 6),
    ("PB rate", "stable_phononbench_rate", 7),
    ("v3 rate", "stable_phononbench_v3_rate", 7),
)


@click.command()
@click.option(
    "--group-by",
    type=click.Choice(["generator", "generator_version", "crystal_system", "space_group"]),
    default="generator",
    show_default=True,
)
@click.option("--batch", "batch_id", type=click.IntRange(min=1), default=None, help="Only this batch.")
@click.option("--source", "source_id", type=click.IntRange(min=1), default=None, help="Only this watched source.")
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Also write the table as CSV here.",
)
@service_options
def report(
    group_by: str, batch_id: int | None, source_id: int | None, csv_path: Path | None, url: str, key: str | None
) -> None:
    """Stability per generator (or version, crystal system, space group): generated, valid, unique,
    screened, relaxed, stable by our verdict and by PhononBench's criteria (PB: every band-path
    frequency >= -1e-3 THz, v3: >= -0.1 THz), and the rates over all generated."""
    params = {k: v for k, v in {"group_by": group_by, "batch_id": batch_id, "source_id": source_id}.items() if v}
    with service_client(url, key) as client:
        table = call_service(client, "GET", "/api/v1/reports/stability", params=params)
        if csv_path is not None:
            csv_path.write_text(client.get("/api/v1/reports/stability.csv", params=params).raise_for_status().text)
    click.echo(format_report(table))
    if csv_path is not None:
        click.echo(f"wrote {csv_path}")


def format_report(table: dict[str, Any]) -> str:
    """The report as a plain-text table, its last row all groups together."""
    rows = [*table["rows"], table["total"]] if table["rows"] else []
    if not rows:
        return "no candidates yet"
    width = max(24, *(len(str(r["group"])) for r in rows))
    lines = [f"{table['group_by']:<{width}}" + "".join(f" {h:>{w}}" for h, _, w in COLUMNS)]
    for row in rows:
        cells = "".join(f" {_cell(row.get(field)):>{w}}" for _, field, w in COLUMNS)
        lines.append(f"{str(row['group']):<{width}}{cells}")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.1%}" if isinstance(value, float) else str(value)
