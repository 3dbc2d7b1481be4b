"""Deduplication in the service, on the real Postgres and Redis: a duplicate links, it never recomputes."""

from __future__ import annotations

import base64
import json

import pytest
from sqlalchemy import select

from models import Screening
from models.crud import claim_screenings, fail_screenings, finish_batches, save_verdict
from models.queries import get_batch_ids
from tests.service.conftest import nacl_cif, si_cif
from tests.service.test_models import _verdict

pytestmark = pytest.mark.service


def _enqueued_ids(broker_url: str) -> list[int]:
    import redis

    client = redis.Redis.from_url(broker_url)
    messages = [json.loads(m) for m in client.lrange("screen", 0, -1)]
    client.delete("screen")  # each call sees only what was sent since the last one
    return sorted(i for m in messages for i in json.loads(base64.b64decode(m["body"]))[0][0])


def _upload(client, files, **fields):
    fields = {"protocol": "default", "potential": "sevennet-0"} | fields
    response = client.post("/api/v1/batches", files=[("files", f) for f in files], data=fields)
    assert response.status_code == 202, response.text
    return response.json()


def _si_supercell_rotated_cif() -> str:
    """The same Si as si_cif, as a generator might emit it again: a rattled, shifted 2x1x1 supercell.

    Rattled by 0.002 Å, within the protocols' symprec (0.01 Å), so it is still Fd-3m there; a cell
    that lost its symmetry would be relaxed in a lower group, and `default` screens it apart."""
    from pymatgen.core import Structure

    structure = Structure.from_str(si_cif(), fmt="cif")
    structure.make_supercell([2, 1, 1])
    structure.translate_sites(list(range(len(structure))), [0.13, 0.0, 0.07])
    structure.perturb(0.002)
    return structure.to(fmt="cif")


def test_same_structure_twice_in_a_batch_and_again_later_is_screened_once(client, db_session, redis_broker):
    first = _upload(
        client,
        [
            ("si.cif", si_cif()),
            ("si-again.cif", _si_supercell_rotated_cif()),
            ("nacl.cif", nacl_cif()),
            ("si-copy.cif", si_cif()),
        ],
    )
    si, si_again, nacl, si_copy = first["structures"]
    assert first["accepted"] == 4 and first["duplicates"] == 2
    assert si["duplicate_of"] is None and nacl["duplicate_of"] is None
    assert si_again["duplicate_of"] == si["candidate_id"] == si_copy["duplicate_of"]
    original = db_session.scalar(select(Screening.id).where(Screening.candidate_id == si["candidate_id"]))
    enqueued = _enqueued_ids(redis_broker)
    assert len(enqueued) == 2 and original in enqueued  # Si once, NaCl once

    second = _upload(client, [("si.cif", si_cif())], generator="other")
    assert second["structures"][0]["duplicate_of"] == si["candidate_id"] and second["duplicates"] == 1
    assert _enqueued_ids(redis_broker) == []  # no new screening compute
    batch = client.get(f"/api/v1/batches/{second['id']}").json()
    assert batch["status"] == "queued" and batch["counts"]["queued"] == 1  # waits for the original

    # the original finishes: every duplicate, in both batches, shows its verdict and is done
    assert claim_screenings(db_session, ids=[original], worker="w", task_id="t") == [original]
    assert save_verdict(db_session, screening_id=original, values=_verdict("unstable"))
    assert get_batch_ids(db_session, screening_ids=[original]) == sorted([first["id"], second["id"]])
    assert finish_batches(db_session, batch_ids=[second["id"]]) == [second["id"]]
    batch = client.get(f"/api/v1/batches/{second['id']}").json()
    assert batch["status"] == "done" and batch["progress"] == 1.0 and batch["counts"]["unstable"] == 1
    counts = client.get(f"/api/v1/batches/{first['id']}").json()["counts"]
    assert counts["done"] == 3 and counts["queued"] == 1 and counts["unstable"] == 3
    detail = client.get(f"/api/v1/candidates/{second['structures'][0]['candidate_id']}").json()
    assert detail["duplicate_of"] == si["candidate_id"] and detail["status"] == "done"
    assert detail["verdict"]["verdict"] == "unstable" and detail["screening"]["id"] == original
    page = client.get("/api/v1/candidates", params={"verdict": "unstable"}).json()
    assert page["total"] == 4  # the original and its three duplicates
    assert sorted(i["duplicate_of"] or 0 for i in page["items"]) == [0] + [si["candidate_id"]] * 3

    # a batch made only of duplicates of finished screenings is done at once
    third = _upload(client, [("si.cif", si_cif()), ("si2.cif", _si_supercell_rotated_cif())])
    assert third["status"] == "done" and third["duplicates"] == 2 and _enqueued_ids(redis_broker) == []
    assert client.get(f"/api/v1/batches/{third['id']}").json()["status"] == "done"


def test_another_protocol_or_potential_is_screened_again(client, db_session, redis_broker):
    first = _upload(client, [("si.cif", si_cif())])
    assert len(_enqueued_ids(redis_broker)) == 1
    for fields in ({"protocol": "phononbench"}, {"potential": "chgnet-0.3.0"}):
        again = _upload(client, [("si.cif", si_cif())], **fields)
        assert again["duplicates"] == 0 and again["structures"][0]["duplicate_of"] is None, fields
        assert len(_enqueued_ids(redis_broker)) == 1, fields
    assert (
        _upload(client, [("si.cif", si_cif())])["structures"][0]["duplicate_of"]
        == (first["structures"][0]["candidate_id"])
    )


def test_a_crashed_original_is_not_reused(client, db_session, redis_broker):
    """A crash or time limit is no verdict: the same structure submitted later is screened again."""
    first = _upload(client, [("nacl.cif", nacl_cif())])
    [original] = _enqueued_ids(redis_broker)
    claim_screenings(db_session, ids=[original], worker="w", task_id="t")
    fail_screenings(db_session, ids=[original], error="MemoryError")
    again = _upload(client, [("nacl.cif", nacl_cif())])
    assert again["structures"][0]["duplicate_of"] is None and len(_enqueued_ids(redis_broker)) == 1
    assert client.get(f"/api/v1/batches/{first['id']}").json()["counts"]["failed"] == 1


@pytest.mark.parametrize(("protocol", "screenings"), [("phononbench", 2), ("default", 1)])
def test_one_crystal_in_two_cells_follows_the_protocol_like_the_cli(
    client, db_session, redis_broker, protocol, screenings
):
    """Under `phononbench` each cell is screened as given, so Si's primitive cell and its supercell
    are two screenings; under `default` they are one crystal, screened once. The service decides
    this with the rule the CLI's runs use (`pipeline.find_duplicates`), and they agree."""
    from pymatgen.core import Structure

    from workers.screening.pipeline import find_duplicates
    from workers.screening.protocols import get_protocol
    from workers.screening.types import StructureRecord

    supercell = _si_supercell_rotated_cif()
    created = _upload(client, [("si.cif", si_cif()), ("si-supercell.cif", supercell)], protocol=protocol)
    assert created["accepted"] == 2 and created["duplicates"] == 2 - screenings
    assert len(_enqueued_ids(redis_broker)) == screenings
    again = _upload(client, [("si-supercell.cif", supercell)], protocol=protocol)  # a later upload
    assert again["duplicates"] == 1 and _enqueued_ids(redis_broker) == []

    records = [
        StructureRecord(name=name, source=name, index=0, structure=Structure.from_str(text, fmt="cif"))
        for name, text in (("si.cif", si_cif()), ("si-supercell.cif", supercell))
    ]
    cli = find_duplicates(records, protocol=get_protocol(protocol))
    assert sum(d is None for d in cli) == screenings
