"""Request dependencies as Annotated aliases; path ids resolve to rows here (404 in one place)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from celery import Celery
from fastapi import Depends, HTTPException, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from app.config import Settings
from app.schemas import ID_MAX, Problem
from app.security import BEARER, check_key, count_request, hash_key
from models.api_key import ApiKey
from models.artifacts import ArtifactStore
from models.batch import Batch
from models.candidate import Candidate
from models.queries import get_api_key
from models.source import Source


def get_db(request: Request) -> Iterator[Session]:
    """One session per request; routes commit at the edge, anything uncommitted rolls back."""
    with request.app.state.session_factory() as session:
        yield session


def get_app_settings(request: Request) -> Settings:
    """The settings the app was created with (read once at start-up by `app.config.get_settings`)."""
    return request.app.state.settings


def get_store(request: Request) -> ArtifactStore:
    return request.app.state.store


def get_celery(request: Request) -> Celery:
    return request.app.state.celery


SessionDep = Annotated[Session, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
StoreDep = Annotated[ArtifactStore, Depends(get_store)]
CeleryDep = Annotated[Celery, Depends(get_celery)]


# an id outside the INTEGER column cannot name a row: 422 before any query
BatchId = Annotated[int, Path(ge=1, le=ID_MAX, description="Batch id")]
CandidateId = Annotated[int, Path(ge=1, le=ID_MAX, description="Candidate id")]
SourceId = Annotated[int, Path(ge=1, le=ID_MAX, description="Watched source id")]


def get_batch_or_404(batch_id: BatchId, session: SessionDep) -> Batch:
    batch = session.get(Batch, batch_id)
    if batch is None:
        raise HTTPException(404, f"batch {batch_id} not found")
    return batch


def get_candidate_or_404(candidate_id: CandidateId, session: SessionDep) -> Candidate:
    candidate = session.get(Candidate, candidate_id)
    if candidate is None:
        raise HTTPException(404, f"candidate {candidate_id} not found")
    return candidate


def get_source_or_404(source_id: SourceId, session: SessionDep) -> Source:
    source = session.get(Source, source_id)
    if source is None:
        raise HTTPException(404, f"source {source_id} not found")
    return source


BatchDep = Annotated[Batch, Depends(get_batch_or_404)]
CandidateDep = Annotated[Candidate, Depends(get_candidate_or_404)]
SourceDep = Annotated[Source, Depends(get_source_or_404)]
# the 404s above, for the `responses=` of the routes that take these dependencies
BATCH_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Problem, "description": "No such batch"}}
CANDIDATE_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Problem, "description": "No such candidate"}}
SOURCE_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Problem, "description": "No such source"}}


# auto_error=False: a missing key is this module's decision (401 or anonymous), not HTTPBearer's 403
bearer = HTTPBearer(auto_error=False, description="An API key from `phononscreen keys create NAME`")
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# what `get_caller` may answer on any /api/v1 route, documented once for all of them (app.api)
CALLER_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "No API key where one is required, or an unknown key"},
    403: {"model": Problem, "description": "Revoked API key"},
    429: {"model": Problem, "description": "More requests this minute than the key's rate limit; see Retry-After"},
}


def get_caller(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> ApiKey | None:
    """The API key calling, or None for an anonymous call where keys are not required; the one
    rule of every /api/v1 route (set on the router).

    Writes need a key with PHONONSCREEN_REQUIRE_KEYS, reads too with PHONONSCREEN_PRIVATE_READS:
    401 without a key or with an unknown one, 403 for a revoked one. A key that is sent is always
    checked and counted (rate limit, last use), required or not. The count is committed at once,
    so a request refused later still counts.
    """
    if credentials is None:
        required = settings.private_reads or (request.method not in READ_METHODS and settings.writes_need_key)
        if required:
            message = "send an API key: Authorization: Bearer KEY"
            raise HTTPException(401, {"code": "key_required", "message": message}, headers=BEARER)
        return None
    key = check_key(get_api_key(session, key_hash=hash_key(credentials.credentials)))
    refused: HTTPException | None = None
    try:
        count_request(session, key=key, limit_per_min=settings.rate_limit_per_min)
    except HTTPException as exc:  # 429: the request still counts
        refused = exc
    session.commit()  # the count stands whatever the route does next
    if refused is not None:
        raise refused
    return key


CallerDep = Annotated[ApiKey | None, Depends(get_caller)]


def resolve_protocol_and_potential(
    protocol: str | None, potential: str | None, *, settings: Settings
) -> tuple[str, str]:
    """The protocol and potential a batch or a source asked for, the server's defaults where it did
    not; 422 naming the choices for an unknown one."""
    from workers.screening.potentials.registry import POTENTIAL_NAMES
    from workers.screening.protocols import PROTOCOLS

    protocol, potential = protocol or settings.protocol, potential or settings.potential
    if protocol not in PROTOCOLS:
        message = f"protocol {protocol!r}; choose one of {sorted(PROTOCOLS)}"
        raise HTTPException(422, {"code": "unknown_protocol", "message": message})
    if potential not in POTENTIAL_NAMES:
        message = f"potential {potential!r}; choose one of {list(POTENTIAL_NAMES)}"
        raise HTTPException(422, {"code": "unknown_potential", "message": message})
    return protocol, potential
