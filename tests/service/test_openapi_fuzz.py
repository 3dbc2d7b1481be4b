"""Every operation of the OpenAPI schema, fuzzed by schemathesis in-process against the ASGI app on
the real Postgres (rolled back) and Redis: no 5xx, and every answer is one the schema documents,
with anonymous callers, unknown keys and a real key, open and with keys required."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error, response_schema_conformance, status_code_conformance
from schemathesis.generation import GenerationMode

from tests.conftest import EXAMPLES

pytestmark = pytest.mark.service

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
# operations whose documented answer is a 5xx: only `not_a_server_error` is left out for them, so an
# undocumented 5xx (a 500) still fails status_code_conformance
DOCUMENTED_5XX = {
    "GET /ready": "503 is its documented answer while no worker is alive, and no worker runs in this test",
}
# bounded for a 2-core machine; derandomized so that a run is repeatable, and no example database
# is written into the checkout. Every example of one operation shares the test's rolled-back session.
FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
CONFIGS = {
    "open": {},
    "keys_required": {"require_keys": True},
    "private_reads": {"private_reads": True},
}
CIFS = [path.read_text() for path in sorted(EXAMPLES.glob("*.cif"))[:4]]


def _routers_openapi() -> dict[str, Any]:
    """The OpenAPI document of the app's routers on a bare FastAPI: create_app here would
    reconfigure the process's Celery client (test_the_schema_lists_every_route keeps them equal)."""
    from fastapi import FastAPI

    from app.api import api_router
    from app.api.health import router as health_router

    bare = FastAPI()
    bare.include_router(api_router)
    bare.include_router(health_router)
    return bare.openapi()


OPERATIONS = sorted(f"{method.upper()} {path}" for path, ops in _routers_openapi()["paths"].items() for method in ops)


@dataclass(frozen=True)
class Seeded:
    """Rows the fuzzed requests can find: a key, a batch, its candidates (the first with a verdict
    and every artifact)."""

    key: str
    batch_id: int
    candidate_ids: list[int]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@dataclass(frozen=True)
class Api:
    schema: Any  # schemathesis' OpenApiSchema
    seeded: Seeded


@pytest.fixture(params=list(CONFIGS))
def api(request, api_settings, db_session) -> Api:
    """The schema of the app in one key configuration, on the rolled-back session, with rows seeded."""
    from app.api.deps import get_db
    from app.main import create_app

    app = create_app(api_settings.model_copy(update=CONFIGS[request.param]))
    app.dependency_overrides[get_db] = lambda: db_session
    return Api(schema=schemathesis.openapi.from_asgi("/openapi.json", app), seeded=_seed(app, db_session))


def _seed(app, session) -> Seeded:
    from fastapi.testclient import TestClient
    from sqlalchemy import select

    from app.security import create_key
    from models.crud import create_api_key, save_verdict
    from models.screening import Screening

    new = create_key()
    assert create_api_key(session, name="fuzz", prefix=new.prefix, key_hash=new.key_hash) is not None
    structures = [{"name": f"s{i}", "cif": cif} for i, cif in enumerate(CIFS)]
    headers = {"Authorization": f"Bearer {new.key}"}
    with TestClient(app) as client:
        created = client.post("/api/v1/batches", json={"structures": structures}, headers=headers)
    assert created.status_code == 202, created.text
    ids = [s["candidate_id"] for s in created.json()["structures"] if s["candidate_id"]]
    store = app.state.store
    prefix = f"fuzz/{ids[0]}"
    bands = '{"distances": [[0.0, 1.0]], "frequencies": [[[0.0], [1.0]]], "labels": ["G", "X"], '
    bands += '"path_connections": [false], "dos_frequencies_thz": [0.0], "dos_states_per_thz": [0.0]}'
    values = {
        "verdict": "stable",
        "stable_phononbench": True,
        "min_frequency_thz": -0.01,
        "worst_qpoint": [0.0, 0.0, 0.0],
        "worst_branch": 0,
        "worst_q_norm_inv_angstrom": 0.0,
        "formula": "X",
        "spacegroup_after": "Fm-3m (225)",
        "spacegroup_number": 225,
        "crystal_system": "cubic",
        "energy_per_atom_ev": -3.5,
        "potential_name": "sevennet-0",
        "settings_hash": "0" * 32,
        "result": {"files": {"plot": store.write_bytes(f"{prefix}/bands.png", b"\x89PNG\r\n\x1a\n")}},
        "relaxed_cif_path": store.write_text(f"{prefix}/relaxed.cif", CIFS[0]),
        "bands_path": store.write_text(f"{prefix}/bands.json", bands),
    }
    screening_id = session.scalar(select(Screening.id).where(Screening.candidate_id == ids[0]))
    assert save_verdict(session, screening_id=screening_id, values=values)
    session.commit()  # a savepoint: the test's transaction is still rolled back
    return Seeded(key=new.key, batch_id=created.json()["id"], candidate_ids=ids)


def _json_bodies() -> st.SearchStrategy[dict]:
    """JSON batches near the valid ones: real CIFs or any text, odd names and fields."""
    from workers.screening.potentials.registry import POTENTIAL_NAMES
    from workers.screening.protocols import PROTOCOLS

    structure = st.fixed_dictionaries(
        {"name": st.text(min_size=1, max_size=30), "cif": st.sampled_from(CIFS) | st.text(max_size=300)}
    )
    return st.fixed_dictionaries(
        {"structures": st.lists(structure, min_size=1, max_size=3)},
        optional={
            "generator": st.none() | st.text(max_size=70),
            "protocol": st.none() | st.sampled_from(sorted(PROTOCOLS)) | st.text(max_size=10),
            "potential": st.none() | st.sampled_from(POTENTIAL_NAMES) | st.text(max_size=10),
        },
    )


def _multipart_bodies() -> st.SearchStrategy[dict]:
    """Multipart batches with real CIF files (schemathesis' own are random bytes)."""
    files = st.lists(st.sampled_from(CIFS).map(str.encode) | st.binary(max_size=200), min_size=1, max_size=3)
    return st.fixed_dictionaries({"files": files}, optional={"generator": st.text(max_size=20)})


def _cases(operation, seeded: Seeded) -> st.SearchStrategy:
    """Cases of one operation: schemathesis' own (positive and negative, its random Authorization
    headers included), the same with a real key, and requests that find the seeded rows."""
    strategies = [operation.as_strategy(mode) for mode in GenerationMode]
    strategies.append(operation.as_strategy(GenerationMode.POSITIVE, headers=seeded.auth))
    names = [p.name for p in operation.path_parameters]
    if names:
        ids = [seeded.batch_id] if names == ["batch_id"] else seeded.candidate_ids
        strategies.append(
            st.sampled_from(ids).flatmap(
                lambda i: operation.as_strategy(
                    GenerationMode.POSITIVE, path_parameters={names[0]: i}, headers=seeded.auth
                )
            )
        )
    if operation.method.upper() == "POST":
        # near-valid bodies with real CIFs, beside schemathesis' own from the schema
        for media_type, bodies in (("application/json", _json_bodies()), ("multipart/form-data", _multipart_bodies())):
            strategies.append(
                bodies.flatmap(
                    lambda body, media_type=media_type: operation.as_strategy(
                        GenerationMode.POSITIVE, body=body, media_type=media_type, headers=seeded.auth
                    )
                )
            )
    return st.one_of(strategies)


@pytest.mark.parametrize("label", OPERATIONS)
def test_every_operation_answers_as_documented(api: Api, label: str) -> None:
    method, path = label.split(" ", 1)
    operation = api.schema[path][method]
    checks = [c for c in CHECKS if not (label in DOCUMENTED_5XX and c is not_a_server_error)]

    @FUZZ
    @given(case=_cases(operation, api.seeded))
    def run(case) -> None:
        case.call_and_validate(checks=checks)

    run()


def test_the_schema_lists_every_route(api: Api) -> None:
    documented = sorted(f"{op.method.upper()} {op.path}" for op in (r.ok() for r in api.schema.get_all_operations()))
    assert documented == OPERATIONS


def test_every_reference_in_the_schema_resolves() -> None:
    document = _routers_openapi()
    assert [ref for ref in _refs(document) if not _resolves(document, ref)] == []


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def _resolves(document: dict, ref: str) -> bool:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


# --- regressions: answers the schema did not document (found by the fuzzing above) ---------------


def test_every_versioned_route_documents_what_the_caller_check_answers(client) -> None:
    document = client.get("/openapi.json").json()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if path.startswith("/api/v1/"):
                assert {"401", "403", "429"} <= set(operation["responses"]), (method, path)
    # a key that is sent is checked even where none is required: an unknown one is 401, on a read too
    assert client.get("/api/v1/candidates", headers={"Authorization": "Bearer psk_unknown"}).status_code == 401


def test_an_unknown_candidate_is_a_documented_404(client) -> None:
    document = client.get("/openapi.json").json()
    assert "404" in document["paths"]["/api/v1/candidates/{candidate_id}"]["get"]["responses"]
    assert client.get("/api/v1/candidates/999999").status_code == 404
