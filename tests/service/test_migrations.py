"""Alembic: upgrade from empty and a downgrade/upgrade round trip, on Postgres and SQLite."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

from migrations import downgrade_database, upgrade_database
from models import Base
from models.session import create_db_engine
from tests.service.conftest import create_database, drop_database

TABLES = {"generators", "batches", "candidates", "screenings", "verdicts", "api_keys"}


def _round_trip(url: str) -> None:
    upgrade_database(url)
    engine = create_db_engine(url)
    try:
        assert TABLES <= set(inspect(engine).get_table_names())
        with engine.connect() as conn:
            head = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        downgrade_database(url, revision="base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        upgrade_database(url)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == head
        # the migrated schema is what the models declare (same columns, same names)
        insp = inspect(engine)
        for table in Base.metadata.sorted_tables:
            assert {c["name"] for c in insp.get_columns(table.name)} == set(table.columns.keys())
        assert "ix_candidates_formula_fingerprint" in {i["name"] for i in insp.get_indexes("candidates")}
    finally:
        engine.dispose()


@pytest.mark.service
def test_postgres_upgrade_from_empty_and_round_trip():
    url = create_database()
    try:
        _round_trip(url)
    finally:
        drop_database(url)


def test_sqlite_upgrade_from_empty_and_round_trip(tmp_path):
    _round_trip(f"sqlite:///{tmp_path / 'sub' / 'db.sqlite'}")


def _phonons(path_min_thz: float, n_qpoints: int = 500) -> dict:
    return {"phonons": {"worst_path_frequency_thz": path_min_thz, "n_qpoints_checked": n_qpoints}}


# (verdict, stable_phononbench, min_frequency_thz, result) -> stable_phononbench_v3 after 0006
BACKFILL_CASES = [
    (("stable", True, -0.01, {}), True),  # stable at -1e-3 THz: at -0.1 too
    (("unstable", False, -0.3, _phonons(-0.05)), True),  # off the path it is -0.3; on it -0.05
    (("unstable", False, -0.3, _phonons(-0.3)), False),
    (("relax_failed", False, None, {}), False),  # no phonons: not stable, as PhononBench counts it
    (("unstable", False, -0.5, _phonons(-0.5, n_qpoints=1)), False),  # the Γ check alone, below -0.1
    (("unstable", False, -0.07, _phonons(-0.07, n_qpoints=1)), None),  # Γ alone, above: path unknown
    (("unstable", False, -0.02, {}), True),  # no path minimum stored: the zone's bounds it
    (("unstable", False, -0.5, {}), None),
]


def _backfill_round(url: str) -> list[bool | None]:
    """Verdicts stored at head, the column dropped (down to 0005) and backfilled again (up to 0006)."""
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from models import Verdict
    from models.crud import claim_screenings, save_verdict
    from tests.service.test_models import _batch, _verdict

    upgrade_database(url)
    engine = create_db_engine(url)
    try:
        with Session(engine) as session:
            _, ids = _batch(session, n=len(BACKFILL_CASES))
            claim_screenings(session, ids=ids, worker="w", task_id="t")
            for screening_id, ((verdict, pb, min_thz, result), _) in zip(ids, BACKFILL_CASES, strict=True):
                values = _verdict(verdict) | {"stable_phononbench": pb, "min_frequency_thz": min_thz, "result": result}
                assert save_verdict(session, screening_id=screening_id, values=values)
            session.commit()
        downgrade_database(url, revision="0005")
        upgrade_database(url, revision="0006")
        with Session(engine) as session:
            rows = session.execute(select(Verdict.screening_id, Verdict.stable_phononbench_v3)).all()
            return [v3 for _, v3 in sorted(rows)]
    finally:
        engine.dispose()


def test_sqlite_backfills_the_v3_criterion(tmp_path):
    assert _backfill_round(f"sqlite:///{tmp_path / 'db.sqlite'}") == [want for _, want in BACKFILL_CASES]


@pytest.mark.service
def test_postgres_backfills_the_v3_criterion():
    url = create_database()
    try:
        assert _backfill_round(url) == [want for _, want in BACKFILL_CASES]
    finally:
        drop_database(url)


def test_db_upgrade_command_works_from_any_directory(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from app.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PHONONSCREEN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    result = CliRunner().invoke(main, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "home" / "phononscreen.sqlite").is_file()


def test_migrations_are_frozen_they_import_no_live_code():
    """A migration replayed next year must write the rows it wrote today: it carries its own code."""
    import ast
    from pathlib import Path

    versions = Path(__file__).resolve().parents[2] / "migrations" / "versions"
    for path in sorted(versions.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else ([node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            )
            assert not [n for n in names if n.split(".")[0] in ("app", "workers", "models")], path.name


def test_frozen_fingerprint_is_the_key_it_was_written_with(examples_dir):
    """While the live key is still "v1", the migration's frozen copy computes the same key."""
    import importlib.util
    from pathlib import Path

    from workers.screening.dedup import FINGERPRINT_VERSION, fingerprint
    from workers.screening.ingest import read_structures

    path = Path(__file__).resolve().parents[2] / "migrations" / "versions" / "2026-11-28_dedup.py"
    spec = importlib.util.spec_from_file_location("dedup_migration", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    records = [
        r
        for name in ("Si_diamond.cif", "GaN_wurtzite.cif", "SrTiO3_cubic.cif")
        for r in read_structures(examples_dir / name)
    ]
    assert FINGERPRINT_VERSION == "v1"  # a new key version needs a new migration, not this one
    for record in records:
        assert module.fingerprint_v1(record.structure) == fingerprint(record.structure)
