"""Batched relaxation: many `Relaxation` machines stepped together, one forward pass per step.

Structures enter while the batch has room (an atom budget) and leave as they finish, so the batch
stays full (in-flight refill). Each machine applies exactly the serial criteria (relax.py); only
the evaluation is shared. A structure whose evaluation fails is failed alone: its batch goes on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from workers.screening.physics.relax import Evaluation, Relaxation, RelaxOutcome

if TYPE_CHECKING:
    from ase import Atoms
    from ase.calculators.calculator import Calculator

    from workers.screening.protocols import ProtocolSettings


def relax_batch(
    structures: Sequence[Atoms], *, calculator: Calculator, settings: ProtocolSettings, max_atoms: int
) -> list[RelaxOutcome]:
    """Relax every structure; outcomes in input order, each equal to `relax_structure`'s."""
    machines: dict[int, Relaxation] = {}  # by input index, from the step it enters the batch
    waiting = list(range(len(structures)))
    active: list[int] = []
    while waiting or active:
        budget = max_atoms - sum(len(structures[i]) for i in active)
        while waiting and (not active or len(structures[waiting[0]]) <= budget):
            i = waiting.pop(0)
            machines[i] = Relaxation(structures[i], settings=settings)
            active.append(i)
            budget -= len(structures[i])
        evaluations = _evaluate_all(calculator, [machines[i].atoms for i in active])
        for i, evaluation in zip(active, evaluations, strict=True):
            if isinstance(evaluation, Exception):
                machines[i].fail(
                    f"diverged: the potential failed to evaluate ({type(evaluation).__name__}: {evaluation})"
                )
            else:
                machines[i].advance(evaluation)
        active = [i for i in active if not machines[i].done]
    return [machines[i].outcome() for i in range(len(structures))]


def _evaluate_all(calculator: Calculator, atoms_list: list[Atoms]) -> Sequence[Evaluation | Exception]:
    """One batched forward pass; if the batch fails, each structure alone (to find the culprit)."""
    try:
        return _mattersim_batch(calculator, atoms_list)
    except Exception as exc:  # noqa: BLE001
        if len(atoms_list) == 1:  # the culprit: fail it alone, without evaluating it again
            return [exc]
        return [item for atoms in atoms_list for item in _evaluate_all(calculator, [atoms])]


def _mattersim_batch(calculator: Calculator, atoms_list: list[Atoms]) -> list[Evaluation]:
    from ase.stress import full_3x3_to_voigt_6_stress
    from ase.units import GPa
    from mattersim.datasets.utils.build import build_dataloader

    potential = cast(Any, calculator).potential  # MatterSimCalculator's; batching.supports_batching checked it
    args = potential.model.model_args
    probes = []
    for atoms in atoms_list:
        probe = atoms.copy()
        probe.set_constraint()
        probes.append(probe)
    loader = build_dataloader(
        probes,
        model_type=potential.model_name,
        cutoff=args["cutoff"],
        threebody_cutoff=args["threebody_cutoff"],
        batch_size=len(probes),
        only_inference=True,
    )
    energies, forces, stresses = potential.predict_properties(loader, include_forces=True, include_stresses=True)
    # MatterSim predicts stress in GPa (3x3); ASE wants Voigt eV/Å^3, as MatterSimCalculator does
    return [
        Evaluation(
            energy=float(e), forces=np.asarray(f, dtype=float), stress=GPa * full_3x3_to_voigt_6_stress(np.asarray(s))
        )
        for e, f, s in zip(energies, forces, stresses, strict=True)
    ]
