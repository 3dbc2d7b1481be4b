"""`phononscreen sources`: watch folders of generator output through a running service
(/api/v1/sources): each new or changed file is screened as a batch of its own, on a schedule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from app.commands import call_service, service_client, service_options


@click.group()
def sources() -> None:
    """Watched folders of generator output: add, list, pause, resume, scan, rm, files.

    \b
    Watch MatterGen's output folder every 10 minutes:
      phononscreen sources add /data/mattergen/run3 --generator MatterGen --generator-version 1.0 --interval 600
    """


@sources.command()
@click.argument("path", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--pattern",
    "-p",
    "patterns",
    multiple=True,
    help="Glob relative to PATH, repeatable (e.g. '**/*.cif'); default: every known structure format.",
)
@click.option("--generator", "-g", default=None, help="Name of the generative model writing there.")
@click.option("--generator-version", default=None, help="Its version or checkpoint.")
@click.option("--protocol", default=None, help="default | phononbench (server default if omitted).")
@click.option("--potential", default=None, help="auto | sevennet-0 | ... (server default if omitted).")
@click.option("--interval", "interval_s", type=float, default=None, help="Seconds between scans.")
@click.option("--cron", default=None, help="Or a schedule: 'minute hour day month weekday' (UTC).")
@service_options
def add(
    path: Path, patterns: tuple[str, ...], interval_s: float | None, url: str, key: str | None, **fields: Any
) -> None:
    """Watch PATH (as the service's workers see it; made absolute here)."""
    body = {"path": str(path.expanduser().absolute()), "patterns": list(patterns), "interval_s": interval_s, **fields}
    with service_client(url, key) as client:
        source = call_service(client, "POST", "/api/v1/sources", json={k: v for k, v in body.items() if v is not None})
    click.echo(f"source {source['id']}: watching {source['path']} ({_schedule(source)})")


@sources.command(name="list")
@service_options
def list_(url: str, key: str | None) -> None:
    """The watched sources, their schedule, files by state and batches made."""
    with service_client(url, key) as client:
        rows = call_service(client, "GET", "/api/v1/sources")
    if not rows:
        click.echo("no watched sources (add one: phononscreen sources add PATH)")
        return
    click.echo(f"{'id':>4}  {'state':<7} {'schedule':<16} {'generator':<20} {'batches':>7}  files  path")
    for s in rows:
        files = ", ".join(f"{n} {state}" for state, n in sorted(s["files"].items())) or "-"
        generator = " ".join(x for x in (s["generator"], s["generator_version"]) if x) or "-"
        state = "paused" if s["paused"] else "active"
        click.echo(
            f"{s['id']:>4}  {state:<7} {_schedule(s):<16} {generator[:20]:<20} {s['batches']:>7}  {files}  {s['path']}"
        )
        if s["last_error"]:
            click.echo(f"      last scan: {s['last_error']}")


@sources.command()
@click.argument("source_id", type=click.IntRange(min=1))
@service_options
def pause(source_id: int, url: str, key: str | None) -> None:
    """Stop scanning SOURCE_ID (nothing seen or stored is lost)."""
    _post(url, key, f"/api/v1/sources/{source_id}/pause", f"source {source_id} paused")


@sources.command()
@click.argument("source_id", type=click.IntRange(min=1))
@service_options
def resume(source_id: int, url: str, key: str | None) -> None:
    """Scan SOURCE_ID on its schedule again."""
    _post(url, key, f"/api/v1/sources/{source_id}/resume", f"source {source_id} resumed")


@sources.command()
@click.argument("source_id", type=click.IntRange(min=1))
@service_options
def scan(source_id: int, url: str, key: str | None) -> None:
    """Scan SOURCE_ID now (a file seen for the first time is read at the next scan, once it held still)."""
    _post(url, key, f"/api/v1/sources/{source_id}/scan", f"scan of source {source_id} sent")


@sources.command()
@click.argument("source_id", type=click.IntRange(min=1))
@service_options
def rm(source_id: int, url: str, key: str | None) -> None:
    """Stop watching SOURCE_ID; its batches and verdicts stay."""
    with service_client(url, key) as client:
        call_service(client, "DELETE", f"/api/v1/sources/{source_id}")
    click.echo(f"source {source_id} removed (its batches stay)")


@sources.command()
@click.argument("source_id", type=click.IntRange(min=1))
@service_options
def files(source_id: int, url: str, key: str | None) -> None:
    """The files SOURCE_ID's scans have seen and what was done with each."""
    with service_client(url, key) as client:
        rows = call_service(client, "GET", f"/api/v1/sources/{source_id}/files", params={"limit": 1000})
    for f in rows:
        batch = f"batch {f['batch_id']}" if f["batch_id"] else ""
        click.echo(f"{f['state']:<13} {batch:<11} {f['path']}  {f['message'] or ''}".rstrip())


def _post(url: str, key: str | None, path: str, done: str) -> None:
    with service_client(url, key) as client:
        call_service(client, "POST", path)
    click.echo(done)


def _schedule(source: dict[str, Any]) -> str:
    return f"cron {source['cron']}" if source["cron"] else f"every {source['interval_s']:g} s"
