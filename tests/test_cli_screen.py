"""`phononscreen screen`: help, bad inputs, an unavailable potential, and a real end-to-end run."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import main

SI_CIF = """data_Si
_symmetry_space_group_name_H-M   'P 1'
_cell_length_a   3.8669
_cell_length_b   3.8669
_cell_length_c   3.8669
_cell_angle_alpha   60.0
_cell_angle_beta   60.0
_cell_angle_gamma   60.0
_symmetry_Int_Tables_number   1
loop_
 _symmetry_equiv_pos_as_xyz
  'x, y, z'
loop_
 _atom_site_label
 _atom_site_type_symbol
 _atom_site_fract_x
 _atom_site_fract_y
 _atom_site_fract_z
 _atom_site_occupancy
  Si0  Si  0.00  0.00  0.00  1
  Si1  Si  0.25  0.25  0.25  1
"""


def _csv_rows(out: Path) -> list[dict[str, str]]:
    with (out / "results.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_help_explains_every_option() -> None:
    result = CliRunner().invoke(main, ["screen", "--help"])
    assert result.exit_code == 0, result.output
    text = result.output
    for option in (
        "--protocol",
        "--potential",
        "--potential-checkpoint",
        "--device",
        "--out",
        "--max-atoms",
        "--limit",
        "--generator",
    ):
        assert option in text
    for word in (
        "phononbench",
        "mattersim-v1.0.0-5m",
        "sevennet-0",
        "Examples:",
        "results.csv",
        "results.jsonl",
        "structures/NAME/",
        "relaxed.cif",
        "band_structure.png",
        "summary.json",
        "skips",
        "PHONONSCREEN_MAX_ATOMS, else 200",
        "PHONONSCREEN_COMPILE, else auto",
    ):
        assert word in text


def test_bad_file_is_a_failed_row_and_exit_0(tmp_path: Path) -> None:
    bad = tmp_path / "broken.cif"
    bad.write_text("data_x\n_cell_length_a nonsense\nthis is not a crystal\n")
    close = tmp_path / "close.cif"
    close.write_text(SI_CIF.replace("0.25  0.25  0.25", "0.01  0.01  0.01"))  # 0.07 Å apart
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["screen", str(bad), str(close), "--potential", "sevennet-0", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in _csv_rows(out)}
    assert rows["broken.cif"]["verdict"] == "failed"
    assert rows["broken.cif"]["reason"]
    assert rows["close.cif"]["verdict"] == "failed"
    assert "overlapping_atoms" in rows["close.cif"]["reason"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["failed"] == 2 and summary["stable_rate"] == 0.0
    assert "failed" in result.output  # the summary table is printed


def test_named_mattersim_without_weights_fails_with_how_to(tmp_path: Path, monkeypatch) -> None:
    from workers.screening.potentials.registry import clear_potential_cache

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    clear_potential_cache()
    cif = tmp_path / "Si.cif"
    cif.write_text(SI_CIF)
    result = CliRunner().invoke(
        main, ["screen", str(cif), "--potential", "mattersim-v1.0.0-5m", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code != 0
    assert "mattersim-v1.0.0-5m" in result.output and "--potential-checkpoint" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "o" / "results.jsonl").exists()  # nothing screened with another model


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(main, ["screen", str(tmp_path / "nope.cif")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    ckpt = tmp_path / "w.pth"
    ckpt.write_bytes(b"x")
    cif = tmp_path / "Si.cif"
    cif.write_text(SI_CIF)
    wrong = runner.invoke(main, ["screen", str(cif), "--potential", "sevennet-0", "--potential-checkpoint", str(ckpt)])
    assert wrong.exit_code == 2 and "only to MatterSim" in wrong.output
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README.md").write_text("no structures here")
    none = runner.invoke(main, ["screen", str(empty), "--potential", "sevennet-0", "--out", str(tmp_path / "o")])
    assert none.exit_code == 2 and "no structure" in none.output
    uncompiled = runner.invoke(
        main, ["screen", str(cif), "--potential", "chgnet-0.3.0", "--compile", "on", "--out", str(tmp_path / "o")]
    )
    assert (
        uncompiled.exit_code == 2
        and "implemented for sevennet-0, sevennet-l3i5, not 'chgnet-0.3.0'" in uncompiled.output
    )


@pytest.mark.slow
def test_end_to_end_si_then_rerun_skips(tmp_path: Path) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "Si.cif").write_text(SI_CIF)
    (inputs / "notes.md").write_text("ignored")
    out = inputs / "out"  # inside the input folder: must not be screened on the re-run
    args = ["screen", str(inputs), "--potential", "sevennet-0", "--out", str(out), "--generator", "textbook"]
    runner = CliRunner()
    first = runner.invoke(main, args)
    assert first.exit_code == 0, first.output
    rows = _csv_rows(out)
    assert [(r["name"], r["verdict"]) for r in rows] == [("Si.cif", "stable")]
    row = rows[0]
    assert row["potential"] == "sevennet-0" and row["protocol"] == "default"
    assert row["generator"] == "textbook" and row["spacegroup_after"].endswith("(227)")
    assert float(row["min_frequency_thz"]) > -0.05
    line = json.loads((out / "results.jsonl").read_text())
    # the default (--compile auto) weighs the run's work (2 atoms) against the measured break-even
    # (lower when this machine saved the compiled graph before); the choice and its reason are
    # said before the run, and the row records what ran
    compiled = "torch.compile: auto: 2 atoms of work per process >= break-even" in first.output
    assert compiled or "eager: auto: 2 atoms of work per process < break-even" in first.output, first.output
    ran = line["provenance"]["potential"]
    if compiled:  # the graph computed forces; calls it does not fit (if any) are counted, not hidden
        assert ran["execution"].startswith("torch.compile") and ran["compiled_calls"] > 0, ran
    else:
        assert ran["execution"] == "eager" and ran["compiled_calls"] is None
    for rel in ("relaxed_cif", "plot", "bands"):
        assert (out / line["files"][rel]).stat().st_size > 100
    assert (out / line["files"]["plot"]).read_bytes().startswith(b"\x89PNG")
    for name in ("summary.json", "summary.txt", "results.csv"):
        assert (out / name).is_file()
    assert "cubic" in (out / "summary.txt").read_text()

    start = time.perf_counter()
    second = runner.invoke(main, args)
    assert second.exit_code == 0, second.output
    assert time.perf_counter() - start < 20
    assert "1 already done" in second.output and "screening 0" in second.output
    assert len((out / "results.jsonl").read_text().splitlines()) == 1
    assert len(_csv_rows(out)) == 1


def test_auto_without_mattersim_falls_back_with_a_stored_warning(tmp_path: Path, monkeypatch) -> None:
    from workers.screening.potentials.registry import clear_potential_cache

    monkeypatch.setenv("HOME", str(tmp_path))
    clear_potential_cache()
    bad = tmp_path / "broken.cif"
    bad.write_text("not a cif\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["screen", str(bad), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "warning: potential 'auto' resolved to 'sevennet-l3i5'" in result.output
    (row,) = _csv_rows(out)
    assert row["potential"] == "sevennet-l3i5"
    assert row["warnings"] == "potential fallback (potential 'auto' resolved to 'sevennet-l3i5')"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["warnings"] == {"potential: potential 'auto' resolved to 'sevennet-l3i5'": 1}


@pytest.mark.slow
def test_jobs_two_processes_write_every_row(tmp_path: Path, examples_dir: Path) -> None:
    out = tmp_path / "out"
    args = [
        "screen",
        str(examples_dir / "Al_fcc.cif"),
        str(examples_dir / "SrTiO3_cubic.cif"),
        "--potential",
        "sevennet-0",
        "--device",
        "cpu",
        "--jobs",
        "2",
        "--out",
        str(out),
        "--keep-force-constants",
        "--compile",
        "off",
    ]  # the flag reaches the worker processes (compiling is tested elsewhere)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in _csv_rows(out)}
    assert rows["Al_fcc.cif"]["verdict"] == "stable"
    assert rows["SrTiO3_cubic.cif"]["verdict"] == "unstable"
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 2
    assert {json.loads(line)["provenance"]["potential"]["execution"] for line in lines} == {"eager"}
    kept = list((out / "structures").glob("*/phonopy_params.yaml.xz"))
    assert len(kept) == 1  # Al; SrTiO3 was settled at Γ, with no supercell to keep


def test_worker_processes_end_when_the_cli_is_killed(tmp_path: Path, examples_dir: Path) -> None:
    """A killed `screen --jobs 2` leaves no worker computing for nobody (they used to run on for
    as long as their structure took)."""
    import os
    import signal
    import subprocess
    import sys

    import psutil

    files = [str(examples_dir / name) for name in ("Al_fcc.cif", "SrTiO3_cubic.cif", "Si_diamond.cif")]
    cmd = [sys.executable, "-m", "app.cli", "screen", *files, "--potential", "sevennet-0", "--jobs", "2"]
    cmd += ["--compile", "off", "--out", str(tmp_path / "out")]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    cli = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        workers: list[psutil.Process] = []
        while time.monotonic() < deadline and len(workers) < 2:
            assert cli.poll() is None, "the run ended before its workers were busy"
            kids = psutil.Process(cli.pid).children(recursive=True)
            # busy: past the initializer (which starts the watch) and into the potential's load
            workers = [p for p in kids if "spawn_main" in " ".join(p.cmdline()) and p.cpu_times().user > 3]
            time.sleep(0.5)
        assert len(workers) == 2, "two worker processes never got busy"
        cli.send_signal(signal.SIGKILL)
        cli.wait()
        gone, alive = psutil.wait_procs(workers, timeout=30)
        assert not alive, f"workers still running after the CLI died: {alive}"
    finally:
        if cli.poll() is None:
            os.killpg(cli.pid, signal.SIGKILL)
