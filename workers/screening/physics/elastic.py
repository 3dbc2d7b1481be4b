"""Clamped-ion elastic tensor from ±strain stresses, and the Born stability criterion."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ase import Atoms
    from ase.calculators.calculator import Calculator

# Voigt index -> Cartesian pair
_VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


def compute_elastic_tensor(atoms: Atoms, *, calculator: Calculator, strain: float) -> np.ndarray:
    """6x6 Voigt elastic tensor in GPa from central differences of the stress.

    Each Voigt strain component j (engineering shear for j >= 3) is applied as ±`strain` with the
    atoms' fractional coordinates fixed (clamped ion: stresses only, 12 evaluations). Clamped-ion
    constants are an upper bound of the relaxed-ion ones, so a clamped-ion tensor that fails the
    Born criterion is a real elastic instability. Sign: ASE stress is positive under tension, so
    C_ij = d sigma_i / d eps_j.
    """
    from ase.units import GPa

    cell0 = np.array(atoms.cell)
    c = np.zeros((6, 6))
    for j, (a, b) in enumerate(_VOIGT):
        stresses = []
        for sign in (+1.0, -1.0):
            eps = np.zeros((3, 3))
            value = sign * strain if a == b else sign * strain / 2.0
            eps[a, b] = eps[b, a] = value
            strained = atoms.copy()
            strained.set_cell(cell0 @ (np.eye(3) + eps), scale_atoms=True)
            strained.calc = calculator
            stresses.append(strained.get_stress(voigt=True))
        c[:, j] = (stresses[0] - stresses[1]) / (2.0 * strain) / GPa
    return 0.5 * (c + c.T)


def born_stable(tensor_gpa: np.ndarray, *, tol_gpa: float = 1e-6) -> bool:
    """Born criterion in its general form: the Voigt tensor is positive definite."""
    return bool(np.linalg.eigvalsh(np.asarray(tensor_gpa)).min() > tol_gpa)
