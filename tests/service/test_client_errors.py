"""No 5xx on any client input: races on new generators, lengths and integers, malformed bodies,
LIKE wildcards, a database that is down, and raw uploads that outlive a failed commit."""

from __future__ import annotations

import io
import threading
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from models import Batch, Candidate, Screening
from models.generator import Generator
from tests.service.conftest import migrated_database, nacl_cif, si_cif

pytestmark = pytest.mark.service

INT32_MAX = 2**31 - 1


def _upload(client, files, **fields):
    return client.post("/api/v1/batches", files=[("files", f) for f in files], data=fields)


def _counts(session) -> tuple[int, ...]:
    return tuple(session.scalar(select(func.count()).select_from(t)) for t in (Batch, Candidate, Screening))


def _uploaded_files(settings) -> list[Path]:
    root = settings.resolved_artifacts_dir / "uploads"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def _error_locs(response) -> list[tuple]:
    return [tuple(e["loc"]) for e in response.json()["detail"]]


@pytest.fixture
def own_db() -> Iterator[str]:
    """A database of this test's own, for requests that really commit (each on its own session)."""
    with migrated_database() as url:
        yield url


@pytest.fixture
def committing_client(own_db, redis_broker, tmp_path):
    from fastapi.testclient import TestClient

    from app.config import Settings
    from app.main import create_app

    settings = Settings(database_url=own_db, broker_url=redis_broker, home=tmp_path, artifacts_dir=tmp_path / "a")
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


# --- 1. races on a new generator -----------------------------------------------------------------


def test_parallel_uploads_naming_one_new_generator_all_get_202(committing_client, own_db):
    cif = si_cif()
    start = threading.Barrier(20)

    def upload(i: int) -> int:
        start.wait()
        return _upload(committing_client, [(f"si-{i}.cif", cif)], generator="brand-new-gen").status_code

    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(upload, range(20)))
    assert codes == [202] * 20
    from models.session import create_db_engine

    engine = create_db_engine(own_db)
    with Session(engine) as session:
        generators = session.scalars(select(Generator)).all()
        assert [g.name for g in generators] == ["brand-new-gen"]
        assert session.scalars(select(Batch.generator_id)).all() == [generators[0].id] * 20
    engine.dispose()


def test_get_or_create_generator_joins_a_concurrent_uncommitted_insert(own_db):
    # B inserts the same name while A's insert is still open: B waits on the unique key, then takes A's row
    from models.crud import get_or_create_generator
    from models.session import create_db_engine

    engine = create_db_engine(own_db)

    def other() -> int:
        with Session(engine) as b:
            generator = get_or_create_generator(b, name="racer")
            b.commit()
            return generator.id

    with Session(engine) as a, ThreadPoolExecutor(1) as pool:
        first = get_or_create_generator(a, name="racer")
        later = pool.submit(other)
        time.sleep(0.5)
        assert not later.done()  # waiting on A's row
        a.commit()
        assert later.result(timeout=10) == first.id
    engine.dispose()


def test_get_or_create_generator_on_sqlite_inside_the_callers_transaction(tmp_path):
    from models.base import Base
    from models.crud import get_or_create_generator
    from models.session import create_db_engine

    engine = create_db_engine(f"sqlite:///{tmp_path / 'g.sqlite'}")
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        first = get_or_create_generator(session, name="g", version="1")
        assert get_or_create_generator(session, name="g").id == first.id
        session.rollback()  # nothing was committed behind the caller's back
        assert session.scalar(select(func.count()).select_from(Generator)) == 0
        kept = get_or_create_generator(session, name="g").id
        session.commit()
    with Session(engine) as session:
        assert get_or_create_generator(session, name="g").id == kept
    engine.dispose()


# --- 2. lengths, NUL and integers at the edge ----------------------------------------------------


@pytest.mark.parametrize("generator", ["g" * 129, "gen\x00erator"])
def test_bad_generator_names_are_422_naming_the_field(client, db_session, generator):
    multipart = _upload(client, [("si.cif", si_cif())], generator=generator)
    assert multipart.status_code == 422, multipart.text
    assert ("body", "generator") in _error_locs(multipart)
    body = {"generator": generator, "structures": [{"name": "si", "cif": si_cif()}]}
    as_json = client.post("/api/v1/batches", json=body)
    assert as_json.status_code == 422, as_json.text
    assert ("body", "generator") in _error_locs(as_json)
    assert _counts(db_session) == (0, 0, 0)


def test_generator_name_of_the_column_length_is_accepted(client):
    assert _upload(client, [("si.cif", si_cif())], generator="g" * 128).status_code == 202


def _multipart(files: list[tuple[str, str]]) -> tuple[bytes, dict]:
    # by hand: httpx would percent-encode a NUL in a file name
    parts = [
        b'--xyz\r\nContent-Disposition: form-data; name="files"; filename="'
        + name.encode()
        + b'"\r\n\r\n'
        + data.encode()
        for name, data in files
    ]
    body = b"\r\n".join(parts) + b"\r\n--xyz--\r\n"
    return body, {"content-type": "multipart/form-data; boundary=xyz"}


@pytest.mark.parametrize("filename", ["s" * 600 + ".cif", "si\x00.cif"])
def test_bad_file_names_are_422_naming_the_field(client, db_session, filename):
    body, headers = _multipart([("ok.cif", si_cif()), (filename, si_cif())])
    response = client.post("/api/v1/batches", content=body, headers=headers)
    assert response.status_code == 422, response.text
    assert ("body", "files", 1, "filename") in _error_locs(response)
    assert _counts(db_session) == (0, 0, 0)


@pytest.mark.parametrize("name", ["s" * 510, "s" * 600, "s\x00i"])
def test_bad_structure_names_in_json_are_422_naming_the_field(client, db_session, name):
    # a name without a dot gets ".cif" appended: the limit holds for the name as stored
    response = client.post("/api/v1/batches", json={"structures": [{"name": name, "cif": si_cif()}]})
    assert response.status_code == 422, response.text
    assert ("body", "structures", 0, "name") in _error_locs(response)
    assert _counts(db_session) == (0, 0, 0)


def test_archive_member_name_too_long_for_its_column_is_a_rejected_structure(client, db_session):
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        archive.writestr("si.cif", si_cif())
        archive.writestr("x" * 600 + ".cif", nacl_cif())
    response = _upload(client, [("gen.zip", data.getvalue())])
    assert response.status_code == 202, response.text
    rejected = [s for s in response.json()["structures"] if not s["accepted"]]
    assert [s["code"] for s in rejected] == ["name_too_long"]
    assert _counts(db_session) == (1, 1, 1)


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/candidates/99999999999999999999",
        f"/api/v1/candidates/{2**70}",
        f"/api/v1/candidates/{INT32_MAX + 1}",
        "/api/v1/candidates/0",
        f"/api/v1/candidates/{2**63}/relaxed.cif",
        f"/api/v1/candidates/{2**63}/band_structure.json",
        f"/api/v1/candidates/{2**63}/band_structure.png",
        f"/api/v1/batches/{2**64}",
        "/api/v1/batches/-1",
    ],
)
def test_path_ids_out_of_range_are_422(client, path):
    response = client.get(path)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][0] == "path"


def test_path_id_in_range_but_absent_is_404(client):
    assert client.get(f"/api/v1/candidates/{INT32_MAX}").status_code == 404
    assert client.get(f"/api/v1/batches/{INT32_MAX}").status_code == 404


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/api/v1/candidates", {"batch_id": "1e30"}, "batch_id"),
        ("/api/v1/candidates", {"batch_id": str(2**70)}, "batch_id"),
        ("/api/v1/candidates", {"batch_id": str(INT32_MAX + 1)}, "batch_id"),
        ("/api/v1/candidates", {"page": str(2**62)}, "page"),
        ("/api/v1/candidates", {"generator": "g\x00"}, "generator"),
        ("/api/v1/candidates", {"formula": "Na\x00Cl"}, "formula"),
        ("/api/v1/candidates", {"crystal_system": "cubic\x00"}, "crystal_system"),
        ("/api/v1/candidates", {"min_frequency_gte": "nan"}, "min_frequency_gte"),
        ("/api/v1/reports/stability", {"batch_id": str(2**70)}, "batch_id"),
    ],
)
def test_bad_query_parameters_are_422_naming_them(client, path, params, field):
    response = client.get(path, params=params)
    assert response.status_code == 422, response.text
    assert ("query", field) in _error_locs(response)


# --- 3. malformed bodies -------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"{", b'{"structures": [', b"\xff\xfe\x00junk", b'{"structures": "\xff"}'])
def test_malformed_json_bodies_are_422(client, db_session, body):
    response = client.post("/api/v1/batches", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["detail"]
    assert _counts(db_session) == (0, 0, 0)


def test_validation_errors_never_echo_the_whole_input(client):
    huge = "x" * 100_000
    response = client.post("/api/v1/batches", json={"structures": huge})
    assert response.status_code == 422
    assert len(response.content) < 2_000
    many = client.post("/api/v1/batches", json={"structures": [{"nom": i} for i in range(500)]})
    assert many.status_code == 422 and len(many.json()["detail"]) <= 21
    assert len(many.content) < 20_000


def test_raw_bytes_in_a_validation_error_are_made_json_safe():
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.testclient import TestClient

    from app.main import add_error_handlers

    app = FastAPI()
    add_error_handlers(app)

    @app.get("/boom")
    def boom() -> None:
        raise RequestValidationError([{"loc": ("body",), "msg": "bad", "type": "x", "input": b"\xff" * 1000}])

    response = TestClient(app).get("/boom")
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert isinstance(error["input"], str) and len(error["input"]) <= 210


def test_body_shorter_than_its_content_length_is_4xx(client, db_session):
    # the client stops sending (disconnects) before the declared length has arrived
    import asyncio

    app = client.app
    for content_type in ("application/json", "multipart/form-data; boundary=xyz"):
        messages = iter([{"type": "http.request", "body": b'{"struc', "more_body": True}, {"type": "http.disconnect"}])
        sent: list[dict] = []

        async def receive(messages=messages):
            return next(messages)

        async def send(message, sent=sent):
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/api/v1/batches",
            "raw_path": b"/api/v1/batches",
            "root_path": "",
            "query_string": b"",
            "headers": [(b"content-type", content_type.encode()), (b"content-length", b"1000")],
            "client": ("127.0.0.1", 1),
            "server": ("testserver", 80),
            "state": {},
        }
        asyncio.run(app(scope, receive, send))
        assert 400 <= sent[0]["status"] < 500, sent
    assert _counts(db_session) == (0, 0, 0)


# --- 4. element filters --------------------------------------------------------------------------


def test_like_wildcards_in_element_filters_match_nothing(db_session):
    from models.queries import CandidateFilters, list_candidates
    from tests.service.test_models import _batch

    _batch(db_session)  # chemsys "Si"
    assert list_candidates(db_session, filters=CandidateFilters())[1] > 0
    for wildcard in ("%", "_", "S_", "\\", "%-%"):
        assert list_candidates(db_session, filters=CandidateFilters(elements=[wildcard]))[1] == 0, wildcard


@pytest.mark.parametrize("elements", ["%", "_", "Si,%", "Xx", "si", "S_"])
def test_element_filters_that_are_not_symbols_are_422(client, elements):
    assert client.post("/api/v1/batches", json={"structures": [{"name": "si", "cif": si_cif()}]}).status_code == 202
    response = client.get("/api/v1/candidates", params={"elements": elements})
    assert response.status_code == 422, response.text
    assert ("query", "elements") in _error_locs(response)
    assert client.get("/api/v1/candidates", params={"elements": " Si , "}).json()["total"] == 1


# --- 5. the database is down ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "database_url", ["postgresql+psycopg://postgres@127.0.0.1:1/x", "sqlite:////nonexistent-folder/x/db.sqlite"]
)
def test_unreachable_database_is_503_with_retry_after(redis_broker, tmp_path, database_url):
    from fastapi.testclient import TestClient

    from app.config import Settings
    from app.main import create_app

    settings = Settings(database_url=database_url, broker_url=redis_broker, home=tmp_path)
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        responses = [
            test_client.get("/api/v1/candidates"),
            test_client.get("/api/v1/batches/1"),
            test_client.get("/api/v1/reports/stability"),
            _upload(test_client, [("si.cif", si_cif())], generator="g"),
        ]
    for response in responses:
        assert response.status_code == 503, response.text
        assert int(response.headers["retry-after"]) > 0
        assert response.json()["detail"]["code"] == "database_unavailable"
    assert _uploaded_files(settings) == []


# --- 6. raw uploads and a failed commit ----------------------------------------------------------


def test_failed_commit_leaves_no_raw_upload_behind(client, db_session, api_settings, monkeypatch):
    def fail() -> None:
        raise OperationalError("COMMIT", {}, Exception("server closed the connection"))

    monkeypatch.setattr(db_session, "commit", fail)
    response = _upload(client, [("si.cif", si_cif()), ("nacl.cif", nacl_cif())])
    assert response.status_code == 503, response.text
    assert _uploaded_files(api_settings) == []


def test_raw_uploads_are_written_after_the_commit(client, db_session, api_settings):
    response = _upload(client, [("si.cif", si_cif())])
    assert response.status_code == 202
    candidate = db_session.get(Candidate, response.json()["structures"][0]["candidate_id"])
    assert candidate.submitted_path and (api_settings.resolved_artifacts_dir / candidate.submitted_path).is_file()
    assert _uploaded_files(api_settings) == [api_settings.resolved_artifacts_dir / candidate.submitted_path]


# --- the sweep: odd inputs anywhere answer 4xx or 2xx ------------------------------------------------


def test_odd_inputs_never_answer_5xx(client, db_session):
    cif = si_cif()
    requests = [
        ("get", "/api/v1/candidates", {"params": {"sort": "id\x00"}}),
        ("get", "/api/v1/candidates", {"params": {"space_group": str(2**70)}}),
        ("get", "/api/v1/candidates", {"params": {"min_frequency_lte": "1e400"}}),
        ("get", "/api/v1/candidates", {"params": {"elements": "Si,,O", "verdict": "\x00"}}),
        ("get", "/api/v1/candidates", {"params": {"per_page": str(2**70)}}),
        ("get", "/api/v1/reports/stability", {"params": {"group_by": "\x00"}}),
        ("get", "/api/v1/candidates/%00", {}),
        ("get", "/api/v1/batches/1.5", {}),
        ("post", "/api/v1/batches", {"json": {"structures": [{"name": "si", "cif": cif.replace("Si", "Si\x00", 1)}]}}),
        ("post", "/api/v1/batches", {"json": {"structures": [{"name": "si", "cif": "\x00" * 100}]}}),
        ("post", "/api/v1/batches", {"json": {"protocol": "\x00", "structures": [{"name": "si", "cif": cif}]}}),
        ("post", "/api/v1/batches", {"json": {"generator": 2**80, "structures": [{"name": "si", "cif": cif}]}}),
        ("post", "/api/v1/batches", {"json": {"structures": [{"name": "", "cif": cif}]}}),
        ("post", "/api/v1/batches", {"json": [1, 2, 3]}),
        ("post", "/api/v1/batches", {"files": [("files", ("si.cif", cif)), ("generator", ("g.txt", b"\xff"))]}),
        (
            "post",
            "/api/v1/batches",
            {"content": b"--xyz\r\n", "headers": {"content-type": "multipart/form-data; boundary=xyz"}},
        ),
        (
            "post",
            "/api/v1/batches",
            {"content": b"a=%00&files=x", "headers": {"content-type": "application/x-www-form-urlencoded"}},
        ),
    ]
    for method, path, kwargs in requests:
        response = getattr(client, method)(path, **kwargs)
        assert response.status_code < 500, (path, kwargs, response.text)
        response.json()  # a JSON answer, whatever the input
