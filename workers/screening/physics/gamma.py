"""Γ first: the Γ-point modes from the unit cell alone, before any supercell is built."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from workers.screening.physics import phonons

if TYPE_CHECKING:
    from ase import Atoms
    from ase.calculators.calculator import Calculator

    from workers.screening.protocols import ProtocolSettings


@dataclass(frozen=True)
class GammaCheck:
    frequencies_thz: np.ndarray  # (3N,) sorted ascending
    acoustic: np.ndarray  # (3N,) bool, the three translation-like modes
    n_displacements: int

    @property
    def min_optical_thz(self) -> float:
        optical = self.frequencies_thz[~self.acoustic]
        return float(optical.min()) if optical.size else float("inf")

    @property
    def softest_optical_band(self) -> int:
        return int(np.flatnonzero(~self.acoustic)[np.argmin(self.frequencies_thz[~self.acoustic])])


def check_gamma(
    atoms: Atoms, *, calculator: Calculator, settings: ProtocolSettings, batched: bool = False
) -> GammaCheck:
    """Γ-point frequencies (THz) from displacing the atoms of the unit cell itself.

    Moving an atom in the 1x1x1 cell moves all its periodic images with it, so the forces give
    sum_R Phi(0, R) — exactly the Γ dynamical matrix, which every supercell also reproduces
    exactly. It costs 3N small cells instead of a supercell per displacement.
    """
    ph = phonons.build_phonopy(atoms, supercell_matrix=np.eye(3, dtype=int), settings=settings)
    forces = phonons.compute_displaced_forces(
        ph, calculator=calculator, subtract_drift=settings.subtract_force_drift, batched=batched
    )
    phonons.produce_force_constants(ph, forces)
    mask = phonons.acoustic_mask(ph, np.zeros(3))
    ph.run_qpoints([[0.0, 0.0, 0.0]])
    freqs = np.asarray(ph.get_qpoints_dict()["frequencies"][0])
    return GammaCheck(frequencies_thz=freqs, acoustic=mask, n_displacements=len(ph.displacements))


def gamma_says_unstable(check: GammaCheck, *, settings: ProtocolSettings) -> bool:
    """An optical Γ mode below -(tolerance + margin): no supercell can make this stable.

    The tolerance is the loosest of those a result is decided by: the verdict's and PhononBench's
    two (Γ is on every band path too), so the skipped supercell could not have changed any of them.
    """
    tol = max(settings.imaginary_tol_thz, settings.phononbench_tol_thz, settings.phononbench_v3_tol_thz)
    return check.min_optical_thz < -(tol + settings.gamma_first_margin_thz)
