"""Service fixtures: a throw-away Postgres database migrated by Alembic, rolled-back sessions,
a Redis broker database of our own, small real structures."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

PG_ADMIN_URL = os.environ.get("PHONONSCREEN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("PHONONSCREEN_TEST_REDIS", "redis://127.0.0.1:6379/15")  # never db 0


def create_database() -> str:
    """A new, empty Postgres database; returns its SQLAlchemy URL."""
    import psycopg

    name = f"phononscreen_test_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{name}"


def drop_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def migrated_database() -> Iterator[str]:
    """A fresh Postgres database migrated to head by Alembic, dropped afterwards."""
    from migrations import upgrade_database

    url = create_database()
    try:
        upgrade_database(url)
        yield url
    finally:
        drop_database(url)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh Postgres database for this test session, migrated to head by Alembic."""
    with migrated_database() as url:
        yield url


@pytest.fixture(scope="session")
def pg_engine(pg_url: str):
    from models.session import create_db_engine

    engine = create_db_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture
def db_session(pg_engine):
    """A session inside a transaction that is rolled back after the test (commits are savepoints)."""
    from sqlalchemy.orm import Session

    connection = pg_engine.connect()
    transaction = connection.begin()
    session = Session(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
    try:
        yield session
    finally:
        session.close()
        transaction.rollback()
        connection.close()


@pytest.fixture
def redis_broker() -> Iterator[str]:
    """Our own Redis database, empty before and after the test."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()


@pytest.fixture
def api_settings(pg_url: str, redis_broker: str, tmp_path: Path):
    from app.config import Settings

    return Settings(
        database_url=pg_url,
        broker_url=redis_broker,
        home=tmp_path,
        artifacts_dir=tmp_path / "artifacts",
        max_upload_bytes=2_000_000,
        screen_chunk=2,
    )


@pytest.fixture
def client(api_settings, db_session):
    """The API on the rolled-back session, its Celery client on our Redis database."""
    from fastapi.testclient import TestClient

    from app.api.deps import get_db
    from app.main import create_app

    app = create_app(api_settings)
    app.dependency_overrides[get_db] = lambda: db_session
    with TestClient(app) as test_client:
        yield test_client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- small real structures, built with pymatgen -------------------------------------------------


def si_cif() -> str:
    from pymatgen.core import Lattice, Structure

    return (
        Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.43), ["Si"], [[0, 0, 0]])
        .get_primitive_structure()
        .to(fmt="cif")
    )


def al_cif() -> str:
    from pymatgen.core import Lattice, Structure

    return (
        Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.04), ["Al"], [[0, 0, 0]])
        .get_primitive_structure()
        .to(fmt="cif")
    )


def nacl_cif() -> str:
    from pymatgen.core import Lattice, Structure

    s = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    return s.get_primitive_structure().to(fmt="cif")
