"""CHGNet's memory guard: a call whose graph would need more than the process's budget fails with
that reason before it runs, and a second opinion that cannot run leaves the main verdict alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ase.build import bulk
from click.testing import CliRunner
from pymatgen.io.ase import AseAtomsAdaptor

from workers.screening.potentials import ModelMemoryError, budget_mib, load_potential
from workers.screening.potentials.memory import CHGNET_GRAPH_COST


def test_budgets_from_the_setting_or_the_machine() -> None:
    assert budget_mib(2.0, processes=4) == 2048.0
    assert budget_mib(0, processes=1) is None  # 0: no limit
    one, two = budget_mib(None, processes=1), budget_mib(None, processes=2)
    assert one is not None and two is not None and one == pytest.approx(2 * two) and one > 1024


def test_chgnet_refuses_a_cell_over_its_budget_and_runs_one_under_it() -> None:
    small = bulk("C", "diamond", a=3.567)  # 2 atoms
    large = bulk("C", "diamond", a=3.567, cubic=True).repeat((2, 2, 2))  # 64 atoms, 5 GB measured
    plain = load_potential("chgnet-0.3.0", device="cpu")
    sizes = []
    for atoms in (small, large):
        graph = plain.calculator.model.graph_converter(AseAtomsAdaptor.get_structure(atoms))
        sizes.append(CHGNET_GRAPH_COST.estimate_mib(edges=len(graph.atom_graph), angles=len(graph.bond_graph)))
    assert sizes[1] > 4 * sizes[0]
    guarded = load_potential("chgnet-0.3.0", device="cpu", memory_budget_mib=(sizes[0] + sizes[1]) / 2)
    assert guarded.calculator.model is not plain.calculator.model  # the budget is part of the cache key
    small.calc = guarded.new_calculator()
    assert small.get_forces().shape == (2, 3)
    large.calc = guarded.new_calculator()
    with pytest.raises(ModelMemoryError, match=r"chgnet-0.3.0 would need about .* for this 64-atom cell"):
        large.get_forces()


@pytest.mark.slow
def test_a_second_opinion_over_budget_fails_alone(tmp_path: Path, examples_dir: Path) -> None:
    """SevenNet-0's verdict on diamond Si stands; the CHGNet second opinion, refused by a 1 MB budget
    (what a machine far too small for the cell would give), is `failed` with the reason in words."""
    from app.cli import main

    out = tmp_path / "out"
    args = [
        "screen", str(examples_dir / "Si_diamond.cif"), "--potential", "sevennet-0",
        "--second-opinion", "chgnet-0.3.0", "--model-memory-gb", "0.001", "--compile", "off", "--jobs", "1",
        "--out", str(out),
    ]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    (row,) = map(json.loads, (out / "results.jsonl").read_text().splitlines())
    assert row["verdict"] == "stable" and row["provenance"]["potential"]["name"] == "sevennet-0"
    second = row["second_opinion"]
    assert second["verdict"] == "failed" and "ModelMemoryError" in second["reason"]
    assert "more than this process's 1 MB" in second["reason"] and row["agreement"] is None
