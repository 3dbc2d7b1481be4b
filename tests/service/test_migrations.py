"""Alembic: upgrade from empty and a downgrade/upgrade round trip, on Postgres and SQLite."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

from migrations import downgrade_database, upgrade_database
from models import Base
from models.session import create_db_engine
from tests.service.conftest import create_database, drop_database

TABLES = {"generators", "batches", "candidates", "screenings", "verdicts"}


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


def test_db_upgrade_command_works_from_any_directory(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from app.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PHONONSCREEN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    result = CliRunner().invoke(main, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "home" / "phononscreen.sqlite").is_file()
