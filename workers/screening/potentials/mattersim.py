"""MatterSim adapter: find its weights locally (never download) and build its ASE calculator."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator

# Registry name -> file name MatterSim itself uses in its cache folder and on GitHub.
MATTERSIM_FILES = {
    "mattersim-v1.0.0-5m": "mattersim-v1.0.0-5M.pth",
    "mattersim-v1.0.0-1m": "mattersim-v1.0.0-1M.pth",
}


class PotentialUnavailableError(RuntimeError):
    """The named potential cannot be used here (weights or package missing); says how to fix it."""


def mattersim_cache_dir() -> Path:
    """MatterSim's own cache folder, resolved now (it follows $HOME the way MatterSim does)."""
    return Path(os.path.expanduser("~/.local/mattersim/pretrained_models"))


def find_mattersim_checkpoint(name: str) -> Path | None:
    """The cached pretrained checkpoint of registry `name`, or None when it is not here."""
    path = mattersim_cache_dir() / MATTERSIM_FILES[name]
    return path if path.is_file() else None


def missing_weights_message(name: str, *, fallback: bool = True) -> str:
    """The one message that tells a user how to get MatterSim weights onto an offline machine."""
    file_name = MATTERSIM_FILES[name]
    return (
        f"potential {name!r}: checkpoint {file_name} not found in {mattersim_cache_dir()} "
        "and it is never downloaded implicitly. Get the weights in one of these ways: "
        "(1) on a machine with internet run "
        f'`python -c "from mattersim.forcefield.potential import Potential; '
        f"Potential.from_checkpoint('{name}', load_training_state=False)\"` "
        f"and copy ~/.local/mattersim/pretrained_models/{file_name} to the same folder here; "
        "(2) download it from https://github.com/microsoft/mattersim/tree/main/pretrained_models "
        "and pass its path with `--potential-checkpoint PATH`"
        + ("; or choose another potential (`--potential sevennet-l3i5`, offline)." if fallback else ".")
    )


def load_mattersim(path: Path, *, device: str) -> tuple[Callable[[], Calculator], frozenset[str], str]:
    """Load a MatterSim checkpoint file once; return (calculator factory, elements, version).

    `path` must be an existing file: passing MatterSim a path (not a name) is what keeps its loader
    from ever reaching for the network.
    """
    try:
        from ase.data import chemical_symbols
        from ase.units import GPa
        from mattersim.forcefield.potential import MatterSimCalculator, Potential
    except ImportError as exc:
        raise PotentialUnavailableError(
            f"MatterSim is not installed ({exc}); install it with `pip install mattersim==1.2.3 "
            "--no-deps` (see pyproject's `mattersim` extra) or choose `--potential sevennet-l3i5`"
        ) from exc
    from importlib.metadata import version

    potential = Potential.from_checkpoint(load_path=str(path), device=device, load_training_state=False)

    def make_calculator() -> Calculator:
        # The model predicts stress in GPa; GPa (ase.units) converts it to ASE's eV/Å^3.
        calculator: Calculator = MatterSimCalculator(potential=potential, stress_weight=GPa, device=device)
        return calculator

    # M3GNet embeds atomic numbers 1..max_z (94 for the released models: H to Pu).
    max_z = int(potential.model.max_z)
    elements = frozenset(chemical_symbols[1 : max_z + 1])
    return make_calculator, elements, f"mattersim {version('mattersim')}"
