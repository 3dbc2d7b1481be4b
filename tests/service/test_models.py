"""Data functions on the real Postgres: atomic claims, idempotent verdicts, batch bookkeeping."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from models import Batch, Screening, Verdict
from models.crud import (
    CandidateValues,
    add_candidates,
    claim_screenings,
    create_batch,
    fail_screenings,
    finish_batches,
    get_or_create_generator,
    save_verdict,
)
from models.queries import count_batch, get_stability_report

pytestmark = pytest.mark.service


def _values(name: str, formula: str = "Si") -> CandidateValues:
    return CandidateValues(
        name=name,
        source_file="x.cif",
        source_index=0,
        structure={"sites": []},
        cif="data_x",
        reduced_formula=formula,
        elements=[formula],
        n_sites=2,
        spacegroup_number=227,
        spacegroup_symbol="Fd-3m",
        crystal_system="cubic",
        fingerprint="f" * 32,
    )


def _batch(session: Session, n: int = 2) -> tuple[Batch, list[int]]:
    batch = create_batch(
        session,
        source="upload",
        generator=get_or_create_generator(session, name="g"),
        protocol="default",
        potential="sevennet-0",
        n_submitted=n,
        rejected=[],
    )
    screenings = add_candidates(session, batch=batch, candidates=[_values(f"s{i}") for i in range(n)])
    return batch, [s.id for s in screenings]


def _verdict(verdict: str = "stable") -> dict:
    return {
        "verdict": verdict,
        "reason": None,
        "stable_phononbench": verdict == "stable",
        "min_frequency_thz": -0.01,
        "worst_qpoint": [0.0, 0.0, 0.0],
        "worst_branch": 0,
        "worst_q_norm_inv_angstrom": 0.0,
        "formula": "Si2",
        "spacegroup_after": "Fd-3m (227)",
        "spacegroup_number": 227,
        "crystal_system": "cubic",
        "energy_per_atom_ev": -5.4,
        "potential_name": "sevennet-0",
        "potential_warning": None,
        "settings_hash": "abc",
        "result": {"verdict": verdict},
        "relaxed_cif_path": None,
        "bands_path": None,
    }


def test_claim_is_exclusive_and_a_redelivery_reclaims(db_session):
    _, ids = _batch(db_session)
    assert claim_screenings(db_session, ids=ids, worker="w1", task_id="t1") == ids
    assert claim_screenings(db_session, ids=ids, worker="w2", task_id="t2") == []
    assert claim_screenings(db_session, ids=ids, worker="w1b", task_id="t1") == ids  # same message again
    rows = db_session.scalars(select(Screening).where(Screening.id.in_(ids))).all()
    db_session.expire_all()
    assert {(s.status, s.attempts, s.worker) for s in rows} == {("running", 2, "w1b")}
    assert claim_screenings(db_session, ids=ids, worker="w1", task_id="t1", max_attempts=2) == []


def test_saving_a_verdict_twice_is_harmless(db_session):
    batch, ids = _batch(db_session)
    claim_screenings(db_session, ids=ids, worker="w", task_id="t")
    assert save_verdict(db_session, screening_id=ids[0], values=_verdict("stable")) is True
    assert save_verdict(db_session, screening_id=ids[0], values=_verdict("unstable")) is False
    assert db_session.scalar(select(func.count()).select_from(Verdict)) == 1
    assert finish_batches(db_session, batch_ids=[batch.id]) == []  # one still running
    fail_screenings(db_session, ids=[ids[1]], error="SoftTimeLimitExceeded")
    assert finish_batches(db_session, batch_ids=[batch.id]) == [batch.id]
    counts = count_batch(db_session, batch_id=batch.id)
    assert counts.by_status == {"queued": 0, "running": 0, "done": 1, "failed": 1}
    assert counts.by_verdict == {"stable": 1}
    report = get_stability_report(db_session, group_by="generator", batch_id=batch.id)
    assert [(r.group, r.submitted, r.screened, r.stable) for r in report] == [("g", 2, 1, 1)]


def test_two_workers_racing_never_claim_the_same_row(pg_engine):
    # real concurrency: two connections, the second UPDATE waits on the first one's row locks
    with Session(pg_engine) as session:
        batch, ids = _batch(session, n=4)
        batch_id = batch.id
        session.commit()
    results: dict[str, list[int]] = {}
    barrier = threading.Barrier(2)

    def worker(name: str) -> None:
        with Session(pg_engine) as session:
            barrier.wait()
            results[name] = claim_screenings(session, ids=ids, worker=name, task_id=name)
            session.commit()

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("a", "b")]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(results["a"] + results["b"]) == ids
        assert not set(results["a"]) & set(results["b"])
    finally:
        with Session(pg_engine) as session:
            session.execute(delete(Batch).where(Batch.id == batch_id))
            session.commit()
