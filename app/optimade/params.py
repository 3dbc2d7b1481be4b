"""The query parameters of the OPTIMADE entry endpoints, read by hand so that a bad one is an OPTIMADE
error (400, 403, 501) rather than FastAPI's 422."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from optimade.exceptions import BadRequest, Forbidden, NotImplementedResponse
from starlette.datastructures import QueryParams

from app.optimade.fields import FIELDS, PREFIX, TOP_LEVEL, UNSERVED
from app.schemas import ID_MAX

DEFAULT_PAGE_LIMIT = 20
MAX_PAGE_LIMIT = 100  # structures are built from CIFs per request: a page stays small
UNSUPPORTED_PAGING = ("page_number", "page_cursor", "page_above", "page_below")


@dataclass(frozen=True)
class EntryQuery:
    filter: str | None
    response_fields: tuple[str, ...] | None  # None: every field served
    sort: tuple[tuple[str, bool], ...]  # (field, descending)
    page_limit: int
    page_offset: int


def get_entry_query(request: Request) -> EntryQuery:
    """The parameters of /structures (most apply to /structures/{id} too)."""
    params = request.query_params
    if params.get("response_format", "json") != "json":
        raise BadRequest(detail="response_format: only json is served")
    for name in UNSUPPORTED_PAGING:
        if name in params:
            raise NotImplementedResponse(detail=f"{name} is not supported: page with page_limit and page_offset")
    limit = _integer(params, "page_limit", DEFAULT_PAGE_LIMIT)
    if limit > MAX_PAGE_LIMIT:
        raise Forbidden(detail=f"page_limit may be at most {MAX_PAGE_LIMIT}")
    if limit < 1:  # a page of none would link to itself as the next
        raise BadRequest(detail="page_limit must be at least 1")
    return EntryQuery(
        filter=params.get("filter"),
        response_fields=_response_fields(params.get("response_fields")),
        sort=_sort(params.get("sort")),
        page_limit=limit,
        page_offset=_integer(params, "page_offset", 0),
    )


def _integer(params: QueryParams, name: str, default: int) -> int:
    text = params.get(name)
    if text is None or text == "":
        return default
    if not text.isascii() or not text.isdigit() or int(text) > ID_MAX:
        raise BadRequest(detail=f"{name} must be an integer from 0 to {ID_MAX}, not {text[:40]!r}")
    return int(text)


def _response_fields(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    known, own = FIELDS.keys() | TOP_LEVEL | UNSERVED, f"_{PREFIX}_"
    # another provider's fields are not an error: they are simply not served here
    unknown = [n for n in names if n not in known and (n.startswith(own) or not n.startswith("_"))]
    if unknown:
        raise BadRequest(detail=f"unknown field(s) in response_fields: {', '.join(unknown)[:200]}")
    return names


def _sort(text: str | None) -> tuple[tuple[str, bool], ...]:
    keys = []
    for part in (text or "").split(","):
        name = part.strip().removeprefix("-")
        if not name:
            continue
        field = FIELDS.get(name)
        if field is None or not field.sortable:
            raise BadRequest(detail=f"cannot sort on {name[:60]!r}: sortable fields are listed by /info/structures")
        keys.append((name, part.strip().startswith("-")))
    return tuple(keys)
