"""The science core's entry point: screen a list of structures, one verdict each, never raising."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from workers.screening import batching, cells, elastic, gamma, phonons, verdict
from workers.screening.protocols import ProtocolSettings
from workers.screening.relax import relax_structure
from workers.screening.types import (
    BandData,
    Mode,
    PhononRun,
    Provenance,
    ScreeningResult,
    StructureRecord,
    ThermalProperties,
)

if TYPE_CHECKING:
    from ase import Atoms
    from phonopy import Phonopy
    from pymatgen.core import Structure

    from workers.screening.potentials import LoadedPotential


def screen_structures(
    items: Sequence[StructureRecord],
    *,
    protocol: ProtocolSettings,
    potential: LoadedPotential,
    progress: Callable[[ScreeningResult], None] | None = None,
    keep_force_constants: bool = False,
) -> list[ScreeningResult]:
    """Screen every record; one result per record, in order.

    Takes a list so that a batched implementation (several structures per forward pass on a
    GPU) changes no caller. A per-structure failure is a `failed` verdict with its reason, never
    an exception; records that failed ingest come back `failed` with the ingest error.
    """
    results: list[ScreeningResult] = []
    duplicates = find_duplicates(items, protocol=protocol)
    relaxed = _relax_in_batches(items, duplicates, protocol=protocol, potential=potential)
    for i, (item, original) in enumerate(zip(items, duplicates)):
        if original is not None:
            result = as_duplicate(results[original], name=item.name)
        elif item.structure is None or item.error is not None:
            result = _failed(item.name, None, protocol, potential, reason=_ingest_reason(item), timings={})
        else:
            result = screen_structure(
                item.structure, name=item.name, protocol=protocol, potential=potential, relaxed=relaxed.get(i),
                keep_force_constants=keep_force_constants,
            )
        if progress is not None:
            progress(result)
        results.append(result)
    return results


def find_duplicates(items: Sequence[StructureRecord], *, protocol: ProtocolSettings) -> list[int | None]:
    """For each item, the index of an earlier item it duplicates under `protocol.dedup`, or None."""
    from workers.screening.dedup import DuplicateIndex, group_duplicates

    structures = [item.structure if item.ok else None for item in items]
    if protocol.dedup == "off":
        return [None] * len(items)
    if protocol.dedup == "match":
        return group_duplicates(structures)
    by_size: dict[int, DuplicateIndex] = {}  # "exact": the same input cell, so the same supercell
    out: list[int | None] = []
    for i, structure in enumerate(structures):
        if structure is None:
            out.append(None)
            continue
        index = by_size.setdefault(
            len(structure), DuplicateIndex(ltol=1e-3, stol=1e-3, angle_tol=0.05, volume_tolerance=1e-3)
        )
        out.append(index.find_or_add(structure, i))
    return out


def as_duplicate(original: ScreeningResult, *, name: str) -> ScreeningResult:
    """The original's verdict under this structure's name; it cost nothing."""
    import dataclasses

    return dataclasses.replace(
        original, name=name, timings_s={"total": 0.0}, extra={**original.extra, "duplicate_of": original.name}
    )


def _relax_in_batches(items, duplicates, *, protocol: ProtocolSettings, potential: LoadedPotential) -> dict:
    """Where the potential batches (GPU), relax every structure of the list together first.

    Returns {index: (outcome, seconds)} for the structures relaxed here; empty on the serial path
    (then each structure relaxes in `screen_structure`). Preparation errors leave a structure to
    the serial path, which reports them.
    """
    calc = potential.calculator
    if not batching.use_batching(calc, mode=protocol.force_batching, device=potential.info.device):
        return {}
    todo, cells_in = [], []
    for i, (item, original) in enumerate(zip(items, duplicates)):
        if original is None and item.ok:
            try:
                cells_in.append(prepare_cell(item.structure, protocol=protocol)[0])
                todo.append(i)
            except Exception:  # noqa: BLE001
                continue
    if len(todo) < 2:
        return {}
    from workers.screening.batch_relax import relax_batch

    start = time.perf_counter()
    outcomes = relax_batch(
        cells_in, calculator=calc, settings=protocol, max_atoms=batching.max_atoms_per_batch(potential.info.device)
    )
    share = (time.perf_counter() - start) / len(todo)  # wall time of the batch, shared out
    return {i: (outcome, share) for i, outcome in zip(todo, outcomes)}


def prepare_cell(structure: Structure, *, protocol: ProtocolSettings) -> tuple[Atoms, dict]:
    """The cell the protocol relaxes: the input as given, or its symmetrised standard primitive."""
    atoms = cells.to_ase(structure)
    extra: dict = {}
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
    relaxed: tuple | None = None,
    keep_force_constants: bool = False,
) -> ScreeningResult:
    """Relax, compute phonons, decide; any exception becomes a `failed` verdict with its reason.

    `relaxed` = (RelaxOutcome, seconds) when the relaxation was already done in a batch;
    `keep_force_constants` attaches the final run's phonopy_params yaml (xz) to the result.
    """
    timings: dict[str, float] = {}
    try:
        result, phonon = _screen(
            structure, name=name, protocol=protocol, potential=potential, timings=timings, relaxed=relaxed
        )
    except Exception as exc:  # noqa: BLE001 - a verdict must come back for every structure
        reason = f"{type(exc).__name__}: {exc}".strip()
        tb = traceback.format_exc(limit=3)
        return _failed(name, structure, protocol, potential, reason=reason, timings=timings, trace=tb)
    if keep_force_constants and phonon is not None:
        import dataclasses
        import lzma

        text = str(phonon.to_phonopy_yaml(settings={"force_constants": True}))
        result = dataclasses.replace(result, phonopy_params_xz=lzma.compress(text.encode()))
    return result


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start


def _screen(
    structure: Structure,
    *,
    name: str,
    protocol: ProtocolSettings,
    potential: LoadedPotential,
    timings: dict[str, float],
    relaxed: tuple | None = None,
) -> tuple[ScreeningResult, Phonopy | None]:
    """The screen itself; also returns the final phonopy object (for keep_force_constants)."""
    calc = potential.calculator
    batched = batching.use_batching(calc, mode=protocol.force_batching, device=potential.info.device)
    batch_atoms = batching.max_atoms_per_batch(potential.info.device) if batched else 0
    warnings = [potential.info.warning] if potential.info.warning else []
    input_sg = cells.format_spacegroup(cells.get_spacegroup(cells.to_ase(structure), symprec=protocol.symprec))
    with _timed(timings, "symmetrize"):
        atoms, extra = prepare_cell(structure, protocol=protocol)
    if relaxed is not None:
        outcome, timings["relax"] = relaxed
        extra["relax_batched"] = True
    else:
        with _timed(timings, "relax"):
            outcome = relax_structure(atoms, calculator=calc, settings=protocol)
    relaxed, relax = outcome.atoms, outcome.summary
    relaxed_cif = _cif(relaxed) if relax.converged else None
    common = dict(
        name=name,
        formula=structure.composition.reduced_formula,
        n_sites=len(structure),
        relax=relax,
        relaxed_cif=relaxed_cif,
        timings_s=timings,
        warnings=warnings,
        provenance=provenance(protocol, potential),
        input_spacegroup=input_sg,
        extra=extra,
    )
    if not relax.converged:
        return ScreeningResult(
            verdict="relax_failed", reason=relax.reason, stable_phononbench=False,
            crystal_system=_crystal_system(relax.spacegroup_before), spacegroup_number=None,
            worst_mode=None, min_frequency_thz=None, phonons=None, confirmation_of=None,
            elastic_tensor_gpa=None, born_stable=None, thermal=None, bands=None, **common,
        ), None  # fmt: skip

    if protocol.gamma_first:
        with _timed(timings, "gamma"):
            check = gamma.check_gamma(relaxed, calculator=calc, settings=protocol, batched=batched)
        extra["gamma_first"] = {
            "frequencies_thz": check.frequencies_thz.round(4).tolist(),
            "min_optical_thz": check.min_optical_thz,
            "n_displacements": check.n_displacements,
        }
        if gamma.gamma_says_unstable(check, settings=protocol):
            return _gamma_unstable(relaxed, check, protocol=protocol, timings=timings, common=common), None

    born: bool | None = None
    tensor = None
    if protocol.elastic_tensor:
        with _timed(timings, "elastic"):
            tensor = elastic.compute_elastic_tensor(relaxed, calculator=calc, strain=protocol.elastic_strain)
            born = elastic.born_stable(tensor)

    matrix, sc_warning = _supercell(relaxed, protocol, confirm=False)
    if sc_warning:
        warnings.append(sc_warning)
    forces_kw = {"batched": batched, "max_batch_atoms": batch_atoms}
    run = _run_supercell(relaxed, matrix, protocol=protocol, calc=calc, timings=timings, stage="", **forces_kw)
    decision = verdict.decide(run.report, born=born)
    first: PhononRun | None = None
    if _needs_confirmation(run.report, decision, protocol):
        bigger, warn2 = _supercell(relaxed, protocol, confirm=True)
        if warn2:
            warnings.append(warn2)
        if abs(np.linalg.det(bigger)) > abs(np.linalg.det(matrix)):
            first = run.summary
            run = _run_supercell(relaxed, bigger, protocol=protocol, calc=calc, timings=timings, stage="confirm_", **forces_kw)
            decision = verdict.decide(run.report, born=born)
    with _timed(timings, "post"):
        bands, thermal = _bands_and_thermal(run.phonon, run.band, protocol)
        n_blind = phonons.count_symmetry_blind_displacements(run.phonon, settings=protocol)
    extra["n_displacements_symmetry_blind"] = n_blind
    sg_after = cells.get_spacegroup(relaxed, symprec=protocol.symprec)
    worst = run.report.worst
    timings["total"] = sum(v for k, v in timings.items() if k != "total")
    result = ScreeningResult(
        verdict=decision[0],  # type: ignore[arg-type]
        reason=decision[1],
        stable_phononbench=run.report.worst_path_frequency_thz >= -protocol.phononbench_tol_thz,
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


def _gamma_unstable(relaxed: Atoms, check: gamma.GammaCheck, *, protocol, timings, common) -> ScreeningResult:
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
    sg_after = cells.get_spacegroup(relaxed, symprec=protocol.symprec)
    timings["total"] = sum(v for k, v in timings.items() if k != "total")
    return ScreeningResult(
        verdict="unstable", reason="optical", stable_phononbench=False,
        crystal_system=cells.crystal_system(sg_after[1]), spacegroup_number=sg_after[1],
        worst_mode=mode, min_frequency_thz=mode.frequency_thz, phonons=run, confirmation_of=None,
        elastic_tensor_gpa=None, born_stable=None, thermal=None, bands=None, **common,
    )  # fmt: skip


@dataclass(frozen=True)
class _Run:
    phonon: Phonopy
    summary: PhononRun
    report: verdict.ZoneReport
    band: dict


def _supercell(atoms: Atoms, protocol: ProtocolSettings, *, confirm: bool) -> tuple[np.ndarray, str | None]:
    if protocol.supercell == "fixed":
        return np.diag(protocol.supercell_diagonal), None
    choice = cells.choose_supercell(
        atoms,
        min_width=protocol.confirm_min_width_angstrom if confirm else protocol.supercell_min_width_angstrom,
        max_atoms=protocol.confirm_max_atoms if confirm else protocol.supercell_max_atoms,
    )
    return np.array(choice.matrix), choice.warning


def _run_supercell(
    atoms: Atoms,
    matrix: np.ndarray,
    *,
    protocol: ProtocolSettings,
    calc,
    timings: dict[str, float],
    stage: str,
    batched: bool,
    max_batch_atoms: int,
) -> _Run:
    phonon = phonons.build_phonopy(atoms, supercell_matrix=matrix, settings=protocol)
    with _timed(timings, stage + "forces"):
        forces = phonons.compute_displaced_forces(
            phonon, calculator=calc, subtract_drift=protocol.subtract_force_drift,
            batched=batched, max_batch_atoms=max_batch_atoms,
        )
    with _timed(timings, stage + "post"):
        phonons.produce_force_constants(phonon, forces)
        if protocol.band_path == "phononbench":
            path = phonons.phononbench_band_path(phonon, npoints=protocol.band_npoints)
        else:
            path = phonons.seekpath_band_path(phonon, npoints=protocol.band_npoints)
        band = phonons.run_band_path(phonon, path)
        band["labels"], band["path_connections"] = path.labels, path.path_connections
        qsets = [phonons.QSet("path", np.concatenate(band["qpoints"]), np.concatenate(band["frequencies"]))]
        mesh = phonons.mesh_numbers(
            phonon, spacing_inv_angstrom=protocol.mesh_spacing_inv_angstrom, minimum=protocol.mesh_min
        )
        if protocol.check_mesh:
            qsets.append(phonons.run_mesh_frequencies(phonon, mesh))
        if protocol.check_commensurate:
            comm = phonons.commensurate_points(matrix)
            qsets.append(phonons.run_qpoint_frequencies(phonon, comm, where="commensurate"))
        report = verdict.scan_modes(phonon, qsets, supercell_matrix=matrix, settings=protocol)
        band["mesh"] = mesh
    lattice = np.asarray(matrix) @ np.array(atoms.cell)
    summary = PhononRun(
        supercell_matrix=tuple(tuple(int(x) for x in row) for row in np.asarray(matrix)),  # type: ignore[arg-type]
        n_supercell_atoms=len(phonon.supercell),
        n_displacements=len(phonon.displacements),
        min_supercell_width_angstrom=float(cells.perpendicular_widths(lattice).min()),
        worst_mode=report.worst,
        worst_path_frequency_thz=report.worst_path_frequency_thz,
        n_qpoints_checked=report.n_qpoints,
    )
    return _Run(phonon=phonon, summary=summary, report=report, band=band)


def _needs_confirmation(report: verdict.ZoneReport, decision: tuple[str, str | None], protocol: ProtocolSettings) -> bool:
    """A weak (above the threshold) instability at an incommensurate q-point, where the force
    constants are interpolated, is re-checked once in a larger supercell."""
    if not protocol.confirm_weak_incommensurate or decision[0] != "unstable" or decision[1] == "elastic":
        return False
    worst = verdict.worst_violation(report)
    return worst is not None and worst.frequency_thz > protocol.confirm_threshold_thz and not worst.commensurate


def _bands_and_thermal(phonon: Phonopy, band: dict, protocol: ProtocolSettings) -> tuple[BandData, ThermalProperties]:
    if not protocol.check_mesh:  # the verdict did not need the mesh; DOS and thermal do
        phonon.run_mesh(band["mesh"], is_gamma_center=True)
    phonon.run_total_dos()
    dos = phonon.get_total_dos_dict()
    phonon.run_thermal_properties(temperatures=[protocol.thermal_temperature_k])
    tp = phonon.get_thermal_properties_dict()
    bands = BandData(
        distances=[np.asarray(d).round(6).tolist() for d in band["distances"]],
        frequencies=[np.asarray(f).round(5).tolist() for f in band["frequencies"]],
        labels=list(band["labels"]),
        path_connections=[bool(x) for x in band["path_connections"]],
        dos_frequencies_thz=np.asarray(dos["frequency_points"]).round(5).tolist(),
        dos_states_per_thz=np.asarray(dos["total_dos"]).round(6).tolist(),
    )
    thermal = ThermalProperties(
        temperature_k=float(tp["temperatures"][0]),
        free_energy_kj_per_mol=float(tp["free_energy"][0]),
        entropy_j_per_k_mol=float(tp["entropy"][0]),
        heat_capacity_j_per_k_mol=float(tp["heat_capacity"][0]),
    )
    return bands, thermal


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


def provenance(protocol: ProtocolSettings, potential: LoadedPotential) -> Provenance:
    return Provenance(
        protocol=protocol.name,
        protocol_settings=protocol.as_dict(),
        settings_hash=protocol.settings_hash(),
        potential=potential.info,
        versions=library_versions(),
    )


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("phononscreen", "phonopy", "spglib", "seekpath", "ase", "pymatgen", "numpy", "torch"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _failed(
    name: str,
    structure: Structure | None,
    protocol: ProtocolSettings,
    potential: LoadedPotential,
    *,
    reason: str,
    timings: dict[str, float],
    trace: str | None = None,
) -> ScreeningResult:
    return ScreeningResult(
        name=name,
        verdict="failed",
        reason=reason,
        stable_phononbench=False,
        formula=structure.composition.reduced_formula if structure is not None else "",
        n_sites=len(structure) if structure is not None else 0,
        crystal_system=None,
        spacegroup_number=None,
        worst_mode=None,
        min_frequency_thz=None,
        relax=None,
        phonons=None,
        confirmation_of=None,
        elastic_tensor_gpa=None,
        born_stable=None,
        thermal=None,
        bands=None,
        relaxed_cif=None,
        timings_s=timings,
        warnings=[potential.info.warning] if potential.info.warning else [],
        provenance=provenance(protocol, potential),
        extra={"traceback": trace} if trace else {},
    )
