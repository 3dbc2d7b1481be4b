"""End to end with real processes and real physics: upload through the API, a worker screens
with SevenNet-0, verdicts come back over the API. Once on Postgres + Redis, once embedded."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.service.conftest import REDIS_URL, al_cif, create_database, drop_database, free_port, si_cif

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]
CLI = [sys.executable, "-m", "app.cli"]


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PHONONSCREEN_") and k not in ("DATABASE_URL", "CELERY_BROKER_URL")
    }
    env.update(PHONONSCREEN_HOME=str(home), OPENBLAS_NUM_THREADS="1", PHONONSCREEN_SCREEN_CHUNK="2", **extra)
    return env


@contextmanager
def _process(args: list[str], *, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    from app.supervisor import stop_process

    with log.open("wb") as out:
        process = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield process
        finally:
            stop_process(process, timeout_s=30)


def _wait_ready(url: str, *, process: subprocess.Popen, log: Path, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            if httpx.get(f"{url}/ready", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} not ready:\n{log.read_text()[-3000:]}")


def _submit_and_check(
    url: str,
    tmp_path: Path,
    *,
    env: dict[str, str],
    logs: list[Path],
    execution: str,
    second_opinion: str | None = None,
) -> None:
    files = []
    for name, cif in (("Si.cif", si_cif()), ("Al.cif", al_cif())):
        (tmp_path / name).write_text(cif)
        files.append(str(tmp_path / name))
    start = time.monotonic()
    done = subprocess.run(
        [
            *CLI,
            "submit",
            *files,
            "--url",
            url,
            "--generator",
            "textbook",
            "--protocol",
            "default",
            "--potential",
            "sevennet-0",
            "--timeout",
            "1200",
            *(["--second-opinion", second_opinion] if second_opinion else []),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=1300,
    )
    elapsed = time.monotonic() - start
    worker_logs = "\n".join(p.read_text()[-4000:] for p in logs)
    assert done.returncode == 0, done.stdout + done.stderr + worker_logs
    print(f"\nsubmit took {elapsed:.0f} s:\n{done.stdout}")
    assert "batch" in done.stdout and "stable 2" in done.stdout, done.stdout + worker_logs

    page = httpx.get(f"{url}/api/v1/candidates", params={"sort": "formula"}).json()
    assert [i["reduced_formula"] for i in page["items"]] == ["Al", "Si"]
    for item in page["items"]:
        verdict = item["verdict"]
        assert item["status"] == "done" and verdict["verdict"] == "stable", item
        assert verdict["potential"] == "sevennet-0" and verdict["crystal_system"] == "cubic"
        assert verdict["min_frequency_thz"] is not None and verdict["energy_per_atom_ev"] < 0
        detail = httpx.get(f"{url}/api/v1/candidates/{item['id']}").json()
        assert detail["result"]["provenance"]["protocol"] == "default"
        ran = detail["result"]["provenance"]["potential"]
        if execution == "eager":
            assert ran["execution"] == "eager" and ran["compiled_calls"] is None
        else:  # the compiled graph computed forces (1-atom Al's own cell runs eager: sizes 0 and 1 are fixed)
            assert ran["execution"].startswith(execution) and ran["compiled_calls"] > 0, ran
        assert detail["screening"]["attempts"] == 1 and detail["screening"]["worker"]
        cif = httpx.get(f"{url}{detail['links']['relaxed_cif']}")
        assert cif.status_code == 200 and "_cell_length_a" in cif.text
        bands = httpx.get(f"{url}{detail['links']['band_structure_json']}").json()
        assert bands["frequencies"] and bands["dos_frequencies_thz"]
        png = httpx.get(f"{url}{detail['links']['band_structure_png']}", timeout=60)
        assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    batch_id = page["items"][0]["batch_id"]
    batch = httpx.get(f"{url}/api/v1/batches/{batch_id}").json()
    assert batch["status"] == "done" and batch["progress"] == 1.0 and batch["counts"]["stable"] == 2
    if second_opinion:
        _check_second_opinion(url, batch, page["items"], second_opinion)
    report = httpx.get(f"{url}/api/v1/reports/stability", params={"group_by": "crystal_system"}).json()
    assert (
        report["total"]["stable"] == 2
        and report["total"]["stable_rate"] == 1.0 == report["total"]["stable_rate_relaxed"]
    )


def _check_second_opinion(url: str, batch: dict, items: list[dict], potential: str) -> None:
    """The worker ran the second potential on each relaxed structure; the API stores and counts it."""
    assert batch["second_opinion"] == potential
    both = 0
    for item in items:
        verdict = item["verdict"]
        second = verdict["second_opinion"]
        assert second["potential"] == potential and second["verdict"] in ("stable", "unstable"), verdict
        assert verdict["agreement"] == (second["verdict"] == verdict["verdict"]), verdict
        assert verdict["stable_by_both"] == (second["verdict"] == verdict["verdict"] == "stable"), verdict
        both += verdict["stable_by_both"]
    counts = batch["counts"]
    assert counts["agree"] + counts["disagree"] == len(items) and counts["stable_by_both"] == both
    listed = httpx.get(f"{url}/api/v1/candidates", params={"batch_id": batch["id"], "stable_by_both": True}).json()
    assert listed["total"] == both


@pytest.mark.service
def test_postgres_redis_separate_api_and_worker(tmp_path, redis_broker):
    from migrations import upgrade_database

    db_url = create_database()
    try:
        upgrade_database(db_url)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        # the worker runs eager here (PHONONSCREEN_COMPILE=off): the embedded test above covers a
        # compiling worker, and this one is about Postgres, Redis and separate processes
        env = _env(
            tmp_path / "home",
            DATABASE_URL=db_url,
            CELERY_BROKER_URL=REDIS_URL,
            PHONONSCREEN_ARTIFACTS_DIR=str(tmp_path / "artifacts"),
            PHONONSCREEN_COMPILE="off",
        )
        api_log, worker_log, beat_log = tmp_path / "api.log", tmp_path / "worker.log", tmp_path / "beat.log"
        with (
            _process([*CLI, "worker", "--concurrency", "1"], env=env, log=worker_log),
            _process([*CLI, "beat"], env=env, log=beat_log),  # the bookkeeping: batches get their end stamped
            _process([*CLI, "api", "--port", str(port)], env=env, log=api_log) as api,
        ):
            _wait_ready(url, process=api, log=api_log)
            # and with a second opinion: CHGNet re-screens each relaxed structure in the same worker
            _submit_and_check(
                url,
                tmp_path,
                env=env,
                logs=[worker_log, api_log],
                execution="eager",
                second_opinion="chgnet-0.3.0",
            )
    finally:
        drop_database(db_url)


def test_embedded_serve(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    home = tmp_path / "home"
    env = _env(home)
    log = tmp_path / "serve.log"
    with _process([*CLI, "serve", "--port", str(port)], env=env, log=log) as serve:
        _wait_ready(url, process=serve, log=log)
        _submit_and_check(url, tmp_path, env=env, logs=[log], execution="torch.compile")
    # SIGTERM ends serve through its own shutdown (which stops the worker), not by being killed
    assert serve.returncode == 128 + 15, log.read_text()[-2000:]
    assert (home / "phononscreen.sqlite").is_file() and (home / "broker.sqlite").is_file()
    assert any((home / "artifacts" / "screenings").rglob("bands.json"))
