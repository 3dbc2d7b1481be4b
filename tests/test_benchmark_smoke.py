"""The throughput benchmark end to end on two tiny real generator cells: last line and JSON.

The pipeline arm runs as two 1-thread processes (--jobs 2), which also exercises `screen_parallel`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_throughput_smoke(tmp_path: Path, shared_data: Path) -> None:
    cmd = [
        sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--n", "2", "--potential", "sevennet-0",
        "--protocol", "phononbench", "--max-atoms", "3", "--jobs", "2", "--data", str(shared_data), "--out", str(tmp_path),
        "--prescreen", "chgnet-0.3.0",
    ]  # fmt: skip
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    last = re.fullmatch(r"speedup (\d+\.\d\d) agreement (\d+)/(\d+)", lines[-1])
    assert last, lines[-1]
    assert int(last.group(3)) == 2 and int(last.group(2)) <= 2

    (path,) = tmp_path.glob("throughput_phononbench_sevennet-0_n2_*.json")
    report = json.loads(path.read_text())
    summary, comparison = report["summary"], report["comparison"]
    assert len(report["sample"]) == 2 and all(s["n_sites"] <= 3 for s in report["sample"])
    # one structure from each of the first two generators, read from the real files
    assert [s["generator"] for s in report["sample"]] == ["mattergen", "diffcsp"]
    for arm in ("reference", "pipeline"):
        results = report["arms"][arm]["results"]
        assert [r["name"] for r in results] == [s["name"] for s in report["sample"]]
        assert all(r["verdict"] in ("stable", "unstable", "relax_failed", "failed") for r in results)
        assert summary[arm]["structures_per_hour"] > 0
        assert summary[arm]["peak_tree_rss_mib"] > 100  # a torch model was resident
        assert report["arms"][arm]["wall_s"] > 0
    assert summary["pipeline"]["layout"]["processes"] == 2
    for arm in ("reference", "pipeline"):  # no nvidia-smi on the CI machine
        assert report["arms"][arm]["gpu_utilisation"] is None
        assert f"gpu utilisation {arm}: no nvidia-smi on this machine" in proc.stdout
    # the reference runs the model eager, as PhononBench did; the pipeline as it would in production
    assert report["arms"]["reference"]["potential"]["execution"] == "eager"
    assert report["arms"]["pipeline"]["potential"]["execution"].startswith("torch.compile")
    assert summary["reference"]["atom_force_evaluations"] > 0 and summary["work_ratio"] > 0
    ref_split = summary["reference"]["time_split_s"]
    assert ref_split["relax"] > 0 and ref_split["gamma"] == 0  # the reference has no Γ check
    assert f"{summary['speedup']:.2f}" == last.group(1)
    assert (comparison["agreeing"], comparison["total"]) == (int(last.group(2)), 2)
    # every disagreement is listed with a reason
    assert len(comparison["disagreements"]) == 2 - comparison["agreeing"]
    assert all(d["why"] for d in comparison["disagreements"])
    # what makes runs on different machines comparable: the CPU, torch's threads, a fixed cell's call
    machine = report["machine"]
    assert machine["cpu_model"] and machine["torch_threads_default"] >= 1
    calls = machine["eager_call_ms_1_thread"]
    assert 0 < calls["si8"] < calls["si64"]  # 64 atoms cost more than 8
    assert f"8-atom Si {calls['si8']:.1f} ms, 64-atom Si {calls['si64']:.1f} ms" in proc.stdout
    assert f"machine: {machine['cpu_model']}, " in proc.stdout
    per = [summary[arm]["wall_s"] / 2 for arm in ("pipeline", "reference")]
    assert (
        f"cost per structure: pipeline (phononbench protocol, prescreen chgnet-0.3.0 in the pipeline) {per[0]:.1f} s, "
        f"PhononBench reference loop {per[1]:.1f} s: ratio {per[1] / per[0]:.2f}"
    ) in proc.stdout
    # the pipeline ran the prescreen: each structure settled by it or carrying its verdict
    for r in report["arms"]["pipeline"]["results"]:
        assert r["settled_by_prescreen"] or r["prescreen"]["potential"] == "chgnet-0.3.0", r
