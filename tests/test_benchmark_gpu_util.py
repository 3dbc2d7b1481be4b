"""The throughput benchmark's GPU-utilisation report: nvidia-smi sampling and its force-stage share.

No GPU here: a stand-in `nvidia-smi` script on PATH prints what the real one prints for
`--query-gpu=utilization.gpu --format=csv,noheader,nounits` on a two-GPU machine.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import throughput

from workers.screening.timing import StageTimes


def test_sampler_reads_nvidia_smi_and_splits_out_the_force_stage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\n[ "$1" = "--query-gpu=utilization.gpu" ] || exit 2\nprintf "40\\n60\\n"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    sampler = throughput.GpuSampler(every_s=0.05)
    assert sampler.available
    sampler.start()
    time.sleep(0.5)
    sampler.stop()
    assert len(sampler.samples) >= 3 and {u for _t, u in sampler.samples} == {50.0}

    t0 = sampler.samples[0][0]
    samples = [(t0, 10.0), (t0 + 1, 90.0), (t0 + 2, 80.0), (t0 + 3, 0.0)]
    intervals = [("relax", t0 - 0.5, t0 + 0.5), ("forces", t0 + 0.5, t0 + 2.5), ("post", t0 + 2.5, t0 + 3.5)]
    report = throughput.gpu_utilisation(samples, intervals, available=True)
    assert report == {"samples": 4, "mean_pct": 45.0, "force_stage_samples": 2, "force_stage_mean_pct": 85.0}
    assert throughput.gpu_utilisation([], [], available=False) is None


def test_stage_log_is_written_only_when_asked(tmp_path: Path) -> None:
    unlogged = StageTimes()
    with unlogged.stage("relax"):
        pass
    assert not list(tmp_path.iterdir()) and set(unlogged) == {"relax"}
    timings = StageTimes(log=tmp_path)
    before = time.time()
    with timings.stage("forces"):
        time.sleep(0.05)
    ((stage, start, end),) = throughput.read_stage_log(tmp_path)
    assert stage == "forces" and before - 0.01 <= start < end <= time.time() + 0.01 and end - start >= 0.04
    timings.close()
    assert set(timings) == {"forces", "total"} and timings["total"] == timings["forces"]
