"""Alembic environment: online migrations against the configured URL (Postgres or SQLite)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from models import Base
from models.session import create_db_engine

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    if connection.dialect.name != "sqlite":
        _configure_and_run(connection, sqlite=False)
        return
    # Batch mode copies a table and drops the old one; with foreign keys on, dropping `batches`
    # would cascade to every candidate, screening and verdict. SQLite's own recipe for rebuilding a
    # table: keys off while it runs (a PRAGMA that only takes effect outside a transaction), then
    # checked. The commit ends the transaction the PRAGMA began, so Alembic commits its own.
    connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    connection.commit()
    try:
        _configure_and_run(connection, sqlite=True)
    finally:
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        connection.commit()
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    connection.commit()
    if broken:
        raise RuntimeError(f"the migration left rows whose foreign keys point nowhere: {broken[:5]}")


def _configure_and_run(connection: Connection, *, sqlite: bool) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode copies the table instead
        render_as_batch=sqlite,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_db_engine(config.get_main_option("sqlalchemy.url"))
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
run_migrations_online()
