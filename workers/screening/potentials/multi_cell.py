"""Batched force evaluation through a potential's own batch API, where it pays (GPUs).

Measured on this project's 2-core CPU (issue 4): batching displaced supercells into one forward
pass was slower than a loop (torch-sim + SevenNet up to 2x slower; MatterSim's own batch call
1.09x), so `auto` batches only on CUDA. MatterSim is the production potential and has a batch
API (`Potential.predict_properties` over its own dataloader); SevenNet and CHGNet go through the
serial ASE loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from ase import Atoms
    from ase.calculators.calculator import Calculator

Batching = Literal["auto", "serial", "batched"]

# Rough GPU memory per atom of a MatterSim forward+backward pass (bytes), with a safety factor;
# batch sizes are chosen so that a batch's atoms fit in a fraction of the free memory.
_BYTES_PER_ATOM = 4.0e6
_MEMORY_FRACTION = 0.5


def supports_batching(calculator: Calculator) -> bool:
    return _mattersim_potential(calculator) is not None


def use_batching(calculator: Calculator, *, mode: Batching, device: str) -> bool:
    """serial/batched as asked; auto = batched only on CUDA and only where the API exists."""
    if mode == "serial":
        return False
    if mode == "batched":
        if not supports_batching(calculator):
            raise ValueError("this potential has no batch API; use force batching 'serial' or 'auto'")
        return True
    return device.startswith("cuda") and supports_batching(calculator)


def max_atoms_per_batch(device: str, *, cpu_atoms: int = 2048) -> int:
    """Atoms per forward pass: from free GPU memory on CUDA, a fixed budget on CPU."""
    if not device.startswith("cuda"):
        return cpu_atoms
    import torch

    free, _total = torch.cuda.mem_get_info()
    return max(64, int(free * _MEMORY_FRACTION / _BYTES_PER_ATOM))


def batched_forces(calculator: Calculator, atoms_list: Sequence[Atoms], *, max_atoms: int) -> list[np.ndarray]:
    """Forces (eV/Å) for every structure, several structures per forward pass.

    Batches are packed greedily in order up to `max_atoms` atoms; a structure larger than that
    goes alone. Results come back in the order of `atoms_list`.
    """
    from mattersim.datasets.utils.build import build_dataloader

    potential = _mattersim_potential(calculator)
    if potential is None:
        raise ValueError("batched_forces needs a MatterSim calculator")
    args = potential.model.model_args
    out: list[np.ndarray] = []
    for chunk in _chunks(atoms_list, max_atoms=max_atoms):
        loader = build_dataloader(
            list(chunk),
            model_type=potential.model_name,
            cutoff=args["cutoff"],
            threebody_cutoff=args["threebody_cutoff"],
            batch_size=len(chunk),
            only_inference=True,
        )
        _energies, forces, _stresses = potential.predict_properties(loader, include_forces=True)
        out.extend(np.asarray(f, dtype=float) for f in forces)
    return out


def _chunks(atoms_list: Sequence[Atoms], *, max_atoms: int) -> list[list[Atoms]]:
    chunks: list[list[Atoms]] = []
    current: list[Atoms] = []
    count = 0
    for atoms in atoms_list:
        if current and count + len(atoms) > max_atoms:
            chunks.append(current)
            current, count = [], 0
        current.append(atoms)
        count += len(atoms)
    if current:
        chunks.append(current)
    return chunks


def _mattersim_potential(calculator: Calculator) -> Any:
    """MatterSim's `Potential` behind `calculator`, or None (Any: mattersim ships no types)."""
    potential = getattr(calculator, "potential", None)
    if potential is None or not hasattr(potential, "predict_properties"):
        return None
    return potential
