"""Subcommands of the `phononscreen` CLI, one module per group."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from app.config import Settings


def settings_or_fail() -> Settings:
    """This process's settings; a bad value stops the command with every bad variable named."""
    from pydantic import ValidationError

    from app.config import get_settings

    try:
        return get_settings()
    except ValidationError as exc:
        raise click.ClickException(f"invalid settings:\n{exc}") from None
