"""OPTIMADE v1 (/optimade) on the real Postgres, each test rolled back: filters translated to SQL find
the right structures, the relaxed structure and the provider fields are served, a bad filter is a
4xx (never a 5xx), and the optimade package's own validator passes the implementation."""

from __future__ import annotations

import random
import urllib.parse
from dataclasses import dataclass
from datetime import datetime

import pytest
from sqlalchemy import select

from models.screening import Screening
from tests.service.conftest import al_cif, nacl_cif, si_cif
from tests.service.test_models import _verdict

pytestmark = pytest.mark.service

BASE = "/optimade/v1"


def _si_conventional_cif() -> str:
    from pymatgen.core import Lattice, Structure

    return Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.43), ["Si"], [[0, 0, 0]]).to(fmt="cif")


def _lif_cif() -> str:
    from pymatgen.core import Lattice, Structure

    lif = Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.03), ["Li", "F"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    return lif.get_primitive_structure().to(fmt="cif")


@dataclass(frozen=True)
class Seeded:
    ids: dict[str, str]  # name -> OPTIMADE id
    first_batch: int

    def names(self, ids: set[str]) -> set[str]:
        by_id = {v: k for k, v in self.ids.items()}
        return {by_id.get(i, f"other:{i}") for i in ids}


def _submit(client, structures: dict[str, str], **fields) -> tuple[int, dict[str, int]]:
    body = {"structures": [{"name": n, "cif": c} for n, c in structures.items()], **fields}
    response = client.post("/api/v1/batches", json=body)
    assert response.status_code == 202, response.text
    created = response.json()
    assert all(s["accepted"] and s["candidate_id"] for s in created["structures"]), created
    return created["id"], dict(zip(structures, (s["candidate_id"] for s in created["structures"]), strict=True))


def _decide(session, candidate_id: int, values: dict) -> None:
    from models.crud import claim_screenings, save_verdict

    screening_id = session.scalar(select(Screening.id).where(Screening.candidate_id == candidate_id))
    assert claim_screenings(session, ids=[screening_id], worker="w", task_id=f"t{candidate_id}") == [screening_id]
    assert save_verdict(session, screening_id=screening_id, values=values)


@pytest.fixture
def seeded(client, db_session) -> Seeded:
    return _seed(client, db_session)


def _seed(client, session) -> Seeded:
    """Si submitted as its conventional cell (8 sites) and relaxed as the primitive one (2), stable;
    NaCl relaxed, unstable; Al whose relaxation failed (served as submitted); LiF still queued."""
    store = client.app.state.store
    first, a = _submit(
        client, {"si": _si_conventional_cif(), "nacl": nacl_cif()}, generator="gen-a", generator_version="v1"
    )
    _, b = _submit(client, {"al": al_cif(), "lif": _lif_cif()}, generator="gen-b")
    _decide(
        session,
        a["si"],
        _verdict("stable")
        | {
            "stable_phononbench_v3": True,
            "relaxed_cif_path": store.write_text("optimade-test/si.cif", si_cif()),
            "result": {"extra": {"input_to_primitive": {"n_primitive_atoms": 2, "n_input_atoms": 8}}},
        },
    )
    nacl = _verdict("unstable") | {"reason": "optical", "min_frequency_thz": -0.3, "stable_phononbench_v3": False}
    nacl |= {"spacegroup_number": 225, "relaxed_cif_path": store.write_text("optimade-test/nacl.cif", nacl_cif())}
    _decide(session, a["nacl"], nacl)
    failed = {"min_frequency_thz": None, "spacegroup_number": None, "energy_per_atom_ev": None}
    _decide(session, b["al"], _verdict("relax_failed") | failed | {"stable_phononbench_v3": False})
    ids = {name: str(i) for name, i in (a | b).items()}
    return Seeded(ids=ids, first_batch=first)


def _found(client, seeded: Seeded, filter_: str) -> set[str]:
    """Names of the structures of this test that `filter_` finds (other tests' rows left aside)."""
    scoped = f"({filter_}) AND _phononscreen_batch_id >= {seeded.first_batch}" if filter_ else ""
    response = client.get(f"{BASE}/structures", params={"filter": scoped, "page_limit": 100})
    assert response.status_code == 200, (filter_, response.text)
    body = response.json()
    assert body["meta"]["data_returned"] == len(body["data"]) and not body["meta"]["more_data_available"]
    found = seeded.names({entry["id"] for entry in body["data"]})
    return found if filter_ else found & set(seeded.ids)


FILTERS = [
    ("", {"si", "nacl", "al"}),  # LiF has no verdict yet: not a structure
    ('elements HAS "Si"', {"si"}),
    ('elements HAS "S"', set()),
    ('elements HAS ALL "Na","Cl"', {"nacl"}),
    ('elements HAS ANY "Na","Al"', {"nacl", "al"}),
    ('elements HAS ONLY "Cl","Na","K"', {"nacl"}),
    ('elements HAS ONLY "Na"', set()),
    ("elements LENGTH 1", {"si", "al"}),
    ("nelements=2", {"nacl"}),
    ("nelements>=1 AND nelements<2", {"si", "al"}),
    ("nsites=2", {"si", "nacl"}),  # Si is served relaxed: the primitive cell, not the 8 sites submitted
    ("nsites=8", set()),
    ("1 = nsites", {"al"}),
    ('chemical_formula_reduced="ClNa"', {"nacl"}),
    ('"ClNa" = chemical_formula_reduced', {"nacl"}),
    ('chemical_formula_anonymous="AB"', {"nacl"}),
    ('chemical_formula_descriptive="NaCl"', {"nacl"}),
    ('chemical_formula_descriptive CONTAINS "Cl"', {"nacl"}),
    ('chemical_formula_descriptive CONTAINS "cl"', set()),  # case-sensitive
    ('chemical_formula_descriptive STARTS WITH "Na" OR chemical_formula_descriptive ENDS "l"', {"nacl", "al"}),
    ('_phononscreen_verdict="stable" AND _phononscreen_min_frequency_thz>-0.1', {"si"}),
    ("_phononscreen_min_frequency_thz<-0.1", {"nacl"}),
    ("NOT _phononscreen_min_frequency_thz<-0.1", {"si"}),  # unknown (Al's) is neither < nor not <
    ("_phononscreen_min_frequency_thz IS UNKNOWN", {"al"}),
    ("_phononscreen_stable_phononbench_v3=TRUE", {"si"}),
    ("_phononscreen_stable_phononbench=FALSE", {"nacl", "al"}),
    ('_phononscreen_generator="gen-a"', {"si", "nacl"}),
    ('_phononscreen_generator_version="v1" AND _phononscreen_reason="optical"', {"nacl"}),
    ("_phononscreen_space_group=227", {"si"}),
    ("_phononscreen_relaxed=FALSE", {"al"}),
    ('last_modified >= "2000-01-01T00:00:00Z"', {"si", "nacl", "al"}),
    ('last_modified < "2000-01-01T00:00:00+02:00"', set()),
    ("nperiodic_dimensions=3 AND structure_features LENGTH 0", {"si", "nacl", "al"}),
    ('structure_features HAS "disorder"', set()),
    ("_otherdb_field=1", set()),  # another provider's field: unknown here, not an error
    ("NOT _otherdb_field=1", set()),
    ("chemical_formula_hill IS UNKNOWN", {"si", "nacl", "al"}),  # a standard field not served
]


def test_filters_find_the_right_structures(client, seeded):
    wrong = {f: (found, expected) for f, expected in FILTERS if (found := _found(client, seeded, f)) != expected}
    assert wrong == {}  # filter: (found, expected)


def test_filters_on_sqlite_the_embedded_database(tmp_path, redis_broker):
    """The same filters, on SQLite: its LIKE ignores case, it keeps timestamps naive, its JSON differs."""
    from fastapi.testclient import TestClient

    from app.config import Settings
    from app.main import create_app
    from migrations import upgrade_database

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade_database(url)
    app = create_app(Settings(database_url=url, broker_url=redis_broker, home=tmp_path, artifacts_dir=tmp_path / "a"))
    with TestClient(app) as client:
        with app.state.session_factory() as session:
            seeded = _seed(client, session)
            session.commit()
        wrong = {f: (found, expected) for f, expected in FILTERS if (found := _found(client, seeded, f)) != expected}
        assert wrong == {}  # filter: (found, expected)
        entry = client.get(f"{BASE}/structures/{seeded.ids['si']}").json()["data"]["attributes"]
        assert entry["nsites"] == 2 and entry["last_modified"].endswith("Z")


def test_id_filters(client, seeded):
    si = seeded.ids["si"]
    assert _found(client, seeded, f'id="{si}"') == {"si"}
    assert _found(client, seeded, f'NOT id="{si}"') == {"nacl", "al"}
    assert _found(client, seeded, 'id="0" OR id="01" OR id="abc"') == set()
    assert _found(client, seeded, f'id STARTS WITH "{si}"') >= {"si"}


def test_a_structure_is_served_relaxed_with_its_provider_fields(client, seeded):
    from optimade.models.utils import anonymize_formula, reduce_formula

    response = client.get(f"{BASE}/structures/{seeded.ids['si']}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/vnd.api+json")
    entry = response.json()["data"]
    attributes = entry["attributes"]
    assert (entry["id"], entry["type"]) == (seeded.ids["si"], "structures")
    assert attributes["nsites"] == 2 and len(attributes["cartesian_site_positions"]) == 2  # relaxed, primitive
    assert attributes["species_at_sites"] == ["Si", "Si"] and attributes["elements"] == ["Si"]
    assert [sum(x * x for x in v) ** 0.5 for v in attributes["lattice_vectors"]] == pytest.approx([3.84] * 3, abs=0.01)
    assert attributes["last_modified"].endswith("Z") or attributes["last_modified"].endswith("+00:00")
    assert {k: attributes[f"_phononscreen_{k}"] for k in ("verdict", "min_frequency_thz", "space_group")} == {
        "verdict": "stable",
        "min_frequency_thz": -0.01,
        "space_group": 227,
    }
    assert attributes["_phononscreen_generator"] == "gen-a" and attributes["_phononscreen_generator_version"] == "v1"
    assert attributes["_phononscreen_stable_phononbench"] is True and attributes["_phononscreen_relaxed"] is True
    assert attributes["_phononscreen_batch_id"] == seeded.first_batch

    al = client.get(f"{BASE}/structures/{seeded.ids['al']}").json()["data"]["attributes"]
    assert al["_phononscreen_relaxed"] is False and al["_phononscreen_min_frequency_thz"] is None
    nacl = client.get(f"{BASE}/structures/{seeded.ids['nacl']}").json()["data"]["attributes"]
    # the formulas searched are the package's own for the structure served
    formula = "Na1 Cl1"
    assert nacl["chemical_formula_reduced"] == reduce_formula(formula) == "ClNa"
    assert nacl["chemical_formula_anonymous"] == anonymize_formula(formula) == "AB"
    assert nacl["elements_ratios"] == [0.5, 0.5]

    only = client.get(f"{BASE}/structures", params={"response_fields": "elements,_phononscreen_verdict,assemblies"})
    assert all(set(e["attributes"]) == {"elements", "_phononscreen_verdict", "assemblies"} for e in only.json()["data"])
    assert client.get(f"{BASE}/structures/{seeded.ids['lif']}").status_code == 404  # no verdict yet
    # a duplicate of a screened structure is one too, with the verdict it shares
    batch, again = _submit(client, {"nacl": nacl_cif()})
    shared = client.get(f"{BASE}/structures/{again['nacl']}").json()["data"]["attributes"]
    assert (shared["_phononscreen_verdict"], shared["_phononscreen_batch_id"]) == ("unstable", batch)
    assert datetime.fromisoformat(shared["last_modified"]) >= datetime.fromisoformat(nacl["last_modified"])


def test_info_declares_the_provider_fields(client):
    info = client.get(f"{BASE}/info").json()
    assert info["data"]["attributes"]["entry_types_by_format"] == {"json": ["structures"]}
    assert info["meta"]["provider"]["prefix"] == "phononscreen" and info["meta"]["api_version"].startswith("1.")
    properties = client.get(f"{BASE}/info/structures").json()["data"]["properties"]
    for name in (
        "verdict",
        "min_frequency_thz",
        "generator",
        "generator_version",
        "stable_phononbench",
        "stable_phononbench_v3",
        "batch_id",
        "space_group",
    ):
        assert properties[f"_phononscreen_{name}"]["description"], name
    assert properties["_phononscreen_min_frequency_thz"] == {
        "description": properties["_phononscreen_min_frequency_thz"]["description"],
        "unit": "THz",
        "sortable": True,
        "type": "float",
    }
    assert properties["_phononscreen_stable_phononbench_v3"]["type"] == "boolean"
    versions = client.get("/optimade/versions")
    assert versions.text.splitlines() == ["version", "1"] and versions.headers["content-type"].startswith("text/csv")


def test_pages_follow_links_next(client, seeded):
    params = {"filter": f"_phononscreen_batch_id >= {seeded.first_batch}", "page_limit": 2, "sort": "-nsites"}
    first = client.get(f"{BASE}/structures", params=params).json()
    assert first["meta"]["data_returned"] == 3 and first["meta"]["more_data_available"] is True
    second = client.get(first["links"]["next"]).json()
    assert second["meta"]["more_data_available"] is False and not second["links"].get("next")
    ordered = [e["attributes"]["nsites"] for e in first["data"] + second["data"]]
    assert ordered == [2, 2, 1]  # sorted by nsites, descending


BAD_REQUESTS = [
    ({"filter": 'nsites="2"'}, 400),
    ({"filter": "crazyfield=2"}, 400),
    ({"filter": "_phononscreen_no_such_field=2"}, 400),
    ({"filter": "elements HAS"}, 400),
    ({"filter": 'elements="Si"'}, 400),
    ({"filter": 'nsites CONTAINS "2"'}, 400),
    ({"filter": "_phononscreen_stable_phononbench > TRUE"}, 400),
    ({"filter": 'last_modified > "yesterday"'}, 400),
    ({"filter": "(" * 40 + "nsites=1" + ")" * 40}, 400),
    ({"filter": 'chemical_formula_reduced="Na\x00Cl"'}, 400),
    ({"filter": "nsites=1 AND " * 300 + "nsites=1"}, 400),
    ({"filter": "references.id=1"}, 501),
    ({"filter": 'elements:elements_ratios HAS "Si":1.0'}, 501),
    ({"filter": "elements_ratios HAS 0.5"}, 501),
    ({"filter": '"a" = "b"'}, 501),
    ({"filter": "nsites = nelements"}, 501),
    ({"page_limit": "1000"}, 403),
    ({"page_limit": "-1"}, 400),
    ({"page_offset": "x"}, 400),
    ({"page_number": "2"}, 501),
    ({"sort": "lattice_vectors"}, 400),
    ({"response_fields": "elements,crazyfield"}, 400),
    ({"response_format": "xml"}, 400),
]


def test_bad_requests_are_optimade_errors_never_5xx(client, seeded):
    for params, status in BAD_REQUESTS:
        response = client.get(f"{BASE}/structures", params=params)
        assert response.status_code == status, (params, response.text)
        body = response.json()
        assert body["errors"][0]["status"] == str(status) and body["errors"][0]["detail"], params
        assert "data" not in body and body["meta"]["api_version"], params


def test_unknown_ids_are_404_error_documents(client, seeded):
    for entry_id in ("999999999", "0", "abc", "01", "9" * 30):
        response = client.get(f"{BASE}/structures/{entry_id}")
        assert response.status_code == 404 and response.json()["errors"][0]["status"] == "404", entry_id


def test_private_reads_need_a_key_here_too(api_settings, db_session):
    from fastapi.testclient import TestClient

    from app.api.deps import get_db
    from app.main import create_app

    app = create_app(api_settings.model_copy(update={"private_reads": True}))
    app.dependency_overrides[get_db] = lambda: db_session
    with TestClient(app) as client:
        response = client.get(f"{BASE}/structures")
        assert response.status_code == 401 and response.json()["errors"][0]["status"] == "401"
        assert response.headers["www-authenticate"] == "Bearer"


def test_random_filters_are_never_a_server_error(client, seeded):
    """Filters near the grammar, from the fields served and odd values: each is answered with data or
    with a 400 / 501 error document."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from app.optimade.fields import FIELDS

    names = st.sampled_from([*FIELDS, "chemical_formula_hill", "_x_y", "nope", "id"])
    values = st.one_of(
        st.integers(-(2**70), 2**70).map(str),
        st.floats(allow_nan=False).map(repr).filter(lambda v: "inf" not in v),
        st.text(max_size=8).map(lambda s: '"' + s.replace("\\", "").replace('"', "") + '"'),
        st.sampled_from(["TRUE", "FALSE", '"Si"', '"2024-01-01T00:00:00Z"']),
    )
    ops = st.sampled_from(["=", "!=", "<", "<=", ">", ">=", "CONTAINS", "STARTS WITH", "ENDS", "HAS", "HAS ALL"])
    comparisons = st.one_of(
        st.tuples(names, ops, values).map(" ".join),
        st.tuples(names, st.sampled_from(["IS KNOWN", "IS UNKNOWN", "LENGTH 1", "LENGTH >= 0"])).map(" ".join),
        st.tuples(values, st.sampled_from(["=", "<"]), names).map(" ".join),
    )
    filters = st.recursive(
        comparisons,
        lambda inner: st.one_of(
            st.tuples(inner, st.sampled_from(["AND", "OR"]), inner).map(" ".join),
            inner.map(lambda f: f"NOT ({f})"),
        ),
        max_leaves=4,
    ) | st.text(max_size=40)

    @settings(max_examples=60, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(filter_=filters)
    def run(filter_: str) -> None:
        response = client.get(f"{BASE}/structures", params={"filter": filter_})
        assert response.status_code in (200, 400, 501), (filter_, response.text)
        assert ("data" in response.json()) == (response.status_code == 200)

    run()


def test_the_migration_backfills_both_formulas(tmp_path):
    """Candidates stored before the formula columns get them from their stored structure."""
    import json
    from datetime import UTC

    from pymatgen.core import Lattice, Structure
    from sqlalchemy import text

    from migrations import upgrade_database
    from models.session import create_db_engine

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade_database(url, revision="0009")
    corundum_like = Structure(Lattice.cubic(5.0), ["Al", "Al", "O", "O", "O"], [[i / 5] * 3 for i in range(5)])
    disordered = Structure(Lattice.cubic(3.0), [{"Fe": 0.5, "Co": 0.5}], [[0, 0, 0]])
    structures = {
        "nacl": Structure.from_str(nacl_cif(), fmt="cif").as_dict(),
        "al2o3": corundum_like.as_dict(),
        "feco": disordered.as_dict(),
    }
    engine = create_db_engine(url)
    try:
        with engine.begin() as conn:
            now = datetime.now(UTC)
            conn.execute(
                text(
                    "INSERT INTO batches (id, source, protocol, potential, n_submitted, n_accepted, n_rejected,"
                    " rejected, created_at) VALUES (1, 'upload', 'default', 'auto', 3, 3, 0, '[]', :now)"
                ),
                {"now": now},
            )
            for name, structure in structures.items():
                conn.execute(
                    text(
                        "INSERT INTO candidates (batch_id, name, source_file, source_index, structure, cif,"
                        " reduced_formula, elements, chemsys, n_sites, fingerprint, created_at)"
                        " VALUES (1, :name, 'x.cif', 0, :structure, '', 'X', '[]', 'X', 1, 'f', :now)"
                    ),
                    {"name": name, "structure": json.dumps(structure), "now": now},
                )
        upgrade_database(url)
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT name, alphabetical_formula, anonymous_formula FROM candidates ORDER BY id")
            )
            assert [tuple(r) for r in rows] == [
                ("nacl", "ClNa", "AB"),
                ("al2o3", "Al2O3", "A3B2"),
                ("feco", None, None),
            ]
    finally:
        engine.dispose()


def test_the_migrations_frozen_formulas_are_the_live_ones():
    """While models.formulas is unchanged, the migration's frozen copy writes the same formulas."""
    import importlib.util
    from pathlib import Path

    from pymatgen.core import Lattice, Structure

    from models.formulas import alphabetical_formula, anonymous_formula

    path = Path(__file__).resolve().parents[2] / "migrations" / "versions" / "2026-12-03_formulas.py"
    spec = importlib.util.spec_from_file_location("formulas_migration", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    many = [el for el in ("H", "He", "Li", "Be", "B", "C", "N", "O") for _ in range(3)] + ["F"] * 30
    structures = [
        Structure.from_str(cif, fmt="cif") for cif in (si_cif(), al_cif(), nacl_cif(), _si_conventional_cif())
    ] + [
        Structure(Lattice.cubic(20.0), many, [[i / len(many)] * 3 for i in range(len(many))]),
        Structure(Lattice.cubic(3.0), [{"Fe": 0.5, "Co": 0.5}], [[0, 0, 0]]),
    ]
    for structure in (s.as_dict() for s in structures):
        assert module.alphabetical_formula(structure) == alphabetical_formula(structure)
        assert module.anonymous_formula(structure) == anonymous_formula(structure)


class ValidatorClient:
    """What the validator asks of a client (`base_url`, `get`, `last_request`), over FastAPI's
    TestClient: requests relative to `base_url`, links as they come."""

    def __init__(self, client, base_url: str) -> None:
        self.client = client
        self.base_url = base_url
        self.last_request: str | None = None

    def get(self, request: str):
        if not urllib.parse.urlparse(request).scheme:
            request = f"{self.base_url}/{request.lstrip('/')}" if request else self.base_url
        self.last_request = request
        return self.client.get(request)


# the fields the specification says MUST be queryable: the validator runs every operator on each
QUERIED = [
    "id",
    "last_modified",
    "elements",
    "nelements",
    "chemical_formula_descriptive",
    "chemical_formula_reduced",
    "chemical_formula_anonymous",
    "nperiodic_dimensions",
    "nsites",
    "structure_features",
]


def test_the_optimade_validator_passes_the_implementation(client, seeded, capsys):
    from optimade.validator import ImplementationValidator

    random.seed(0)  # the validator picks the entry its queries are built from at random
    validator = ImplementationValidator(client=ValidatorClient(client, f"http://testserver{BASE}"), verbosity=1)
    validator.validate_implementation()
    results = validator.results
    failures = results.failure_messages + results.internal_failure_messages + results.optional_failure_messages
    assert failures == [], "\n".join(f"{summary}\n{message}" for summary, message in failures)
    assert validator.valid is True
    printed = capsys.readouterr().out
    assert [name for name in QUERIED if f" - {name} passed filter tests" not in printed] == []
    assert "unknown field returned 400" in printed and "Unknown provider field was ignored" in printed
