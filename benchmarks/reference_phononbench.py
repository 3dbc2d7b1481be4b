"""The reference: PhononBench's serial screening loop, written here independently of the pipeline.

One structure at a time, one displaced supercell at a time through the ASE calculator, exactly
the published recipe (Han et al., arXiv 2512.21227; PROTOCOL.md `phononbench`). Nothing from
`workers.screening` is used except the potential loader and ingest (in throughput.py), so that a
bug in the pipeline cannot hide in both arms.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from ase import Atoms
    from ase.calculators.calculator import Calculator
    from pymatgen.core import Structure

SYMPREC = 0.01  # Å, FixSymmetry
FMAX = 0.0025  # eV/Å, target of each FIRE cycle
FAIL_FMAX = 0.005  # eV/Å, final max force above this: relax failed
STEPS_PER_CYCLE = 500
MAX_CYCLES = 15
ABORT_FORCE = 1.0e4  # eV/Å, any force component above this aborts
SUPERCELL = np.diag([2, 2, 2])
DISPLACEMENT = 0.01  # Å
NPOINTS = 101
TOL_THZ = 1.0e-3  # stable iff every path frequency >= -TOL_THZ

Verdict = Literal["stable", "unstable", "relax_failed", "failed"]


class Diverged(RuntimeError):
    """A force above ABORT_FORCE, or non-finite forces."""


@dataclass
class ReferenceResult:
    """One structure's reference verdict and where its time went (seconds)."""

    name: str
    n_sites: int
    verdict: Verdict
    reason: str | None = None
    min_path_frequency_thz: float | None = None
    relax_steps: int = 0
    relax_cycles: int = 0
    relax_max_force_ev_per_angstrom: float | None = None
    energy_per_atom_ev: float | None = None  # after relaxation
    n_displacements: int = 0
    timings_s: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def screen_reference(structure: Structure, *, name: str, calculator: Calculator) -> ReferenceResult:
    """The PhononBench loop on one structure; any exception is a `failed` verdict (not stable)."""
    from pymatgen.io.ase import AseAtomsAdaptor

    result = ReferenceResult(name=name, n_sites=len(structure), verdict="failed")
    timings = result.timings_s
    try:
        atoms = AseAtomsAdaptor.get_atoms(structure)  # the input cell as given
        start = time.perf_counter()
        try:
            converged, fmax = _relax(atoms, calculator=calculator, result=result)
        except Diverged as exc:
            result.verdict, result.reason = "relax_failed", f"diverged: {exc}"
            return result
        finally:
            timings["relax"] = time.perf_counter() - start
        result.relax_max_force_ev_per_angstrom = fmax
        if not converged:
            result.verdict = "relax_failed"
            result.reason = f"max force {fmax:.4g} eV/A > {FAIL_FMAX} after {result.relax_steps} steps"
            return result
        result.min_path_frequency_thz = _phonons(atoms, calculator=calculator, result=result)
        stable = result.min_path_frequency_thz >= -TOL_THZ
        result.verdict = "stable" if stable else "unstable"
        result.reason = None if stable else f"path frequency {result.min_path_frequency_thz:.4f} THz"
    except Exception as exc:  # noqa: BLE001 - PhononBench counts any error as not stable
        result.verdict = "failed"
        where = traceback.extract_tb(exc.__traceback__)[-1]
        result.reason = f"{type(exc).__name__}: {exc} (at {where.name}:{where.lineno})"
    return result


def _relax(atoms: Atoms, *, calculator: Calculator, result: ReferenceResult) -> tuple[bool, float]:
    """FixSymmetry + FrechetCellFilter + FIRE, up to MAX_CYCLES cycles; (converged, final fmax)."""
    from ase.constraints import FixSymmetry
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE

    atoms.calc = calculator
    for _ in range(MAX_CYCLES):
        result.relax_cycles += 1
        atoms.set_constraint(FixSymmetry(atoms, symprec=SYMPREC))  # rebuilt every cycle
        optimizer = FIRE(FrechetCellFilter(atoms), logfile=None)
        for _converged in optimizer.irun(fmax=FMAX, steps=STEPS_PER_CYCLE):
            raw = atoms.get_forces(apply_constraint=False)
            if not np.all(np.isfinite(raw)):
                raise Diverged("non-finite forces")
            if np.abs(raw).max() > ABORT_FORCE:
                raise Diverged(f"force {np.abs(raw).max():.3g} eV/A above {ABORT_FORCE:g}")
        result.relax_steps += optimizer.nsteps
        # The filter judges forces in its deformed frame; convergence is judged on the true
        # Cartesian forces (symmetrised by the constraint, as the optimiser sees them).
        if _max_force(atoms) <= FMAX:
            break
    fmax = _max_force(atoms)
    result.energy_per_atom_ev = float(atoms.get_potential_energy()) / len(atoms)
    atoms.set_constraint()
    return fmax <= FAIL_FMAX, fmax


def _max_force(atoms: Atoms) -> float:
    return float(np.linalg.norm(atoms.get_forces(), axis=1).max())


def _log_stage(stage: str, start: float, end: float) -> None:
    """The benchmark's stage log (PHONONSCREEN_STAGE_LOG), written here without the pipeline's code."""
    import os

    folder = os.environ.get("PHONONSCREEN_STAGE_LOG")
    if folder:
        with open(os.path.join(folder, f"stages-{os.getpid()}.tsv"), "a") as handle:
            handle.write(f"{stage}\t{start:.3f}\t{end:.3f}\n")


def _phonons(atoms: Atoms, *, calculator: Calculator, result: ReferenceResult) -> float:
    """Finite displacements in the fixed 2x2x2 supercell; minimum frequency on the band path, THz."""
    from ase import Atoms as AseAtoms
    from phonopy import Phonopy
    from phonopy.phonon.band_structure import get_band_qpoints_by_seekpath
    from phonopy.structure.atoms import PhonopyAtoms

    timings = result.timings_s
    start = time.perf_counter()
    unitcell = PhonopyAtoms(
        symbols=atoms.get_chemical_symbols(), cell=np.array(atoms.cell), scaled_positions=atoms.get_scaled_positions()
    )
    # phonopy 4.10 reads primitive_matrix=None as 'auto'; 'P' (identity) is phonopy 3's default,
    # which PhononBench used: the input cell is the primitive cell.
    phonon = Phonopy(unitcell, supercell_matrix=SUPERCELL, primitive_matrix="P")
    phonon.generate_displacements(distance=DISPLACEMENT, is_diagonal=False)
    supercells = phonon.supercells_with_displacements
    result.n_displacements = len(supercells)
    timings["post"] = time.perf_counter() - start

    start, wall = time.perf_counter(), time.time()
    forces = []
    for cell in supercells:  # one at a time, as the reference does
        displaced = AseAtoms(symbols=cell.symbols, cell=cell.cell, scaled_positions=cell.scaled_positions, pbc=True)
        displaced.calc = calculator
        f = np.array(displaced.get_forces(), dtype=float)
        forces.append(f - f.mean(axis=0))  # drift removed
    timings["forces"] = time.perf_counter() - start
    _log_stage("forces", wall, time.time())

    start = time.perf_counter()
    phonon.forces = np.array(forces)
    phonon.produce_force_constants()
    phonon.symmetrize_force_constants()
    bands, labels, connections = get_band_qpoints_by_seekpath(phonon.primitive, NPOINTS, is_const_interval=True)
    phonon.run_band_structure(bands, path_connections=connections, labels=labels)
    frequencies = phonon.get_band_structure_dict()["frequencies"]
    worst = float(min(np.min(f) for f in frequencies))
    timings["post"] += time.perf_counter() - start
    return worst
