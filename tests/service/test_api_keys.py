"""API keys: the `keys` CLI (hash only), who may call the API, the per-key rate limit and daily
quota, CORS and trusted hosts, and `serve`/`api` refusing to listen openly beyond loopback."""

from __future__ import annotations

import hashlib
import re
import sqlite3
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from app.cli import main
from models import ApiKey, Batch, Candidate
from tests.service.conftest import al_cif, nacl_cif, si_cif
from tests.service.test_liveness import add_worker

KEY_RE = re.compile(r"^(psk_\S+)$", flags=re.M)
NOON = datetime(2026, 12, 2, 12, 0, 30, tzinfo=UTC)  # 30 s into a minute, 43230 s into a UTC day


@pytest.fixture
def make_client(api_settings, db_session):
    """`make_client(**settings)`: the API with these settings changed, on the rolled-back session."""
    from fastapi.testclient import TestClient

    from app.api.deps import get_db
    from app.main import create_app

    with ExitStack() as stack:

        def make(base_url: str = "http://testserver", **overrides):
            app = create_app(api_settings.model_copy(update=overrides))
            app.dependency_overrides[get_db] = lambda: db_session
            return stack.enter_context(TestClient(app, base_url=base_url))

        yield make


@pytest.fixture
def clock(monkeypatch):
    """The rate limit's and quota's clock, held at NOON until moved: `clock["now"] += ...`."""
    state = {"now": NOON}
    monkeypatch.setattr("app.security.now_utc", lambda: state["now"])
    return state


def add_key(session, name: str) -> str:
    """A new key row in `session`; returns the plaintext key."""
    from app.security import create_key
    from models.crud import create_api_key

    new = create_key()
    assert create_api_key(session, name=name, prefix=new.prefix, key_hash=new.key_hash) is not None
    return new.key


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def post_json(client, names_cifs, key: str | None = None):
    structures = [{"name": n, "cif": c} for n, c in names_cifs]
    return client.post("/api/v1/batches", json={"structures": structures}, headers=bearer(key) if key else {})


def n_batches(session) -> tuple[int, int]:
    return tuple(session.scalar(select(func.count()).select_from(t)) for t in (Batch, Candidate))


# --- the CLI, on the embedded SQLite --------------------------------------------------------------


@pytest.fixture
def sqlite_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("PHONONSCREEN_HOME", str(home))
    for name in ("DATABASE_URL", "CELERY_BROKER_URL", "PHONONSCREEN_REQUIRE_KEYS", "PHONONSCREEN_PRIVATE_READS"):
        monkeypatch.delenv(name, raising=False)
    return home


def test_keys_cli_prints_the_key_once_and_stores_only_its_hash(sqlite_home):
    runner = CliRunner()
    created = runner.invoke(main, ["keys", "create", "alice"])
    assert created.exit_code == 0, created.output
    key = KEY_RE.search(created.output).group(1)
    assert len(key) > 40

    # the table holds the hash and a short prefix, never the key
    with sqlite3.connect(sqlite_home / "phononscreen.sqlite") as db:
        rows = db.execute("SELECT * FROM api_keys").fetchall()
        (key_hash, prefix) = db.execute("SELECT key_hash, prefix FROM api_keys WHERE name = 'alice'").fetchone()
    assert len(rows) == 1 and not any(key in str(value) for value in rows[0])
    assert key_hash == hashlib.sha256(key.encode()).hexdigest() and key.startswith(prefix) and len(prefix) < 16

    again = runner.invoke(main, ["keys", "create", "alice"])
    assert again.exit_code == 1 and "exists already" in again.output and "psk_" not in again.output
    assert runner.invoke(main, ["keys", "create", "bad name!"]).exit_code == 2

    listed = runner.invoke(main, ["keys", "list"])
    assert listed.exit_code == 0 and key not in listed.output
    line = next(ln for ln in listed.output.splitlines() if ln.startswith("alice"))
    assert prefix in line and line.split()[-1] == "-"  # created, not revoked, never used

    revoked = runner.invoke(main, ["keys", "revoke", "alice"])
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    line = next(ln for ln in runner.invoke(main, ["keys", "list"]).output.splitlines() if ln.startswith("alice"))
    assert line.count("-") > 3 and line.split()[-1] == "-"  # a revoked date now, still never used
    missing = runner.invoke(main, ["keys", "revoke", "bob"])
    assert missing.exit_code == 1 and "no API key called 'bob'" in missing.output


def test_a_cli_key_opens_the_api_on_the_embedded_sqlite(sqlite_home):
    """The CLI's key works against an API on the same SQLite (its counters included), until revoked."""
    from fastapi.testclient import TestClient

    from app.config import Settings
    from app.main import create_app

    runner = CliRunner()
    key = KEY_RE.search(runner.invoke(main, ["keys", "create", "carol"]).output).group(1)
    settings = Settings(home=sqlite_home, private_reads=True, rate_limit_per_min=2)
    with TestClient(create_app(settings)) as client:
        assert client.get("/api/v1/candidates").status_code == 401
        assert client.get("/api/v1/candidates", headers=bearer(key)).status_code == 200
        assert client.get("/api/v1/candidates", headers=bearer(key)).status_code == 200
        limited = client.get("/api/v1/candidates", headers=bearer(key))
        assert limited.status_code == 429 and 1 <= int(limited.headers["retry-after"]) <= 60
        line = next(ln for ln in runner.invoke(main, ["keys", "list"]).output.splitlines() if ln.startswith("carol"))
        assert line.split()[-1] != "-"  # last used is set
        assert runner.invoke(main, ["keys", "revoke", "carol"]).exit_code == 0
        assert client.get("/api/v1/candidates", headers=bearer(key)).status_code == 403


def test_submit_sends_the_key_as_a_bearer_header(tmp_path, monkeypatch):
    import httpx

    seen: dict[str, str | None] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["authorization"] = request.headers.get("authorization")
        return httpx.Response(401, json={"detail": "nope"})

    real_client = httpx.Client
    monkeypatch.setattr(httpx, "Client", lambda **kw: real_client(transport=httpx.MockTransport(handler), **kw))
    monkeypatch.setenv("PHONONSCREEN_API_KEY", "psk_test")
    (tmp_path / "si.cif").write_text(si_cif())
    result = CliRunner().invoke(main, ["submit", str(tmp_path / "si.cif"), "--no-wait"])
    assert result.exit_code == 1 and "HTTP 401" in result.output
    assert seen["authorization"] == "Bearer psk_test"


# --- who may call, on Postgres --------------------------------------------------------------------


@pytest.mark.service
def test_writes_need_a_valid_key_reads_stay_open(make_client, db_session):
    client = make_client(require_keys=True)
    key = add_key(db_session, "alice")

    missing = post_json(client, [("si", si_cif())])
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    unknown = post_json(client, [("si", si_cif())], key="psk_not-a-key")
    assert unknown.status_code == 401 and unknown.headers["www-authenticate"] == "Bearer"
    assert n_batches(db_session) == (0, 0)

    accepted = post_json(client, [("si", si_cif())], key=key)
    assert accepted.status_code == 202, accepted.text
    batch_id = accepted.json()["id"]
    assert client.get(f"/api/v1/batches/{batch_id}").status_code == 200  # reads need no key
    assert client.get("/api/v1/candidates").status_code == 200
    assert db_session.scalar(select(ApiKey.last_used_at).where(ApiKey.name == "alice")) is not None

    from models.crud import revoke_api_key

    revoke_api_key(db_session, name="alice")
    revoked = post_json(client, [("al", al_cif())], key=key)
    assert revoked.status_code == 403 and revoked.json()["detail"]["code"] == "revoked_key"
    assert n_batches(db_session) == (1, 1)
    add_worker(db_session)  # /ready needs a live worker
    for probe in ("/health", "/ready"):
        assert client.get(probe).status_code == 200, probe


@pytest.mark.service
def test_private_reads_need_a_key_too(make_client, db_session):
    client = make_client(private_reads=True)
    key = add_key(db_session, "alice")
    assert client.get("/api/v1/candidates").status_code == 401
    assert client.get("/api/v1/reports/stability").status_code == 401
    assert client.get("/api/v1/candidates", headers=bearer(key)).status_code == 200
    assert post_json(client, [("si", si_cif())]).status_code == 401  # and writes, REQUIRE_KEYS or not
    assert client.get("/health").status_code == 200


@pytest.mark.service
def test_open_api_stays_open_but_checks_a_key_that_is_sent(make_client, db_session):
    client = make_client()
    assert post_json(client, [("si", si_cif())]).status_code == 202
    assert post_json(client, [("al", al_cif())], key="psk_wrong").status_code == 401


@pytest.mark.service
def test_rate_limit_is_429_with_retry_after_until_the_next_minute(make_client, db_session, clock):
    client = make_client(private_reads=True, rate_limit_per_min=3)
    key, other = add_key(db_session, "alice"), add_key(db_session, "bob")
    for _ in range(3):
        assert client.get("/api/v1/candidates", headers=bearer(key)).status_code == 200
    limited = client.get("/api/v1/candidates", headers=bearer(key))
    assert limited.status_code == 429 and limited.headers["retry-after"] == "30"
    assert limited.json()["detail"]["code"] == "rate_limited"
    assert client.get("/api/v1/candidates", headers=bearer(other)).status_code == 200  # per key
    clock["now"] += timedelta(seconds=30)  # the next minute
    assert client.get("/api/v1/candidates", headers=bearer(key)).status_code == 200


@pytest.mark.service
def test_daily_quota_refuses_a_batch_that_would_pass_it_and_stores_nothing(make_client, db_session, clock):
    client = make_client(require_keys=True, daily_structure_quota=2)
    key = add_key(db_session, "alice")

    too_many = post_json(client, [("si", si_cif()), ("al", al_cif()), ("nacl", nacl_cif())], key=key)
    assert too_many.status_code == 429 and too_many.headers["retry-after"] == str(86400 - 43230)
    assert too_many.json()["detail"]["code"] == "quota_exceeded"
    assert n_batches(db_session) == (0, 0)

    assert post_json(client, [("si", si_cif()), ("al", al_cif())], key=key).status_code == 202
    spent = post_json(client, [("nacl", nacl_cif())], key=key)
    assert spent.status_code == 429 and spent.headers["retry-after"] == str(86400 - 43230)
    assert n_batches(db_session) == (1, 2)

    clock["now"] += timedelta(days=1)  # a new UTC day
    assert post_json(client, [("nacl", nacl_cif())], key=key).status_code == 202
    assert db_session.scalar(select(ApiKey.quota_used).where(ApiKey.name == "alice")) == 1


@pytest.mark.service
def test_a_batch_with_rejected_structures_is_charged_only_the_accepted(make_client, db_session, clock):
    client = make_client(require_keys=True, daily_structure_quota=2)
    key = add_key(db_session, "alice")
    response = post_json(client, [("si", si_cif()), ("bad", "not a cif"), ("al", al_cif())], key=key)
    assert response.status_code == 202 and response.json()["accepted"] == 2
    assert db_session.scalar(select(ApiKey.quota_used).where(ApiKey.name == "alice")) == 2


# --- CORS and trusted hosts -----------------------------------------------------------------------


@pytest.mark.service
def test_cors_headers_only_for_an_allowed_origin(make_client):
    client = make_client(cors_origins="https://lab.example.org, https://other.example.org")
    allowed = client.get("/health", headers={"Origin": "https://lab.example.org"})
    assert allowed.headers["access-control-allow-origin"] == "https://lab.example.org"
    foreign = client.get("/health", headers={"Origin": "https://evil.example.com"})
    assert "access-control-allow-origin" not in foreign.headers
    preflight = client.options(
        "/api/v1/batches",
        headers={
            "Origin": "https://lab.example.org",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status_code == 200 and "POST" in preflight.headers["access-control-allow-methods"]

    closed = make_client().get("/health", headers={"Origin": "https://lab.example.org"})  # unset: no CORS at all
    assert "access-control-allow-origin" not in closed.headers


@pytest.mark.service
def test_trusted_hosts_reject_a_foreign_host_header(make_client):
    client = make_client(base_url="http://api.example.org", trusted_hosts="api.example.org,localhost")
    assert client.get("/health").status_code == 200
    assert client.get("/health", headers={"Host": "evil.example.com"}).status_code == 400
    assert make_client(trusted_hosts="api.example.org").get("/health").status_code == 400  # Host: testserver
    assert make_client().get("/health", headers={"Host": "evil.example.com"}).status_code == 200  # unset: no check


# --- serve and api refuse to listen openly beyond loopback ----------------------------------------


@pytest.fixture
def nothing_starts(tmp_path, monkeypatch):
    """uvicorn, the worker and migrations fail the test if reached; returns uvicorn.run's calls
    when `allow` is set."""
    calls: list[dict] = []
    state = {"allow": False}

    def fake_run(*args, **kwargs):
        assert state["allow"], "uvicorn started"
        calls.append(kwargs)

    def forbidden(*args, **kwargs):
        raise AssertionError("started before the check")

    monkeypatch.setattr("uvicorn.run", fake_run)
    monkeypatch.setattr("app.commands.service.start_worker_process", forbidden)
    monkeypatch.setattr("migrations.upgrade_database", forbidden)
    monkeypatch.setenv("PHONONSCREEN_HOME", str(tmp_path / "home"))
    for name in ("PHONONSCREEN_REQUIRE_KEYS", "PHONONSCREEN_PRIVATE_READS", "PHONONSCREEN_API_HOST"):
        monkeypatch.delenv(name, raising=False)
    return {"calls": calls, "state": state, "home": tmp_path / "home"}


@pytest.mark.parametrize("command", [["serve"], ["api"]])
def test_serve_and_api_refuse_a_public_address_without_keys(nothing_starts, command):
    result = CliRunner().invoke(main, [*command, "--host", "0.0.0.0"])
    assert result.exit_code == 1, result.output
    assert "refusing to listen on 0.0.0.0:8000 without API keys" in result.output
    assert "PHONONSCREEN_REQUIRE_KEYS=true" in result.output and "--insecure" in result.output
    assert not nothing_starts["home"].exists()  # not even the data folder


def test_api_says_it_is_open_on_loopback_and_starts_with_keys_or_insecure(nothing_starts, monkeypatch):
    nothing_starts["state"]["allow"] = True
    runner = CliRunner()
    local = runner.invoke(main, ["api"])
    assert local.exit_code == 0, local.output
    assert "no API keys required: anyone who can reach 127.0.0.1:8000 can submit" in local.output

    insecure = runner.invoke(main, ["api", "--host", "0.0.0.0", "--insecure"])
    assert insecure.exit_code == 0 and "WARNING" in insecure.output

    monkeypatch.setenv("PHONONSCREEN_REQUIRE_KEYS", "true")
    keyed = runner.invoke(main, ["api", "--host", "0.0.0.0", "--port", "9000"])
    assert keyed.exit_code == 0 and "API keys required for writes on 0.0.0.0:9000" in keyed.output
    assert [c["host"] for c in nothing_starts["calls"]] == ["127.0.0.1", "0.0.0.0", "0.0.0.0"]
