"""OPTIMADE response documents built with the package's models: meta, info, entry info, links and
errors, and the JSON they are sent as."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from optimade import __api_version__
from optimade.exceptions import OptimadeHTTPException
from optimade.models import (
    AvailableApiVersion,
    BaseInfoAttributes,
    BaseInfoResource,
    EntryInfoProperty,
    EntryInfoResource,
    EntryInfoResponse,
    ErrorResponse,
    Implementation,
    InfoResponse,
    LinksResponse,
    OptimadeError,
    Provider,
    ResponseMeta,
    ResponseMetaQuery,
)
from pydantic import BaseModel

from app.optimade.fields import FIELDS, PREFIX

BASE = "/optimade"  # the unversioned base URL (its /versions lists the major versions served)
VERSIONED = f"{BASE}/v1"
ENTRY_TYPES = ["structures"]
MEDIA_TYPE = "application/vnd.api+json"  # JSON:API's
SCHEMA_URL = "https://schemas.optimade.org/openapi/v1.2/optimade.json"
PROVIDER = Provider(
    name="phononscreen",
    description="Generated crystal structures screened for dynamical stability by ML-potential phonons",
    prefix=PREFIX,
)


def _implementation() -> Implementation:
    try:
        own = version("phononscreen")
    except PackageNotFoundError:  # run from a checkout that was never installed
        own = None
    return Implementation(name="phononscreen", version=own)


IMPLEMENTATION = _implementation()


def get_meta(request: Request, *, more_data_available: bool = False, **counts: int) -> ResponseMeta:
    """The meta of every answer; `counts`: data_returned, data_available."""
    query = request.url.path.removeprefix(VERSIONED) + (f"?{request.url.query}" if request.url.query else "")
    return ResponseMeta(
        query=ResponseMetaQuery(representation=query),
        api_version=__api_version__,
        more_data_available=more_data_available,
        time_stamp=datetime.now(UTC),
        provider=PROVIDER,
        implementation=IMPLEMENTATION,
        schema=SCHEMA_URL,
        **counts,
    )


def json_response(
    document: BaseModel, *, status_code: int = 200, headers: dict[str, Any] | None = None
) -> JSONResponse:
    content = document.model_dump(mode="json", exclude_unset=True, by_alias=True)
    return JSONResponse(content, status_code=status_code, headers=headers, media_type=MEDIA_TYPE)


def get_info(request: Request) -> InfoResponse:
    """/info: the API version, formats and entry types served."""
    url = str(request.base_url).rstrip("/") + VERSIONED
    attributes = BaseInfoAttributes(
        api_version=__api_version__,
        available_api_versions=[AvailableApiVersion(url=url, version=__api_version__)],
        formats=["json"],
        available_endpoints=["info", "links", *ENTRY_TYPES],
        entry_types_by_format={"json": ENTRY_TYPES},
        is_index=False,
    )
    return InfoResponse(data=BaseInfoResource(id="/", type="info", attributes=attributes), meta=get_meta(request))


def get_structures_info(request: Request) -> EntryInfoResponse:
    """/info/structures: every field served, with its type, unit and whether it sorts."""
    properties = {
        name: EntryInfoProperty(description=f.description, unit=f.unit, sortable=f.sortable, type=f.type)
        for name, f in FIELDS.items()
    }
    data = EntryInfoResource(
        formats=["json"],
        description="A generated crystal structure with the verdict of its latest phonon screening.",
        properties=properties,
        output_fields_by_format={"json": list(FIELDS)},
    )
    return EntryInfoResponse(data=data, meta=get_meta(request))


def get_links(request: Request) -> LinksResponse:
    """/links: no other OPTIMADE databases are linked from here."""
    return LinksResponse(data=[], meta=get_meta(request, data_returned=0, data_available=0))


async def optimade_error(request: Request, exc: Exception) -> JSONResponse:
    """An OPTIMADE error as its status and a JSON:API error document."""
    assert isinstance(exc, OptimadeHTTPException)
    error = OptimadeError(status=str(exc.status_code), title=exc.title, detail=exc.detail or exc.title)
    document = ErrorResponse(errors=[error], meta=get_meta(request))
    return json_response(document, status_code=exc.status_code, headers=exc.headers)
