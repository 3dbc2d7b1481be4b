"""Alembic migrations, configured in code so `phononscreen db upgrade` works from any directory."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

HERE = Path(__file__).resolve().parent


def get_alembic_config(database_url: str) -> Config:
    """An Alembic config pointing at this package's scripts and at `database_url`."""
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.set_main_option("file_template", "%%(year)d-%%(month).2d-%%(day).2d_%%(slug)s")
    # '%' must be doubled for configparser; URLs may contain escaped passwords
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade_database(database_url: str, *, revision: str = "head") -> None:
    """Create or upgrade the schema of `database_url` to `revision`."""
    _ensure_sqlite_folder(database_url)
    command.upgrade(get_alembic_config(database_url), revision)


def downgrade_database(database_url: str, *, revision: str) -> None:
    """Downgrade the schema of `database_url` to `revision` ("base" drops every table)."""
    command.downgrade(get_alembic_config(database_url), revision)


def _ensure_sqlite_folder(database_url: str) -> None:
    prefix = "sqlite:///"
    if database_url.startswith(prefix) and ":memory:" not in database_url:
        Path(database_url[len(prefix) :]).parent.mkdir(parents=True, exist_ok=True)
