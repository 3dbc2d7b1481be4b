"""Prescreen and second opinion: the rules (settle, agree, stable by both), their order in the
pipeline (with stand-in potentials), and one real run through the CLI."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from pymatgen.core import Lattice, Structure

import workers.screening.pipeline as pipeline
from workers.screening.opinions import (
    Opinions,
    agreement,
    run_label,
    settles,
    stable_by_both,
    summarize_opinions,
)
from workers.screening.protocols import get_protocol
from workers.screening.types import PotentialInfo, Provenance, ScreeningResult, StructureRecord


def _result(name: str, potential: str, verdict: str, min_thz: float | None) -> ScreeningResult:
    info = PotentialInfo(name=potential, version="v", checkpoint="c", checkpoint_sha256="0" * 64, device="cpu")
    return ScreeningResult(
        name=name, verdict=verdict, reason="optical" if verdict == "unstable" else None,
        stable_phononbench=verdict == "stable", stable_phononbench_v3=verdict == "stable", formula="Si", n_sites=2,
        crystal_system="cubic",
        spacegroup_number=227, worst_mode=None, min_frequency_thz=min_thz, relax=None, phonons=None,
        confirmation_of=None, elastic_tensor_gpa=None, born_stable=None, thermal=None, bands=None,
        relaxed_cif=None, timings_s={"total": 2.0}, warnings=[],
        provenance=Provenance(protocol="default", protocol_settings={}, settings_hash="h", potential=info, versions={}),
    )  # fmt: skip


def test_the_prescreen_settles_only_instabilities_beyond_its_margin() -> None:
    assert settles(_result("a", "cheap", "unstable", -1.5), margin_thz=1.0)
    assert not settles(_result("a", "cheap", "unstable", -0.5), margin_thz=1.0)  # shallow: the main potential decides
    assert not settles(_result("a", "cheap", "stable", 0.0), margin_thz=1.0)
    assert not settles(_result("a", "cheap", "relax_failed", None), margin_thz=1.0)
    assert not settles(_result("a", "cheap", "unstable", None), margin_thz=0.0)
    with pytest.raises(ValueError, match="margin"):
        Opinions(prescreen_margin_thz=-1.0)


def test_agreement_and_stable_by_both() -> None:
    stable, unstable = _result("a", "m", "stable", 0.0), _result("a", "s", "unstable", -2.0)
    assert agreement(stable, stable) is True and agreement(stable, unstable) is False
    assert agreement(stable, _result("a", "s", "failed", None)) is None
    assert stable_by_both("stable", "stable") and not stable_by_both("stable", "unstable")
    assert not stable_by_both("unstable", "stable")
    assert run_label("m") == "m" and run_label("m", prescreen="p", second_opinion="s") == "m+prescreen:p+second:s"


@pytest.fixture
def stand_ins(monkeypatch):
    """screen_structure answers from a table (potential, structure name) -> (verdict, min THz), and
    records every call: the order and the skipped work are what is tested."""
    table = {
        ("cheap", "deep"): ("unstable", -3.0),
        ("cheap", "shallow"): ("unstable", -0.2),
        ("cheap", "fine"): ("stable", 0.0),
        ("main", "shallow"): ("stable", 0.0),
        ("main", "fine"): ("stable", 0.0),
        ("other", "shallow"): ("unstable", -0.4),
        ("other", "fine"): ("stable", 0.0),
    }
    calls: list[tuple[str, str]] = []

    def screen_structure(structure, *, name, protocol, potential, **_):
        calls.append((potential.info.name, name))
        verdict, thz = table[(potential.info.name, name)]
        return _result(name, potential.info.name, verdict, thz)

    monkeypatch.setattr(pipeline, "screen_structure", screen_structure)
    return calls


def _potential(name: str):
    return SimpleNamespace(info=SimpleNamespace(name=name, device="cpu"), calculator=None)  # serial path on a CPU


def test_pipeline_order_prescreen_main_second(stand_ins) -> None:
    si = Structure(Lattice.cubic(5.43), ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]])
    items = [
        StructureRecord(name=n, source="x", index=i, structure=si) for i, n in enumerate(("deep", "shallow", "fine"))
    ]
    opinions = Opinions(prescreen=_potential("cheap"), prescreen_margin_thz=1.0, second_opinion=_potential("other"))
    deep, shallow, fine = pipeline.screen_structures(
        items, protocol=get_protocol("default"), potential=_potential("main"), opinions=opinions, duplicates=[None] * 3
    )
    # the deep instability never reaches the main potential nor the second opinion
    assert stand_ins == [
        ("cheap", "deep"),
        ("cheap", "shallow"), ("main", "shallow"), ("other", "shallow"),
        ("cheap", "fine"), ("main", "fine"), ("other", "fine"),
    ]  # fmt: skip
    assert deep.settled_by_prescreen and deep.main_potential == "main" and deep.verdict == "unstable"
    assert deep.provenance.potential.name == "cheap" and deep.second_opinion is None
    assert not shallow.settled_by_prescreen and shallow.verdict == "stable" and shallow.prescreen.verdict == "unstable"
    assert shallow.second_opinion.verdict == "unstable" and shallow.agreement is False
    assert fine.agreement is True and fine.second_opinion.potential == "other"
    summary = summarize_opinions([r.as_dict(bulky=False) for r in (deep, shallow, fine)])
    assert summary["prescreen"] == {"settled": 1, "passed_on": 2, "same_verdict_as_main": 1, "seconds": 6.0}
    second = summary["second_opinion"]
    assert (second["n"], second["agree"], second["disagree"], second["stable_by_both"]) == (2, 1, 1, 1)
    assert [d["name"] for d in second["disagreements"]] == ["shallow"]


def test_a_duplicate_carries_the_opinions_of_its_original(stand_ins) -> None:
    si = Structure(Lattice.cubic(5.43), ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]])
    items = [StructureRecord(name=n, source="x", index=i, structure=si) for i, n in enumerate(("fine", "fine2"))]
    opinions = Opinions(second_opinion=_potential("other"))
    first, copy = pipeline.screen_structures(
        items, protocol=get_protocol("default"), potential=_potential("main"), opinions=opinions, duplicates=[None, 0]
    )
    assert stand_ins == [("main", "fine"), ("other", "fine")]
    assert copy.agreement is True and dataclasses.replace(copy, name="fine", extra={}, timings_s={}) == (
        dataclasses.replace(first, extra={}, timings_s={})
    )


@pytest.mark.slow
def test_cli_prescreen_and_second_opinion_on_real_cells(tmp_path: Path, examples_dir: Path) -> None:
    """Cubic SrTiO3 (unstable: the R-point tilt, below -1 THz with CHGNet) is settled by a CHGNet
    prescreen at a 1 THz margin (given: the test is about the mechanism, not the default); diamond Si goes on to SevenNet-0 and gets a CHGNet second opinion that agrees."""
    from app.cli import main

    out = tmp_path / "out"
    args = [
        "screen", str(examples_dir / "SrTiO3_cubic.cif"), str(examples_dir / "Si_diamond.cif"),
        "--potential", "sevennet-0", "--prescreen", "chgnet-0.3.0", "--second-opinion", "chgnet-0.3.0",
        "--prescreen-margin", "1.0", "--compile", "off", "--jobs", "1", "--out", str(out),
    ]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    sto, si = rows["SrTiO3_cubic.cif"], rows["Si_diamond.cif"]
    assert sto["settled_by_prescreen"] and sto["verdict"] == "unstable" and sto["min_frequency_thz"] < -1.0
    assert sto["provenance"]["potential"]["name"] == "chgnet-0.3.0" and sto["main_potential"] == "sevennet-0"
    assert si["verdict"] == "stable" and si["provenance"]["potential"]["name"] == "sevennet-0"
    assert si["prescreen"]["verdict"] == "stable" and si["second_opinion"]["verdict"] == "stable"
    assert si["agreement"] is True
    summary = json.loads((out / "summary.json").read_text())
    assert (
        summary["opinions"]["prescreen"]["settled"] == 1
        and summary["opinions"]["second_opinion"]["stable_by_both"] == 1
    )
    assert "prescreen: settled 1" in result.output and "stable by both 1" in result.output
    again = CliRunner().invoke(main, args)  # the same run again: nothing left to do
    assert again.exit_code == 0 and "screening 0" in again.output
