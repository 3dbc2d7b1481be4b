"""From frequencies across the zone (and the Born check) to a verdict with its worst mode."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from workers.screening.physics.phonons import QSet, acoustic_mask, is_commensurate, q_norms
from workers.screening.types import Decision, Mode

if TYPE_CHECKING:
    from phonopy import Phonopy

    from workers.screening.protocols import ProtocolSettings


@dataclass(frozen=True)
class ZoneReport:
    """The soft modes found in a set of q-point scans."""

    worst: Mode | None  # lowest frequency seen anywhere
    worst_path_frequency_thz: float  # lowest on the band path ('path' sets only)
    optical: list[Mode] = field(default_factory=list)  # non-acoustic modes below -tol
    acoustic: list[Mode] = field(default_factory=list)  # acoustic modes below -tol, not excused
    acoustic_near_gamma: list[Mode] = field(default_factory=list)  # excusable if Born passes
    n_qpoints: int = 0


def scan_modes(
    phonon: Phonopy, qsets: list[QSet], *, supercell_matrix: np.ndarray, settings: ProtocolSettings
) -> ZoneReport:
    """Classify every frequency below -`imaginary_tol_thz` in `qsets`.

    Acoustic or optical is decided by eigenvector (translational character) within
    `acoustic_q_radius_inv_angstrom` of Γ, and by band index (the three lowest) elsewhere,
    where the distinction only names the branch. Only the worst mode per q-point and class is
    kept, which is all the verdict needs.
    """
    tol = settings.imaginary_tol_thz
    radius = settings.acoustic_q_radius_inv_angstrom
    worst: Mode | None = None
    worst_path = np.inf
    optical: list[Mode] = []
    acoustic: list[Mode] = []
    near: list[Mode] = []
    n_q = 0
    for qset in qsets:
        if len(qset.qpoints) == 0:
            continue
        n_q += len(qset.qpoints)
        norms = q_norms(phonon, qset.qpoints)
        comm = is_commensurate(qset.qpoints, supercell_matrix)
        freqs = qset.frequencies
        if qset.where == "path":
            worst_path = min(worst_path, float(freqs.min()))
        iq, ib = np.unravel_index(int(np.argmin(freqs)), freqs.shape)
        candidate = _mode(qset, iq, ib, norms, comm, acoustic=bool(ib < 3))
        if worst is None or candidate.frequency_thz < worst.frequency_thz:
            worst = candidate
        for iq in np.nonzero(freqs.min(axis=1) < -tol)[0]:
            near_gamma = norms[iq] < radius
            mask = acoustic_mask(phonon, qset.qpoints[iq]) if near_gamma else np.arange(freqs.shape[1]) < 3
            for ib in np.nonzero(freqs[iq] < -tol)[0]:
                m = _mode(qset, iq, ib, norms, comm, acoustic=bool(mask[ib]))
                if not m.acoustic:
                    optical.append(m)
                elif near_gamma and m.frequency_thz >= -settings.acoustic_tol_thz:
                    near.append(m)
                else:
                    acoustic.append(m)
    if worst is not None and worst.q_norm_inv_angstrom < radius and worst.frequency_thz < -tol:
        # the flag on `worst` must agree with the eigenvector classification done above
        flagged = [m for m in optical + acoustic + near if m.qpoint == worst.qpoint and m.branch == worst.branch]
        if flagged:
            worst = flagged[0]
    return ZoneReport(
        worst=worst,
        worst_path_frequency_thz=float(worst_path),
        optical=_lowest_first(optical),
        acoustic=_lowest_first(acoustic),
        acoustic_near_gamma=_lowest_first(near),
        n_qpoints=n_q,
    )


def decide(report: ZoneReport, *, born: bool | None) -> Decision:
    """PROTOCOL.md's rule, in order optical > elastic > acoustic.

    A failed Born criterion is a long-wavelength instability whatever the sampled q-points
    show; near-Γ acoustic dips are excused only when the elastic tensor is known to pass.
    """
    if report.optical:
        return Decision("unstable", "optical")
    if born is False:
        return Decision("unstable", "elastic")
    if report.acoustic:
        return Decision("unstable", "acoustic")
    if report.acoustic_near_gamma and born is not True:
        return Decision("unstable", "acoustic")
    return Decision("stable")


def violations(report: ZoneReport, *, born: bool | None) -> list[Mode]:
    """The modes `decide` holds against the structure, lowest first: every optical and acoustic
    mode below tolerance, and the near-Γ acoustic dips unless the Born criterion excuses them."""
    excused = born is True
    return _lowest_first(report.optical + report.acoustic + ([] if excused else report.acoustic_near_gamma))


def stable_by_phononbench(worst_path_frequency_thz: float, *, tol_thz: float) -> bool:
    """PhononBench's criterion: every band-path frequency >= -`tol_thz` (THz).

    Its scripts use 1e-3 THz (`ProtocolSettings.phononbench_tol_thz`), its v3 quotes 0.1 THz as the
    headline (`phononbench_v3_tol_thz`); every result stores both, decided here.
    """
    return worst_path_frequency_thz >= -tol_thz


def _mode(
    qset: QSet, iq: int | np.integer, ib: int | np.integer, norms: np.ndarray, comm: np.ndarray, *, acoustic: bool
) -> Mode:
    q = tuple(round(float(x), 6) for x in qset.qpoints[iq])
    where = "gamma" if norms[iq] < 1e-9 else qset.where
    return Mode(
        frequency_thz=float(qset.frequencies[iq, ib]),
        qpoint=q,  # type: ignore[arg-type]
        q_norm_inv_angstrom=float(norms[iq]),
        branch=int(ib),
        acoustic=acoustic,
        commensurate=bool(comm[iq]),
        where=where,
    )


def _lowest_first(modes: list[Mode]) -> list[Mode]:
    return sorted(modes, key=lambda m: m.frequency_thz)
