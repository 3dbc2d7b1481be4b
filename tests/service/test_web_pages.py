"""The web pages' server side against the real Postgres: the shells and the vendored libraries they
load, and the API additions they rely on (CSV of exactly the page shown, the bundle zip, the
report CSV, the batch's pace, the generator version). The browser itself: tests/web/."""

from __future__ import annotations

import csv
import io
import json
import zipfile

import pytest
from sqlalchemy import select

from app.exports import CANDIDATE_COLUMNS, format_cell
from models import Screening
from tests.service.conftest import al_cif, nacl_cif, si_cif
from tests.service.test_models import _verdict

pytestmark = pytest.mark.service


@pytest.mark.parametrize("path", ["/", "/candidates", "/candidates/7", "/batches/3", "/reports"])
def test_every_page_is_html_that_loads_only_this_server(client, path):
    response = client.get(path)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    assert '<meta name="viewport"' in html and 'id="errors" role="alert"' in html
    assert "http://" not in html and "https://" not in html  # no CDN, nothing off this server
    for src in ("/static/app/js/common.js", "/static/app/css/app.css"):
        assert src in html and client.get(src).status_code == 200


def test_vendored_libraries_come_from_npm_and_unknown_names_are_404(client):
    for name in ("plotly.min.js", "3Dmol-min.js"):
        response = client.get(f"/static/vendor/{name}")
        assert response.status_code == 200, f"{name}: {response.text} (run make setup)"
        assert response.headers["content-type"].startswith("text/javascript") and len(response.content) > 100_000
    assert client.get("/static/vendor/jquery.js").status_code == 404
    assert client.get("/candidates/0").status_code == 422  # page ids follow the API's rules


def test_upload_page_offers_the_servers_choices(client, api_settings):
    html = client.get("/").text
    page = json.loads(html.split("window.PAGE = ", 1)[1].split(";</script>", 1)[0])
    assert page["defaults"] == {"protocol": api_settings.protocol, "potential": api_settings.potential}
    assert "sevennet-l3i5" in page["potentials"] and page["keysRequired"] is False and page["vendorMissing"] == []
    for field in ("generator", "generator_version", "protocol", "potential", "prescreen", "second_opinion"):
        assert f'name="{field}"' in html


def _screened_batch(client, db_session) -> tuple[int, list[int]]:
    from models.crud import claim_screenings, save_verdict

    structures = [{"name": n, "cif": c} for n, c in (("si", si_cif()), ("al", al_cif()), ("nacl", nacl_cif()))]
    response = client.post(
        "/api/v1/batches", json={"generator": "web", "generator_version": "v1.2", "structures": structures}
    )
    assert response.status_code == 202, response.text
    batch_id = response.json()["id"]
    ids = [s["candidate_id"] for s in response.json()["structures"]]
    screenings = [db_session.scalar(select(Screening.id).where(Screening.candidate_id == i)) for i in ids]
    claim_screenings(db_session, ids=screenings[:2], worker="w", task_id="t")
    for screening_id, (verdict, reason, pb, pb3) in zip(
        screenings[:2], [("stable", None, True, True), ("unstable", "optical", False, False)], strict=True
    ):
        values = _verdict(verdict) | {"reason": reason, "stable_phononbench": pb, "stable_phononbench_v3": pb3}
        assert save_verdict(db_session, screening_id=screening_id, values=values)
    return batch_id, ids


def test_batch_reports_its_generator_version_and_pace(client, db_session):
    batch_id, _ = _screened_batch(client, db_session)
    batch = client.get(f"/api/v1/batches/{batch_id}").json()
    assert batch["generator"] == "web" and batch["generator_version"] == "v1.2"
    assert batch["status"] == "running" and batch["progress"] == pytest.approx(2 / 3, abs=1e-3)
    # two ended since the first started: the pace is measured, and one structure is left
    assert batch["seconds_per_structure"] is not None and batch["seconds_per_structure"] >= 0
    assert batch["eta_s"] == pytest.approx(batch["seconds_per_structure"], abs=0.1)


def test_csv_is_the_page_shown_with_the_same_filters(client, db_session):
    batch_id, ids = _screened_batch(client, db_session)
    params = {"batch_id": batch_id, "sort": "-id", "per_page": 2, "page": 1}
    page = client.get("/api/v1/candidates", params=params).json()
    response = client.get("/api/v1/candidates.csv", params=params)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == [h for h, _, _ in CANDIDATE_COLUMNS]
    assert [int(r[0]) for r in rows[1:]] == [i["id"] for i in page["items"]] == sorted(ids, reverse=True)[:2]
    unstable = client.get("/api/v1/candidates.csv", params={"batch_id": batch_id, "reason": "optical"}).text
    (row,) = list(csv.DictReader(io.StringIO(unstable)))
    assert row["verdict"] == "unstable" and row["reason"] == "optical" and row["worst mode (THz)"] == "-0.010"
    assert row["PhononBench -1e-3 THz"] == "no" and row["worst q-point"] == "(0.000, 0.000, 0.000)"
    for flag, expected in ((True, {ids[0]}), (False, {ids[1], ids[2]})):
        for name in ("stable_phononbench", "stable_phononbench_v3"):
            found = client.get("/api/v1/candidates", params={"batch_id": batch_id, name: flag}).json()["items"]
            assert {i["id"] for i in found} == expected, (name, flag)
    assert client.get("/api/v1/candidates.csv", params={"sort": "bogus"}).status_code == 422
    assert format_cell(None, "float3") == "" and format_cell(True, "bool") == "yes"
    assert format_cell([-0.0, 0.5], "vector") == "(0.000, 0.500)"  # as JavaScript prints a negative zero


def test_bundle_holds_the_verdict_and_every_file_there_is(client, db_session):
    _, ids = _screened_batch(client, db_session)
    detail = client.get(f"/api/v1/candidates/{ids[0]}").json()
    assert detail["links"]["input_cif"].endswith("/input.cif") and "relaxed_cif" not in detail["links"]
    assert client.get(detail["links"]["input_cif"]).text == detail["cif"]
    response = client.get(detail["links"]["bundle_zip"])
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
        assert sorted(zf.namelist()) == ["input.cif", "verdict.json"]
        assert json.loads(zf.read("verdict.json"))["verdict"]["verdict"] == "stable"
    assert client.get(f"/api/v1/candidates/{ids[0]}/phonopy_params.yaml.xz").status_code == 404
    assert client.get("/api/v1/candidates/999999/bundle.zip").status_code == 404


def test_report_csv_has_a_row_per_group_and_the_total(client, db_session):
    batch_id, _ = _screened_batch(client, db_session)
    response = client.get("/api/v1/reports/stability.csv", params={"group_by": "crystal_system", "batch_id": batch_id})
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert rows[-1]["crystal_system"] == "all" and rows[-1]["submitted"] == "3" and rows[-1]["stable"] == "1"
    assert client.get("/api/v1/reports/stability.csv", params={"group_by": "colour"}).status_code == 422
