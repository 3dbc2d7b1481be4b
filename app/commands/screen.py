"""`phononscreen screen`: screen structure files on this machine and write results to a folder."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, get_args

import click

if TYPE_CHECKING:
    from app.outputs import OutputFolder
    from workers.screening.parallel import Layout, OpinionSpecs, PotentialSpec
    from workers.screening.potentials import LoadedPotential
    from workers.screening.protocols import ProtocolSettings
    from workers.screening.types import ScreeningResult, StructureRecord

from app.config import Settings
from workers.screening.opinions import DEFAULT_PRESCREEN_MARGIN_THZ
from workers.screening.potentials import COMPILE_MODES, POTENTIAL_NAMES  # light: torch loads only with a model
from workers.screening.protocols import PROTOCOLS

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
  results.csv        one row per structure: name, verdict, reason, stable_phononbench (-1e-3 THz),
                     stable_phononbench_v3 (-0.1 THz), formula, space groups, worst mode (THz,
                     q-point, branch), relax steps/force, energy, supercell, timings, potential,
                     protocol, warnings
  structures/NAME/   per structure: relaxed.cif, band_structure.png (band structure + DOS,
                     imaginary modes below 0, shaded), bands.json (the data behind the plot),
                     phonopy_params.yaml.xz (with --keep-force-constants)
  summary.json/.txt  counts and stability rates (stable/all, stable/relaxed, PhononBench at -1e-3
                     and -0.1 THz), overall, by crystal system and by space group

\b
Verdicts: stable, unstable (reason optical/acoustic/elastic/unconfirmed_incommensurate),
relax_failed, failed (with the reason, e.g. an input error code). Re-running with the same --out,
protocol and potential skips structures already done; another protocol or potential, or changed
protocol settings (their hash), screens them again. Exit status is 0
whatever the verdicts; it is nonzero only for usage errors and an unavailable potential.
"""


def _default(field: str) -> str:
    """The built-in default of a Settings field, for --help (the value used is read at run time)."""
    return str(Settings.model_fields[field].default)


@click.command("screen", epilog=_EPILOG, context_settings={"max_content_width": 100})
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--protocol",
    type=click.Choice(sorted(PROTOCOLS)),
    default=None,
    help="default: primitive cell, near-cubic supercell >= 10 Å, path + mesh + commensurate "
    "q-points, elastic check of acoustic dips. phononbench: the published PhononBench loop "
    f"exactly (input cell, 2x2x2, path only, -1e-3 THz). [PHONONSCREEN_PROTOCOL, else {_default('protocol')}]",
)
@click.option(
    "--potential",
    type=click.Choice(POTENTIAL_NAMES),
    default=None,
    help="Interatomic potential. auto = mattersim-v1.0.0-5m when its weights are on this machine, "
    "else sevennet-l3i5 (with a warning stored on every verdict); sevennet-0 is the fast choice. A named "
    "MatterSim potential whose weights are missing stops with a message saying how to get them. "
    f"[PHONONSCREEN_POTENTIAL, else {_default('potential')}]",
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
    type=click.Choice(get_args(Settings.model_fields["device"].annotation)),
    default=None,
    help="Where the potential runs; auto = cuda when a GPU is visible. "
    f"[PHONONSCREEN_DEVICE, else {_default('device')}]",
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
    default=None,
    help="Structures with more sites than this in the input cell are reported as failed "
    f"(too_many_atoms) instead of screened. [PHONONSCREEN_MAX_ATOMS, else {_default('max_atoms')}]",
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
    default=None,
    help="Worker processes, each with its own copy of the potential. Default: the measured layout, "
    "one 1-thread process per core on a CPU (see benchmarks/README.md), one on a GPU.",
)
@click.option(
    "--compile",
    "compile_mode",
    type=click.Choice(COMPILE_MODES),
    default=None,
    help="Run the potential through torch.compile. auto = where it pays: SevenNet on a CPU with a C++ "
    "compiler, and only when the run's work (atoms summed over the structures to screen, per process) "
    "exceeds the measured break-even, which is far lower when this machine has saved the compiled graph "
    "before (PHONONSCREEN_COMPILE_CACHE). on = always, off = eager, as PhononBench ran. "
    f"[PHONONSCREEN_COMPILE, else {_default('compile')}]",
)
@click.option(
    "--prescreen",
    type=click.Choice([n for n in POTENTIAL_NAMES if n != "auto"]),
    default=None,
    metavar="POTENTIAL",
    help="A cheap potential screens first: what it finds unstable, its worst mode below -MARGIN, is settled "
    "there (recorded as settled_by_prescreen); everything else is screened by --potential.",
)
@click.option(
    "--prescreen-margin",
    type=click.FloatRange(min=0),
    default=DEFAULT_PRESCREEN_MARGIN_THZ,
    show_default=True,
    metavar="THZ",
    help="How deep below 0 THz a prescreen instability must be to be settled without the main potential "
    '(the default changed no verdict of the validation set: README, "Prescreen and second opinion").',
)
@click.option(
    "--second-opinion",
    type=click.Choice([n for n in POTENTIAL_NAMES if n != "auto"]),
    default=None,
    metavar="POTENTIAL",
    help="After each verdict another potential screens the relaxed structure; both verdicts are kept, with "
    "whether they agree (the summary counts 'stable by both' and lists disagreements).",
)
@click.option(
    "--model-memory-gb",
    type=click.FloatRange(min=0),
    default=None,
    metavar="GB",
    help="Memory one process may give a potential's call; a cell whose call CHGNet estimates above it fails "
    "with that reason instead of running the machine out of memory. 0: no limit. "
    "[PHONONSCREEN_MODEL_MEMORY_GB, else 80 % of RAM split between the processes]",
)
@click.option(
    "--keep-force-constants",
    is_flag=True,
    help="Also write structures/NAME/phonopy_params.yaml.xz (structure, displacements, forces and "
    "force constants; open with phonopy.load).",
)
def screen(
    paths: tuple[Path, ...],
    protocol: str | None,
    potential: str | None,
    potential_checkpoint: Path | None,
    device: str | None,
    out_dir: Path,
    max_atoms: int | None,
    limit: int | None,
    generator: str | None,
    jobs: int | None,
    compile_mode: str | None,
    prescreen: str | None,
    prescreen_margin: float,
    second_opinion: str | None,
    model_memory_gb: float | None,
    keep_force_constants: bool,
) -> None:
    """Screen crystal structures in PATH... for dynamical stability.

    Each structure is relaxed with a machine-learned interatomic potential, its phonons are
    computed with phonopy across the Brillouin zone, and it gets a verdict; see the files
    written below.
    """
    from app.commands import settings_or_fail

    settings = settings_or_fail()
    protocol = protocol or settings.protocol
    potential = potential or settings.potential
    # Heavy imports (torch, phonopy, pymatgen) only once we know the command runs: --help stays fast.
    from app.outputs import OutputFolder
    from workers.screening.opinions import run_label
    from workers.screening.parallel import OpinionSpecs, PotentialSpec
    from workers.screening.potentials import PotentialUnavailableError, budget_mib, load_potential, resolve_device
    from workers.screening.protocols import get_protocol
    from workers.screening.report.summary import format_summary

    protocol_settings = get_protocol(protocol)
    settings_hash = protocol_settings.settings_hash()
    dev = resolve_device(device or settings.device)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the fallback warning is printed below, once
            # Eager: the provenance and the element list are all that ingest needs.
            loaded = load_potential(potential, device=dev, checkpoint=potential_checkpoint, compile="off")
    except PotentialUnavailableError as exc:
        raise click.ClickException(str(exc)) from None
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if loaded.info.warning:
        click.echo(f"warning: {loaded.info.warning}", err=True)

    out = OutputFolder(out_dir)
    records = list(
        _ingest(paths, out_root=out.root, max_atoms=max_atoms or settings.max_atoms, elements=loaded.elements)
    )
    if not records:
        raise click.UsageError("no structure files found in " + ", ".join(map(str, paths)))
    # a run with other opinions is another run: its rows are not those of a plain one
    label = run_label(loaded.info.name, prescreen=prescreen, second_opinion=second_opinion)
    key_of = lambda name: (name, settings_hash, label)  # noqa: E731
    done = out.done_keys()
    todo = [r for r in records if key_of(r.name) not in done]
    n_skipped = len(records) - len(todo)
    if limit is not None:
        todo = todo[:limit]
    layout = _layout(dev, jobs)
    try:
        compile_now, why = _compile_choice(
            compile_mode or settings.compile,
            todo=todo,
            layout=layout,
            loaded=loaded,
            potential=potential,
            checkpoint=potential_checkpoint,
            compile_cache=settings.compile_cache,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(
        f"potential {loaded.info.name} ({loaded.info.version}, {loaded.info.device}, "
        f"{'torch.compile' if compile_now else 'eager'}: {why}); protocol {protocol_settings.name} "
        f"[{settings_hash}]; {layout.processes} process(es) x {layout.threads_per_process} thread(s)",
        err=True,
    )
    click.echo(f"{len(records)} structures; {n_skipped} already done in {out.root}; screening {len(todo)}", err=True)
    memory = budget_mib(
        settings.model_memory_gb if model_memory_gb is None else model_memory_gb, processes=layout.processes
    )
    spec = PotentialSpec(
        name=potential, device=dev, checkpoint=str(potential_checkpoint) if potential_checkpoint else None,
        compile=(compile_mode or settings.compile) if compile_now else "off", compile_cache=settings.compile_cache,
        memory_budget_mib=memory,
    )  # fmt: skip
    opinions = OpinionSpecs(
        prescreen=PotentialSpec(name=prescreen, device=dev, memory_budget_mib=memory) if prescreen else None,
        prescreen_margin_thz=prescreen_margin,
        second_opinion=PotentialSpec(name=second_opinion, device=dev, memory_budget_mib=memory)
        if second_opinion
        else None,
    )
    wanted = {key_of(r.name) for r in records}
    try:
        n_stable = _run(
            todo, out=out, protocol=protocol_settings, potential=spec, layout=layout, generator=generator,
            keep_fc=keep_force_constants, opinions=opinions, run=label,
        )  # fmt: skip
    except KeyboardInterrupt:
        out.write_tables(keys=wanted)  # results.jsonl already has every finished structure
        click.echo("\ninterrupted; finished structures are saved, re-run to continue", err=True)
        sys.exit(130)
    summary = out.write_tables(keys=wanted)
    click.echo(
        f"\nSummary ({summary['n']} structures, protocol {protocol_settings.name}, potential {loaded.info.name})"
    )
    click.echo(format_summary(summary), nl=False)
    click.echo(
        f"\n{n_stable} of {len(todo)} screened now are stable. Results in {out.root}/ "
        "(results.csv, results.jsonl, summary.txt, structures/)"
    )


def _layout(device: str, jobs: int | None) -> Layout:
    """The measured layout for `device`, or `jobs` processes sharing the cores."""
    import os

    from workers.screening.parallel import Layout

    if jobs is None:
        return Layout.for_device(device)
    cores = os.cpu_count() or 1
    return Layout(processes=jobs, threads_per_process=max(1, cores // jobs) if device == "cpu" else min(cores, 4))


def _compile_choice(
    mode: str,
    *,
    todo: list[StructureRecord],
    layout: Layout,
    loaded: LoadedPotential,
    potential: str,
    checkpoint: Path | None,
    compile_cache: Path,
) -> tuple[bool, str]:
    """(compile?, why): `on`/`off` as asked; `auto` where the compiler works and the run's work pays for it."""
    from workers.screening.potentials.compiled import compile_decision, compile_pays
    from workers.screening.potentials.registry import saved_graph_exists

    possible, why = compile_decision(loaded.info.name, device=loaded.info.device, mode=mode)
    if mode != "auto" or not possible:
        return possible, why
    work = sum(len(r.structure) for r in todo if r.ok and r.structure is not None)
    per_process = work / max(1, min(layout.processes, len(todo)))
    saved = saved_graph_exists(
        potential,
        device=loaded.info.device,
        checkpoint=checkpoint,
        compile_cache=compile_cache,
        threads=layout.threads_per_process,  # the graph is keyed by the thread count it runs with
    )
    return compile_pays(loaded.info.name, work_atoms=per_process, graph_saved=saved)


def _run(
    todo: list[StructureRecord],
    *,
    out: OutputFolder,
    protocol: ProtocolSettings,
    potential: PotentialSpec,
    layout: Layout,
    generator: str | None,
    keep_fc: bool,
    opinions: OpinionSpecs,
    run: str,
) -> int:
    """The whole list to the pipeline (in this process or `layout.processes`); each result is
    written and counted here as it finishes, so the bar and results.jsonl advance per structure."""
    from tqdm import tqdm

    from workers.screening.parallel import screen_parallel

    sources = {r.name: r.source for r in todo}
    counts = {"stable": 0}
    bar = tqdm(total=len(todo), unit="structure", file=sys.stderr, dynamic_ncols=True, disable=not todo)

    def finished(result: ScreeningResult) -> None:
        counts["stable"] += result.verdict == "stable"
        out.write_result(result, source=sources[result.name], generator=generator, run=run)
        bar.update(1)
        bar.set_postfix_str(f"{_short(result.name)}: {result.verdict} | stable {counts['stable']}")
        if result.verdict == "failed":
            bar.write(f"{result.name}: failed ({result.reason})", file=sys.stderr)

    if layout.processes <= 1 and potential.compile == "on" and any(r.ok for r in todo):
        bar.write(
            "compiling the potential (seconds with a saved graph, about 2 minutes the first time)...", file=sys.stderr
        )
    try:
        with warnings.catch_warnings():
            # pymatgen/phonopy chatter would tear the bar apart; each result keeps its own.
            warnings.simplefilter("ignore")
            screen_parallel(
                todo,
                protocol=protocol,
                potential=potential,
                layout=layout,
                progress=finished,
                keep_force_constants=keep_fc,
                opinions=opinions,
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
    return record.error is not None and record.error.code == "unsupported_format" and ":" not in record.name


def _unique(record: StructureRecord, seen: dict[str, str]) -> StructureRecord:
    # Same name from two different files (two POSCARs given by path): qualify by the file path so
    # neither result overwrites the other and re-runs still find both.
    import dataclasses

    owner = seen.setdefault(record.name, record.source)
    if owner != record.source:
        record = dataclasses.replace(record, name=f"{record.source}:{record.name}")
        seen.setdefault(record.name, record.source)
    return record
