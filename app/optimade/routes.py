"""The OPTIMADE routes: /optimade/versions and /optimade/v1/{info, info/structures, links,
structures, structures/{id}}. Who may call is the rule of /api/v1 (`get_caller`), answered in
OPTIMADE's error format."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials
from optimade.exceptions import OptimadeHTTPException

from app.api.deps import SessionDep, SettingsDep, StoreDep, bearer, get_caller
from app.optimade.params import EntryQuery, get_entry_query
from app.optimade.responses import BASE, get_info, get_links, get_structures_info, json_response
from app.optimade.structures import get_structure_by_id, get_structures_page
from models.api_key import ApiKey


class CallerRefused(OptimadeHTTPException):
    """`get_caller`'s 401 / 403 / 429, as an OPTIMADE error."""

    def __init__(self, exc: HTTPException) -> None:
        self.status_code = exc.status_code
        detail = exc.detail.get("message", "") if isinstance(exc.detail, dict) else str(exc.detail)
        self.title = {401: "Unauthorized", 403: "Forbidden", 429: "Too Many Requests"}.get(exc.status_code, "Refused")
        super().__init__(detail=detail, headers=exc.headers)


def get_optimade_caller(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> ApiKey | None:
    """The API key calling, or None where reads need none: the rule of every /api/v1 read."""
    try:
        return get_caller(request, session, settings, credentials)
    except HTTPException as exc:
        raise CallerRefused(exc) from exc


EntryQueryDep = Annotated[EntryQuery, Depends(get_entry_query)]
# the OPTIMADE specification documents these routes: they stay out of this app's OpenAPI schema
router = APIRouter(prefix=BASE, dependencies=[Depends(get_optimade_caller)], include_in_schema=False)


@router.get("/versions")
def read_versions() -> PlainTextResponse:
    """The major versions served, as the specification's CSV."""
    return PlainTextResponse("version\n1\n", media_type="text/csv; header=present")


@router.get("/v1/info")
def read_info(request: Request) -> JSONResponse:
    return json_response(get_info(request))


@router.get("/v1/info/structures")
def read_structures_info(request: Request) -> JSONResponse:
    return json_response(get_structures_info(request))


@router.get("/v1/links")
def read_links(request: Request) -> JSONResponse:
    return json_response(get_links(request))


@router.get("/v1/structures")
def read_structures(request: Request, session: SessionDep, store: StoreDep, query: EntryQueryDep) -> JSONResponse:
    return json_response(get_structures_page(request, session, store=store, query=query))


@router.get("/v1/structures/{entry_id}")
def read_structure(
    entry_id: str, request: Request, session: SessionDep, store: StoreDep, query: EntryQueryDep
) -> JSONResponse:
    return json_response(get_structure_by_id(request, session, entry_id=entry_id, store=store, query=query))
