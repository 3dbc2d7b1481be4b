"""`phononscreen submit`: upload structure files to a running service and follow the batch."""

from __future__ import annotations

import time
from pathlib import Path

import click

from app.commands import service_client, service_options


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@service_options
@click.option("--generator", "-g", default=None, help="Name of the generative model that made them.")
@click.option("--generator-version", default=None, help="Its version or checkpoint, kept with the batch.")
@click.option("--protocol", default=None, help="default | phononbench (server default if omitted).")
@click.option("--potential", default=None, help="auto | sevennet-0 | ... (server default if omitted).")
@click.option(
    "--prescreen", default=None, metavar="POTENTIAL", help="A cheap potential that screens first (API field)."
)
@click.option(
    "--prescreen-margin",
    type=click.FloatRange(min=0),
    default=None,
    help="THz below 0 a prescreen instability must reach to settle (server default if omitted).",
)
@click.option(
    "--second-opinion", default=None, metavar="POTENTIAL", help="Another potential's verdict after the main one."
)
@click.option("--wait/--no-wait", default=True, show_default=True, help="Follow progress until done.")
@click.option("--timeout", type=float, default=None, help="Give up waiting after this many seconds.")
def submit(
    paths: tuple[Path, ...],
    url: str,
    key: str | None,
    generator: str | None,
    generator_version: str | None,
    protocol: str | None,
    potential: str | None,
    prescreen: str | None,
    prescreen_margin: float | None,
    second_opinion: str | None,
    wait: bool,
    timeout: float | None,
) -> None:
    """Upload PATHS (files or folders of structure files) as one batch, then show its verdicts."""

    files = [p for path in paths for p in ([path] if path.is_file() else sorted(_files_under(path)))]
    if not files:
        raise click.ClickException("no files to submit")
    fields = {
        "generator": generator,
        "generator_version": generator_version,
        "protocol": protocol,
        "potential": potential,
        "prescreen": prescreen,
        "prescreen_margin_thz": None if prescreen_margin is None else str(prescreen_margin),
        "second_opinion": second_opinion,
    }
    data = {k: v for k, v in fields.items() if v}
    with service_client(url, key) as client:
        handles = [("files", (f.name, f.read_bytes())) for f in files]
        response = client.post("/api/v1/batches", files=handles, data=data)
        if response.status_code != 202:
            raise click.ClickException(f"HTTP {response.status_code}: {response.text}")
        created = response.json()
        click.echo(f"batch {created['id']}: {created['accepted']} accepted, {created['rejected']} rejected")
        for item in created["structures"]:
            if not item["accepted"]:
                click.echo(f"  rejected {item['name']}: {item['code']}: {item['reason']}")
        if not wait:
            return
        batch = follow_batch(client, batch_id=created["id"], timeout_s=timeout)
        click.echo(format_summary(client, batch=batch))


def _files_under(folder: Path):
    # a folder of structures usually carries a README; it is not a structure
    return (
        p
        for p in folder.rglob("*")
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() not in (".md", ".txt")
    )


def follow_batch(client, *, batch_id: int, timeout_s: float | None, poll_s: float = 2.0) -> dict:
    """Poll the batch with a progress bar until it is done (or the timeout passes)."""
    from tqdm import tqdm

    start = time.monotonic()
    with tqdm(total=None, unit="structure", desc=f"batch {batch_id}") as bar:
        while True:
            batch = client.get(f"/api/v1/batches/{batch_id}").raise_for_status().json()
            counts = batch["counts"]
            bar.total = batch["accepted"]
            bar.n = counts["done"] + counts["failed"]
            bar.set_postfix(stable=counts["stable"], unstable=counts["unstable"], running=counts["running"])
            bar.refresh()
            if batch["status"] == "done":
                return batch
            if timeout_s is not None and time.monotonic() - start > timeout_s:
                raise click.ClickException(f"batch {batch_id} not done after {timeout_s:.0f} s")
            time.sleep(poll_s)


def format_summary(client, *, batch: dict) -> str:
    """A plain-text table of the batch's candidates and verdicts, then the counts."""
    items, page = [], 1
    while True:
        data = (
            client.get("/api/v1/candidates", params={"batch_id": batch["id"], "per_page": 500, "page": page})
            .raise_for_status()
            .json()
        )
        items += data["items"]
        if len(items) >= data["total"] or not data["items"]:
            break
        page += 1
    second = batch.get("second_opinion")
    extra = f"  {'2nd opinion':<13}" if second else ""
    lines = [f"{'id':>6}  {'name':<32} {'formula':<12} {'verdict':<15} {'min THz':>8}{extra}  space group after"]
    for item in items:
        v = item["verdict"] or {}
        freq = v.get("min_frequency_thz")
        verdict = (v.get("verdict") or item["status"] or "-") + (" (pre)" if v.get("settled_by_prescreen") else "")
        if second:
            extra = f"  {(v.get('second_opinion') or {}).get('verdict') or '-':<13}"
        lines.append(
            f"{item['id']:>6}  {item['name'][:32]:<32} {item['reduced_formula'][:12]:<12} {verdict:<15} "
            f"{'' if freq is None else f'{freq:.3f}':>8}{extra}  {v.get('spacegroup_after') or ''}"
        )
    c = batch["counts"]
    lines.append(
        f"stable {c['stable']}, unstable {c['unstable']}, relax_failed {c['relax_failed']}, "
        f"failed {c['verdict_failed'] + c['failed']} of {batch['accepted']} screened"
    )
    if batch.get("prescreen"):
        lines.append(
            f"prescreen {batch['prescreen']} (margin {batch['prescreen_margin_thz']} THz): "
            f"settled {c['settled_by_prescreen']}"
        )
    if second:
        lines.append(
            f"second opinion {second}: agree {c['agree']}, disagree {c['disagree']}, "
            f"stable by both {c['stable_by_both']}"
        )
    return "\n".join(lines)
