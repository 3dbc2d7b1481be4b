"""Subcommands of the `phononscreen` CLI, one module per group."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    import httpx

    from app.config import Settings


def settings_or_fail() -> Settings:
    """This process's settings; a bad value stops the command with every bad variable named."""
    from pydantic import ValidationError

    from app.config import get_settings

    try:
        return get_settings()
    except ValidationError as exc:
        raise click.ClickException(f"invalid settings:\n{exc}") from None


def service_options(command: Any) -> Any:
    """--url and --key: how the commands that talk to a running service reach it."""
    command = click.option(
        "--key",
        default=None,
        envvar="PHONONSCREEN_API_KEY",
        help="API key, sent as `Authorization: Bearer KEY` [PHONONSCREEN_API_KEY].",
    )(command)
    return click.option(
        "--url",
        default="http://127.0.0.1:8000",
        show_default=True,
        envvar="PHONONSCREEN_URL",
        help="Base URL of the service [PHONONSCREEN_URL].",
    )(command)


def service_client(url: str, key: str | None, *, timeout: Any = 120) -> httpx.Client:
    """An HTTP client of the service at `url`, sending `key` when given."""
    import httpx

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)


def call_service(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    """The JSON answer of one request (None for 204); ClickException naming the refusal otherwise."""
    import httpx

    try:
        response = client.request(method, path, **kwargs)
    except httpx.TransportError as exc:
        raise click.ClickException(f"no answer from {client.base_url}: {exc}") from exc
    if response.status_code >= 400:
        raise click.ClickException(describe_error(response))
    return None if response.status_code == 204 else response.json()


def describe_error(response: Any) -> str:
    """A refusal in words: what the service said, and what to do about it."""
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = response.text[:500]
    status = response.status_code
    if status == 422 and isinstance(detail, list):
        reasons = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', [])[1:]) or 'request'}: {e.get('msg')}" for e in detail
        )
        return f"the service refused the request (HTTP 422): {reasons}"
    message = detail.get("message", detail) if isinstance(detail, dict) else detail
    hints = {
        401: "pass --key or set PHONONSCREEN_API_KEY",
        403: "this API key was revoked",
        429: f"rate limited: retry in {response.headers.get('retry-after', 'a few')} s",
    }
    hint = f" ({hints[status]})" if status in hints else ""
    return f"HTTP {status}: {message}{hint}"
