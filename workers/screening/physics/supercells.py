"""One phonon run in one supercell: forces, force constants, zone scan; and its outputs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from workers.screening.physics import cells, phonons, verdict
from workers.screening.protocols import ProtocolSettings
from workers.screening.timing import StageTimes
from workers.screening.types import BandData, Decision, PhononRun, ThermalProperties

if TYPE_CHECKING:
    from ase import Atoms
    from ase.calculators.calculator import Calculator
    from phonopy import Phonopy


@dataclass(frozen=True)
class SupercellRun:
    phonon: Phonopy
    summary: PhononRun
    report: verdict.ZoneReport
    band: dict[str, Any]


def choose_matrix(atoms: Atoms, protocol: ProtocolSettings, *, confirm: bool) -> tuple[np.ndarray, str | None]:
    if protocol.supercell == "fixed":
        return np.diag(protocol.supercell_diagonal), None
    choice = cells.choose_supercell(
        atoms,
        min_width=protocol.confirm_min_width_angstrom if confirm else protocol.supercell_min_width_angstrom,
        max_atoms=protocol.confirm_max_atoms if confirm else protocol.supercell_max_atoms,
    )
    return np.array(choice.matrix), choice.warning


def run_supercell(
    atoms: Atoms,
    matrix: np.ndarray,
    *,
    protocol: ProtocolSettings,
    calc: Calculator,
    timings: StageTimes,
    stage: str,
    batched: bool,
    max_batch_atoms: int,
) -> SupercellRun:
    phonon = phonons.build_phonopy(atoms, supercell_matrix=matrix, settings=protocol)
    with timings.stage(stage + "forces"):
        forces = phonons.compute_displaced_forces(
            phonon,
            calculator=calc,
            subtract_drift=protocol.subtract_force_drift,
            batched=batched,
            max_batch_atoms=max_batch_atoms,
        )
    with timings.stage(stage + "post"):
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
        supercell_matrix=cast(
            "tuple[tuple[int, int, int], ...]", tuple(tuple(int(x) for x in row) for row in np.asarray(matrix))
        ),
        n_supercell_atoms=len(phonon.supercell),
        n_displacements=len(phonon.displacements),
        min_supercell_width_angstrom=float(cells.perpendicular_widths(lattice).min()),
        worst_mode=report.worst,
        worst_path_frequency_thz=report.worst_path_frequency_thz,
        n_qpoints_checked=report.n_qpoints,
    )
    return SupercellRun(phonon=phonon, summary=summary, report=report, band=band)


def needs_confirmation(
    report: verdict.ZoneReport, decision: Decision, protocol: ProtocolSettings, *, born: bool | None
) -> bool:
    """Unstable only at incommensurate q-points: every mode held against the structure lies where
    the force constants are interpolated, Γ and every commensurate point checked are stable.

    Depth is no guide (a −1.6 to −2.2 THz acoustic dip of a low-symmetry cell in a ~100-atom
    supercell was an interpolation artefact), so any such instability is re-checked. A failed
    Born criterion is decided by the elastic tensor, not by q-points: never re-checked.
    """
    if not protocol.confirm_incommensurate or decision.verdict != "unstable" or decision.reason == "elastic":
        return False
    modes = verdict.violations(report, born=born)
    return bool(modes) and not any(m.commensurate for m in modes)


def confirm_incommensurate(
    atoms: Atoms,
    run: SupercellRun,
    decision: Decision,
    *,
    protocol: ProtocolSettings,
    born: bool | None,
    run_supercell: Callable[[np.ndarray, str], SupercellRun],
    warnings: list[str],
) -> tuple[SupercellRun, Decision, PhononRun | None]:
    """PROTOCOL.md's confirmation: the run and decision that stand, and the first run when replaced.

    An incommensurate-only instability (`needs_confirmation`) in a supercell narrower than
    `confirm_min_width_angstrom` is recomputed once in the near-cubic supercell of that width
    (capped at `confirm_max_atoms`), and that verdict stands. When the cap keeps the check from
    reaching the width (no larger supercell fits, or the one that fits still shows an
    incommensurate-only instability), the verdict is `unstable` with reason
    `unconfirmed_incommensurate`: neither a silent pass nor a silent fail.
    `run_supercell(matrix, stage)` computes one supercell (the caller's calculator and timings).
    """
    if not needs_confirmation(run.report, decision, protocol, born=born) or _wide_enough(run, protocol):
        return run, decision, None
    first: PhononRun | None = None
    bigger, warning = choose_matrix(atoms, protocol, confirm=True)
    if abs(np.linalg.det(bigger)) > abs(np.linalg.det(run.summary.supercell_matrix)):
        if warning:
            warnings.append(warning)
        first = run.summary
        run = run_supercell(bigger, "confirm_")
        decision = verdict.decide(run.report, born=born)
    else:
        warnings.append(
            f"confirmation not run: no supercell larger than the first ({run.summary.n_supercell_atoms} atoms) "
            f"fits in {protocol.confirm_max_atoms} atoms"
        )
    if needs_confirmation(run.report, decision, protocol, born=born) and not _wide_enough(run, protocol):
        decision = Decision("unstable", "unconfirmed_incommensurate")
    return run, decision, first


def _wide_enough(run: SupercellRun, protocol: ProtocolSettings) -> bool:
    return run.summary.min_supercell_width_angstrom >= protocol.confirm_min_width_angstrom - 1e-6


def get_bands_and_thermal(
    phonon: Phonopy, band: dict[str, Any], protocol: ProtocolSettings
) -> tuple[BandData, ThermalProperties]:
    if not protocol.check_mesh:  # the verdict did not need the mesh; DOS and thermal do
        phonon.run_mesh(band["mesh"], is_gamma_center=True)
    phonon.run_total_dos(sigma=protocol.dos_sigma_thz)
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
