"""No lost work, on the real Postgres and Redis: leases, the reconciler, the soft time limit; and
one end-to-end run where a worker is killed mid-screening and every structure still gets one verdict."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from models import Batch, Candidate, Screening, Verdict
from models.crud import MAX_ATTEMPTS, claim_screenings, save_verdict
from tests.service.conftest import al_cif, nacl_cif, si_cif
from tests.service.test_dedup_service import _enqueued_ids, _upload
from tests.service.test_models import _batch, _verdict
from workers.reconcile import ReconcileReport, reconcile, reconcile_and_send

pytestmark = pytest.mark.service
NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)  # later than every row other tests leave behind
LEASE_S = 600.0
GRACE_S = 120.0


def _reconcile(session: Session, now: datetime = NOW) -> ReconcileReport:
    return reconcile(session, now=now, lease_s=LEASE_S, max_attempts=MAX_ATTEMPTS, grace_s=GRACE_S)


def _set(session: Session, ids: list[int], **values) -> None:
    session.execute(update(Screening).where(Screening.id.in_(ids)).values(**values))
    session.expire_all()


def _row(session: Session, screening_id: int) -> Screening:
    return session.scalars(
        select(Screening).where(Screening.id == screening_id).execution_options(populate_existing=True)
    ).one()


def _claim(session: Session, ids: list[int], *, lease_until: datetime, task_id: str = "t1") -> None:
    assert claim_screenings(session, ids=ids, worker="w", task_id=task_id, lease_until=lease_until) == ids
    _set(session, ids, started_at=lease_until - timedelta(seconds=LEASE_S), enqueued_at=NOW - timedelta(hours=2))


class _FakeCelery:
    def __init__(self) -> None:
        self.sent: list[tuple[str, list, dict]] = []

    def send_task(self, name: str, args: list, kwargs: dict, queue: str) -> None:
        self.sent.append((name, args, kwargs))


def test_an_expired_lease_is_requeued_and_sent_once(db_session):
    batch, [sid] = _batch(db_session, n=1)
    _claim(db_session, [sid], lease_until=datetime.now(UTC) - timedelta(seconds=1))  # its worker died

    @contextmanager
    def scope():
        yield db_session

    celery = _FakeCelery()
    report = reconcile_and_send(scope, celery=celery, lease_s=LEASE_S, reconcile_every_s=60, chunk=4)
    assert report.requeued == [sid] and report.to_send == [sid] and not report.failed
    assert [(name, args) for name, args, _ in celery.sent] == [("phononscreen.screen_screenings", [[sid]])]
    row = _row(db_session, sid)
    assert (row.status, row.lease_expires_at, row.attempts) == ("queued", None, 1)
    # idempotent: the next pass finds the row queued with a fresh message, and sends nothing
    again = reconcile_and_send(scope, celery=celery, lease_s=LEASE_S, reconcile_every_s=60, chunk=4)
    assert again.to_send == [] and len(celery.sent) == 1
    # the re-sent message claims it (once): a second copy of that message finds nothing to do
    assert claim_screenings(db_session, ids=[sid], worker="w2", task_id="t2") == [sid]
    assert claim_screenings(db_session, ids=[sid], worker="w3", task_id="t3") == []
    assert _row(db_session, sid).attempts == 2


def test_the_last_attempt_fails_with_a_reason_and_the_batch_ends(db_session):
    batch, [sid] = _batch(db_session, n=1)
    _claim(db_session, [sid], lease_until=NOW - timedelta(seconds=1))
    _set(db_session, [sid], attempts=MAX_ATTEMPTS)
    report = _reconcile(db_session)
    assert report.failed == [sid] and report.to_send == [] and batch.id in report.finished_batches
    row = _row(db_session, sid)
    assert row.status == "failed" and row.error.startswith(f"lease expired {MAX_ATTEMPTS} times: the worker died")
    assert db_session.scalar(select(Batch.finished_at).where(Batch.id == batch.id)) is not None
    assert _reconcile(db_session) == ReconcileReport()  # nothing left to do


def test_a_fresh_lease_is_left_alone_and_never_sent_twice(db_session):
    batch, [sid] = _batch(db_session, n=1)
    _claim(db_session, [sid], lease_until=NOW + timedelta(seconds=1))  # its message was sent long ago
    assert _reconcile(db_session).to_send == []
    row = _row(db_session, sid)
    assert (row.status, row.worker, row.attempts) == ("running", "w", 1)
    assert batch.id not in _reconcile(db_session).finished_batches


def test_a_claim_before_leases_existed_expires_from_its_start(db_session):
    _, [sid] = _batch(db_session, n=1)
    assert claim_screenings(db_session, ids=[sid], worker="w", task_id="t") == [sid]  # no lease
    _set(db_session, [sid], started_at=NOW - timedelta(seconds=LEASE_S - 1))
    assert _reconcile(db_session).requeued == []
    assert _reconcile(db_session, NOW + timedelta(seconds=2)).requeued == [sid]


def test_queued_without_a_message_is_resent_once_and_only_a_probe_while_nothing_consumes(db_session):
    _, ids = _batch(db_session, n=3)  # a broker outage at submission: stored, never sent
    _set(db_session, ids, enqueued_at=NOW - timedelta(hours=1))
    report = _reconcile(db_session)
    assert report.resent == [ids[0]] and report.to_send == [ids[0]]  # the oldest, as a probe
    assert _reconcile(db_session).to_send == []  # stamped as sent at NOW
    # a worker took the probe's message: everything queued well before it lost its message
    later = NOW + timedelta(seconds=30)
    claim_screenings(
        db_session, ids=[ids[0]], worker="w", task_id="t", lease_until=later + timedelta(seconds=LEASE_S), sent_at=NOW
    )
    assert _reconcile(db_session, later).to_send == ids[1:]
    assert _reconcile(db_session, later).to_send == []


def test_a_requeue_after_a_worker_died_does_not_make_the_backlog_look_lost(db_session):
    """Two workers took messages sent 300 s and 250 s ago; three screenings sent 200 s ago wait
    behind them, their messages in the broker. The first worker dies: its screening is requeued
    (sent now), and the backlog keeps its messages."""
    _, (first, alive, *backlog) = _batch(db_session, n=5)
    _set(db_session, backlog, enqueued_at=NOW - timedelta(seconds=200))
    for sid, lease_until, sent_s_ago in (
        (first, NOW - timedelta(seconds=1), 300),
        (alive, NOW + timedelta(minutes=5), 250),
    ):
        claim_screenings(
            db_session,
            ids=[sid],
            worker="w",
            task_id="t",
            lease_until=lease_until,
            sent_at=NOW - timedelta(seconds=sent_s_ago),
        )
    report = _reconcile(db_session)
    assert report.requeued == [first] and report.resent == [] and report.to_send == [first]


def test_a_queue_that_moves_is_not_resent(db_session):
    """A backlog behind busy workers keeps its messages: only a screening sent well before one that
    a worker already took is resent, whatever its age."""
    _, (taken, lost, waiting) = _batch(db_session, n=3)
    _set(db_session, [lost], enqueued_at=NOW - timedelta(hours=2))
    _set(db_session, [waiting], enqueued_at=NOW - timedelta(minutes=30, seconds=30))
    claim_screenings(
        db_session,
        ids=[taken],
        worker="w",
        task_id="t",
        lease_until=NOW + timedelta(minutes=5),
        sent_at=NOW - timedelta(minutes=30),
    )
    assert _reconcile(db_session).to_send == [lost]


def test_dedup_never_links_to_a_running_screening_whose_lease_expired(client, db_session, redis_broker):
    _upload(client, [("nacl.cif", nacl_cif())])
    [original] = _enqueued_ids(redis_broker)
    claim_screenings(
        db_session, ids=[original], worker="w", task_id="t", lease_until=datetime.now(UTC) + timedelta(minutes=5)
    )
    alive = _upload(client, [("nacl.cif", nacl_cif())])  # its worker is alive: share its verdict
    assert alive["duplicates"] == 1 and _enqueued_ids(redis_broker) == []
    _set(db_session, [original], lease_expires_at=datetime.now(UTC) - timedelta(seconds=1))
    stale = _upload(client, [("nacl.cif", nacl_cif())])  # its worker died: screen it anew
    assert stale["duplicates"] == 0 and stale["structures"][0]["duplicate_of"] is None
    assert len(_enqueued_ids(redis_broker)) == 1


# --- the soft time limit reaches the task ---------------------------------------------------------


@pytest.mark.parametrize("where", ["caught by the core", "raised through the core"])
def test_the_soft_time_limit_fails_what_is_left_with_time_limit(
    pg_engine, pg_url, redis_broker, tmp_path, monkeypatch, where
):
    """The core turns the limit into a `failed` verdict of the structure it was on (its per-structure
    `except Exception`); the task must save no verdict for it, and mark it and the rest `time_limit`."""
    from celery.exceptions import SoftTimeLimitExceeded
    from pymatgen.core import Structure

    import workers.jobs
    import workers.screening.pipeline
    import workers.screening.potentials
    from workers.celery_app import configure_celery
    from workers.runtime import WorkerConfig, configure_worker
    from workers.tasks import screen_screenings

    configure_worker(WorkerConfig(database_url=pg_url, artifacts_dir=tmp_path))
    configure_celery(broker_url=redis_broker, soft_time_limit_s=60, time_limit_s=120)
    structure = Structure.from_str(si_cif(), fmt="cif").as_dict()

    def core(records, *, progress, **_):
        progress(SimpleNamespace(verdict="stable", reason=None))
        if where == "caught by the core":
            progress(SimpleNamespace(verdict="failed", reason="SoftTimeLimitExceeded: SoftTimeLimitExceeded()"))
        raise SoftTimeLimitExceeded()

    def save(context, *, screening_id, result):
        with context.session() as session:
            return save_verdict(session, screening_id=screening_id, values=_verdict(result.verdict))

    monkeypatch.setattr(workers.screening.pipeline, "screen_structures", core)
    monkeypatch.setattr(workers.screening.potentials, "load_potential", lambda *a, **k: SimpleNamespace(elements=None))
    monkeypatch.setattr(workers.jobs, "save_result", save)
    with Session(pg_engine) as session:
        batch, ids = _batch(session, n=3)
        batch_id = batch.id
        session.execute(update(Candidate).where(Candidate.batch_id == batch_id).values(structure=structure))
        session.commit()
    try:
        outcome = screen_screenings.apply(args=[ids], task_id="soft-limit-task")
        assert isinstance(outcome.result, SoftTimeLimitExceeded)
        with Session(pg_engine) as session:
            rows = {s.id: s for s in session.scalars(select(Screening).where(Screening.id.in_(ids)))}
            verdicts = session.scalars(select(Verdict.screening_id).where(Verdict.screening_id.in_(ids))).all()
        assert verdicts == [ids[0]] and rows[ids[0]].status == "done"
        assert [(rows[i].status, rows[i].error) for i in ids[1:]] == [("failed", "time_limit")] * 2
        assert len(_redis_list(redis_broker, "default")) == 1  # finish_batches sent for the batch
    finally:
        with Session(pg_engine) as session:
            session.execute(delete(Batch).where(Batch.id == batch_id))
            session.commit()


def _redis_list(url: str, name: str) -> list[bytes]:
    import redis

    return redis.Redis.from_url(url).lrange(name, 0, -1)


# --- end to end: a worker killed mid-screening ------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_worker_killed_mid_screening_loses_nothing(tmp_path):
    """Embedded `serve` (API, worker, reconciler thread) with 6 s leases: the worker is SIGKILLed
    (its main process and its pool child) while screening; serve starts a new worker, which
    heartbeats (/ready lists it); the reconciler takes the screenings back, and each structure ends
    with exactly one verdict."""
    import httpx
    import psutil

    from tests.service.conftest import free_port
    from tests.service.test_e2e import CLI, _env, _process, _wait_ready

    home = tmp_path / "home"
    env = _env(home, PHONONSCREEN_COMPILE="off", PHONONSCREEN_LEASE_S="6", PHONONSCREEN_RECONCILE_EVERY_S="2")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    start = time.monotonic()
    log = tmp_path / "serve.log"

    def statuses() -> list[tuple[int, str, int]]:
        with sqlite3.connect(home / "phononscreen.sqlite", timeout=30) as db:
            return db.execute("SELECT id, status, attempts FROM screenings ORDER BY id").fetchall()

    with _process([*CLI, "serve", "--port", str(port)], env=env, log=log) as serve:
        _wait_ready(url, process=serve, log=log)
        files = [("files", ("Si.cif", si_cif())), ("files", ("Al.cif", al_cif()))]
        data = {"protocol": "default", "potential": "sevennet-0"}
        batch = httpx.post(f"{url}/api/v1/batches", files=files, data=data, timeout=60).json()
        deadline = time.monotonic() + 120
        while not any(status == "running" for _, status, _ in statuses()):
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        time.sleep(3)  # well inside the screening (potential loaded, relaxing)

        def workers(but: int = 0) -> list[psutil.Process]:
            # `but` first: the killed worker is a zombie until serve reaps it, and has no cmdline
            return [p for p in psutil.Process(serve.pid).children() if p.pid != but and "worker" in p.cmdline()]

        [worker] = workers()
        killed_at = time.monotonic()
        os.killpg(worker.pid, signal.SIGKILL)  # the worker's group: its main process and its pool child
        assert [status for _, status, _ in statuses()].count("running") >= 1  # left behind, for now
        deadline = time.monotonic() + 30
        while not (restarted := workers(but=worker.pid)):  # serve reaps it and starts another
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        [new_worker] = restarted
        assert not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE
        deadline = time.monotonic() + 240
        while (state := httpx.get(f"{url}/api/v1/batches/{batch['id']}").json())["status"] != "done":
            assert time.monotonic() < deadline, state | {"log": log.read_text()[-3000:]}
            time.sleep(1)
        recovered = time.monotonic() - killed_at
        ready = httpx.get(f"{url}/ready").json()
        assert f"phononscreen-{new_worker.pid}@" in " ".join(w["name"] for w in ready["workers"]), ready
        assert ready["queue"] == {"queued": 0, "running": 0}, ready
    rows = statuses()
    with sqlite3.connect(home / "phononscreen.sqlite") as db:
        per_screening = db.execute("SELECT screening_id, count(*) FROM verdicts GROUP BY screening_id").fetchall()
        verdicts = [v for (v,) in db.execute("SELECT verdict FROM verdicts")]
    print(
        f"\nkilled after {killed_at - start:.0f} s, recovered in {recovered:.0f} s, total {time.monotonic() - start:.0f} s"
    )
    assert [status for _, status, _ in rows] == ["done", "done"], rows
    assert sorted(i for i, _ in per_screening) == [i for i, _, _ in rows] and {n for _, n in per_screening} == {1}
    assert verdicts == ["stable", "stable"]
    assert any(attempts == 2 for _, _, attempts in rows), rows  # a screening was taken back and run again
