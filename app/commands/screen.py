"""`phononscreen screen`: screen structure files on this machine and write results to a folder."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from workers.screening.types import StructureRecord

from workers.screening.potentials.registry import POTENTIAL_NAMES  # light: torch loads only with a model

_EPILOG = """\b
Examples:
  phononscreen screen examples/
  phononscreen screen generated_crystals_cif.zip eval_gen.pt --protocol phononbench \\
      --potential mattersim-v1.0.0-5m --generator mattergen --out runs/mattergen

\b
Inputs: CIF (one or many blocks), POSCAR/CONTCAR (*.vasp), extxyz (many frames, incl. MatterGen's
generated_crystals.extxyz), pymatgen JSON, CSV with a `cif` column, CDVAE/DiffCSP eval_gen.pt, and
zip / tar.gz archives of these. A directory is searched recursively (hidden entries and the --out
folder are skipped). Each structure gets a stable name: `file.zip:gen_12.cif`, `eval_gen.pt#37`.

\b
Written to --out:
  results.jsonl      one JSON object per structure, appended as each finishes (crash-safe)
  results.csv        one row per structure: name, verdict, reason, stable_phononbench, formula,
                     space groups, worst mode (THz, q-point, branch), relax steps/force, energy,
                     supercell, timings, potential, protocol, warnings
  relaxed/*.cif      relaxed structures
  plots/*.png        band structure + DOS per structure (imaginary modes below 0, shaded)
  bands/*.json       the band-structure and DOS data behind each plot
  summary.json/.txt  counts and stability rates, overall, by crystal system and by space group

\b
Verdicts: stable, unstable (reason optical/acoustic/elastic), relax_failed, failed (with the
reason, e.g. an input error code). Re-running with the same --out, protocol and potential skips
structures already done; another protocol or potential screens them again. Exit status is 0
whatever the verdicts; it is nonzero only for usage errors and an unavailable potential.
"""


@click.command("screen", epilog=_EPILOG, context_settings={"max_content_width": 100})
@click.argument(
    "paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path)
)
@click.option(
    "--protocol",
    type=click.Choice(["default", "phononbench"]),
    default="default",
    show_default=True,
    help="default: primitive cell, near-cubic supercell >= 10 Å, path + mesh + commensurate "
    "q-points, elastic check of acoustic dips. phononbench: the published PhononBench loop "
    "exactly (input cell, 2x2x2, path only, -1e-3 THz).",
)
@click.option(
    "--potential",
    type=click.Choice(POTENTIAL_NAMES),
    default="auto",
    show_default=True,
    help="Interatomic potential. auto = mattersim-v1.0.0-5m when its weights are on this machine, "
    "else sevennet-0 (with a warning stored on every verdict). A named MatterSim potential "
    "whose weights are missing stops with a message saying how to get them.",
)
@click.option(
    "--potential-checkpoint",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Path to a MatterSim .pth checkpoint to use instead of MatterSim's cache folder "
    "(with a MatterSim --potential, or auto).",
)
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="Where the potential runs; auto = cuda when a GPU is visible.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("phononscreen-out"),
    show_default=True,
    help="Output folder (created if missing; re-used to skip structures already done).",
)
@click.option(
    "--max-atoms",
    type=click.IntRange(min=1),
    default=200,
    show_default=True,
    help="Structures with more sites than this in the input cell are reported as failed "
    "(too_many_atoms) instead of screened.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=None,
    help="Screen at most N structures in this run (those not already done, in input order).",
)
@click.option(
    "--generator",
    default=None,
    metavar="NAME",
    help="Label of the generative model that produced the inputs (e.g. mattergen); stored on "
    "every row and used to group the summary.",
)
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker processes, each with its own copy of the potential and one torch thread. On a "
    "CPU, one per core gives the most structures per hour (measured: see benchmarks/README.md); "
    "on a GPU keep 1.",
)
@click.option(
    "--compile",
    "compile_mode",
    type=click.Choice(["auto", "on", "off"]),
    default="auto",
    show_default=True,
    envvar="PHONONSCREEN_COMPILE",
    help="Run the potential through torch.compile [PHONONSCREEN_COMPILE]. auto = SevenNet on a CPU with a C++ compiler "
    "(faster per force call, same forces to ~3e-6 eV/Å: benchmarks/compile_forces.py; compiled once per "
    "machine, ~2 min, then loaded from PHONONSCREEN_COMPILE_CACHE in seconds). off = eager, as PhononBench ran.",
)
@click.option(
    "--keep-force-constants",
    is_flag=True,
    help="Also write force_constants/<name>.phonopy_params.yaml.xz (structure, displacements, "
    "forces and force constants; open with phonopy.load).",
)
def screen(
    paths: tuple[Path, ...],
    protocol: str,
    potential: str,
    potential_checkpoint: Path | None,
    device: str,
    out_dir: Path,
    max_atoms: int,
    limit: int | None,
    generator: str | None,
    jobs: int,
    compile_mode: str,
    keep_force_constants: bool,
) -> None:
    """Screen crystal structures in PATH... for dynamical stability.

    Each structure is relaxed with a machine-learned interatomic potential, its phonons are
    computed with phonopy across the Brillouin zone, and it gets a verdict; see the files
    written below.
    """
    # Heavy imports (torch, phonopy, pymatgen) only once we know the command runs: --help stays fast.
    from workers.screening.potentials.compiled import compile_decision
    from app.outputs import OutputFolder
    from workers.screening.potentials.registry import (
        PotentialUnavailableError,
        load_potential,
        resolve_device,
        resolved_name,
    )
    from workers.screening.protocols import get_protocol
    from workers.screening.report.summary import format_summary

    settings = get_protocol(protocol)
    settings_hash = settings.settings_hash()
    try:
        will_compile = compile_decision(
            resolved_name(potential, potential_checkpoint), device=resolve_device(device), mode=compile_mode
        )[0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the fallback warning is printed below, once
            # Eager first: the provenance and the element list are all that ingest needs, and
            # nothing is compiled for a run with nothing to screen. With --jobs > 1 every worker
            # process loads (and compiles) its own model.
            loaded = load_potential(potential, device=device, checkpoint=potential_checkpoint, compile="off")
    except PotentialUnavailableError as exc:
        raise click.ClickException(str(exc)) from None
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if loaded.info.warning:
        click.echo(f"warning: {loaded.info.warning}", err=True)
    execution = ("torch.compile" if will_compile else "eager") + (" in each worker" if jobs > 1 else "")
    click.echo(
        f"potential {loaded.info.name} ({loaded.info.version}, {loaded.info.device}, {execution}); "
        f"protocol {settings.name} [{settings_hash}]",
        err=True,
    )

    out = OutputFolder(out_dir)
    records = list(
        _ingest(paths, out_root=out.root, max_atoms=max_atoms, elements=loaded.elements)
    )
    if not records:
        raise click.UsageError("no structure files found in " + ", ".join(map(str, paths)))
    key_of = lambda name: (name, settings_hash, loaded.info.name)  # noqa: E731
    done = out.done_keys()
    todo = [r for r in records if key_of(r.name) not in done]
    n_skipped = len(records) - len(todo)
    if limit is not None:
        todo = todo[:limit]
    click.echo(
        f"{len(records)} structures; {n_skipped} already done in {out.root}; screening {len(todo)}",
        err=True,
    )
    if jobs == 1 and will_compile and any(r.ok for r in todo):  # failed reads need no model
        click.echo(
            "compiling the potential (torch.compile: loaded in seconds when this machine has compiled it "
            "before, about 2 minutes the first time; --compile off skips it)...",
            err=True,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = load_potential(potential, device=device, checkpoint=potential_checkpoint, compile=compile_mode)

    wanted = {key_of(r.name) for r in records}
    try:
        n_stable = _run(
            todo, out=out, settings=settings, loaded=loaded, generator=generator, jobs=jobs,
            checkpoint=str(potential_checkpoint) if potential_checkpoint else None, keep_fc=keep_force_constants,
            compile_mode=compile_mode,
        )
    except KeyboardInterrupt:
        out.write_tables(keys=wanted)  # results.jsonl already has every finished structure
        click.echo("\ninterrupted; finished structures are saved, re-run to continue", err=True)
        sys.exit(130)
    summary = out.write_tables(keys=wanted)
    click.echo(f"\nSummary ({summary['n']} structures, protocol {settings.name}, potential {loaded.info.name})")
    click.echo(format_summary(summary), nl=False)
    click.echo(
        f"\n{n_stable} of {len(todo)} screened now are stable. Results in {out.root}/ "
        "(results.csv, results.jsonl, summary.txt, plots/, relaxed/, bands/)"
    )


def _run(
    todo, *, out, settings, loaded, generator: str | None, jobs: int = 1, checkpoint: str | None = None,
    keep_fc: bool = False, compile_mode: str = "auto",
) -> int:
    """Screen one record at a time, so the bar and results.jsonl advance per structure."""
    from tqdm import tqdm

    from workers.screening.pipeline import screen_structures

    if jobs > 1 and len(todo) > 1:
        return _run_parallel(
            todo, out=out, settings=settings, loaded=loaded, generator=generator, jobs=jobs, checkpoint=checkpoint,
            keep_fc=keep_fc, compile_mode=compile_mode,
        )
    n_stable = 0
    bar = tqdm(todo, unit="structure", file=sys.stderr, dynamic_ncols=True, disable=not todo)
    try:
        for record in bar:
            bar.set_postfix_str(f"{_short(record.name)} | stable {n_stable}", refresh=True)
            with warnings.catch_warnings():
                # pymatgen/phonopy chatter would tear the bar apart; each result keeps its own.
                warnings.simplefilter("ignore")
                (result,) = screen_structures([record], protocol=settings, potential=loaded, keep_force_constants=keep_fc)
            n_stable += result.verdict == "stable"
            out.write_result(result, source=record.source, generator=generator)
            bar.set_postfix_str(f"{_short(record.name)}: {result.verdict} | stable {n_stable}")
            if result.verdict == "failed":
                bar.write(f"{record.name}: failed ({result.reason})", file=sys.stderr)
    finally:
        bar.close()
    return n_stable


def _run_parallel(
    todo, *, out, settings, loaded, generator, jobs: int, checkpoint: str | None, keep_fc: bool, compile_mode: str
) -> int:
    """`jobs` processes; results are written and counted here, in the parent, as they finish."""
    from tqdm import tqdm

    from workers.screening.parallel import Layout, screen_parallel

    sources = {r.name: r.source for r in todo}
    counts = {"stable": 0}
    bar = tqdm(total=len(todo), unit="structure", file=sys.stderr, dynamic_ncols=True)

    def finished(result) -> None:
        counts["stable"] += result.verdict == "stable"
        out.write_result(result, source=sources[result.name], generator=generator)
        bar.update(1)
        bar.set_postfix_str(f"{_short(result.name)}: {result.verdict} | stable {counts['stable']}")
        if result.verdict == "failed":
            bar.write(f"{result.name}: failed ({result.reason})", file=sys.stderr)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            screen_parallel(
                todo, protocol=settings, potential_name=loaded.info.name, device=loaded.info.device,
                checkpoint=checkpoint, layout=Layout(processes=jobs, threads_per_process=1), progress=finished,
                keep_force_constants=keep_fc, compile=compile_mode,
            )
    finally:
        bar.close()
    return counts["stable"]


def _short(name: str, width: int = 32) -> str:
    return name if len(name) <= width else "…" + name[-(width - 1) :]


def _ingest(
    paths: tuple[Path, ...], *, out_root: Path, max_atoms: int, elements: frozenset[str] | None
) -> Iterator[StructureRecord]:
    """Records of every PATH (directories recursively, named by relative path), names unique."""
    from workers.screening.ingest.read import read_structures

    seen: dict[str, str] = {}
    for path in paths:
        records = read_structures(path, max_atoms=max_atoms, allowed_elements=elements)
        if path.is_dir():
            records = [r for r in records if not _excluded(r, root=path, out_root=out_root)]
            if all(r.error is not None and r.error.code == "empty" for r in records):
                records = []  # a folder without structure files: said once, as a usage error
        for record in records:
            yield _unique(record, seen)


def _excluded(record: StructureRecord, *, root: Path, out_root: Path) -> bool:
    # `screen .` must not screen its own relaxed/*.cif again, nor call results.csv a bad input.
    try:
        inside = out_root.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        inside = None
    if inside and (record.name == inside or record.name.startswith(inside + "/")):
        return True
    # In a directory, a file no parser claims is not an input (an archive member still is one).
    return (
        record.error is not None
        and record.error.code == "unsupported_format"
        and ":" not in record.name
    )


def _unique(record: StructureRecord, seen: dict[str, str]) -> StructureRecord:
    # Same name from two different files (two POSCARs given by path): qualify by the file path so
    # neither result overwrites the other and re-runs still find both.
    import dataclasses

    owner = seen.setdefault(record.name, record.source)
    if owner != record.source:
        record = dataclasses.replace(record, name=f"{record.source}:{record.name}")
        seen.setdefault(record.name, record.source)
    return record
