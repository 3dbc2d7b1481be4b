"""Relaxation: ASE FixSymmetry + FrechetCellFilter, in cycles, as PhononBench did it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from workers.screening.cells import format_spacegroup, get_spacegroup
from workers.screening.types import RelaxSummary

if TYPE_CHECKING:
    from ase import Atoms
    from ase.calculators.calculator import Calculator

    from workers.screening.protocols import ProtocolSettings


class RelaxDiverged(RuntimeError):
    """A force above the abort threshold, or a non-finite energy/force/cell."""


@dataclass(frozen=True)
class RelaxOutcome:
    atoms: Atoms  # relaxed copy, calculator detached, constraints removed
    summary: RelaxSummary


def max_force(atoms: Atoms) -> float:
    """Largest per-atom force norm (eV/Å), with the constraints (symmetrisation) applied."""
    return float(np.linalg.norm(atoms.get_forces(), axis=1).max())


def relax_structure(atoms: Atoms, *, calculator: Calculator, settings: ProtocolSettings) -> RelaxOutcome:
    """Relax positions and the full cell keeping the symmetry found at `settings.symprec`.

    Up to `relax_max_cycles` optimiser runs of `relax_steps_per_cycle` steps each, the
    FixSymmetry constraint rebuilt at the start of every cycle, stopping at the first cycle that
    converges to `relax_fmax_ev_per_angstrom`. The relaxation has failed when the final maximum
    force exceeds `relax_fail_fmax_ev_per_angstrom`, or when any force exceeds
    `relax_abort_force_ev_per_angstrom` (diverged) — then `summary.converged` is False and
    `summary.reason` says which.
    """
    from ase.constraints import FixSymmetry
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS, FIRE

    optimizer_cls = {"FIRE": FIRE, "BFGS": BFGS}[settings.relax_optimizer]
    work = atoms.copy()
    work.calc = calculator
    sg_before = get_spacegroup(work, symprec=settings.symprec)
    volume0 = work.get_volume()
    steps = cycles = 0
    reason: str | None = None
    stalled_cycles = 0
    previous_fmax = float("inf")
    try:
        for _cycle in range(settings.relax_max_cycles):
            cycles += 1
            work.set_constraint(FixSymmetry(work, symprec=settings.symprec))
            optimizer = optimizer_cls(FrechetCellFilter(work), logfile=None)
            converged = False
            for converged in optimizer.irun(fmax=settings.relax_fmax_ev_per_angstrom, steps=settings.relax_steps_per_cycle):
                _check_sane(work, abort=settings.relax_abort_force_ev_per_angstrom)
                _check_volume(work, volume0=volume0, max_ratio=settings.relax_max_volume_ratio)
            steps += optimizer.nsteps
            fmax = max_force(work)
            # The filter judges forces in its deformed frame (f @ F), which drifts from the true
            # Cartesian forces as the cell changes; a fresh cycle resets F to the identity.
            if converged and fmax <= settings.relax_fmax_ev_per_angstrom:
                break
            stalled_cycles = stalled_cycles + 1 if fmax > 0.5 * previous_fmax else 0
            previous_fmax = min(previous_fmax, fmax)
            if (
                settings.relax_stall_cycles
                and stalled_cycles >= settings.relax_stall_cycles
                and fmax > settings.relax_fail_fmax_ev_per_angstrom
            ):
                reason = (
                    f"stalled: max force {fmax:.4g} eV/A not halved in {stalled_cycles} cycles "
                    f"of {settings.relax_steps_per_cycle} steps ({steps} steps in all)"
                )
                break
        fmax = max_force(work)
        if reason is None and fmax > settings.relax_fail_fmax_ev_per_angstrom:
            reason = (
                f"not converged: max force {fmax:.4g} eV/A > {settings.relax_fail_fmax_ev_per_angstrom:g} "
                f"after {steps} steps in {cycles} cycles"
            )
    except RelaxDiverged as exc:
        reason = f"diverged: {exc}"
        fmax = float("nan")
    energy = _safe_energy(work)
    stress = _safe_stress(work)
    work.set_constraint()
    relaxed = work.copy()
    relaxed.calc = None
    summary = RelaxSummary(
        converged=reason is None,
        steps=steps,
        cycles=cycles,
        max_force_ev_per_angstrom=fmax,
        stress_gpa=stress,
        energy_per_atom_ev=energy / len(work),
        volume_change_fraction=float(relaxed.get_volume() / volume0 - 1.0) if np.isfinite(relaxed.get_volume()) else float("nan"),
        spacegroup_before=format_spacegroup(sg_before),
        spacegroup_after=format_spacegroup(get_spacegroup(relaxed, symprec=settings.symprec)) if reason is None or "diverged" not in reason else "",
        reason=reason,
    )
    return RelaxOutcome(atoms=relaxed, summary=summary)


def _check_sane(atoms: Atoms, *, abort: float) -> None:
    forces = atoms.get_forces(apply_constraint=False)
    if not np.all(np.isfinite(forces)) or not np.all(np.isfinite(atoms.cell.array)):
        raise RelaxDiverged("non-finite forces or cell")
    worst = float(np.abs(forces).max())
    if worst > abort:
        raise RelaxDiverged(f"force {worst:.3g} eV/A above the abort threshold {abort:g} eV/A")
    if atoms.get_volume() < 1e-3 * len(atoms):
        raise RelaxDiverged("cell collapsed")


def _check_volume(atoms: Atoms, *, volume0: float, max_ratio: float | None) -> None:
    if max_ratio is None:
        return
    ratio = atoms.get_volume() / volume0
    if ratio > max_ratio or ratio < 1.0 / max_ratio:
        raise RelaxDiverged(f"cell volume changed by a factor {ratio:.3g} (limit {max_ratio:g})")


def _safe_energy(atoms: Atoms) -> float:
    try:
        return float(atoms.get_potential_energy())
    except Exception:  # a diverged cell may not even evaluate
        return float("nan")


def _safe_stress(atoms: Atoms) -> tuple[float, ...]:
    from ase.units import GPa

    try:
        return tuple(float(x) for x in atoms.get_stress(voigt=True) / GPa)
    except Exception:
        return (float("nan"),) * 6
