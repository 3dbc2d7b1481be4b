"""Deployment files and settings, checked without Docker: the compose file parses, its commands
exist in the CLI, its environment names are settings; bad settings stop the process."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from app.cli import main
from app.config import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_has_the_services(compose):
    services = compose["services"]
    assert {"postgres", "redis", "migrate", "api", "worker", "flower"} <= set(services)
    assert "pgdata:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert services["migrate"]["restart"] == "no"
    assert services["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_compose_commands_exist_in_the_cli(compose):
    runner = CliRunner()
    for name, service in compose["services"].items():
        command = service.get("command")
        if not command or command[0] != "phononscreen":
            continue
        args = command[1:]
        # every option the compose file passes must be accepted: parse them with --help appended
        result = runner.invoke(main, [*args, "--help"])
        assert result.exit_code == 0, f"{name}: {shlex.join(command)}\n{result.output}"


def test_flower_points_at_the_celery_app(compose):
    from workers.celery_app import celery_app

    command = compose["services"]["flower"]["command"]
    assert command[:3] == ["celery", "--app", "workers.celery_app:celery_app"] and "flower" in command
    assert celery_app.main == "phononscreen"


def test_compose_environment_names_are_settings(compose):
    known = Settings.env_names()
    for name, service in compose["services"].items():
        env = service.get("environment") or {}
        if name in ("postgres",):
            continue
        assert set(env) <= known, f"{name}: unknown settings {set(env) - known}"
    assert set(compose["x-settings"]) <= known


def test_dockerfile_has_api_and_worker_targets():
    text = (ROOT / "Dockerfile").read_text()
    assert "AS api" in text and "AS worker" in text
    base_stage = text.split("AS base", 1)[1].split("AS api", 1)[0]
    code = [line for line in base_stage.splitlines() if not line.lstrip().startswith("#")]
    assert not any("torch" in line for line in code)  # the API image never installs torch
    assert 'pip install ".[api' in base_stage  # the packages live in pyproject's extras, not here
    assert "find_spec('torch') is None" in text.split("AS api", 1)[1].split("FROM ", 1)[0]
    worker_stage = text.split("AS worker", 1)[1]
    assert 'pip install ".[api,worker]"' in worker_stage
    assert '--no-deps "mattersim==1.2.3"' in text


def test_settings_defaults_live_under_home(tmp_path):
    settings = Settings(home=tmp_path)
    assert settings.resolved_database_url == f"sqlite:///{tmp_path}/phononscreen.sqlite"
    assert settings.resolved_broker_url == f"sqla+sqlite:///{tmp_path}/broker.sqlite"
    assert settings.resolved_artifacts_dir == tmp_path / "artifacts"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PHONONSCREEN_POTENTIAL", "gpt-5"),
        ("PHONONSCREEN_PROTOCOL", "fast"),
        ("PHONONSCREEN_MAX_ATOMS", "-1"),
        ("PHONONSCREEN_MAX_UPLOAD_BYTES", "lots"),
        ("DATABASE_URL", "mysql://x/y"),
        ("PHONONSCREEN_DEVICE", "tpu"),
        ("PHONONSCREEN_TASK_TIME_LIMIT_S", "10"),
    ],
)
def test_bad_settings_fail_fast_naming_the_variable(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    result = CliRunner().invoke(main, ["db", "upgrade"])
    assert result.exit_code != 0
    assert "invalid settings" in result.output and (name in result.output or "TIME_LIMIT" in result.output)


def test_openapi_is_complete(tmp_path):
    from app.main import create_app

    spec = create_app(Settings(home=tmp_path)).openapi()
    post = spec["paths"]["/api/v1/batches"]["post"]
    assert {"multipart/form-data", "application/json"} <= set(post["requestBody"]["content"])
    assert {"202", "413", "422"} <= set(post["responses"])
    params = {p["name"] for p in spec["paths"]["/api/v1/candidates"]["get"]["parameters"]}
    assert {
        "batch_id",
        "generator",
        "verdict",
        "formula",
        "elements",
        "space_group",
        "crystal_system",
        "min_frequency_gte",
        "min_frequency_lte",
        "sort",
        "page",
        "per_page",
    } <= params
    for path in ("relaxed.cif", "band_structure.json", "band_structure.png"):
        assert f"/api/v1/candidates/{{candidate_id}}/{path}" in spec["paths"]
