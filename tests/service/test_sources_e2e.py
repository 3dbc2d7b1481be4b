"""Scheduled screening end to end, embedded: a source added with the CLI, a real MatterGen file
dropped in its folder, verdicts with no other action; the per-generator report; `serve` restarted
ingests nothing again; the same bytes under another name cost nothing; a paused source is left
alone."""

from __future__ import annotations

import subprocess
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.service.conftest import free_port
from tests.service.test_e2e import CLI, _env, _process, _wait_ready

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

MATTERGEN = Path(__file__).resolve().parents[3] / "shared/data/mattergen_unconditional_pr54/generated_crystals_cif.zip"
CIF_IN_ZIP = "tmp/gen_46.cif"  # HfTaReRu, F-43m, 4 atoms: a real generator output that screens in seconds
INTERVAL_S = 5


def _cli(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _wait(what, *, timeout_s: float, log: Path):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what.__doc__}:\n{log.read_text()[-4000:]}")


def test_a_dropped_generator_file_is_screened_once_across_restarts(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**_env(tmp_path / "home", PHONONSCREEN_COMPILE="off"), "PHONONSCREEN_URL": url}  # compiling: test_e2e
    folder = tmp_path / "mattergen-out"
    folder.mkdir()
    with zipfile.ZipFile(MATTERGEN) as archive:
        cif = archive.read(CIF_IN_ZIP)
    log = tmp_path / "serve.log"

    with _process([*CLI, "serve", "--port", str(port)], env=env, log=log) as serve:
        _wait_ready(url, process=serve, log=log)
        added = _cli(
            "sources", "add", str(folder), "--generator", "MatterGen", "--generator-version", "pr54",
            "--protocol", "default", "--potential", "sevennet-0", "--interval", str(INTERVAL_S), env=env,
        )  # fmt: skip
        assert "source 1: watching" in added
        (folder / "gen_46.cif").write_bytes(cif)

        def verdicts() -> list:
            """a verdict for the dropped file"""
            items = httpx.get(f"{url}/api/v1/candidates", params={"generator": "MatterGen"}).json()["items"]
            return [i for i in items if i["verdict"]]

        (item,) = _wait(verdicts, timeout_s=600, log=log)
        assert item["reduced_formula"] == "HfTaReRu" and item["source_file"] == "gen_46.cif"
        assert item["verdict"]["verdict"] in ("stable", "unstable")
        batch = httpx.get(f"{url}/api/v1/batches/{item['batch_id']}").json()
        assert batch["generator"] == "MatterGen" and batch["generator_version"] == "pr54"

        table = _cli("report", env=env)
        mattergen = next(line for line in table.splitlines() if line.startswith("MatterGen"))
        assert mattergen.split()[1:4] == ["1", "1", "1"]  # generated, valid, unique
    assert serve.returncode == 128 + 15, log.read_text()[-2000:]

    log2 = tmp_path / "serve2.log"
    with _process([*CLI, "serve", "--port", str(port)], env=env, log=log2) as serve:
        _wait_ready(url, process=serve, log=log2)
        (folder / "gen_46-again.cif").write_bytes(cif)  # the same bytes under another name

        def settled() -> list:
            """the copy to be recognised as bytes already screened"""
            rows = httpx.get(f"{url}/api/v1/sources/1/files").json()
            return [r for r in rows if r["path"] == "gen_46-again.cif" and r["state"] == "same_content"]

        _wait(settled, timeout_s=120, log=log2)
        source = httpx.get(f"{url}/api/v1/sources/1").json()
        assert source["batches"] == 1 and source["files"] == {"ingested": 1, "same_content": 1}

        assert "paused" in _cli("sources", "pause", "1", env=env)
        (folder / "later.cif").write_bytes(cif.replace(b"data_", b"data_later_", 1))
        time.sleep(4 * INTERVAL_S)
        assert "later.cif" not in _cli("sources", "files", "1", env=env)
        listing = _cli("sources", "list", env=env)
        assert "paused" in listing and "MatterGen pr54" in listing
    assert serve.returncode == 128 + 15, log2.read_text()[-2000:]
