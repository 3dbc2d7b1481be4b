"""`phononscreen keys`: create, list and revoke the API keys of the service's database."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from app.commands import settings_or_fail

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


@click.group()
def keys() -> None:
    """API keys for the service (DATABASE_URL, or the embedded SQLite under PHONONSCREEN_HOME).

    Clients send a key as `Authorization: Bearer KEY`; the service asks for one when
    PHONONSCREEN_REQUIRE_KEYS (writes) or PHONONSCREEN_PRIVATE_READS (reads too) is true.
    """


@keys.command("create")
@click.argument("name")
def keys_create(name: str) -> None:
    """Create a key called NAME and print it, once: only its hash is stored."""
    from app.security import create_key
    from models.crud import create_api_key

    if not NAME_PATTERN.match(name):
        raise click.BadParameter("1-64 characters: letters, digits and . _ @ -, starting with a letter or digit")
    new = create_key()
    with _session() as session:
        if create_api_key(session, name=name, prefix=new.prefix, key_hash=new.key_hash) is None:
            raise click.ClickException(f"a key called {name!r} exists already (names are never reused)")
    click.echo(f"created API key {name!r}; it is shown only now, store it safely:")
    click.echo(new.key)


@keys.command("list")
def keys_list() -> None:
    """Every key: name, prefix, created, revoked, last used (never the key itself)."""
    from models.queries import list_api_keys

    with _session() as session:
        rows = list_api_keys(session)
    if not rows:
        click.echo("no API keys (create one: phononscreen keys create NAME)")
        return
    click.echo(f"{'name':<24} {'prefix':<14} {'created (UTC)':<17} {'revoked':<17} last used")
    for key in rows:
        click.echo(
            f"{key.name[:24]:<24} {key.prefix + '…':<14} {_when(key.created_at):<17} "
            f"{_when(key.revoked_at):<17} {_when(key.last_used_at)}"
        )


@keys.command("revoke")
@click.argument("name")
def keys_revoke(name: str) -> None:
    """Revoke the key called NAME: from now on it is refused (403)."""
    from models.crud import revoke_api_key

    with _session() as session:
        key = revoke_api_key(session, name=name)
        if key is None:
            raise click.ClickException(f"no API key called {name!r}")
        revoked_at = key.revoked_at
    click.echo(f"API key {name!r} revoked ({_when(revoked_at)} UTC)")


@contextmanager
def _session() -> Iterator[Session]:
    """A session on the configured database, committed at the end; the embedded SQLite is created
    or upgraded first (as `serve` would), a server database must be migrated already."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from migrations import upgrade_database
    from models.session import create_db_engine, create_session_factory

    settings = settings_or_fail()
    url = settings.resolved_database_url
    if not settings.database_url:
        upgrade_database(url)
    engine = create_db_engine(url)
    try:
        with create_session_factory(engine)() as session, session.begin():
            try:
                yield session
                session.flush()
            except (OperationalError, ProgrammingError) as exc:
                reason = str(exc.orig or exc).strip().splitlines()[0]
                raise click.ClickException(
                    f"cannot use the api_keys table ({reason}); is the database reachable and migrated "
                    "(`phononscreen db upgrade`)?"
                ) from None
    finally:
        engine.dispose()


def _when(moment: datetime | None) -> str:
    """UTC, to the minute; SQLite hands back the stored UTC time without its zone, Postgres with the server's."""
    if moment is None:
        return "-"
    return (moment.astimezone(UTC) if moment.tzinfo else moment).strftime("%Y-%m-%d %H:%M")
