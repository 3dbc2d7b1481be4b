"""Request dependencies as Annotated aliases; path ids resolve to rows here (404 in one place)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from celery import Celery
from fastapi import Depends, HTTPException, Path, Request
from sqlalchemy.orm import Session

from app.config import Settings
from app.schemas import ID_MAX
from models.artifacts import ArtifactStore
from models.batch import Batch
from models.candidate import Candidate


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


BatchDep = Annotated[Batch, Depends(get_batch_or_404)]
CandidateDep = Annotated[Candidate, Depends(get_candidate_or_404)]
