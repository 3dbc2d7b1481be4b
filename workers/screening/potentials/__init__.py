"""Potentials: the registry of named interatomic potentials, their adapters and compiled forms."""

from workers.screening.potentials.compiled import COMPILE_MODES
from workers.screening.potentials.mattersim import PotentialUnavailableError
from workers.screening.potentials.memory import ModelMemoryError, budget_mib
from workers.screening.potentials.registry import (
    POTENTIAL_NAMES,
    LoadedPotential,
    PotentialFallbackWarning,
    clear_potential_cache,
    load_potential,
    resolve_device,
    resolved_name,
)

__all__ = [
    "COMPILE_MODES",
    "POTENTIAL_NAMES",
    "LoadedPotential",
    "ModelMemoryError",
    "PotentialFallbackWarning",
    "PotentialUnavailableError",
    "budget_mib",
    "clear_potential_cache",
    "load_potential",
    "resolve_device",
    "resolved_name",
]
