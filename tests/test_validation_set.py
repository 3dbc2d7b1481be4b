"""The validation set (benchmarks/validation/): its manifest, its structures, and the benchmark's bookkeeping.

Pure structure checks and synthetic rows: no potential runs, so this takes seconds.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SET = ROOT / "benchmarks" / "validation"
DOI = re.compile(r"^10\.\d{4,9}/\S+$")


def _module(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def build() -> ModuleType:
    return _module(SET / "build_structures.py", "validation_build_structures")


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return _module(ROOT / "benchmarks" / "validation.py", "validation_benchmark")


@pytest.fixture(scope="module")
def crystals(build: ModuleType) -> list[dict[str, Any]]:
    return build.load_manifest()


def test_manifest_size_labels_and_citations(crystals: list[dict[str, Any]]) -> None:
    ids = [c["id"] for c in crystals]
    assert len(ids) == len(set(ids)) >= 40
    labels = [c["expected"] for c in crystals]
    assert set(labels) == {"stable", "unstable"}
    assert labels.count("stable") >= 20 and labels.count("unstable") >= 20
    for c in crystals:
        cite = c["citation"]
        assert DOI.match(str(cite["doi"])), c["id"]
        assert cite["authors"] and cite["title"] and cite["journal"] and int(cite["year"]) > 1900, c["id"]
        assert cite["verified"] in ("abstract+doi", "abstract", "memory"), c["id"]
        assert c["state"] and c["family"], c["id"]
        # an unstable label says where the instability is; a stable one has none
        assert bool(c["instability"]) == (c["expected"] == "unstable"), c["id"]


def test_every_structure_matches_its_row(build: ModuleType, crystals: list[dict[str, Any]]) -> None:
    from pymatgen.core import Structure

    for c in crystals:
        path = SET / f"{c['id']}.cif"
        assert path.is_file(), path
        structure = Structure.from_file(path)
        # formula, atom count, space group at symprec 0.01 and 0.1, no overlapping atoms
        assert build.check_structure(structure, c) == [], c["id"]


def test_project_reader_reads_the_folder_as_the_set(crystals: list[dict[str, Any]]) -> None:
    from workers.screening.ingest.read import read_structures

    # the manifest and the build program are skipped; a stray file no parser claims (a __pycache__
    # left by an import) is not an input either, as `phononscreen screen` treats a folder
    records = [r for r in read_structures(SET) if not (r.error and r.error.code == "unsupported_format")]
    assert sorted(r.name for r in records) == sorted(f"{c['id']}.cif" for c in crystals)
    assert all(r.ok for r in records), [(r.name, r.error) for r in records if not r.ok]


def test_select_alternates_labels_and_checks_ids(bench: ModuleType, crystals: list[dict[str, Any]]) -> None:
    chosen = bench.select_crystals(crystals, limit=6)
    assert [c["expected"] for c in chosen] == ["stable", "unstable"] * 3
    assert [c["id"] for c in bench.select_crystals(crystals, only="ti_bcc,si_diamond")] == ["si_diamond", "ti_bcc"]
    with pytest.raises(SystemExit, match="unknown crystal"):
        bench.select_crystals(crystals, only="no_such_crystal")


def test_evaluate_counts_agreement_wrong_ones_and_opinions(bench: ModuleType) -> None:
    crystals = [
        {"id": "a", "expected": "stable"},
        {"id": "b", "expected": "unstable"},
        {"id": "c", "expected": "unstable"},
        {"id": "d", "expected": "stable"},
    ]
    rows = {
        "a.cif": {"verdict": "stable", "stable_phononbench": True, "timings_s": {"total": 2.0},
                  "second_opinion": {"verdict": "stable"}},
        "b.cif": {"verdict": "stable", "stable_phononbench": True, "min_frequency_thz": -0.01,
                  "timings_s": {"relax": 1.0, "forces": 3.0}, "second_opinion": {"verdict": "unstable"}},
        "c.cif": {"verdict": "relax_failed", "reason": "not_converged", "stable_phononbench": False,
                  "second_opinion": {"verdict": "unstable"}},
    }  # fmt: skip
    run = bench.Run("sevennet-0", "default", second_opinion="chgnet-0.3.0")
    out = bench.evaluate(crystals, rows, run=run, wall_s=9.0)
    assert (out.correct, out.n) == (1, 4)
    assert out.by_label == {"stable": [1, 2], "unstable": [0, 2]}
    assert out.phononbench_correct == 2  # a stable, c not stable; b wrongly stable; d missing
    assert [(w["id"], w["got"]) for w in out.wrong] == [("b", "stable"), ("c", "relax_failed"), ("d", "missing")]
    assert out.missing == ["d"]
    assert out.time_per_structure_s["mean"] == pytest.approx(3.0)  # 2 s and 1 + 3 s
    second = out.second_opinion
    # b and c: the second opinion differs from the main verdict; d has neither
    assert second is not None and (second["correct"], second["both_correct"], second["disagree"]) == (3, 3, 2)
    text = bench.format_outcome(out)
    assert "agreement 1/4" in text and all(f"\n    {w} " in text for w in "bcd")
    assert run.label == "sevennet-0+second:chgnet-0.3.0" and ":" not in run.folder


def test_plain_run_is_read_from_the_second_opinion_run(bench: ModuleType) -> None:
    plan = bench.plan_runs(potentials=["p"], protocols=["default"], prescreens=[], seconds=["q"])
    (plain, source), (second, none) = plan
    assert plain == bench.Run("p", "default") and source == second == bench.Run("p", "default", second_opinion="q")
    assert none is None


def test_refuses_options_the_cli_lacks(bench: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.setattr(bench, "cli_accepts", lambda option: False)
    monkeypatch.setattr(bench, "screen", lambda *a, **k: pytest.fail("nothing may run"))
    assert bench.main(["--prescreen", "chgnet-0.3.0", "--only", "si_diamond"]) == 2
    assert "no --prescreen option yet" in capsys.readouterr().err


def test_prescreen_replay_settles_by_the_workers_rule_and_counts_time() -> None:
    margin = _module(ROOT / "benchmarks" / "prescreen_margin.py", "prescreen_margin_benchmark")
    main = {
        "a.cif": {"verdict": "stable", "timings_s": {"total": 10.0}},
        "b.cif": {"verdict": "unstable", "min_frequency_thz": -3.0, "timings_s": {"total": 10.0}},
        "c.cif": {"verdict": "stable", "timings_s": {"total": 10.0}},
    }
    pre = {
        "a.cif": {"verdict": "stable", "min_frequency_thz": 0.0, "timings_s": {"total": 1.0}},
        "b.cif": {"verdict": "unstable", "min_frequency_thz": -4.0, "timings_s": {"total": 1.0}},
        "c.cif": {"verdict": "unstable", "min_frequency_thz": -1.5, "timings_s": {"total": 1.0}},
        "x.cif": {"verdict": "unstable", "min_frequency_thz": -9.0, "timings_s": {"total": 1.0}},  # main lacks it
    }
    expected = {"a.cif": "stable", "b.cif": "unstable", "c.cif": "stable"}
    deep = margin.replay(main, pre, margin_thz=2.0, expected=expected)
    assert deep["n"] == 3 and deep["settled"] == ["b.cif"] and deep["changed"] == []
    assert deep["time_with_prescreen_s"] == pytest.approx(3 * 1.0 + 2 * 10.0) and deep["time_main_s"] == 30.0
    assert (deep["right_main"], deep["right_with_prescreen"]) == (3, 3)
    shallow = margin.replay(main, pre, margin_thz=1.0, expected=expected)
    assert shallow["settled"] == ["b.cif", "c.cif"] and [c["name"] for c in shallow["changed"]] == ["c.cif"]
    assert shallow["right_with_prescreen"] == 2 and shallow["time_ratio"] == pytest.approx(13 / 30)
    assert "2.0" in margin.format_table([deep, shallow], labelled=True)
