"""Exports of any candidate search (GET /api/v1/candidates/export, `phononscreen export`, the
results page's Export control) against the real Postgres, with verdicts and relaxed CIFs stored
in the artifact store as the workers store them; every format read back by its own reader."""

from __future__ import annotations

import csv
import io
import json
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from app.export_formats import EXPORT_FORMATS
from models import Screening
from tests.service.conftest import al_cif, free_port, nacl_cif, si_cif
from tests.service.test_models import _verdict

pytestmark = pytest.mark.service
EXPORT = "/api/v1/candidates/export"


def cscl_cif() -> str:
    from pymatgen.core import Lattice, Structure

    return Structure.from_spacegroup("Pm-3m", Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(
        fmt="cif"
    )


def mgo_cif() -> str:
    from pymatgen.core import Lattice, Structure

    s = Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.21), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    return s.get_primitive_structure().to(fmt="cif")


def relaxed_cif(cif: str, *, scale: float) -> str:
    """The input scaled: a relaxed structure that can be told apart from the input."""
    from pymatgen.core import Structure

    structure = Structure.from_str(cif, fmt="cif")
    structure.scale_lattice(structure.volume * scale**3)
    return structure.to(fmt="cif")


@dataclass(frozen=True)
class Seeded:
    batch_a: int
    batch_b: int
    ids: dict[str, int]  # si, al, nacl of generator gen-a; cscl (stable) and queued (MgO, no verdict) of gen-b
    relaxed: dict[str, str]  # candidate key -> the relaxed CIF stored for it


@pytest.fixture
def seeded(client, db_session) -> Seeded:
    """gen-a (v1.2): Si stable by both PhononBench criteria and by the second opinion, Al unstable
    (optical; stable only by v3's -0.1 THz), NaCl relax_failed (no relaxed structure). gen-b: CsCl
    stable, MgO not screened yet (no verdict)."""
    from models.crud import claim_screenings, save_verdict

    def post(generator: str, version: str | None, structures: list[tuple[str, str]]) -> tuple[int, list[int]]:
        body = {"generator": generator, "structures": [{"name": n, "cif": c} for n, c in structures]}
        if version:
            body["generator_version"] = version
        response = client.post("/api/v1/batches", json=body)
        assert response.status_code == 202, response.text
        return response.json()["id"], [s["candidate_id"] for s in response.json()["structures"]]

    batch_a, (si, al, nacl) = post(
        "gen-a", "v1.2", [("gen.zip:tmp/si.cif", si_cif()), ("al", al_cif()), ("nacl", nacl_cif())]
    )
    batch_b, (cscl, queued) = post("gen-b", None, [("cscl.cif", cscl_cif()), ("queued.cif", mgo_cif())])
    store = client.app.state.store
    relaxed = {
        "si": relaxed_cif(si_cif(), scale=1.01),
        "al": relaxed_cif(al_cif(), scale=0.99),
        "cscl": relaxed_cif(cscl_cif(), scale=1.02),
    }
    plan = {  # key: (candidate id, values over test_models._verdict)
        "si": (si, {"verdict": "stable", "stable_phononbench": True, "stable_phononbench_v3": True, "min_frequency_thz": -0.0004,
                    "second_potential": "chgnet-0.3.0", "second_verdict": "stable", "second_min_frequency_thz": 0.0, "agreement": True}),
        "al": (al, {"verdict": "unstable", "reason": "optical", "stable_phononbench": False, "stable_phononbench_v3": True,
                    "min_frequency_thz": -0.05, "formula": "Al1", "spacegroup_after": "Fm-3m (225)", "spacegroup_number": 225}),
        "nacl": (nacl, {"verdict": "relax_failed", "reason": "max force 0.1 eV/A", "stable_phononbench": False,
                        "stable_phononbench_v3": False, "min_frequency_thz": None, "spacegroup_after": None,
                        "spacegroup_number": None, "energy_per_atom_ev": None}),
        "cscl": (cscl, {"verdict": "stable", "stable_phononbench": True, "stable_phononbench_v3": True, "min_frequency_thz": 0.0,
                        "formula": "CsCl", "spacegroup_after": "Pm-3m (221)", "spacegroup_number": 221}),
    }  # fmt: skip
    screening_of = {
        key: db_session.scalar(select(Screening.id).where(Screening.candidate_id == i)) for key, (i, _) in plan.items()
    }
    claim_screenings(db_session, ids=list(screening_of.values()), worker="w", task_id="t")
    for key, (_, values) in plan.items():
        path = f"screenings/{screening_of[key]}/relaxed.cif"
        phonons = {"worst_path_frequency_thz": values["min_frequency_thz"]} if key in relaxed else None
        values = (
            _verdict(values["verdict"])
            | values
            | {
                "result": {"verdict": values["verdict"], "phonons": phonons},
                "relaxed_cif_path": store.write_text(path, relaxed[key]) if key in relaxed else None,
            }
        )
        assert save_verdict(db_session, screening_id=screening_of[key], values=values)
    ids = {"si": si, "al": al, "nacl": nacl, "cscl": cscl, "queued": queued}
    return Seeded(batch_a=batch_a, batch_b=batch_b, ids=ids, relaxed=relaxed)


def _export(client, fmt: str, **params):
    response = client.get(EXPORT, params={"format": fmt, **params})
    assert response.status_code == 200, response.text
    spec = EXPORT_FORMATS[fmt]
    assert response.headers["content-type"].split(";")[0] == spec.media_type
    assert response.headers["content-disposition"] == f'attachment; filename="{spec.filename}"'
    assert int(response.headers["content-length"]) == len(response.content)
    return response


def _lattice_a(cif: str) -> float:
    from pymatgen.core import Structure

    return Structure.from_str(cif, fmt="cif").lattice.a


def test_cif_zip_holds_relaxed_cifs_inputs_of_the_unrelaxed_and_a_manifest(client, seeded):
    response = _export(client, "cif-zip", batch_id=seeded.batch_a)
    assert response.headers["x-candidate-count"] == "3"
    ids = seeded.ids
    with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
        assert sorted(zf.namelist()) == sorted(
            [
                f"relaxed/{ids['si']}-si.cif",
                f"relaxed/{ids['al']}-al.cif",
                f"unrelaxed_input/{ids['nacl']}-nacl.cif",
                "manifest.csv",
            ]
        )
        assert zf.read(f"relaxed/{ids['si']}-si.cif").decode() == seeded.relaxed["si"]  # the stored artifact, as is
        detail = client.get(f"/api/v1/candidates/{ids['nacl']}").json()
        assert zf.read(f"unrelaxed_input/{ids['nacl']}-nacl.cif").decode() == detail["cif"]
        rows = {int(r["candidate_id"]): r for r in csv.DictReader(io.StringIO(zf.read("manifest.csv").decode()))}
    assert set(rows) == {ids["si"], ids["al"], ids["nacl"]}
    si, al, nacl = rows[ids["si"]], rows[ids["al"]], rows[ids["nacl"]]
    assert (si["file"], si["structure_source"], si["verdict"]) == (f"relaxed/{ids['si']}-si.cif", "relaxed", "stable")
    assert (si["stable_phononbench"], si["stable_phononbench_v3"], si["stable_by_both"]) == ("true", "true", "true")
    name = client.get(f"/api/v1/candidates/{ids['si']}").json()["name"]
    assert (si["generator"], si["generator_version"], si["name"], si["space_group"]) == ("gen-a", "v1.2", name, "Fd-3m")
    assert float(si["min_frequency_thz"]) == -0.0004 and float(si["energy_per_atom_ev"]) == -5.4
    assert (al["reason"], al["stable_phononbench"], al["stable_phononbench_v3"]) == ("optical", "false", "true")
    assert (nacl["file"], nacl["structure_source"], nacl["verdict"]) == (
        f"unrelaxed_input/{ids['nacl']}-nacl.cif",
        "input",
        "relax_failed",
    )
    assert nacl["space_group"] == "Fm-3m" and nacl["space_group_number"] == "225"  # of the input it carries


def test_extxyz_frames_are_the_relaxed_structures_with_the_verdict_fields(client, seeded):
    import ase.io

    response = _export(client, "extxyz", batch_id=seeded.batch_a)
    frames = ase.io.read(io.StringIO(response.text), index=":", format="extxyz")
    assert [f.info["candidate_id"] for f in frames] == [seeded.ids[k] for k in ("si", "al", "nacl")]
    si, al, nacl = frames
    for key in ("verdict", "min_frequency_thz", "stable_phononbench", "stable_phononbench_v3", "generator",
                "generator_version", "candidate_id", "name", "batch_id", "energy_per_atom_ev", "space_group"):  # fmt: skip
        assert key in si.info, key
    assert (
        si.info["verdict"] == "stable" and si.info["stable_phononbench"] is True and si.info["stable_by_both"] is True
    )
    assert si.info["min_frequency_thz"] == pytest.approx(-0.0004) and si.info["energy_per_atom_ev"] == pytest.approx(
        -5.4
    )
    name = client.get(f"/api/v1/candidates/{seeded.ids['si']}").json()["name"]
    assert (si.info["generator"], si.info["name"], si.info["batch_id"]) == ("gen-a", name, seeded.batch_a)
    assert si.info["space_group"] == "Fd-3m" and si.info["space_group_number"] == 227
    assert si.info["structure_source"] == "relaxed" and si.get_chemical_formula() == "Si2"
    assert si.cell.lengths()[0] == pytest.approx(_lattice_a(seeded.relaxed["si"]), abs=1e-6)
    assert al.info["reason"] == "optical" and al.info["stable_phononbench_v3"] is True
    assert nacl.info["structure_source"] == "input" and "min_frequency_thz" not in nacl.info  # no value: left out
    assert all(f.pbc.all() for f in frames)


def test_jsonl_is_the_apis_candidate_with_the_relaxed_structure(client, seeded):
    from pymatgen.core import Structure

    response = _export(client, "jsonl", batch_id=seeded.batch_a, sort="-id")
    lines = [json.loads(line) for line in response.text.splitlines()]
    page = client.get("/api/v1/candidates", params={"batch_id": seeded.batch_a, "sort": "-id"}).json()["items"]
    extras = ("generator_version", "worst_path_frequency_thz", "structure_source", "structure")
    # one serialization: each line is the page's item (every verdict field), plus the export's keys
    assert [{k: v for k, v in line.items() if k not in extras} for line in lines] == page
    si = next(line for line in lines if line["id"] == seeded.ids["si"])
    assert si["verdict"]["second_opinion"]["potential"] == "chgnet-0.3.0" and si["verdict"]["stable_by_both"] is True
    assert si["generator_version"] == "v1.2" and si["worst_path_frequency_thz"] == -0.0004
    assert si["structure_source"] == "relaxed"
    structure = Structure.from_dict(si["structure"])
    assert structure.lattice.a == pytest.approx(_lattice_a(seeded.relaxed["si"]))
    nacl = next(line for line in lines if line["id"] == seeded.ids["nacl"])
    assert (
        nacl["structure_source"] == "input"
        and Structure.from_dict(nacl["structure"]).composition.reduced_formula == "NaCl"
    )


def test_pymatgen_json_loads_back_as_structures_with_their_verdicts(client, seeded, tmp_path):
    from monty.serialization import loadfn
    from pymatgen.core import Structure

    response = _export(client, "pymatgen-json", generator="gen-a", stable_phononbench="true")
    path = tmp_path / "candidates.json"
    path.write_bytes(response.content)
    (structure,) = loadfn(path)
    assert isinstance(structure, Structure) and structure.composition.reduced_formula == "Si"
    assert structure.lattice.a == pytest.approx(_lattice_a(seeded.relaxed["si"]))
    props = structure.properties
    assert props["id"] == seeded.ids["si"] and props["verdict"]["verdict"] == "stable"
    assert props["verdict"]["stable_phononbench"] is True and props["generator"] == "gen-a"
    assert [Structure.from_dict(d).properties["id"] for d in json.loads(response.content)] == [seeded.ids["si"]]


def test_phononbench_layout_is_its_scripts_files(client, seeded):
    response = _export(client, "phononbench")
    ids = seeded.ids
    si, al, nacl, cscl = f"{ids['si']}-si", f"{ids['al']}-al", f"{ids['nacl']}-nacl", f"{ids['cscl']}-cscl"
    with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
        names = set(zf.namelist())
        assert {
            f"gen-a/relaxed/{si}_relaxed.cif",
            f"gen-a/relaxed/{al}_relaxed.cif",
            f"gen-b/relaxed/{cscl}_relaxed.cif",
        } <= names
        assert not any("nacl" in n and n.endswith("_relaxed.cif") for n in names)  # it never relaxed
        assert zf.read(f"gen-a/relaxed/{si}_relaxed.cif").decode() == seeded.relaxed["si"]
        labels = zf.read("gen-a/relaxed/Lable.txt").decode()
        summary = list(csv.reader(io.StringIO(zf.read("gen-a/phonon_summary.csv").decode())))
        labels_b = zf.read("gen-b/relaxed/Lable.txt").decode()
        manifest = list(csv.DictReader(io.StringIO(zf.read("manifest.csv").decode())))
        assert "Lable.txt" in zf.read("README.txt").decode()
    # PhononBench's Lable.txt: name<TAB>label, sorted by name; failures are unStable
    assert labels == "".join(sorted([f"{si}\tStable\n", f"{al}\tunStable\n", f"{nacl}\tunStable\n"]))
    assert labels_b == f"{cscl}\tStable\n"  # the queued candidate is not processed yet: no label
    # and as summarize_relaxation_and_stability.py reads it: two whitespace-separated fields
    items = [line.split() for line in labels.splitlines()]
    assert all(len(i) == 2 for i in items) and sum(label.lower() == "stable" for _, label in items) == 1
    # export_phonon_summary.py's columns; a row per structure whose phonons ran
    assert summary[0] == ["structure_name", "min_frequency", "is_stable", "yaml_path", "cif_path", "npz_path"]
    assert summary[1:] == sorted(
        [
            [si, "-0.0004", "True", "", f"relaxed/{si}_relaxed.cif", ""],
            [al, "-0.05", "False", "", f"relaxed/{al}_relaxed.cif", ""],
        ]
    )
    assert {int(r["candidate_id"]) for r in manifest} == set(ids.values())


def test_filters_are_the_searchs_and_paging_does_not_apply(client, seeded):
    """Stable by both PhononBench criteria from one generator; per_page does not cut the export."""
    wanted = {"generator": "gen-a", "stable_phononbench": "true", "stable_phononbench_v3": "true"}
    listed = client.get("/api/v1/candidates", params=wanted).json()
    assert [i["id"] for i in listed["items"]] == [seeded.ids["si"]]
    for fmt in EXPORT_FORMATS:
        assert _export(client, fmt, **wanted).headers["x-candidate-count"] == "1", fmt
    lines = _export(client, "jsonl", **wanted).text.splitlines()
    assert [json.loads(line)["id"] for line in lines] == [seeded.ids["si"]]
    v3_only = _export(
        client, "jsonl", batch_id=seeded.batch_a, stable_phononbench="false", stable_phononbench_v3="true"
    )
    assert [json.loads(line)["id"] for line in v3_only.text.splitlines()] == [seeded.ids["al"]]
    both = _export(client, "jsonl", stable_by_both="true", batch_id=seeded.batch_a).text.splitlines()
    assert [json.loads(line)["id"] for line in both] == [seeded.ids["si"]]
    everything = _export(client, "jsonl", batch_id=seeded.batch_b, per_page=1, page=2)
    assert [json.loads(line)["id"] for line in everything.text.splitlines()] == [
        seeded.ids["cscl"],
        seeded.ids["queued"],
    ]


def test_exports_read_in_chunks_give_every_candidate_once(client, seeded, db_session):
    from app.api.candidate_exports import iter_export_records
    from models.queries import CandidateFilters

    store = client.app.state.store
    for sort in ("id", "-min_frequency_thz", "formula"):
        records = list(iter_export_records(db_session, store=store, filters=CandidateFilters(), sort=sort, chunk=2))
        ids = [r.candidate.id for r in records]
        assert len(ids) == len(set(ids)) and set(seeded.ids.values()) <= set(ids), sort


def test_an_empty_selection_is_a_valid_empty_export(client, seeded, tmp_path):
    import ase.io
    from monty.serialization import loadfn

    nobody = {"generator": "nobody"}
    for fmt in ("cif-zip", "phononbench"):
        with zipfile.ZipFile(io.BytesIO(_export(client, fmt, **nobody).content)) as zf:
            header = zf.read("manifest.csv").decode()
            assert header.startswith("file,candidate_id,") and header.count("\n") == 1
            assert not [n for n in zf.namelist() if n.endswith(".cif") or n.endswith("Lable.txt")]
    xyz = _export(client, "extxyz", **nobody)
    assert xyz.content == b"" and ase.io.read(io.StringIO(xyz.text), index=":", format="extxyz") == []
    assert _export(client, "jsonl", **nobody).content == b""
    (tmp_path / "empty.json").write_bytes(_export(client, "pymatgen-json", **nobody).content)
    assert loadfn(tmp_path / "empty.json") == []
    assert all(_export(client, fmt, **nobody).headers["x-candidate-count"] == "0" for fmt in EXPORT_FORMATS)


def test_a_bad_format_is_a_422_naming_the_formats(client):
    response = client.get(EXPORT, params={"format": "xyz"})
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["query", "format"]
    assert all(f"'{name}'" in error["msg"] for name in EXPORT_FORMATS), error["msg"]
    assert client.get(EXPORT).status_code == 422  # the format is required
    assert client.get(EXPORT, params={"format": "jsonl", "sort": "bogus"}).status_code == 422  # the search's own rules
    assert client.get(EXPORT, params={"format": "jsonl", "elements": "Xx"}).status_code == 422


def test_openapi_documents_the_formats_and_their_media_types(client):
    operation = client.get("/openapi.json").json()["paths"][EXPORT]["get"]
    (fmt,) = [p for p in operation["parameters"] if p["name"] == "format"]
    assert fmt["required"] is True and fmt["schema"]["enum"] == list(EXPORT_FORMATS)
    assert set(operation["responses"]["200"]["content"]) == {f.media_type for f in EXPORT_FORMATS.values()}
    assert all(f"`{name}`" in operation["description"] for name in EXPORT_FORMATS)
    listed = {p["name"] for p in client.get("/openapi.json").json()["paths"]["/api/v1/candidates"]["get"]["parameters"]}
    assert listed <= {p["name"] for p in operation["parameters"]}  # the same filters (one dependency)


def test_results_page_offers_every_format_for_the_current_filters(client):
    html = client.get("/candidates").text
    page = json.loads(html.split("window.PAGE = ", 1)[1].split(";</script>", 1)[0])
    assert [f["name"] for f in page["exportFormats"]] == list(EXPORT_FORMATS)
    assert 'id="export-format"' in html and 'id="export"' in html
    for name in EXPORT_FORMATS:
        assert f'<option value="{name}">' in html
    script = client.get("/static/app/js/candidates.js").text
    assert "/api/v1/candidates/export?" in script and 'params.set("format"' in script


# --- the CLI, against the app served by uvicorn in this process --------------------------------


@pytest.fixture
def served(api_settings, db_session) -> Iterator[tuple[str, str]]:
    """The app with reads needing a key, on the rolled-back session, served over HTTP; (url, key)."""
    import uvicorn

    from app.api.deps import get_db
    from app.main import create_app
    from app.security import create_key
    from models.crud import create_api_key

    new = create_key()
    assert create_api_key(db_session, name="export-cli", prefix=new.prefix, key_hash=new.key_hash) is not None
    app = create_app(api_settings.model_copy(update={"private_reads": True}))
    app.dependency_overrides[get_db] = lambda: db_session
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", new.key
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_cli_export_downloads_a_filtered_export(served, seeded, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from app.cli import main

    url, key = served
    out = tmp_path / "stable.zip"
    args = ["export", "--url", url, "--key", key, "-f", "phononbench", "--generator", "gen-a"]
    result = CliRunner().invoke(main, [*args, "--stable-phononbench", "--stable-phononbench-v3", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert f"wrote {out} (1 candidates" in result.output
    with zipfile.ZipFile(out) as zf:
        assert zf.read("gen-a/relaxed/Lable.txt").decode() == f"{seeded.ids['si']}-si\tStable\n"
    assert not list(tmp_path.glob(".*.part"))  # the partial file was renamed

    monkeypatch.chdir(tmp_path)  # no -o: the service's file name, here
    result = CliRunner().invoke(main, [*args, "--no-stable-phononbench", "-f", "jsonl"])
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "candidates.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["id"] for line in lines) == sorted([seeded.ids["al"], seeded.ids["nacl"]])


def test_cli_export_says_why_a_request_was_refused(served, tmp_path):
    from click.testing import CliRunner

    from app.cli import main

    url, key = served
    out = tmp_path / "x"
    bad = CliRunner().invoke(main, ["export", "--url", url, "--key", key, "-f", "xyz", "-o", str(out)])
    assert bad.exit_code == 1 and "HTTP 422" in bad.output and "format:" in bad.output
    assert all(f"'{name}'" in bad.output for name in EXPORT_FORMATS), bad.output
    anonymous = CliRunner().invoke(main, ["export", "--url", url, "-f", "jsonl", "-o", str(out)])
    assert anonymous.exit_code == 1 and "HTTP 401" in anonymous.output and "--key" in anonymous.output
    elements = CliRunner().invoke(main, ["export", "--url", url, "--key", key, "-f", "jsonl", "--elements", "Xx"])
    assert elements.exit_code == 1 and "elements:" in elements.output
    assert not out.exists() and not list(Path(tmp_path).iterdir())
    gone = CliRunner().invoke(
        main, ["export", "--url", f"http://127.0.0.1:{free_port()}", "-f", "jsonl", "-o", str(out)]
    )
    assert gone.exit_code == 1 and "no answer from" in gone.output


def test_cli_options_are_the_searchs_filters_and_the_services_formats():
    """Every filter of the search (app/api/candidates.py get_candidate_query) is an option of the
    CLI, and its help names every format (it validates none itself: the service does)."""
    import inspect

    from click.testing import CliRunner

    from app.api.candidates import get_candidate_query
    from app.cli import main
    from app.commands.export import FILTERS, FORMATS_HELP

    search = set(inspect.signature(get_candidate_query).parameters) - {"page", "per_page"}
    assert {name for _, name, _, _ in FILTERS} == search
    shown = CliRunner().invoke(main, ["export", "--help"]).output
    assert all(name in FORMATS_HELP and f"  {name} " in shown for name in EXPORT_FORMATS)


def test_a_relaxed_cif_lost_from_the_store_is_a_410_and_exports_fall_back_to_the_input(client, seeded):
    """A file deleted from the artifact store by hand: its route says so (410, never a 500), and an
    export still carries the candidate, with its input structure, marked as such."""
    store = client.app.state.store
    detail = client.get(f"/api/v1/candidates/{seeded.ids['si']}").json()
    relaxed = client.get(detail["links"]["relaxed_cif"])
    assert relaxed.status_code == 200
    for path in store.root.rglob("relaxed.cif"):
        if path.read_text() == relaxed.text:
            path.unlink()
    gone = client.get(detail["links"]["relaxed_cif"])
    assert gone.status_code == 410 and gone.json()["detail"]["code"] == "artifact_missing"
    lines = _export(client, "jsonl", batch_id=seeded.batch_a).text.splitlines()
    si = next(json.loads(line) for line in lines if json.loads(line)["id"] == seeded.ids["si"])
    assert si["structure_source"] == "input"
