"""The science core's entry point: screen a list of structures, one verdict each, never raising."""

from __future__ import annotations

import dataclasses
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from workers.screening.opinions import Opinions, opinion_of, second_opinion_start, settles, with_prescreen, with_second
from workers.screening.physics import cells, elastic, gamma, phonons, verdict
from workers.screening.physics.relax import RelaxOutcome, relax_structure
from workers.screening.physics.supercells import (
    SupercellRun,
    choose_matrix,
    confirm_incommensurate,
    get_bands_and_thermal,
    run_supercell,
)
from workers.screening.potentials import multi_cell as batching
from workers.screening.protocols import ProtocolSettings
from workers.screening.provenance import failed_result, provenance
from workers.screening.timing import StageTimes
from workers.screening.types import (
    Mode,
    PhononRun,
    ScreeningResult,
    StructureRecord,
)

if TYPE_CHECKING:
    from ase import Atoms
    from phonopy import Phonopy
    from pymatgen.core import Structure

    from workers.screening.potentials.registry import LoadedPotential


def screen_structures(
    items: Sequence[StructureRecord],
    *,
    protocol: ProtocolSettings,
    potential: LoadedPotential,
    progress: Callable[[ScreeningResult], None] | None = None,
    keep_force_constants: bool = False,
    stage_log: Path | None = None,
    duplicates: Sequence[int | None] | None = None,
    opinions: Opinions | None = None,
) -> list[ScreeningResult]:
    """Screen every record; one result per record, in order.

    Takes a list so that in-run dedup and a batched implementation (several structures per
    forward pass on a GPU) see all of it. A per-structure failure is a `failed` verdict with its
    reason, never an exception; records that failed ingest come back `failed` with the ingest
    error. `stage_log`: a folder where stage intervals are logged (timing.StageTimes).
    `duplicates`: `find_duplicates(items, protocol=protocol)` when the caller has it already.
    `opinions`: a prescreen and/or a second opinion by other potentials (workers.screening.opinions).
    """
    results: list[ScreeningResult] = []
    opinions = opinions or Opinions()
    if duplicates is None:
        duplicates = find_duplicates(items, protocol=protocol)
    # with a prescreen, most relaxations by the main potential may never be needed: none ahead
    relaxed = {} if opinions.prescreen else _relax_in_batches(items, duplicates, protocol=protocol, potential=potential)
    for i, (item, original) in enumerate(zip(items, duplicates, strict=True)):
        if original is not None:
            result = as_duplicate(results[original], name=item.name)
        elif item.structure is None or item.error is not None:
            result = failed_result(item.name, None, protocol, potential, reason=_ingest_reason(item), timings={})
        else:
            result = _screen_with_opinions(
                item.structure,
                name=item.name,
                protocol=protocol,
                potential=potential,
                opinions=opinions,
                relaxed=relaxed.get(i),
                keep_force_constants=keep_force_constants,
                stage_log=stage_log,
            )
        if progress is not None:
            progress(result)
        results.append(result)
    return results


def _screen_with_opinions(
    structure: Structure,
    *,
    name: str,
    protocol: ProtocolSettings,
    potential: LoadedPotential,
    opinions: Opinions,
    relaxed: Prerelaxed | None,
    keep_force_constants: bool,
    stage_log: Path | None,
) -> ScreeningResult:
    """The prescreen (which may settle it), the main potential, then the second opinion."""
    first = None
    if opinions.prescreen is not None:
        first = screen_structure(structure, name=name, protocol=protocol, potential=opinions.prescreen)
        if settles(first, margin_thz=opinions.prescreen_margin_thz):
            return with_prescreen(first, main_potential=potential.info.name)
    result = screen_structure(
        structure,
        name=name,
        protocol=protocol,
        potential=potential,
        relaxed=relaxed,
        keep_force_constants=keep_force_constants,
        stage_log=stage_log,
    )
    if first is not None:
        result = dataclasses.replace(result, prescreen=opinion_of(first))
    if opinions.second_opinion is not None:
        second = screen_structure(
            second_opinion_start(result, structure), name=name, protocol=protocol, potential=opinions.second_opinion
        )
        result = with_second(result, second)
    return result


def find_duplicates(items: Sequence[StructureRecord], *, protocol: ProtocolSettings) -> list[int | None]:
    """For each item, the index of an earlier item it duplicates under `protocol.dedup`, or None."""
    from workers.screening import dedup

    return dedup.find_duplicates(
        [item.structure if item.ok else None for item in items], mode=protocol.dedup, symprec=protocol.symprec
    )


def as_duplicate(original: ScreeningResult, *, name: str) -> ScreeningResult:
    """The original's verdict under this structure's name; it cost nothing."""
    return dataclasses.replace(
        original, name=name, timings_s={"total": 0.0}, extra={**original.extra, "duplicate_of": original.name}
    )


@dataclass(frozen=True)
class Prerelaxed:
    """A structure's relaxation done together with the rest of its list (GPU batches)."""

    outcome: RelaxOutcome
    seconds: float  # its share of the batch's wall time
    extra: dict[str, Any]  # what preparing the cell recorded (e.g. input_to_primitive)


def _relax_in_batches(
    items: Sequence[StructureRecord],
    duplicates: Sequence[int | None],
    *,
    protocol: ProtocolSettings,
    potential: LoadedPotential,
) -> dict[int, Prerelaxed]:
    """Where the potential batches (GPU), relax every structure of the list together first.

    Returns {index: Prerelaxed} for the structures relaxed here; empty on the serial path
    (then each structure relaxes in `screen_structure`). Preparation errors leave a structure to
    the serial path, which reports them.
    """
    calc = potential.calculator
    if not batching.use_batching(calc, mode=protocol.force_batching, device=potential.info.device):
        return {}
    todo, prepared = [], []
    for i, (item, original) in enumerate(zip(items, duplicates, strict=True)):
        if original is None and item.structure is not None and item.error is None:
            try:
                prepared.append(prepare_cell(item.structure, protocol=protocol))
                todo.append(i)
            except Exception:  # noqa: BLE001
                continue
    if len(todo) < 2:
        return {}
    from workers.screening.physics.relax_together import relax_batch

    start = time.perf_counter()
    outcomes = relax_batch(
        [atoms for atoms, _extra in prepared],
        calculator=calc,
        settings=protocol,
        max_atoms=batching.max_atoms_per_batch(potential.info.device),
    )
    share = (time.perf_counter() - start) / len(todo)  # wall time of the batch, shared out
    return {
        i: Prerelaxed(outcome, share, extra)
        for i, outcome, (_atoms, extra) in zip(todo, outcomes, prepared, strict=True)
    }


def prepare_cell(structure: Structure, *, protocol: ProtocolSettings) -> tuple[Atoms, dict[str, Any]]:
    """The cell the protocol relaxes: the input as given, or its symmetrised standard primitive."""
    atoms = cells.to_ase(structure)
    extra: dict[str, Any] = {}
    if protocol.use_primitive:
        std = cells.standardize_primitive(atoms, symprec=protocol.symprec)
        atoms = std.atoms
        extra["input_to_primitive"] = {
            "transformation_matrix": std.transformation_matrix,
            "origin_shift": std.origin_shift,
            "n_input_atoms": std.n_input_atoms,
            "n_primitive_atoms": len(atoms),
        }
    return atoms, extra


def screen_structure(
    structure: Structure,
    *,
    name: str,
    protocol: ProtocolSettings,
    potential: LoadedPotential,
    relaxed: Prerelaxed | None = None,
    keep_force_constants: bool = False,
    stage_log: Path | None = None,
) -> ScreeningResult:
    """Relax, compute phonons, decide; any exception becomes a `failed` verdict with its reason.

    `relaxed`: the relaxation, when it was already done together with the rest of the list;
    `keep_force_constants` attaches the final run's phonopy_params yaml (xz) to the result.
    """
    timings = StageTimes(log=stage_log)
    calls = potential.call_counts()
    try:
        result, phonon = _screen(
            structure, name=name, protocol=protocol, potential=potential, timings=timings, prerelaxed=relaxed
        )
    except Exception as exc:  # noqa: BLE001 - a verdict must come back for every structure
        reason = f"{type(exc).__name__}: {exc}".strip()
        tb = traceback.format_exc(limit=3)
        result = failed_result(name, structure, protocol, potential, reason=reason, timings=timings, trace=tb)
        return _with_calls(result, potential, calls)
    result = _with_calls(result, potential, calls)
    if keep_force_constants and phonon is not None:
        import lzma

        text = str(phonon.to_phonopy_yaml(settings={"force_constants": True}))
        result = dataclasses.replace(result, phonopy_params_xz=lzma.compress(text.encode()))
    return result


def _with_calls(result: ScreeningResult, potential: LoadedPotential, before: tuple[int, int] | None) -> ScreeningResult:
    """The result with its potential's provenance for this screening's calls (what really ran)."""
    if before is None:
        return result
    provenance = dataclasses.replace(result.provenance, potential=potential.info_since(before))
    return dataclasses.replace(result, provenance=provenance)


def _screen(
    structure: Structure,
    *,
    name: str,
    protocol: ProtocolSettings,
    potential: LoadedPotential,
    timings: StageTimes,
    prerelaxed: Prerelaxed | None = None,
) -> tuple[ScreeningResult, Phonopy | None]:
    """The screen itself; also returns the final phonopy object (for keep_force_constants)."""
    calc = potential.calculator
    batched = batching.use_batching(calc, mode=protocol.force_batching, device=potential.info.device)
    batch_atoms = batching.max_atoms_per_batch(potential.info.device) if batched else 0
    warnings = [potential.info.warning] if potential.info.warning else []
    input_sg = cells.format_spacegroup(cells.get_spacegroup(cells.to_ase(structure), symprec=protocol.symprec))
    if prerelaxed is not None:  # the cell was prepared and relaxed with the rest of its batch
        outcome, timings["relax"], extra = prerelaxed.outcome, prerelaxed.seconds, prerelaxed.extra
        extra = {**extra, "relax_batched": True}
    else:
        with timings.stage("symmetrize"):
            atoms, extra = prepare_cell(structure, protocol=protocol)
        with timings.stage("relax"):
            outcome = relax_structure(atoms, calculator=calc, settings=protocol)
    relaxed, relax = outcome.atoms, outcome.summary
    relaxed_cif = _cif(relaxed) if relax.converged else None
    common: dict[str, Any] = {
        "name": name,
        "formula": structure.composition.reduced_formula,
        "n_sites": len(structure),
        "relax": relax,
        "relaxed_cif": relaxed_cif,
        "timings_s": timings,
        "warnings": warnings,
        "provenance": provenance(protocol, potential),
        "input_spacegroup": input_sg,
        "extra": extra,
    }
    if not relax.converged:
        return ScreeningResult(
            verdict="relax_failed", reason=relax.reason, stable_phononbench=False, stable_phononbench_v3=False,
            crystal_system=_crystal_system(relax.spacegroup_before), spacegroup_number=None,
            worst_mode=None, min_frequency_thz=None, phonons=None, confirmation_of=None,
            elastic_tensor_gpa=None, born_stable=None, thermal=None, bands=None, **common,
        ), None  # fmt: skip

    sg_after = cells.get_spacegroup(relaxed, symprec=protocol.symprec)
    if (
        protocol.gamma_first
        and protocol.gamma_first_skip_p1
        and relax.spacegroup_before == cells.format_spacegroup(("P1", 1))
    ):
        extra["gamma_first"] = {"skipped": "relaxed from P1, without symmetry constraint: Γ-first cannot settle"}
    elif protocol.gamma_first:
        with timings.stage("gamma"):
            check = gamma.check_gamma(relaxed, calculator=calc, settings=protocol, batched=batched)
        extra["gamma_first"] = {
            "frequencies_thz": check.frequencies_thz.round(4).tolist(),
            "min_optical_thz": check.min_optical_thz,
            "n_displacements": check.n_displacements,
        }
        if gamma.gamma_says_unstable(check, settings=protocol):
            return _gamma_unstable(relaxed, check, sg_after, protocol=protocol, timings=timings, common=common), None

    born: bool | None = None
    tensor = None
    if protocol.elastic_tensor:
        with timings.stage("elastic"):
            tensor = elastic.compute_elastic_tensor(relaxed, calculator=calc, strain=protocol.elastic_strain)
            born = elastic.born_stable(tensor)

    matrix, sc_warning = choose_matrix(relaxed, protocol, confirm=False)
    if sc_warning:
        warnings.append(sc_warning)

    def supercell_run(matrix: np.ndarray, stage: str) -> SupercellRun:
        return run_supercell(
            relaxed, matrix, protocol=protocol, calc=calc, timings=timings, stage=stage,
            batched=batched, max_batch_atoms=batch_atoms,
        )  # fmt: skip

    run = supercell_run(matrix, "")
    decision = verdict.decide(run.report, born=born)
    run, decision, first = confirm_incommensurate(
        relaxed, run, decision, protocol=protocol, born=born, run_supercell=supercell_run, warnings=warnings
    )
    with timings.stage("post"):
        bands, thermal = get_bands_and_thermal(run.phonon, run.band, protocol)
        n_blind = phonons.count_symmetry_blind_displacements(run.phonon, settings=protocol)
    extra["n_displacements_symmetry_blind"] = n_blind
    worst = run.report.worst
    pb, pb_v3 = _phononbench_criteria(run.summary, protocol)
    timings.close()
    result = ScreeningResult(
        verdict=decision.verdict,
        reason=decision.reason,
        stable_phononbench=pb,
        stable_phononbench_v3=pb_v3,
        crystal_system=cells.crystal_system(sg_after[1]),
        spacegroup_number=sg_after[1],
        worst_mode=worst,
        min_frequency_thz=worst.frequency_thz if worst else None,
        phonons=run.summary,
        confirmation_of=first,
        elastic_tensor_gpa=tensor.round(3).tolist() if tensor is not None else None,
        born_stable=born,
        thermal=thermal,
        bands=bands,
        n_displacements_saved=n_blind - run.summary.n_displacements,
        **common,
    )
    return result, run.phonon


def _gamma_unstable(
    relaxed: Atoms,
    check: gamma.GammaCheck,
    sg_after: tuple[str, int],
    *,
    protocol: ProtocolSettings,
    timings: StageTimes,
    common: dict[str, Any],
) -> ScreeningResult:
    """Unstable on the Γ check alone: no supercell was built (and no elastic tensor needed)."""
    mode = Mode(
        frequency_thz=check.min_optical_thz,
        qpoint=(0.0, 0.0, 0.0),
        q_norm_inv_angstrom=0.0,
        branch=check.softest_optical_band,
        acoustic=False,
        commensurate=True,
        where="gamma",
    )
    run = PhononRun(
        supercell_matrix=((1, 0, 0), (0, 1, 0), (0, 0, 1)),
        n_supercell_atoms=len(relaxed),
        n_displacements=check.n_displacements,
        min_supercell_width_angstrom=float(cells.perpendicular_widths(np.array(relaxed.cell)).min()),
        worst_mode=mode,
        worst_path_frequency_thz=float(check.frequencies_thz.min()),
        n_qpoints_checked=1,
    )
    pb, pb_v3 = _phononbench_criteria(run, protocol)
    timings.close()
    return ScreeningResult(
        verdict="unstable", reason="optical", stable_phononbench=pb, stable_phononbench_v3=pb_v3,
        crystal_system=cells.crystal_system(sg_after[1]), spacegroup_number=sg_after[1],
        worst_mode=mode, min_frequency_thz=mode.frequency_thz, phonons=run, confirmation_of=None,
        elastic_tensor_gpa=None, born_stable=None, thermal=None, bands=None, **common,
    )  # fmt: skip


def _phononbench_criteria(run: PhononRun, protocol: ProtocolSettings) -> tuple[bool, bool]:
    """(stable_phononbench, stable_phononbench_v3) of a result, from the run's band-path minimum."""
    path = run.worst_path_frequency_thz
    return (
        verdict.stable_by_phononbench(path, tol_thz=protocol.phononbench_tol_thz),
        verdict.stable_by_phononbench(path, tol_thz=protocol.phononbench_v3_tol_thz),
    )


def _cif(atoms: Atoms) -> str:
    from pymatgen.io.cif import CifWriter

    return str(CifWriter(cells.to_pymatgen(atoms)))


def _crystal_system(spacegroup: str) -> str | None:
    try:
        return cells.crystal_system(int(spacegroup.rsplit("(", 1)[1].rstrip(")")))
    except (IndexError, ValueError):
        return None


def _ingest_reason(item: StructureRecord) -> str:
    if item.error is None:
        return "no structure"
    return f"{item.error.code}: {item.error.message}"
