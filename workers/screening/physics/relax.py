"""Relaxation: ASE FixSymmetry + FrechetCellFilter, in cycles, as PhononBench did it.

The loop is a small state machine (`Relaxation`) that asks for one energy/forces/stress
evaluation at a time. `relax_structure` feeds it from an ASE calculator, one structure at a
time; `relax_batch` (batch_relax.py) feeds many machines from one batched forward pass. Both
therefore take exactly the same steps and apply exactly the same criteria.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from ase.calculators.calculator import Calculator as _AseCalculator
from ase.calculators.calculator import all_changes

from workers.screening.physics.cells import format_spacegroup, get_spacegroup
from workers.screening.types import PotentialRefused, RelaxSummary

if TYPE_CHECKING:
    from ase import Atoms
    from ase.calculators.calculator import Calculator
    from ase.optimize.optimize import Optimizer

    from workers.screening.protocols import ProtocolSettings


class RelaxDiverged(RuntimeError):
    """A force above the abort threshold, or a non-finite energy/force/cell."""


@dataclass(frozen=True)
class RelaxOutcome:
    atoms: Atoms  # relaxed copy, calculator detached, constraints removed
    summary: RelaxSummary


@dataclass(frozen=True)
class Evaluation:
    """One potential evaluation: energy (eV), forces (N, 3) eV/Å, stress (6,) eV/Å^3 Voigt."""

    energy: float
    forces: np.ndarray
    stress: np.ndarray


class _Preset(_AseCalculator):
    """Serves the evaluation the driver supplied for the current positions."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # ase's, unannotated
        self.preset: Evaluation | None = None

    def calculate(
        self, atoms: Atoms | None = None, properties: list[str] | None = None, system_changes: list[str] = all_changes
    ) -> None:
        super().calculate(atoms, properties, system_changes)  # type: ignore[no-untyped-call]
        if self.preset is None:
            raise RuntimeError("no evaluation supplied for these positions")
        p = self.preset
        self.results = {"energy": p.energy, "free_energy": p.energy, "forces": p.forces, "stress": p.stress}


def evaluate(calculator: Calculator, atoms: Atoms) -> Evaluation:
    """Evaluate `atoms` (constraints ignored) with an ASE calculator."""
    probe = atoms.copy()
    probe.set_constraint()
    probe.calc = calculator
    return Evaluation(
        energy=float(probe.get_potential_energy()),
        forces=np.array(probe.get_forces(), dtype=float),
        stress=np.array(probe.get_stress(voigt=True), dtype=float),
    )


def max_force(atoms: Atoms) -> float:
    """Largest per-atom force norm (eV/Å), with the constraints (symmetrisation) applied."""
    return float(np.linalg.norm(atoms.get_forces(), axis=1).max())


class Relaxation:
    """The relaxation of one structure, advanced one evaluation at a time.

    Up to `relax_max_cycles` optimiser runs of `relax_steps_per_cycle` steps each, the
    FixSymmetry constraint rebuilt at the start of every cycle, stopping at the first cycle that
    converges to `relax_fmax_ev_per_angstrom` on the true Cartesian forces. It has failed when
    the final maximum force exceeds `relax_fail_fmax_ev_per_angstrom`, when any force exceeds
    `relax_abort_force_ev_per_angstrom` (diverged), or on the early-failure settings.
    """

    def __init__(self, atoms: Atoms, *, settings: ProtocolSettings) -> None:
        from ase.optimize import BFGS, FIRE

        self.settings = settings
        self._optimizer_cls = {"FIRE": FIRE, "BFGS": BFGS}[settings.relax_optimizer]
        self.atoms = atoms.copy()
        self._calc = _Preset()
        self.atoms.calc = self._calc
        self.spacegroup_before = get_spacegroup(self.atoms, symprec=settings.symprec)
        self.volume0 = self.atoms.get_volume()
        self.steps = self.cycles = 0
        self.reason: str | None = None
        self.done = False
        self._stalled = 0
        self._previous_fmax = float("inf")
        self._optimizer: Optimizer | None = None
        self._cycle_steps = 0
        self._last: Evaluation | None = None

    def advance(self, evaluation: Evaluation) -> None:
        """Take the evaluation at the current positions; step, or finish."""
        self._calc.preset = evaluation
        self._calc.results = {}
        self._last = evaluation
        try:
            self._check_sane(evaluation)
            while True:  # a new cycle re-checks convergence at the same positions: no evaluation
                optimizer = self._optimizer if self._optimizer is not None else self._start_cycle()
                converged = optimizer.converged()
                if not converged and self._cycle_steps < self.settings.relax_steps_per_cycle:
                    optimizer.step()
                    optimizer.nsteps += 1
                    self._cycle_steps += 1
                    return
                if self._end_cycle(converged):
                    self._finish()
                    return
        except RelaxDiverged as exc:
            self.reason = f"diverged: {exc}"
            self._finish(diverged=True)

    def fail(self, reason: str) -> None:
        """End here: the potential could not evaluate the current positions."""
        self.reason = reason
        self._last = None
        self._finish(diverged=True)

    def _start_cycle(self) -> Optimizer:
        """A fresh optimiser (and symmetry constraint) for the next cycle; also kept as `_optimizer`."""
        from ase.constraints import FixSymmetry
        from ase.filters import FrechetCellFilter

        self.cycles += 1
        self._cycle_steps = 0
        self.atoms.set_constraint(FixSymmetry(self.atoms, symprec=self.settings.symprec))
        # Any: ase annotates Optimizer(atoms: Atoms) and `fmax` as None; a filter and a float are right
        optimizer: Any = self._optimizer_cls(FrechetCellFilter(self.atoms), logfile=None)
        optimizer.fmax = self.settings.relax_fmax_ev_per_angstrom  # what irun(fmax=...) sets
        self._optimizer = optimizer
        return cast("Optimizer", optimizer)

    def _end_cycle(self, converged: bool) -> bool:
        """Book the cycle; True when the relaxation is over."""
        s = self.settings
        self.steps += self._cycle_steps
        self._optimizer = None
        fmax = max_force(self.atoms)
        # The filter judges forces in its deformed frame (f @ F), which drifts from the true
        # Cartesian forces as the cell changes; a fresh cycle resets F to the identity.
        if converged and fmax <= s.relax_fmax_ev_per_angstrom:
            return True
        self._stalled = self._stalled + 1 if fmax > 0.5 * self._previous_fmax else 0
        self._previous_fmax = min(self._previous_fmax, fmax)
        if s.relax_stall_cycles and self._stalled >= s.relax_stall_cycles and fmax > s.relax_fail_fmax_ev_per_angstrom:
            self.reason = (
                f"stalled: max force {fmax:.4g} eV/A not halved in {self._stalled} cycles "
                f"of {s.relax_steps_per_cycle} steps ({self.steps} steps in all)"
            )
            return True
        return self.cycles >= s.relax_max_cycles

    def _check_sane(self, evaluation: Evaluation) -> None:
        s = self.settings
        forces = evaluation.forces
        if not np.all(np.isfinite(forces)) or not np.all(np.isfinite(self.atoms.cell.array)):
            raise RelaxDiverged("non-finite forces or cell")
        worst = float(np.abs(forces).max())
        if worst > s.relax_abort_force_ev_per_angstrom:
            raise RelaxDiverged(
                f"force {worst:.3g} eV/A above the abort threshold {s.relax_abort_force_ev_per_angstrom:g} eV/A"
            )
        volume = self.atoms.get_volume()
        if volume < 1e-3 * len(self.atoms):
            raise RelaxDiverged("cell collapsed")
        if s.relax_max_volume_ratio is not None:
            ratio = volume / self.volume0
            if ratio > s.relax_max_volume_ratio or ratio < 1.0 / s.relax_max_volume_ratio:
                raise RelaxDiverged(f"cell volume changed by a factor {ratio:.3g} (limit {s.relax_max_volume_ratio:g})")

    def _finish(self, *, diverged: bool = False) -> None:
        s = self.settings
        self.done = True
        self._fmax = float("nan") if diverged else max_force(self.atoms)
        if self.reason is None and self._fmax > s.relax_fail_fmax_ev_per_angstrom:
            self.reason = (
                f"not converged: max force {self._fmax:.4g} eV/A > {s.relax_fail_fmax_ev_per_angstrom:g} "
                f"after {self.steps} steps in {self.cycles} cycles"
            )

    def outcome(self) -> RelaxOutcome:
        from ase.units import GPa

        assert self.done, "relaxation still running"
        last = self._last
        self.atoms.set_constraint()
        relaxed = self.atoms.copy()
        relaxed.calc = None
        stress_gpa: tuple[float, ...] = (float("nan"),) * 6
        energy_per_atom_ev = float("nan")
        if last is not None and np.isfinite(last.energy):
            stress_gpa = tuple(float(x) for x in last.stress / GPa)
            energy_per_atom_ev = last.energy / len(relaxed)
        diverged = self.reason is not None and self.reason.startswith("diverged")
        summary = RelaxSummary(
            converged=self.reason is None,
            steps=self.steps,
            cycles=self.cycles,
            max_force_ev_per_angstrom=self._fmax,
            stress_gpa=stress_gpa,
            energy_per_atom_ev=energy_per_atom_ev,
            volume_change_fraction=float(relaxed.get_volume() / self.volume0 - 1.0),
            spacegroup_before=format_spacegroup(self.spacegroup_before),
            spacegroup_after=""
            if diverged
            else format_spacegroup(get_spacegroup(relaxed, symprec=self.settings.symprec)),
            reason=self.reason,
        )
        return RelaxOutcome(atoms=relaxed, summary=summary)


def relax_structure(atoms: Atoms, *, calculator: Calculator, settings: ProtocolSettings) -> RelaxOutcome:
    """Relax positions and the full cell keeping the symmetry found at `settings.symprec`.

    See `Relaxation` for the criteria; one ASE calculator call per optimiser step.
    """
    machine = Relaxation(atoms, settings=settings)
    while not machine.done:
        try:
            evaluation = evaluate(calculator, machine.atoms)
        except PotentialRefused:  # not the cell's physics: the screening fails with the potential's reason
            raise
        except Exception as exc:  # noqa: BLE001 - a diverged cell may not even evaluate
            machine.fail(f"diverged: the potential failed to evaluate ({type(exc).__name__}: {exc})")
            break
        machine.advance(evaluation)
    return machine.outcome()
