"""Result provenance and the `failed` result: what every verdict carries besides the physics."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from workers.screening.protocols import ProtocolSettings
from workers.screening.types import Provenance, ScreeningResult

if TYPE_CHECKING:
    from pymatgen.core import Structure

    from workers.screening.potentials.registry import LoadedPotential


def provenance(protocol: ProtocolSettings, potential: LoadedPotential) -> Provenance:
    return Provenance(
        protocol=protocol.name,
        protocol_settings=protocol.as_dict(),
        settings_hash=protocol.settings_hash(),
        potential=potential.current_info(),
        versions=library_versions(),
    )


def library_versions() -> dict[str, str]:
    """Versions of the libraries a verdict depends on; a copy (read from disk once per process)."""
    return dict(_library_versions())


@cache
def _library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("phononscreen", "phonopy", "spglib", "seekpath", "ase", "pymatgen", "numpy", "torch"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out


def failed_result(
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
        stable_phononbench_v3=False,
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
