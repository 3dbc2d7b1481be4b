"""The HTTP API against the real Postgres (each test rolled back) and a Redis broker database."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from models import Batch, Candidate, Screening
from tests.service.conftest import al_cif, nacl_cif, si_cif
from tests.service.test_liveness import add_worker
from workers.screening.opinions import DEFAULT_PRESCREEN_MARGIN_THZ

pytestmark = pytest.mark.service


def _counts(session) -> tuple[int, int, int]:
    return tuple(session.scalar(select(func.count()).select_from(t)) for t in (Batch, Candidate, Screening))


def _queued_messages(broker_url: str, queue: str = "screen") -> list[dict]:
    import redis

    raw = redis.Redis.from_url(broker_url).lrange(queue, 0, -1)
    return [json.loads(m) for m in raw]


def _upload(client, files, **fields):
    return client.post("/api/v1/batches", files=[("files", f) for f in files], data=fields)


def test_multipart_upload_stores_rows_and_enqueues_after_commit(client, db_session, redis_broker):
    response = _upload(
        client,
        [("si.cif", si_cif()), ("al.cif", al_cif()), ("nacl.cif", nacl_cif())],
        generator="textbook",
        protocol="default",
        potential="sevennet-0",
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["accepted"] == 3 and body["rejected"] == 0
    assert all(s["accepted"] and s["candidate_id"] for s in body["structures"])
    assert _counts(db_session) == (1, 3, 3)
    # chunk of 2 (api_settings): two tasks carrying the three screening ids, by task name
    messages = _queued_messages(redis_broker)
    assert [m["headers"]["task"] for m in messages] == ["phononscreen.screen_screenings"] * 2
    sent = sorted(i for m in messages for i in json.loads(__import__("base64").b64decode(m["body"]))[0][0])
    assert sent == sorted(db_session.scalars(select(Screening.id)).all())

    batch = client.get(f"/api/v1/batches/{body['id']}").json()
    assert batch["status"] == "queued" and batch["progress"] == 0.0
    assert batch["counts"]["queued"] == 3 and batch["generator"] == "textbook"
    assert batch["protocol"] == "default" and batch["potential"] == "sevennet-0"


def test_json_upload_and_candidate_filters(client, db_session):
    response = client.post(
        "/api/v1/batches",
        json={"generator": "g1", "structures": [{"name": "si", "cif": si_cif()}, {"name": "nacl", "cif": nacl_cif()}]},
    )
    assert response.status_code == 202, response.text
    batch_id = response.json()["id"]
    page = client.get("/api/v1/candidates", params={"batch_id": batch_id}).json()
    assert page["total"] == 2 and {i["reduced_formula"] for i in page["items"]} == {"Si", "NaCl"}
    assert all(i["verdict"] is None and i["status"] == "queued" for i in page["items"])
    assert client.get("/api/v1/candidates", params={"elements": "Na,Cl", "batch_id": batch_id}).json()["total"] == 1
    assert client.get("/api/v1/candidates", params={"elements": "Cl,Si", "batch_id": batch_id}).json()["total"] == 0
    assert client.get("/api/v1/candidates", params={"space_group": 227, "batch_id": batch_id}).json()["total"] == 1
    assert client.get("/api/v1/candidates", params={"generator": "g1"}).json()["total"] == 2
    assert (
        client.get(
            "/api/v1/candidates", params={"crystal_system": "cubic", "batch_id": batch_id, "sort": "-formula"}
        ).json()["items"][0]["reduced_formula"]
        == "Si"
    )
    paged = client.get("/api/v1/candidates", params={"batch_id": batch_id, "per_page": 1, "page": 2}).json()
    assert len(paged["items"]) == 1 and paged["total"] == 2
    assert client.get("/api/v1/candidates", params={"sort": "bogus"}).status_code == 422

    detail = client.get(f"/api/v1/candidates/{page['items'][0]['id']}").json()
    assert detail["cif"].startswith("# generated using pymatgen") and detail["screening"]["status"] == "queued"
    assert detail["verdict"] is None and set(detail["links"]) == {"input_cif", "bundle_zip"}
    assert client.get(f"/api/v1/candidates/{detail['id']}/relaxed.cif").status_code == 404

    report = client.get("/api/v1/reports/stability", params={"group_by": "generator"}).json()
    row = next(r for r in report["rows"] if r["group"] == "g1")
    assert (
        row["submitted"] == 2
        and row["screened"] == 0
        and row["stable_rate"] == 0.0
        and row["stable_rate_relaxed"] is None
    )


def test_reports_and_verdicts_show_both_phononbench_criteria(client, db_session):
    """-1e-3 THz (PhononBench's scripts) and -0.1 THz (its v3 headline), side by side."""
    from models.crud import claim_screenings, save_verdict
    from tests.service.test_models import _verdict

    structures = [{"name": n, "cif": c} for n, c in (("si", si_cif()), ("al", al_cif()), ("nacl", nacl_cif()))]
    response = client.post("/api/v1/batches", json={"generator": "v3", "structures": structures})
    assert response.status_code == 202, response.text
    ids = [s["candidate_id"] for s in response.json()["structures"]]
    screenings = [db_session.scalar(select(Screening.id).where(Screening.candidate_id == i)) for i in ids]
    claim_screenings(db_session, ids=screenings, worker="w", task_id="t")
    flags = [("stable", True, True), ("unstable", False, True), ("unstable", False, False)]  # -0.05, -0.3 THz
    for screening_id, (verdict, pb, pb3) in zip(screenings, flags, strict=True):
        values = _verdict(verdict) | {"stable_phononbench": pb, "stable_phononbench_v3": pb3}
        assert save_verdict(db_session, screening_id=screening_id, values=values)

    report = client.get("/api/v1/reports/stability", params={"group_by": "generator"}).json()
    row = next(r for r in report["rows"] if r["group"] == "v3")
    assert (row["stable"], row["stable_phononbench"], row["stable_phononbench_v3"]) == (1, 1, 2)
    assert row["stable_phononbench_rate"] == pytest.approx(1 / 3)
    assert row["stable_phononbench_v3_rate"] == pytest.approx(2 / 3)
    assert report["total"]["stable_phononbench_v3"] >= 2
    verdict = client.get(f"/api/v1/candidates/{ids[1]}").json()["verdict"]
    assert (verdict["stable_phononbench"], verdict["stable_phononbench_v3"]) == (False, True)


def test_prescreen_and_second_opinion_are_stored_counted_and_filtered(client, db_session):
    """The batch keeps its other potentials; verdicts carry theirs; `stable_by_both` and
    `agreement=false` (the list for DFT) filter the candidates; duplicates need the same opinions."""
    from models.crud import claim_screenings, save_verdict
    from tests.service.test_models import _verdict

    structures = [{"name": n, "cif": c} for n, c in (("si", si_cif()), ("al", al_cif()), ("nacl", nacl_cif()))]
    settings = {"potential": "sevennet-l3i5", "prescreen": "sevennet-0", "second_opinion": "chgnet-0.3.0"}
    response = client.post("/api/v1/batches", json={"generator": "two", "structures": structures, **settings})
    assert response.status_code == 202, response.text
    batch_id = response.json()["id"]
    batch = client.get(f"/api/v1/batches/{batch_id}").json()
    assert {k: batch[k] for k in settings} == settings
    assert batch["prescreen_margin_thz"] == pytest.approx(DEFAULT_PRESCREEN_MARGIN_THZ)  # the default, stored

    ids = [s["candidate_id"] for s in response.json()["structures"]]
    screenings = [db_session.scalar(select(Screening.id).where(Screening.candidate_id == i)) for i in ids]
    claim_screenings(db_session, ids=screenings, worker="w", task_id="t")
    said = [  # Si stable by both, Al stable but not by CHGNet, NaCl settled by the prescreen
        {"second_potential": "chgnet-0.3.0", "second_verdict": "stable", "agreement": True},
        {"second_potential": "chgnet-0.3.0", "second_verdict": "unstable", "agreement": False},
        {"settled_by_prescreen": True, "potential_name": "sevennet-0", "min_frequency_thz": -2.5},
    ]
    for screening_id, verdict, extra in zip(screenings, ("stable", "stable", "unstable"), said, strict=True):
        assert save_verdict(db_session, screening_id=screening_id, values=_verdict(verdict) | extra)

    counts = client.get(f"/api/v1/batches/{batch_id}").json()["counts"]
    assert {k: counts[k] for k in ("settled_by_prescreen", "agree", "disagree", "stable_by_both")} == {
        "settled_by_prescreen": 1,
        "agree": 1,
        "disagree": 1,
        "stable_by_both": 1,
    }

    def names(**params) -> list[str]:
        page = client.get("/api/v1/candidates", params={"batch_id": batch_id, **params}).json()
        return sorted(i["reduced_formula"] for i in page["items"])

    assert names(stable_by_both="true") == ["Si"]
    assert names(stable_by_both="false") == ["Al", "NaCl"]
    assert names(agreement="false") == ["Al"]
    assert names(settled_by_prescreen="true") == ["NaCl"]
    al = client.get(f"/api/v1/candidates/{ids[1]}").json()["verdict"]
    assert al["second_opinion"] == {"potential": "chgnet-0.3.0", "verdict": "unstable", "min_frequency_thz": None}
    assert al["agreement"] is False and al["stable_by_both"] is False and not al["settled_by_prescreen"]
    nacl = client.get(f"/api/v1/candidates/{ids[2]}").json()["verdict"]
    assert nacl["settled_by_prescreen"] and nacl["potential"] == "sevennet-0" and nacl["second_opinion"] is None
    report = client.get("/api/v1/reports/stability", params={"batch_id": batch_id}).json()
    assert (report["total"]["second_opinions"], report["total"]["stable_by_both"]) == (2, 1)

    # the same crystals again: shared only under the very same opinions (margin included)
    again = client.post("/api/v1/batches", json={"structures": structures[:1], **settings}).json()
    assert again["duplicates"] == 1
    for other in ({"prescreen_margin_thz": 2.0}, {"second_opinion": None}, {"prescreen": "chgnet-0.3.0"}):
        created = client.post("/api/v1/batches", json={"structures": structures[:1], **settings, **other}).json()
        assert created["duplicates"] == 0, other
    # the multipart form takes the same fields
    form = _upload(client, [("si.cif", si_cif())], **settings, prescreen_margin_thz="2.0")
    assert form.status_code == 202, form.text
    assert client.get(f"/api/v1/batches/{form.json()['id']}").json()["prescreen_margin_thz"] == 2.0


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"prescreen": "gpt-5"}, "unknown_prescreen"),
        ({"second_opinion": "gpt-5"}, "unknown_second_opinion"),
        ({"potential": "sevennet-0", "prescreen": "sevennet-0"}, "same_prescreen"),
        ({"potential": "sevennet-0", "second_opinion": "sevennet-0"}, "same_second_opinion"),
        ({"prescreen_margin_thz": 1.5}, "margin_without_prescreen"),
    ],
)
def test_bad_opinions_are_422_naming_the_field(client, db_session, fields, code):
    body = {"structures": [{"name": "si", "cif": si_cif()}], **fields}
    response = client.post("/api/v1/batches", json=body)
    assert response.status_code == 422 and response.json()["detail"]["code"] == code, response.text
    form = _upload(client, [("si.cif", si_cif())], **{k: str(v) for k, v in fields.items()})
    assert form.status_code == 422 and form.json()["detail"]["code"] == code, form.text
    negative = {"structures": body["structures"], "prescreen": "chgnet-0.3.0", "prescreen_margin_thz": -1}
    assert client.post("/api/v1/batches", json=negative).status_code == 422
    assert _counts(db_session) == (0, 0, 0)


def test_mixed_upload_is_202_and_lists_the_rejected(client, db_session):
    bad = "data_broken\n_cell_length_a 3\nnot a cif at all\n"
    response = _upload(client, [("si.cif", si_cif()), ("broken.cif", bad)])
    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 1 and body["rejected"] == 1
    rejected = [s for s in body["structures"] if not s["accepted"]]
    assert rejected[0]["name"] == "broken.cif" and rejected[0]["code"] == "parse_error"
    batch = client.get(f"/api/v1/batches/{body['id']}").json()
    assert batch["rejected"] == 1 and batch["rejected_structures"][0]["code"] == "parse_error"


def _partial_occupancy() -> str:
    from pymatgen.core import Lattice, Structure

    return Structure(Lattice.cubic(3.0), [{"Fe": 0.5, "Co": 0.5}], [[0, 0, 0]]).to(fmt="cif")


def _overlapping() -> str:
    from pymatgen.core import Lattice, Structure

    return Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.01, 0, 0]]).to(fmt="cif")


def _ten_thousand_atoms() -> str:
    from pymatgen.core import Lattice, Structure

    al = Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.05), ["Al"], [[0, 0, 0]])
    return (al * (25, 10, 10)).to(fmt="cif")


@pytest.mark.parametrize(
    ("filename", "make", "code"),
    [
        ("malformed.cif", lambda: "data_x\n_cell_length_a 3\nloop_\n_atom_site_label\nnonsense", "parse_error"),
        ("partial.cif", _partial_occupancy, "partial_occupancy"),
        ("overlap.cif", _overlapping, "overlapping_atoms"),
        ("huge_cell.cif", _ten_thousand_atoms, "too_many_atoms"),
        ("unknown.cif", lambda: si_cif().replace("Si", "Xx"), "unsupported_element"),
        ("empty.cif", lambda: "", "parse_error"),
    ],
)
def test_bad_upload_is_4xx_naming_the_problem_and_keeps_existing_rows(client, db_session, filename, make, code):
    assert _upload(client, [("si.cif", si_cif())]).status_code == 202
    before = _counts(db_session)
    response = _upload(client, [(filename, make())])
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail["code"] == "nothing_accepted"
    assert [s["code"] for s in detail["structures"]] == [code]
    assert detail["structures"][0]["reason"]
    assert _counts(db_session) == before


def test_oversized_upload_is_413_before_reading_it_all(client, db_session, api_settings):
    before = _counts(db_session)
    big = b"x" * (api_settings.max_upload_bytes + 1)
    response = _upload(client, [("big.cif", big)])
    assert response.status_code == 413
    assert "PHONONSCREEN_MAX_UPLOAD_BYTES" in response.json()["detail"]["message"]
    assert _counts(db_session) == before


def test_oversized_stream_without_content_length_is_413():
    # a chunked body never declares its size: the middleware must count as it streams in
    from app.limits import BodySizeLimit

    async def app(scope, receive, send):
        while (await receive()).get("more_body", False) is not False:
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    chunks = iter([{"type": "http.request", "body": b"x" * 1000, "more_body": True}] * 5)

    async def receive():
        return next(chunks)

    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    import asyncio

    asyncio.run(BodySizeLimit(app, max_bytes=2500)({"type": "http", "method": "POST", "headers": []}, receive, send))
    assert sent[0]["status"] == 413


def test_bad_fields_are_422(client, db_session):
    assert _upload(client, [("si.cif", si_cif())], protocol="nope").status_code == 422
    assert _upload(client, [("si.cif", si_cif())], potential="gpt-5").status_code == 422
    assert client.post("/api/v1/batches", json={"structures": []}).status_code == 422
    assert client.post("/api/v1/batches", content=b"x", headers={"content-type": "text/plain"}).status_code == 415
    assert client.post("/api/v1/batches", data={"generator": "g"}).status_code == 422
    assert _counts(db_session) == (0, 0, 0)


def test_unknown_ids_are_404(client):
    assert client.get("/api/v1/batches/999999").status_code == 404
    assert client.get("/api/v1/candidates/999999").status_code == 404
    assert client.get("/api/v1/candidates/999999/band_structure.json").status_code == 404


def test_health_and_ready(client, db_session):
    assert client.get("/health").json() == {"status": "ok"}
    add_worker(db_session)  # /ready needs a live worker (tests/service/test_liveness.py)
    ready = client.get("/ready")
    body = ready.json()
    assert ready.status_code == 200 and (body["status"], body["database"], body["broker"]) == ("ok", "ok", "ok"), body


def test_ready_is_503_when_the_broker_is_down(pg_url, db_session, tmp_path):
    from fastapi.testclient import TestClient

    from app.api.deps import get_db
    from app.config import Settings
    from app.main import create_app
    from tests.service.conftest import free_port

    settings = Settings(database_url=pg_url, broker_url=f"redis://127.0.0.1:{free_port()}/15", home=tmp_path)
    app = create_app(settings)
    app.dependency_overrides[get_db] = lambda: db_session
    with TestClient(app) as test_client:
        response = test_client.get("/ready")
    assert response.status_code == 503 and response.json()["database"] == "ok"
    assert response.json()["broker"].startswith("error")


def test_broker_down_at_submission_is_503_with_retry_after_and_the_batch_is_kept(pg_url, db_session, tmp_path):
    """Issue 10, failure 7: stored and said so; the reconciler re-sends it (test_reconcile.py)."""
    from fastapi.testclient import TestClient

    from app.api.deps import get_db
    from app.config import Settings
    from app.main import create_app
    from tests.service.conftest import free_port

    settings = Settings(database_url=pg_url, broker_url=f"redis://127.0.0.1:{free_port()}/15", home=tmp_path)
    app = create_app(settings)
    app.dependency_overrides[get_db] = lambda: db_session
    with TestClient(app) as test_client:
        response = test_client.post("/api/v1/batches", files=[("files", ("si.cif", si_cif()))])
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) == settings.reconcile_every_s
    detail = response.json()["detail"]
    assert detail["code"] == "broker_unreachable"
    assert db_session.get(Batch, detail["batch_id"]) is not None
    statuses = db_session.scalars(
        select(Screening.status).join(Candidate).where(Candidate.batch_id == detail["batch_id"])
    ).all()
    assert statuses == ["queued"]
