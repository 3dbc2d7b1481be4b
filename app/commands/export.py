"""`phononscreen export`: download every candidate a search matches, in one file, from a running
service (GET /api/v1/candidates/export)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click

from app.commands import describe_error, service_client, service_options

EXPORT_PATH = "/api/v1/candidates/export"
# the service's formats (app/export_formats), named here so that `--help` needs no import of the service
FORMATS_HELP = "cif-zip | extxyz | jsonl | pymatgen-json | phononbench"
# the search's filters, as GET /candidates takes them (app/api/candidates.py get_candidate_query):
# (option, query parameter, click type, help)
FILTERS: tuple[tuple[str, str, Any, str], ...] = (
    ("--batch", "batch_id", click.IntRange(min=1), "Batch id."),
    ("--source", "source_id", click.IntRange(min=1), "Watched source id: the batches it made."),
    ("--generator", "generator", str, "Generator name, e.g. MatterGen."),
    ("--verdict", "verdict", str, "stable | unstable | relax_failed | failed."),
    ("--reason", "reason", str, "The verdict's reason: optical, acoustic, elastic, or a failure's text."),
    ("--formula", "formula", str, "Reduced formula, e.g. NaCl."),
    ("--elements", "elements", str, "Comma-separated element symbols that must all be present, e.g. Si,O."),
    ("--space-group", "space_group", click.IntRange(1, 230), "Space group number (after relaxation when known)."),
    ("--crystal-system", "crystal_system", str, "e.g. cubic."),
    ("--min-frequency-gte", "min_frequency_gte", float, "Worst mode >= this many THz."),
    ("--min-frequency-lte", "min_frequency_lte", float, "Worst mode <= this many THz."),
    ("--stable-phononbench/--no-stable-phononbench", "stable_phononbench", bool, "PhononBench's -1e-3 THz."),
    ("--stable-phononbench-v3/--no-stable-phononbench-v3", "stable_phononbench_v3", bool, "PhononBench v3's -0.1 THz."),
    ("--stable-by-both/--no-stable-by-both", "stable_by_both", bool, "Stable by the potential and the second opinion."),
    ("--agreement/--no-agreement", "agreement", bool, "The second opinion agrees (or not: the list for DFT)."),
    ("--settled-by-prescreen/--no-settled-by-prescreen", "settled_by_prescreen", bool, "Settled by the prescreen."),
    ("--sort", "sort", str, "Order: id, formula, n_sites, min_frequency_thz, ...; '-' prefix descending."),
)


def _filter_options(command: Any) -> Any:
    for option, name, kind, help_text in reversed(FILTERS):
        flag = {"default": None} if kind is bool else {"type": kind, "default": None}
        command = click.option(option, name, help=help_text, **flag)(command)
    return command


@click.command()
@service_options
@click.option("--format", "-f", "export_format", required=True, help=f"{FORMATS_HELP}.")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="File to write [default: the service's file name, in this folder].",
)
@click.option("--timeout", type=float, default=600.0, show_default=True, help="Seconds to wait for the service.")
@_filter_options
def export(url: str, key: str | None, export_format: str, output: Path | None, timeout: float, **filters: Any) -> None:
    """Download every candidate the filters match (no page limit) as one file.

    \b
    Formats:
      cif-zip        relaxed CIFs (input CIFs of those never relaxed in unrelaxed_input/), manifest.csv
      extxyz         one extended-XYZ frame per candidate, verdict fields in its info (ase.io.read)
      jsonl          one JSON object per line: every verdict field and the structure (pymatgen dict)
      pymatgen-json  a JSON list of pymatgen Structures (monty.serialization.loadfn)
      phononbench    PhononBench's Lable.txt, NAME_relaxed.cif and phonon_summary.csv per generator

    \b
    Stable by both PhononBench criteria, from one generator:
      phononscreen export -f cif-zip --generator MatterGen --stable-phononbench --stable-phononbench-v3 -o stable.zip
    """
    import httpx

    params = {"format": export_format, **get_query_params(filters)}
    try:
        with (
            service_client(url, key, timeout=httpx.Timeout(30.0, read=timeout)) as client,
            client.stream("GET", EXPORT_PATH, params=params) as response,
        ):
            if response.status_code >= 400:
                response.read()
                raise click.ClickException(describe_error(response))
            target = output or Path(get_filename(response.headers.get("content-disposition"), export_format))
            size = _save(response, target)
    except httpx.TransportError as exc:
        raise click.ClickException(f"no answer from {url}: {exc}") from exc
    count = response.headers.get("x-candidate-count", "?")
    click.echo(f"wrote {target} ({count} candidates, {size:,} bytes)")


def get_query_params(filters: dict[str, Any]) -> dict[str, str]:
    """The filters given, as query parameters (true/false for the flags)."""
    params = {}
    for name, value in filters.items():
        if value is not None:
            params[name] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return params


def get_filename(disposition: str | None, export_format: str) -> str:
    """The file name of a Content-Disposition, without any folder; a plain one when there is none."""
    found = re.search(r'filename="?([^";]+)"?', disposition or "")
    name = Path(found.group(1)).name if found else ""
    return name if name not in ("", ".", "..") else f"candidates-{export_format}"


def _save(response: Any, target: Path) -> int:
    """Write the body to `target` through a partial file (renamed when complete), with a progress bar."""
    from tqdm import tqdm

    total = int(response.headers.get("content-length") or 0) or None
    partial = target.with_name(f".{target.name}.part")
    written = 0
    try:
        with (
            partial.open("wb") as fh,
            tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=target.name, disable=None) as bar,
        ):
            for chunk in response.iter_bytes():
                fh.write(chunk)
                written += len(chunk)
                bar.update(len(chunk))
        if total is not None and written != total:
            raise click.ClickException(f"the download ended after {written} of {total} bytes")
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return written
