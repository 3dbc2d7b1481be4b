"""Liveness: worker heartbeats in the database, /ready that needs a live worker and reports the
queue, a real worker that beats and leaves, and `serve`'s supervisor that restarts a dead worker."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from app.supervisor import WorkerSupervisor, stop_process
from models import Screening, WorkerHeartbeat
from models.base import utc_now
from models.crud import beat_worker, claim_screenings, forget_workers, mark_duplicates, remove_worker, save_verdict
from models.queries import count_open_screenings, list_live_workers
from tests.service.test_models import _batch, _verdict

pytestmark = pytest.mark.service
HEARTBEAT_S = 10.0  # the default: a worker silent for 30 s is gone


def add_worker(session: Session, name: str = "w1@host", *, seen_s_ago: float = 0.0, queues: str = "screen") -> None:
    """A heartbeat of worker `name`, last seen `seen_s_ago` seconds ago, in `session`."""
    now = utc_now() - timedelta(seconds=seen_s_ago)
    beat_worker(session, name=name, pid=4242, host="host", queues=queues, concurrency=2, started_at=now, now=now)


def _row(session: Session, name: str) -> WorkerHeartbeat | None:
    return session.scalar(
        select(WorkerHeartbeat).where(WorkerHeartbeat.name == name).execution_options(populate_existing=True)
    )


def _wait_for(condition: Callable[[], object], *, timeout_s: float = 10, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# --- the data functions ----------------------------------------------------------------------------


def test_a_beat_inserts_then_renews_one_row_and_a_clean_stop_removes_it(db_session):
    started = utc_now() - timedelta(minutes=5)
    fields = {"pid": 1, "host": "h", "queues": "screen", "concurrency": 1, "started_at": started}
    beat_worker(db_session, name="a@h", now=started, **fields)
    later = started + timedelta(seconds=10)
    beat_worker(db_session, name="a@h", now=later, **fields)
    rows = db_session.scalars(select(WorkerHeartbeat).where(WorkerHeartbeat.name == "a@h")).all()
    assert len(rows) == 1
    row = _row(db_session, "a@h")
    assert row is not None and (row.started_at, row.last_seen_at, row.queues) == (started, later, "screen")
    assert remove_worker(db_session, name="a@h") is True and _row(db_session, "a@h") is None
    assert remove_worker(db_session, name="a@h") is False
    beat_worker(db_session, name="a@h", now=later, **fields)  # a worker forgotten while alive comes back
    assert _row(db_session, "a@h") is not None


def test_alive_means_heard_from_within_three_intervals_and_long_silence_is_forgotten(db_session):
    db_session.execute(delete(WorkerHeartbeat))  # rolled back with the test
    now = utc_now()
    add_worker(db_session, "fresh@h", seen_s_ago=1)
    add_worker(db_session, "late@h", seen_s_ago=29)
    add_worker(db_session, "gone@h", seen_s_ago=31)
    add_worker(db_session, "dead@h", seen_s_ago=2 * 86400)
    alive = [w.name for w in list_live_workers(db_session, heartbeat_s=HEARTBEAT_S, now=now)]
    assert alive == ["fresh@h", "late@h"]
    assert [w.name for w in list_live_workers(db_session, heartbeat_s=1, now=now)] == ["fresh@h"]
    assert forget_workers(db_session, seen_before=now - timedelta(days=1)) == 1
    assert _row(db_session, "dead@h") is None and _row(db_session, "gone@h") is not None


def test_queue_depth_counts_queued_and_running_screenings(db_session):
    before = count_open_screenings(db_session)
    _, ids = _batch(db_session, n=5)
    claim_screenings(db_session, ids=ids[:2], worker="w", task_id="t")
    save_verdict(db_session, screening_id=ids[1], values=_verdict())  # done: no longer open
    mark_duplicates(db_session, links=[(db_session.get_one(Screening, ids[4]), ids[3])])  # never runs
    depth = count_open_screenings(db_session)
    assert (depth.queued - before.queued, depth.running - before.running) == (2, 1)


# --- /ready ----------------------------------------------------------------------------------------


def test_ready_needs_a_worker_heard_from_lately_and_reports_the_queue(client, db_session):
    db_session.execute(delete(WorkerHeartbeat))  # rolled back with the test
    none = client.get("/ready")
    assert none.status_code == 503, none.text
    body = none.json()
    assert body["status"] == "unavailable" and body["database"] == "ok" and body["broker"] == "ok"
    assert body["workers"] == [] and body["reason"] == "no worker of the `screen` queue seen in the last 30 s"

    add_worker(db_session, "phononscreen-beat-1@host", queues="default")  # the bookkeeper screens nothing
    assert client.get("/ready").status_code == 503
    db_session.execute(delete(WorkerHeartbeat))
    add_worker(db_session, "w1@host", seen_s_ago=2)
    _, ids = _batch(db_session, n=3)
    claim_screenings(db_session, ids=ids[:1], worker="w1@host", task_id="t")
    depth = count_open_screenings(db_session)
    fresh = client.get("/ready")
    assert fresh.status_code == 200, fresh.text
    body = fresh.json()
    assert body["status"] == "ok" and body["reason"] is None
    [worker] = body["workers"]
    assert worker["name"] == "w1@host" and worker["queues"] == ["screen"] and worker["concurrency"] == 2
    assert 1.5 <= worker["last_seen_s"] < 10
    assert body["queue"] == {"queued": depth.queued, "running": depth.running} and depth.running >= 1

    db_session.execute(update(WorkerHeartbeat).values(last_seen_at=utc_now() - timedelta(seconds=3 * HEARTBEAT_S + 1)))
    stale = client.get("/ready")
    assert stale.status_code == 503 and stale.json()["workers"] == [], stale.text
    assert stale.json()["queue"] == body["queue"]  # the queue is still reported


def test_ready_on_the_embedded_sqlite(tmp_path, redis_broker):
    """SQLite hands datetimes back without a time zone: the ages must still come out right."""
    from fastapi.testclient import TestClient

    from app.config import Settings
    from app.main import create_app
    from migrations import upgrade_database
    from models.session import create_db_engine

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade_database(url)
    engine = create_db_engine(url)
    try:
        with Session(engine) as session, session.begin():
            add_worker(session, "embedded@host", seen_s_ago=3)
        settings = Settings(database_url=url, broker_url=redis_broker, home=tmp_path)
        with TestClient(create_app(settings)) as client:
            response = client.get("/ready")
    finally:
        engine.dispose()
    assert response.status_code == 200, response.text
    [worker] = response.json()["workers"]
    assert worker["name"] == "embedded@host" and 2.5 <= worker["last_seen_s"] < 10
    assert response.json()["queue"] == {"queued": 0, "running": 0}


# --- a worker's heartbeat ----------------------------------------------------------------------------


@contextmanager
def _committed(pg_engine, *, name: str) -> Iterator[Callable[[], AbstractContextManager[Session]]]:
    """A session scope committed at its edge, as a worker's; the row of worker `name` is deleted after."""

    @contextmanager
    def scope() -> Iterator[Session]:
        with Session(pg_engine, expire_on_commit=False) as session, session.begin():
            yield session

    try:
        yield scope
    finally:
        with scope() as session:
            session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.name == name))


def test_the_heartbeat_thread_renews_the_row_and_stop_removes_it(pg_engine):
    from workers.heartbeat import Heartbeat, WorkerIdentity

    name = f"beat-{secrets.token_hex(4)}@test"
    with _committed(pg_engine, name=name) as scope:
        beat = Heartbeat(scope, identity=WorkerIdentity(name=name, queues="screen", concurrency=1), every_s=0.1)
        beat.start()
        first = _row_in(scope, name)
        assert first is not None and first.pid == os.getpid()
        _wait_for(
            lambda: (row := _row_in(scope, name)) is not None and row.last_seen_at > first.last_seen_at,
            what="a renewal",
        )
        beat.stop()
        assert _row_in(scope, name) is None
        time.sleep(0.3)  # the thread has ended: no beat brings the row back
        assert _row_in(scope, name) is None


def _row_in(scope, name: str) -> WorkerHeartbeat | None:
    with scope() as session:
        return _row(session, name)


def test_a_real_worker_beats_while_it_runs_and_leaves_when_stopped(pg_url, redis_broker, api_settings, tmp_path):
    """`phononscreen worker`: /ready lists it by its node name; after a warm shutdown its row is gone."""
    from fastapi.testclient import TestClient

    from app.main import create_app
    from tests.service.test_e2e import CLI, _env

    name = f"liveness-{secrets.token_hex(4)}@test"
    env = _env(tmp_path / "home", DATABASE_URL=pg_url, CELERY_BROKER_URL=redis_broker, PHONONSCREEN_HEARTBEAT_S="0.5")
    log = tmp_path / "worker.log"
    settings = api_settings.model_copy(update={"heartbeat_s": 0.5})
    with log.open("wb") as out, TestClient(create_app(settings)) as client:
        worker = subprocess.Popen(
            [*CLI, "worker", "--pool", "solo", "--queues", "default", "--hostname", name],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:

            def listed() -> bool:
                assert worker.poll() is None, log.read_text()[-3000:]
                return name in [w["name"] for w in client.get("/ready").json()["workers"]]

            _wait_for(listed, timeout_s=90, what=f"{name} in /ready")
            [seen] = [w for w in client.get("/ready").json()["workers"] if w["name"] == name]
            assert seen["queues"] == ["default"] and seen["concurrency"] == 1
        finally:
            stop_process(worker, timeout_s=30)
        assert worker.returncode == 0, log.read_text()[-3000:]
        ready = client.get("/ready").json()
    assert name not in [w["name"] for w in ready["workers"]], log.read_text()[-3000:]


# --- serve's supervisor ------------------------------------------------------------------------------


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen(["sleep", "60"], start_new_session=True)


def test_the_supervisor_restarts_a_killed_child_and_nothing_after_stop():
    supervisor = WorkerSupervisor(_sleeper, poll_s=0.05, min_backoff_s=0.05)
    first = supervisor.start()
    try:
        os.kill(first.pid, signal.SIGKILL)
        _wait_for(lambda: supervisor.current is not first, what="a restart")
        second = supervisor.current
        assert second is not None and second.poll() is None and supervisor.restarts == 1
    finally:
        supervisor.stop(timeout_s=5)
    assert second.poll() is not None  # stopped with serve
    time.sleep(0.3)  # several polls: a stopped child is not replaced
    assert supervisor.current is second and supervisor.restarts == 1


def test_a_child_that_keeps_dying_is_restarted_ever_more_slowly():
    starts: list[float] = []

    def start() -> subprocess.Popen:
        starts.append(time.monotonic())
        return subprocess.Popen([sys.executable, "-c", "pass"])

    supervisor = WorkerSupervisor(start, poll_s=0.01, min_backoff_s=0.1, max_backoff_s=0.4)
    supervisor.start()
    try:
        _wait_for(lambda: len(starts) >= 5, timeout_s=20, what="5 starts")
    finally:
        supervisor.stop(timeout_s=5)
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    # each wait is at least its back-off (a busy machine only adds to it): 0.1, 0.2, 0.4, then capped
    assert all(gap >= 0.9 * least for gap, least in zip(gaps, [0.1, 0.2, 0.4, 0.4], strict=False)), gaps


def test_stop_during_a_back_off_returns_at_once_and_restarts_nothing():
    supervisor = WorkerSupervisor(lambda: subprocess.Popen(["true"]), poll_s=0.01, min_backoff_s=30)
    first = supervisor.start()
    first.wait()
    time.sleep(0.2)  # seen dead: the supervisor is waiting out its back-off
    began = time.monotonic()
    supervisor.stop()
    assert time.monotonic() - began < 2 and supervisor.restarts == 0 and supervisor.current is first
