"""SevenNet's energy, forces and stress as one graph, so that torch.compile can take it whole.

Used for SevenNet-0 and SevenNet-l3i5 (the same modules and force head; l3i5 carries lmax 3).

SevenNet's own model (`AtomGraphSequential`) cannot be compiled as one graph: it sets
`requires_grad` on the edge vectors inside the model, branches on a tensor (`eval_type_map`, the
cell volume), and its force head calls `torch.autograd.grad` on a graph that dynamo has already
cut. Compiled as it is, it falls apart into ~35 graphs called one after another, and dynamo traces
them again in every new process (~20 s with torch's caches warm).

`ForceStressField` runs SevenNet's own modules for everything up to the total energy and
replaces only the force/stress head (`ForceStressOutputFromEdge`, non-batch mode) with the same
arithmetic written without data-dependent branches: forces are the edge gradients summed onto
source minus destination atoms, the virial the same Voigt products summed onto destination atoms,
the volume clamped at 1e-3 Å^3 where SevenNet replaces anything smaller by it. The whole
evaluation is then one graph (dynamo traces the `autograd.grad` call into it), which

- runs small cells faster (2-12 atoms: 26.6 ms against 34.2 ms for the per-module graphs);
- can be compiled ahead of time and saved: `workers.screening.potentials.compiled` keeps it on disk, so a
  new worker process loads it in ~2 s instead of tracing for ~20 s.

Tests compare it with SevenNet's own model, eager, to float32 rounding.
"""

from __future__ import annotations

from typing import Any

import torch

# Keys of SevenNet's graph dictionaries (sevenn._keys), spelled out: the compiled graph depends on
# exactly these names, and a renamed key must fail here, at construction, not inside a graph.
EDGE_VEC = "edge_vec"
EDGE_IDX = "edge_index"
ATOMIC_NUMBERS = "atomic_numbers"
CELL_VOLUME = "cell_volume"
TOTAL_ENERGY = "inferred_total_energy"
ATOMIC_ENERGY = "atomic_energy"
FORCE = "inferred_force"
STRESS = "inferred_stress"
# SevenNet: "for cell volume = 0 for non PBC structures"
VOLUME_FLOOR = 1e-3


class UnsupportedModel(TypeError):
    """The model is not a SevenNet model of the shape this graph reproduces."""


class ForceStressField(torch.nn.Module):
    """(energy, atomic energies, forces, stress) of one structure's graph, as one graph.

    The input is the dictionary of a SevenNet `AtomGraphData` (non-batch) whose `edge_vec`
    requires grad; it is not modified. Outputs match the keys SevenNet's calculator reads:
    energy (0-d), atomic energies (N, 1), forces (N, 3), stress (6,) in SevenNet's sign and order.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        # duck-typed: SevenNet's AtomGraphSequential, checked attribute by attribute below
        sevennet: Any = model
        layers: list[torch.nn.Module] = list(sevennet) if hasattr(model, "_atomic_numbers_to_onehot") else []
        head = layers[-1] if layers else None
        if head is None or type(head).__name__ != "ForceStressOutputFromEdge":
            raise UnsupportedModel("not a SevenNet model ending in ForceStressOutputFromEdge")
        expected = {
            "key_edge": EDGE_VEC, "key_edge_idx": EDGE_IDX, "key_energy": TOTAL_ENERGY,
            "key_force": FORCE, "key_stress": STRESS, "key_cell_volume": CELL_VOLUME,
        }  # fmt: skip
        for attribute, key in expected.items():
            if getattr(head, attribute, None) != key:
                raise UnsupportedModel(
                    f"SevenNet force head: {attribute} is {getattr(head, attribute, None)!r}, not {key!r}"
                )
        if head._is_batch_data or head.use_atomic_virial or getattr(model, "eval_modal_map", False):
            raise UnsupportedModel("SevenNet model in batch, atomic-virial or multi-modal mode")
        if getattr(model, "key_grad", None) != EDGE_VEC:
            raise UnsupportedModel(
                f"SevenNet model differentiates {getattr(model, 'key_grad', None)!r}, not {EDGE_VEC!r}"
            )
        self.model: Any = model
        self.map_types = bool(model.eval_type_map)
        self.n_body = len(layers) - 1

    def forward(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        model = self.model
        data = dict(inputs)  # a local dict: the modules write into it
        if self.map_types:
            data[model.key_node_feature] = model._atomic_numbers_to_onehot(data[model.key_atomic_numbers])
        for i, layer in enumerate(model):
            if i == self.n_body:  # the force head, replaced below
                break
            data = layer(data)
        rij = data[EDGE_VEC]
        energy = data[TOTAL_ENERGY]
        (fij,) = torch.autograd.grad([energy.sum()], [rij])
        n_atoms = data[ATOMIC_NUMBERS].shape[0]
        src, dst = data[EDGE_IDX][0], data[EDGE_IDX][1]
        zeros = fij.new_zeros((n_atoms, 3))
        forces = zeros.index_add(0, src, fij) - zeros.index_add(0, dst, fij)
        virial = torch.cat(
            [
                rij * fij,
                (rij[:, 0] * fij[:, 1]).unsqueeze(-1),
                (rij[:, 1] * fij[:, 2]).unsqueeze(-1),
                (rij[:, 2] * fij[:, 0]).unsqueeze(-1),
            ],
            dim=-1,
        )
        summed = fij.new_zeros((n_atoms, 6)).index_add(0, dst, virial).sum(0)
        volume = torch.clamp(data[CELL_VOLUME], min=VOLUME_FLOOR)
        stress = -summed / volume.unsqueeze(-1)
        return energy.detach(), data[ATOMIC_ENERGY].detach(), forces, stress
