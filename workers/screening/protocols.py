"""The two named screening protocols as data: `phononbench` (the paper) and `default`."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True, kw_only=True)
class ProtocolSettings:
    """Every knob that can change a verdict. Units are in the names."""

    name: str
    # cell
    use_primitive: bool  # False: the input cell as given (PhononBench); True: spglib standard primitive
    symprec: float = 0.01  # Å, symmetrisation of the input and FixSymmetry during relaxation
    # relaxation (ASE FixSymmetry + FrechetCellFilter)
    relax_optimizer: Literal["FIRE", "BFGS"] = "FIRE"
    relax_fmax_ev_per_angstrom: float = 0.0025  # target of each optimiser cycle
    relax_fail_fmax_ev_per_angstrom: float = 0.005  # final max force above this: relax_failed
    relax_steps_per_cycle: int = 500
    relax_max_cycles: int = 15
    relax_abort_force_ev_per_angstrom: float = 1.0e4  # any force above this aborts (diverged)
    # Early relax failure (0 / None = off). Off in `phononbench`: stopping early could change a
    # verdict there, since a slow relaxation might still converge in a later cycle.
    relax_max_volume_ratio: float | None = None  # volume grew/shrank by more than this: diverged
    relax_stall_cycles: int = 0  # this many cycles in a row without halving the max force: stalled
    # supercell
    supercell: Literal["fixed", "cubic"] = "fixed"
    supercell_diagonal: tuple[int, int, int] = (2, 2, 2)  # when supercell == "fixed"
    supercell_min_width_angstrom: float = 10.0  # when supercell == "cubic"
    supercell_max_atoms: int = 400
    # An instability found only at incommensurate q-points (Γ and every commensurate point stable),
    # where the force constants are interpolated, is re-checked once in a supercell of widths
    # >= confirm_min_width_angstrom, whatever its depth (supercells.confirm_incommensurate). Until
    # 2026-12 this was `confirm_weak_incommensurate` with `confirm_threshold_thz = -0.5`: only dips
    # above -0.5 THz were re-checked (PROTOCOL.md says why depth is no guide).
    confirm_incommensurate: bool = False
    confirm_min_width_angstrom: float = 15.0
    confirm_max_atoms: int = 600
    # Γ first: the Γ-point dynamical matrix from 3N small displacements of the unit cell alone.
    # A clearly imaginary optical mode there is unstable on every path, mesh and supercell
    # (Γ is on all of them and exact in all of them), so the supercell is skipped. Modes within
    # `gamma_first_margin_thz` of the tolerance are left to the full calculation.
    gamma_first: bool = False
    gamma_first_margin_thz: float = 0.05
    # ... but not on a cell whose relaxation started in P1 (no symmetry at `symprec`, so FixSymmetry
    # held nothing): its Γ modes are the displacements of the atoms within the cell, along which
    # the relaxation minimised the energy without constraint, so a Γ check can only find what a
    # saddle point left, and the supercell (Γ is on it) still would. Skipping it cannot change a
    # verdict, only the cost; measured with `benchmarks/throughput.py` (README, "Throughput").
    gamma_first_skip_p1: bool = True
    # Deduplication before any compute: "match" = pymatgen StructureMatcher at its default
    # tolerances on primitive cells, within one space group at `symprec` (dedup.py); "exact" = the
    # same input cell up to rotation, translation and atom order (tolerances 1e-3), where the
    # verdict provably cannot differ.
    dedup: Literal["off", "exact", "match"] = "off"
    # displacements and forces
    force_batching: Literal["auto", "serial", "batched"] = "auto"  # auto: batched on CUDA only
    displacement_angstrom: float = 0.01
    displacement_is_diagonal: bool = True  # phonopy's default; PhononBench passes False
    subtract_force_drift: bool = True
    # Brillouin-zone coverage
    band_path: Literal["phononbench", "seekpath"] = "phononbench"  # see phonons.py
    band_npoints: int = 101
    check_mesh: bool = False
    mesh_spacing_inv_angstrom: float = 0.1  # Γ-centred mesh; |b_i| / n_i <= spacing (2π included)
    mesh_min: int = 8
    check_commensurate: bool = False
    # long-wavelength check
    elastic_tensor: bool = False
    elastic_strain: float = 0.005
    # verdict
    imaginary_tol_thz: float = 1.0e-3  # stable iff every frequency >= -tol
    acoustic_tol_thz: float = 0.0  # acoustic modes near Γ may dip to -this when Born passes
    acoustic_q_radius_inv_angstrom: float = 0.1
    # PhononBench's criteria, stored beside the verdict (band path only, every frequency >= -tol):
    # its scripts' -1e-3 THz, and the -0.1 THz headline threshold of its v3 (June 2026)
    phononbench_tol_thz: float = 1.0e-3
    phononbench_v3_tol_thz: float = 0.1
    # outputs
    dos_mesh_min: int = 8
    # Gaussian smearing of the phonon DOS (an output, never the verdict). phonopy's tetrahedron
    # method took ~0.8 s per 8-12-atom generator cell, 10 % of a screen under `phononbench`
    # (benchmarks/README.md); smearing takes milliseconds. None: the tetrahedron method.
    dos_sigma_thz: float | None = 0.1
    thermal_temperature_k: float = 300.0

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def settings_hash(self) -> str:
        """sha256 of the canonical JSON of every setting, first 16 hex digits.

        Adding, renaming or removing a field changes the hash of every protocol, as a changed value
        does. Verdicts stored before keep their settings and hash, so one can tell which rule decided
        them; the CLI's skip-on-rerun key includes the hash, so a re-run screens those again; the
        service's dedup matches screenings by protocol name and potential, not by hash (README,
        "The protocols").
        """
        blob = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def replace(self, **changes: Any) -> ProtocolSettings:
        return dataclasses.replace(self, **changes)


# Han et al., arXiv 2512.21227: exactly the published loop (see PROTOCOL.md, `phononbench`).
PHONONBENCH = ProtocolSettings(
    name="phononbench",
    use_primitive=False,
    symprec=0.01,
    relax_optimizer="FIRE",
    relax_fmax_ev_per_angstrom=0.0025,
    relax_fail_fmax_ev_per_angstrom=0.005,
    relax_steps_per_cycle=500,
    relax_max_cycles=15,
    relax_abort_force_ev_per_angstrom=1.0e4,
    relax_max_volume_ratio=None,
    relax_stall_cycles=0,
    gamma_first=True,
    gamma_first_margin_thz=0.05,
    dedup="exact",
    supercell="fixed",
    supercell_diagonal=(2, 2, 2),
    confirm_incommensurate=False,
    displacement_angstrom=0.01,
    displacement_is_diagonal=False,
    subtract_force_drift=True,
    band_path="phononbench",
    band_npoints=101,
    check_mesh=False,
    check_commensurate=False,
    elastic_tensor=False,
    imaginary_tol_thz=1.0e-3,
    acoustic_tol_thz=0.0,
    phononbench_tol_thz=1.0e-3,
    phononbench_v3_tol_thz=0.1,
)

# What we recommend (PROTOCOL.md, `default`): same physics, fewer false alarms.
DEFAULT = ProtocolSettings(
    name="default",
    use_primitive=True,
    symprec=0.01,
    # Measured (SevenNet-0, six MatterGen cells, benchmarks/relax_optimizers.py): BFGS
    # reached the same energies (1e-5 eV/atom) and space groups in 1.2-2.4x fewer steps than FIRE.
    relax_optimizer="BFGS",
    relax_fmax_ev_per_angstrom=0.005,
    relax_fail_fmax_ev_per_angstrom=0.005,
    relax_steps_per_cycle=500,
    relax_max_cycles=4,
    relax_max_volume_ratio=4.0,
    relax_stall_cycles=2,
    gamma_first=True,
    gamma_first_margin_thz=0.05,
    dedup="match",
    supercell="cubic",
    band_path="seekpath",
    supercell_min_width_angstrom=10.0,
    supercell_max_atoms=400,
    confirm_incommensurate=True,
    confirm_min_width_angstrom=15.0,
    confirm_max_atoms=600,
    displacement_angstrom=0.01,
    displacement_is_diagonal=True,
    subtract_force_drift=True,
    band_npoints=101,
    check_mesh=True,
    mesh_spacing_inv_angstrom=0.1,
    mesh_min=8,
    check_commensurate=True,
    elastic_tensor=True,
    elastic_strain=0.005,
    imaginary_tol_thz=0.05,
    acoustic_tol_thz=0.5,
    acoustic_q_radius_inv_angstrom=0.1,
    phononbench_tol_thz=1.0e-3,
    phononbench_v3_tol_thz=0.1,
)

PROTOCOLS: dict[str, ProtocolSettings] = {p.name: p for p in (DEFAULT, PHONONBENCH)}


def get_protocol(name: str, **overrides: Any) -> ProtocolSettings:
    """Named protocol, optionally with settings overridden (recorded in the settings hash)."""
    try:
        base = PROTOCOLS[name]
    except KeyError:
        raise ValueError(f"unknown protocol {name!r}; choose one of {sorted(PROTOCOLS)}") from None
    return base.replace(**overrides) if overrides else base
