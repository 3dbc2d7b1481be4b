"""Watched sources: real generator outputs dropped into a folder become one batch per file, once,
whole; the same bytes again cost nothing; pausing stops scans; the schedule lives in the database
(sqlalchemy-celery-beat) and follows the sources through the API."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import select, text

from tests.service.conftest import migrated_database

pytestmark = pytest.mark.service

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
MATTERGEN_ZIP = DATA / "mattergen_unconditional_pr54" / "generated_crystals_cif.zip"
MATTERGEN_XYZ = DATA / "mattergen_unconditional_pr54" / "generated_crystals.extxyz"
CDVAE = DATA / "cdvae_eval_gen_jarvis"
CRYSTALFORMER = DATA / "crystalformer_mp20" / "CrystalFormer_mp_20.csv.gz"


@pytest.fixture(scope="module")
def sessions() -> Iterator:
    """Units of work that really commit, on a database of this module's own (scans race in threads)."""
    from models.session import create_db_engine, create_session_factory

    with migrated_database() as url:
        engine = create_db_engine(url)
        factory = create_session_factory(engine)

        @contextmanager
        def unit():
            with factory() as session, session.begin():
                yield session

        yield unit
        engine.dispose()


@pytest.fixture
def store(tmp_path):
    from models.artifacts import ArtifactStore

    return ArtifactStore(tmp_path / "artifacts")


def _source(sessions, folder: Path, *, generator: str = "MatterGen", patterns: list[str] | None = None) -> int:
    from models.crud import create_source, get_or_create_generator

    with sessions() as session:
        source = create_source(
            session,
            path=str(folder),
            patterns=patterns or [],
            generator=get_or_create_generator(session, name=generator),
            generator_version="v1",
            protocol="default",
            potential="sevennet-0",
            interval_s=60,
            cron=None,
        )
        return source.id


def _scan(sessions, source_id: int, store, **kw):
    from workers.scan import ScanLimits, scan_source

    limits = ScanLimits(max_atoms=200, max_structures=10_000, max_bytes=50_000_000)
    return scan_source(sessions, source_id=source_id, store=store, limits=limits, **kw)


def _batches(sessions, source_id: int) -> list:
    from models.batch import Batch

    with sessions() as session:
        return list(session.scalars(select(Batch).where(Batch.source_id == source_id).order_by(Batch.id)))


def _files(sessions, source_id: int) -> dict[str, str]:
    from models.source import SourceFile

    with sessions() as session:
        rows = session.scalars(select(SourceFile).where(SourceFile.source_id == source_id))
        return {r.path: r.state for r in rows}


def _head_csv(source: Path, target: Path, *, rows: int) -> None:
    """The first `rows` rows of a generator's CSV (its CIFs are quoted multi-line fields), as written."""
    import csv
    import gzip

    with gzip.open(source, "rt", newline="") as inp, target.open("w", newline="") as out:
        reader, writer = csv.reader(inp), csv.writer(out)
        for _, row in zip(range(rows + 1), reader, strict=False):
            writer.writerow(row)


def test_generator_outputs_dropped_in_a_folder_become_one_batch_each(sessions, store, tmp_path):
    """MatterGen's zip, CDVAE's eval_gen.pt and CrystalFormer's CSV, with no options: a batch each,
    holding every structure the reader finds in them, under the source's generator and version."""
    from workers.screening.ingest import read_structures

    folder = tmp_path / "watch"
    (folder / "cdvae").mkdir(parents=True)
    shutil.copy(MATTERGEN_ZIP, folder)
    shutil.copy(CDVAE / "eval_gen.pt", folder / "cdvae")
    shutil.copy(CDVAE / "hparams.yaml", folder / "cdvae")  # not a structure format: never looked at
    _head_csv(CRYSTALFORMER, folder / "CrystalFormer_mp_20.csv", rows=40)
    source_id = _source(sessions, folder)

    first = _scan(sessions, source_id, store)
    assert (first.files, first.waiting, first.batches) == (3, 3, [])  # seen once: not read yet
    second = _scan(sessions, source_id, store)
    assert (second.waiting, len(second.batches), second.unreadable) == (0, 3, 0)
    assert len(second.screening_ids) > 0

    batches = _batches(sessions, source_id)
    expected = {
        "generated_crystals_cif.zip": read_structures(MATTERGEN_ZIP, max_atoms=200),
        "cdvae/eval_gen.pt": read_structures(CDVAE / "eval_gen.pt", max_atoms=200),
        "CrystalFormer_mp_20.csv": read_structures(folder / "CrystalFormer_mp_20.csv", max_atoms=200),
    }
    from models.candidate import Candidate

    with sessions() as session:
        for batch in batches:
            rows = set(
                session.execute(
                    select(Candidate.source_file, Candidate.submitted_path).where(Candidate.batch_id == batch.id)
                )
            )
            assert len(rows) == 1
            ((path, kept),) = rows
            assert store.read_bytes(kept) == (folder / path).read_bytes()  # the file as it was read, kept
            records = expected[path]
            assert batch.n_submitted == len(records)
            assert batch.n_accepted == sum(r.ok for r in records) > 0
            assert (batch.source, batch.generator.name, batch.generator_version) == ("scan", "MatterGen", "v1")
    assert _files(sessions, source_id) == dict.fromkeys(expected, "ingested")
    from models.queries import get_stability_report

    with sessions() as session:  # the generator's row of the PhononBench-style table, for this source
        (row,) = get_stability_report(session, group_by="generator", source_id=source_id)
        (versioned,) = get_stability_report(session, group_by="generator_version", source_id=source_id)
    assert (row.group, versioned.group) == ("MatterGen", "MatterGen v1")
    assert row.generated == versioned.generated == sum(b.n_submitted for b in batches)
    assert row.submitted == sum(b.n_accepted for b in batches) < row.generated  # CrystalFormer has refusals
    assert 0 < row.unique <= row.submitted and row.screened == 0
    from models.queries import CandidateFilters, list_candidates

    with sessions() as session:  # the search's source filter: exactly this source's candidates
        _, total = list_candidates(session, filters=CandidateFilters(source_id=source_id), sort="id", offset=0, limit=1)
        _, none = list_candidates(
            session, filters=CandidateFilters(source_id=source_id + 999), sort="id", offset=0, limit=1
        )
    assert (total, none) == (row.submitted, 0)

    third = _scan(sessions, source_id, store)  # nothing changed: nothing read
    assert (third.waiting, third.batches, third.same_content) == (0, [], 0)


def test_the_same_bytes_again_cost_nothing_and_a_changed_file_is_read_again(sessions, store, tmp_path):
    folder = tmp_path / "watch"
    folder.mkdir()
    shutil.copy(CDVAE / "eval_gen.pt", folder / "run1.pt")
    source_id = _source(sessions, folder, generator="CDVAE")
    _scan(sessions, source_id, store)
    assert len(_scan(sessions, source_id, store).batches) == 1

    shutil.copy(CDVAE / "eval_gen.pt", folder / "run1-copy.pt")  # same bytes, another name
    _scan(sessions, source_id, store)
    again = _scan(sessions, source_id, store)
    assert (again.batches, again.same_content) == ([], 1)

    shutil.copy(CDVAE / "eval_opt.pt", folder / "run1.pt")  # new content under the old name
    _scan(sessions, source_id, store)
    changed = _scan(sessions, source_id, store)
    assert len(changed.batches) == 1
    assert _files(sessions, source_id) == {"run1.pt": "ingested", "run1-copy.pt": "same_content"}
    assert len(_batches(sessions, source_id)) == 2


def test_a_file_written_slowly_is_read_once_whole(sessions, store, tmp_path):
    """Half of MatterGen's 64 frames, a scan, the rest, a scan: only once the file held still
    between two scans is it read, with all 64."""
    folder = tmp_path / "watch"
    folder.mkdir()
    text_frames = MATTERGEN_XYZ.read_text()
    lines = text_frames.splitlines(keepends=True)
    cut, n = 0, 0
    while n < 32:  # the end of the 32nd frame: atom count line, comment line, atoms
        cut += int(lines[cut]) + 2
        n += 1
    target = folder / "generated_crystals.extxyz"
    target.write_text("".join(lines[:cut]))
    source_id = _source(sessions, folder)
    assert _scan(sessions, source_id, store).waiting == 1
    with target.open("a") as handle:
        handle.write("".join(lines[cut:]))
    assert _scan(sessions, source_id, store).waiting == 1  # it changed: wait again
    done = _scan(sessions, source_id, store)
    assert len(done.batches) == 1
    (batch,) = _batches(sessions, source_id)
    assert batch.n_submitted == 64


def test_pausing_stops_scans_and_a_manual_scan_still_runs(sessions, store, tmp_path):
    from models.source import Source

    folder = tmp_path / "watch"
    folder.mkdir()
    shutil.copy(MATTERGEN_ZIP, folder)
    source_id = _source(sessions, folder)
    with sessions() as session:
        session.get(Source, source_id).paused = True
    assert _scan(sessions, source_id, store).skipped == "paused"
    assert _files(sessions, source_id) == {}
    assert _scan(sessions, source_id, store, manual=True).waiting == 1


def test_racing_scans_ingest_a_file_once(sessions, store, tmp_path):
    """Two scans of one source at once (a manual one beside beat's): one batch, never two."""
    folder = tmp_path / "watch"
    folder.mkdir()
    shutil.copy(CDVAE / "eval_gen.pt", folder)
    source_id = _source(sessions, folder, generator="CDVAE")
    _scan(sessions, source_id, store)
    reports: list = []
    threads = [threading.Thread(target=lambda: reports.append(_scan(sessions, source_id, store))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sum(len(r.batches) for r in reports) == 1
    assert len(_batches(sessions, source_id)) == 1


def test_a_folder_that_went_away_is_said_and_nothing_is_lost(sessions, store, tmp_path):
    from models.source import Source

    folder = tmp_path / "watch"
    folder.mkdir()
    shutil.copy(MATTERGEN_ZIP, folder)
    source_id = _source(sessions, folder)
    _scan(sessions, source_id, store)
    folder.rename(tmp_path / "moved")
    report = _scan(sessions, source_id, store)
    assert report.error and "watch" in report.error
    with sessions() as session:
        assert session.get(Source, source_id).last_error == report.error
    assert _files(sessions, source_id) == {"generated_crystals_cif.zip": "waiting"}


# --- the API and the schedule it keeps in the database --------------------------------------------


def _periodic(db_session) -> dict[str, tuple]:
    rows = db_session.execute(
        text(
            "SELECT t.name, t.args, t.enabled, t.discriminator, i.every, c.minute FROM celery_periodictask t "
            "LEFT JOIN celery_intervalschedule i ON t.discriminator = 'intervalschedule' AND i.id = t.schedule_id "
            "LEFT JOIN celery_crontabschedule c ON t.discriminator = 'crontabschedule' AND c.id = t.schedule_id"
        )
    ).all()
    return {r[0]: tuple(r[1:]) for r in rows}


def test_sources_api_keeps_beats_schedule(client, db_session, tmp_path):
    folder = tmp_path / "watch"
    folder.mkdir()
    created = client.post(
        "/api/v1/sources",
        json={"path": str(folder), "generator": "DiffCSP", "generator_version": "mp20", "interval_s": 30},
    )
    assert created.status_code == 201, created.text
    source = created.json()
    name = f"phononscreen.source.{source['id']}"
    assert _periodic(db_session)[name] == (f"[{source['id']}]", True, "intervalschedule", 30, None)
    assert source["generator"] == "DiffCSP" and source["patterns"] == [] and source["files"] == {}

    assert client.post(f"/api/v1/sources/{source['id']}/pause").json()["paused"] is True
    assert _periodic(db_session)[name][1] is False
    assert client.post(f"/api/v1/sources/{source['id']}/resume").json()["paused"] is False
    assert _periodic(db_session)[name][1] is True
    assert [s["id"] for s in client.get("/api/v1/sources").json()] == [source["id"]]

    cron = client.post("/api/v1/sources", json={"path": str(folder), "cron": "*/10 * * * *"}).json()
    assert _periodic(db_session)[f"phononscreen.source.{cron['id']}"][2:] == ("crontabschedule", None, "*/10")
    assert cron["interval_s"] is None

    assert client.delete(f"/api/v1/sources/{source['id']}").status_code == 204
    assert name not in _periodic(db_session)
    assert client.get(f"/api/v1/sources/{source['id']}").status_code == 404


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"path": "relative/folder"}, "bad_path"),
        ({"path": "/no/such/folder"}, "bad_path"),
        ({"path": "FILE"}, "bad_path"),
        ({"path": "DIR", "cron": "* * *"}, None),
        ({"path": "DIR", "cron": "*/5 * * * *", "interval_s": 60}, None),
        ({"path": "DIR", "interval_s": 1}, None),
        ({"path": "DIR", "patterns": ["../elsewhere/*.cif"]}, None),
        ({"path": "DIR", "protocol": "fast"}, "unknown_protocol"),
        ({"path": "DIR", "potential": "gpt"}, "unknown_potential"),
    ],
)
def test_bad_sources_get_a_422_naming_the_problem(client, db_session, tmp_path, body, code):
    (tmp_path / "file.cif").write_text("data_x\n")
    path = {"FILE": str(tmp_path / "file.cif"), "DIR": str(tmp_path)}.get(body["path"], body["path"])
    response = client.post("/api/v1/sources", json={**body, "path": path})
    assert response.status_code == 422, response.text
    if code:
        assert response.json()["detail"]["code"] == code
    assert client.get("/api/v1/sources").json() == []


def test_source_roots_bound_where_sources_may_lie(api_settings, db_session, tmp_path):
    from fastapi.testclient import TestClient

    from app.api.deps import get_db
    from app.main import create_app

    allowed = tmp_path / "generators"
    (allowed / "run").mkdir(parents=True)
    app = create_app(api_settings.model_copy(update={"source_roots": str(allowed)}))
    app.dependency_overrides[get_db] = lambda: db_session
    with TestClient(app) as client:
        assert client.post("/api/v1/sources", json={"path": str(allowed / "run")}).status_code == 201
        outside = client.post("/api/v1/sources", json={"path": str(tmp_path)})
        assert outside.status_code == 422 and outside.json()["detail"]["code"] == "outside_source_roots"
        sneaky = client.post("/api/v1/sources", json={"path": str(allowed / "run" / ".." / "..")})
        assert sneaky.status_code == 422


def test_scan_now_sends_the_task(client, db_session, tmp_path):
    import redis

    from tests.service.conftest import REDIS_URL

    source = client.post("/api/v1/sources", json={"path": str(tmp_path)}).json()
    response = client.post(f"/api/v1/sources/{source['id']}/scan")
    assert response.status_code == 202
    broker = redis.Redis.from_url(REDIS_URL)
    queued = broker.lrange("default", 0, -1)
    assert any(b"phononscreen.scan_source" in m for m in queued), broker.keys()
