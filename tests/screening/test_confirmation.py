"""The confirmation rule and PhononBench's two criteria, on synthetic frequencies (no calculator)."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

from workers.screening.physics import gamma
from workers.screening.physics.supercells import SupercellRun, confirm_incommensurate, needs_confirmation
from workers.screening.physics.verdict import ZoneReport, decide, stable_by_phononbench, violations
from workers.screening.protocols import DEFAULT, PHONONBENCH
from workers.screening.types import Decision, Mode, PhononRun

FCC_32 = ((-2, 2, 2), (2, -2, 2), (2, 2, -2))  # the 64-atom cubic supercell of a 2-atom fcc cell


def _mode(frequency_thz: float, *, commensurate: bool, q_norm: float = 0.8, acoustic: bool = True) -> Mode:
    return Mode(
        frequency_thz=frequency_thz,
        qpoint=(0.0, 0.0, 0.0) if q_norm == 0 else (0.13, 0.21, 0.37),
        q_norm_inv_angstrom=q_norm,
        branch=0,
        acoustic=acoustic,
        commensurate=commensurate,
        where="gamma" if q_norm == 0 else "mesh",
    )


def _report(*, acoustic=(), optical=(), near=()) -> ZoneReport:
    modes = [*acoustic, *optical, *near]
    return ZoneReport(
        worst=min(modes, key=lambda m: m.frequency_thz) if modes else None,
        worst_path_frequency_thz=-0.01,
        optical=list(optical),
        acoustic=list(acoustic),
        acoustic_near_gamma=list(near),
        n_qpoints=100,
    )


def _run(report: ZoneReport, *, matrix=FCC_32, width: float = 10.9) -> SupercellRun:
    summary = PhononRun(
        supercell_matrix=matrix,
        n_supercell_atoms=2 * round(abs(np.linalg.det(matrix))),
        n_displacements=2,
        min_supercell_width_angstrom=width,
        worst_mode=report.worst,
        worst_path_frequency_thz=report.worst_path_frequency_thz,
        n_qpoints_checked=report.n_qpoints,
    )
    return SupercellRun(phonon=None, summary=summary, report=report, band={})  # type: ignore[arg-type]


DEEP_INCOMMENSURATE = _report(acoustic=[_mode(-2.0, commensurate=False), _mode(-0.3, commensurate=False)])


def test_incommensurate_only_instability_is_rechecked_whatever_its_depth():
    decision = decide(DEEP_INCOMMENSURATE, born=True)
    assert decision == Decision("unstable", "acoustic")
    # -2.0 THz: below the old -0.5 THz threshold, which left such dips unchecked
    assert needs_confirmation(DEEP_INCOMMENSURATE, decision, DEFAULT, born=True)
    assert not needs_confirmation(DEEP_INCOMMENSURATE, decision, PHONONBENCH, born=True)  # the paper's loop


def test_an_unstable_commensurate_point_is_exact_so_nothing_is_rechecked():
    report = _report(acoustic=[_mode(-2.0, commensurate=False)], optical=[_mode(-0.2, commensurate=True)])
    assert not needs_confirmation(report, decide(report, born=True), DEFAULT, born=True)
    gamma_soft = _report(optical=[_mode(-0.2, commensurate=True, q_norm=0.0, acoustic=False)])
    assert not needs_confirmation(gamma_soft, decide(gamma_soft, born=True), DEFAULT, born=True)


def test_what_the_verdict_holds_decides_not_what_born_excuses():
    # a near-Γ acoustic dip at a commensurate point counts only when Born does not excuse it
    report = _report(acoustic=[_mode(-1.0, commensurate=False)], near=[_mode(-0.2, commensurate=True, q_norm=0.05)])
    assert [m.frequency_thz for m in violations(report, born=True)] == [-1.0]
    assert [m.frequency_thz for m in violations(report, born=None)] == [-1.0, -0.2]
    assert needs_confirmation(report, decide(report, born=True), DEFAULT, born=True)
    assert not needs_confirmation(report, decide(report, born=None), DEFAULT, born=None)
    # stable, or unstable because the elastic tensor fails Born: no q-point can change that
    assert not needs_confirmation(_report(), decide(_report(), born=True), DEFAULT, born=True)
    assert not needs_confirmation(DEEP_INCOMMENSURATE, decide(DEEP_INCOMMENSURATE, born=False), DEFAULT, born=False)


def _si():
    return bulk("Si", "diamond", a=5.43)  # 2-atom fcc primitive cell


def test_the_larger_supercell_decides_when_it_can_be_built():
    ran: list[tuple[int, str]] = []

    def run_supercell(matrix: np.ndarray, stage: str) -> SupercellRun:
        ran.append((round(abs(np.linalg.det(matrix))) * 2, stage))
        return _run(_report(), matrix=tuple(map(tuple, matrix)), width=16.3)

    warnings: list[str] = []
    first = _run(DEEP_INCOMMENSURATE)
    run, decision, replaced = confirm_incommensurate(
        _si(), first, decide(DEEP_INCOMMENSURATE, born=True), protocol=DEFAULT, born=True,
        run_supercell=run_supercell, warnings=warnings,
    )  # fmt: skip
    assert ran == [(216, "confirm_")]  # the near-cubic >= 15 A supercell
    assert decision == Decision("stable") and replaced is first.summary and run.summary.n_supercell_atoms == 216
    assert warnings == []


def test_a_check_the_cap_prevents_is_a_reason_of_its_own():
    def run_supercell(matrix: np.ndarray, stage: str) -> SupercellRun:
        raise AssertionError("no supercell larger than the first fits: nothing may run")

    warnings: list[str] = []
    first = _run(DEEP_INCOMMENSURATE)
    run, decision, replaced = confirm_incommensurate(
        _si(), first, decide(DEEP_INCOMMENSURATE, born=True), protocol=DEFAULT.replace(confirm_max_atoms=64),
        born=True, run_supercell=run_supercell, warnings=warnings,
    )  # fmt: skip
    assert decision == Decision("unstable", "unconfirmed_incommensurate")
    assert run is first and replaced is None
    assert warnings and warnings[0].startswith("confirmation not run")


def test_a_capped_check_that_still_sees_only_interpolated_modes_stays_unconfirmed():
    def run_supercell(matrix: np.ndarray, stage: str) -> SupercellRun:
        return _run(DEEP_INCOMMENSURATE, matrix=tuple(map(tuple, matrix)), width=12.5)

    warnings: list[str] = []
    run, decision, replaced = confirm_incommensurate(
        _si(), _run(DEEP_INCOMMENSURATE), decide(DEEP_INCOMMENSURATE, born=True),
        protocol=DEFAULT.replace(confirm_max_atoms=128), born=True, run_supercell=run_supercell, warnings=warnings,
    )  # fmt: skip
    assert run.summary.n_supercell_atoms == 128 and replaced is not None  # larger, but not 15 A wide
    assert decision == Decision("unstable", "unconfirmed_incommensurate")
    assert warnings and warnings[0].startswith("supercell cap binds")


def test_a_first_supercell_already_wide_enough_stands():
    def run_supercell(matrix: np.ndarray, stage: str) -> SupercellRun:
        raise AssertionError("already checked at the confirmation width")

    first = _run(DEEP_INCOMMENSURATE, width=15.2)
    run, decision, replaced = confirm_incommensurate(
        _si(), first, decide(DEEP_INCOMMENSURATE, born=True), protocol=DEFAULT, born=True,
        run_supercell=run_supercell, warnings=[],
    )  # fmt: skip
    assert (run, decision, replaced) == (first, Decision("unstable", "acoustic"), None)


@pytest.mark.parametrize(
    ("path_min_thz", "scripts", "v3"),
    [(0.0, True, True), (-5e-4, True, True), (-0.05, False, True), (-0.1, False, True), (-0.15, False, False)],
)
def test_phononbench_criteria(path_min_thz, scripts, v3):
    assert stable_by_phononbench(path_min_thz, tol_thz=PHONONBENCH.phononbench_tol_thz) is scripts
    assert stable_by_phononbench(path_min_thz, tol_thz=PHONONBENCH.phononbench_v3_tol_thz) is v3


@pytest.mark.parametrize("protocol", [PHONONBENCH, DEFAULT])
def test_gamma_first_skips_the_supercell_only_when_every_stored_criterion_is_settled(protocol):
    """A Γ mode at -0.12 THz fails -1e-3 THz but may pass v3's -0.1 THz on the path: the supercell runs."""

    def check(optical_thz: float) -> gamma.GammaCheck:
        freqs = np.array([0.0, 0.0, 0.0, optical_thz, 3.0, 3.0])
        return gamma.GammaCheck(frequencies_thz=np.sort(freqs), acoustic=np.sort(freqs) == 0.0, n_displacements=2)

    assert not gamma.gamma_says_unstable(check(-0.12), settings=protocol)
    assert gamma.gamma_says_unstable(check(-0.16), settings=protocol)
