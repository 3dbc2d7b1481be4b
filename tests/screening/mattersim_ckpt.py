"""Test helper: write a small random-weight MatterSim checkpoint in MatterSim's own file format."""

from __future__ import annotations

from pathlib import Path


def write_random_mattersim_checkpoint(path: str | Path, *, seed: int = 0) -> Path:
    """Save a tiny randomly initialised M3GNet with MatterSim's `Potential.save`; return the path.

    Same keys as the released checkpoints (model_name, model_args, model, optimizer, ema, ...),
    so MatterSim's loader reads it exactly as it reads the real weights; the sizes are small so
    one evaluation of a 16-atom cell takes milliseconds on CPU. The physics is meaningless.
    """
    import torch
    from mattersim.forcefield.m3gnet.m3gnet import M3Gnet
    from mattersim.forcefield.potential import Potential

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = M3Gnet(num_blocks=1, units=16, max_l=2, max_n=2, cutoff=5.0, threebody_cutoff=4.0, device="cpu")
    Potential(model, device="cpu").save(str(path))
    return path
