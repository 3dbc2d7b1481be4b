"""Limits that hold before the work (issue 10, failures 3 and 4): per request, the number of files,
of structures and of inflated bytes; reading runs in a pool process under a time limit, so one
hostile upload cannot starve `/health` or other clients; nothing of a refused request is stored."""

from __future__ import annotations

import gzip
import io
import threading
import time
import zipfile

import numpy as np
import pytest

from tests.service.conftest import nacl_cif, si_cif
from tests.service.test_client_errors import _counts, _upload, _uploaded_files

pytestmark = pytest.mark.service


@pytest.fixture
def limited(api_settings, db_session):
    """A client whose limits are small enough to reach with small inputs."""
    from fastapi.testclient import TestClient

    from app.api.deps import get_db
    from app.main import create_app

    def make(**limits):
        settings = api_settings.model_copy(update=limits)
        app = create_app(settings)
        app.dependency_overrides[get_db] = lambda: db_session
        return TestClient(app), settings

    return make


def _refused(response, code: str) -> str:
    assert response.status_code == 413, response.text[:2000]
    detail = response.json()["detail"]
    assert detail["code"] == code, detail
    return detail["message"]


def test_too_many_files_is_413_before_reading(limited, db_session):
    client, settings = limited(max_files=3)
    cif = si_cif()
    with client:
        before = _counts(db_session)
        message = _refused(_upload(client, [(f"{i}.cif", cif) for i in range(4)]), "too_many_files")
        assert message.startswith("4 files in one request, more than the 3 allowed (PHONONSCREEN_MAX_FILES)")
        # far over the limit: starlette stops parsing the form itself
        _refused(_upload(client, [(f"{i}.cif", cif) for i in range(50)]), "too_many_files")
        body = {"structures": [{"name": f"s{i}", "cif": cif} for i in range(4)]}
        _refused(client.post("/api/v1/batches", json=body), "too_many_files")
        assert _counts(db_session) == before and _uploaded_files(settings) == []
        assert _upload(client, [(f"{i}.cif", cif) for i in range(3)]).status_code == 202


def test_structures_of_a_request_are_counted_across_its_files(limited, db_session):
    client, settings = limited(max_structures=5)
    with client:
        before = _counts(db_session)
        three = "".join(si_cif().replace("data_", f"data_{i}", 1) for i in range(3))
        message = _refused(_upload(client, [("a.cif", three), ("b.cif", three)]), "too_large")
        assert "more than 5 structures" in message
        assert _counts(db_session) == before and _uploaded_files(settings) == []


def test_inflated_bytes_are_counted_across_the_files_of_a_request(limited, db_session):
    client, settings = limited(max_decompressed_bytes=3_000_000)
    padding = si_cif() + "#" * 2_000_000 + "\n"  # a CIF comment: 2 MB inflated, a few KB sent
    small = gzip.compress(padding.encode())
    assert len(small) < 20_000
    with client:
        before = _counts(db_session)
        assert _upload(client, [("a.cif.gz", small)]).status_code == 202
        after_one = _counts(db_session)
        assert after_one != before
        message = _refused(_upload(client, [("a.cif.gz", small), ("b.cif.gz", small)]), "too_large")
        assert "bytes" in message and "nothing was stored" in message
        assert _counts(db_session) == after_one


def test_a_deflated_pt_bomb_is_refused_without_inflating_it(limited, db_session):
    import torch

    buffer = io.BytesIO()
    torch.save({"frac_coords": torch.zeros(50_000_000)}, buffer)  # 200 MB of records
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as stored, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for info in stored.infolist():
            z.writestr(info.filename, stored.read(info))
    bomb = out.getvalue()
    assert len(bomb) < 1_000_000
    client, _ = limited(max_decompressed_bytes=20_000_000)
    with client:
        before = _counts(db_session)
        _refused(_upload(client, [("eval_gen.pt", bomb)]), "too_large")
        assert _counts(db_session) == before


def _sodium_cif(rows: int, *, group: str, a: float, seed: int) -> str:
    """`rows` Na sites at random positions in a cubic cell of space group `group`."""
    rng = np.random.default_rng(seed)
    sites = "\n".join(f"Na{i} Na {x:.5f} {y:.5f} {z:.5f} 1" for i, (x, y, z) in enumerate(rng.random((rows, 3))))
    return (
        f"data_na\n_symmetry_space_group_name_H-M '{group}'\n"
        + "".join(f"_cell_length_{axis} {a}\n" for axis in "abc")
        + "".join(f"_cell_angle_{angle} 90\n" for angle in ("alpha", "beta", "gamma"))
        + "loop_\n_atom_site_label\n_atom_site_type_symbol\n_atom_site_fract_x\n_atom_site_fract_y\n"
        + "_atom_site_fract_z\n_atom_site_occupancy\n"
        + sites
        + "\n"
    )


def test_a_hostile_cif_is_refused_quickly_by_its_atom_count(client, db_session):
    cif = _sodium_cif(60, group="F m -3 m", a=40, seed=0)  # 60 general rows: 11,520 atoms
    response = _upload(client, [("hostile.cif", cif)])
    assert response.status_code == 422
    [structure] = response.json()["detail"]["structures"]
    assert structure["code"] == "too_many_atoms" and "symmetry operations" in structure["reason"]


def _slow_cif(atoms: int = 3000) -> str:
    """One P1 cell of `atoms` atoms: inside the atom limit given, seconds of pymatgen's site merging."""
    return _sodium_cif(atoms, group="P 1", a=60, seed=1)


def test_reading_past_its_time_limit_is_stopped_and_the_pool_recovers(limited, db_session):
    client, settings = limited(parse_timeout_s=0.5, max_atoms=5000)
    with client:
        _upload(client, [("warm.cif", si_cif())])  # the pool's processes are up
        before = _counts(db_session)
        message = _refused(_upload(client, [("slow.cif", _slow_cif())]), "too_costly")
        assert "PHONONSCREEN_PARSE_TIMEOUT_S" in message
        assert _counts(db_session) == before
        assert _upload(client, [("nacl.cif", nacl_cif())]).status_code == 202  # a new process took over


def test_health_answers_while_an_upload_is_being_read(limited):
    client, _ = limited(parse_timeout_s=2, max_atoms=5000)
    with client:
        _upload(client, [("warm.cif", si_cif())])
        done = threading.Event()
        answer: list[int] = []

        def upload() -> None:
            answer.append(_upload(client, [(f"slow{i}.cif", _slow_cif()) for i in range(3)]).status_code)
            done.set()

        thread = threading.Thread(target=upload)
        thread.start()
        time.sleep(0.3)
        health = [client.get("/health").status_code for _ in range(5)]
        assert not done.is_set(), "the upload ended before /health was asked: make it slower"
        assert health == [200] * 5
        thread.join(120)
        assert answer == [413]  # stopped at its time limit


def test_the_cell_each_reading_process_warms_up_on_is_read(caplog):
    """A pool process reads this cell before its first request (`_warm`): it must really be read, so
    that everything reading needs is imported before a request's time limit starts."""
    from app.parsing import _WARM_CIF, ReadLimits, _read, _warm

    limits = ReadLimits(max_atoms=2, max_files=1, max_structures=1, max_decompressed_bytes=len(_WARM_CIF), timeout_s=0)
    records, exceeded = _read([("warm.cif", _WARM_CIF)], limits)
    assert exceeded is None and records[0][0].ok and len(records[0][0].structure) == 2
    _warm()
    assert "failed on a known-good cell" not in caplog.text
