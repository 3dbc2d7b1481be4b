"""Routes for watched sources: folders of generator output scanned on a schedule (workers.scan),
each new or changed file screened as a batch of its own."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response

from app.api.deps import (
    SOURCE_NOT_FOUND,
    CeleryDep,
    SessionDep,
    SettingsDep,
    SourceDep,
    resolve_protocol_and_potential,
)
from app.config import Settings
from app.schemas import ID_MAX, Problem, ScanSent, SourceFileOut, SourceIn, SourceOut
from models.crud import create_source, get_or_create_generator
from models.queries import count_sources, list_source_files, list_sources
from models.source import Source
from workers.celery_app import SCAN_SOURCE_TASK
from workers.schedule import sync_source_schedules

router = APIRouter(prefix="/sources", tags=["sources"])


@router.post(
    "",
    status_code=201,
    response_model=SourceOut,
    responses={
        400: {"model": Problem, "description": "The body is not JSON"},
        422: {
            "model": Problem,
            "description": "Not a readable folder, outside PHONONSCREEN_SOURCE_ROOTS, or bad fields",
        },
    },
)
def create(body: SourceIn, session: SessionDep, settings: SettingsDep) -> SourceOut:
    """Watch a folder: it is scanned every `interval_s` (or on `cron`); a file is read once its size
    and modification time held still between two scans, and screened as a batch of its own."""
    protocol, potential = resolve_protocol_and_potential(body.protocol, body.potential, settings=settings)
    path = _checked_folder(body.path, settings=settings)
    generator = get_or_create_generator(session, name=body.generator) if body.generator else None
    interval_s = body.interval_s if body.interval_s is not None or body.cron else settings.source_interval_s
    source = create_source(
        session,
        path=str(path),
        patterns=body.patterns,
        generator=generator,
        generator_version=body.generator_version,
        protocol=protocol,
        potential=potential,
        interval_s=interval_s,
        cron=body.cron,
    )
    sync_source_schedules(session)  # its periodic task, in the same transaction
    session.commit()
    return _out(session, source)


@router.get("", response_model=list[SourceOut])
def read_all(session: SessionDep) -> list[SourceOut]:
    """Every watched source, with its files by state and the batches it made."""
    sources = list_sources(session)
    counts = count_sources(session, source_ids=[s.id for s in sources])
    return [_out(session, s, counts=counts[s.id]) for s in sources]


@router.get("/{source_id}", response_model=SourceOut, responses=SOURCE_NOT_FOUND)
def read_one(source: SourceDep, session: SessionDep) -> SourceOut:
    return _out(session, source)


@router.get("/{source_id}/files", response_model=list[SourceFileOut], responses=SOURCE_NOT_FOUND)
def read_files(
    source: SourceDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: Annotated[int, Query(ge=0, le=ID_MAX)] = 0,
) -> list[SourceFileOut]:
    """The files the source's scans have seen, by path: what was done with each, and its batch."""
    rows = list_source_files(session, source_id=source.id, limit=limit, offset=offset)
    return [SourceFileOut.model_validate(r, from_attributes=True) for r in rows]


@router.post("/{source_id}/pause", response_model=SourceOut, responses=SOURCE_NOT_FOUND)
def pause(source: SourceDep, session: SessionDep) -> SourceOut:
    """Stop scanning (a scan already running finishes); nothing seen or stored is lost."""
    return _set_paused(session, source, paused=True)


@router.post("/{source_id}/resume", response_model=SourceOut, responses=SOURCE_NOT_FOUND)
def resume(source: SourceDep, session: SessionDep) -> SourceOut:
    return _set_paused(session, source, paused=False)


@router.post(
    "/{source_id}/scan",
    status_code=202,
    response_model=ScanSent,
    responses={**SOURCE_NOT_FOUND, 503: {"model": Problem, "description": "The broker could not be reached"}},
)
def scan_now(source: SourceDep, celery: CeleryDep) -> ScanSent:
    """Scan now (a paused source too), beside its schedule. Files seen for the first time are read at
    the next scan, once they held still."""
    try:
        celery.send_task(SCAN_SOURCE_TASK, args=[source.id], kwargs={"manual": True})
    except Exception as exc:  # noqa: BLE001 - any broker failure is the same answer
        raise HTTPException(503, {"code": "broker_unreachable", "message": f"scan not sent: {exc}"}) from None
    return ScanSent(source_id=source.id, message="scan sent; follow GET /api/v1/sources/{id}/files")


@router.delete("/{source_id}", status_code=204, response_class=Response, responses=SOURCE_NOT_FOUND)
def delete(source: SourceDep, session: SessionDep) -> Response:
    """Stop watching; the batches it made, their candidates and verdicts stay."""
    session.delete(source)
    session.flush()
    sync_source_schedules(session)
    session.commit()
    return Response(status_code=204)


def _checked_folder(raw: str, *, settings: Settings) -> Path:
    """The folder a source names, resolved; 422 naming the problem when it cannot be watched."""
    path = Path(raw).expanduser()
    if not path.is_absolute():
        raise HTTPException(422, {"code": "bad_path", "message": f"{raw!r} is not an absolute path"})
    try:
        path = path.resolve()
        ok = path.is_dir()
    except OSError as exc:
        raise HTTPException(422, {"code": "bad_path", "message": f"{raw!r}: {exc.strerror or exc}"}) from None
    if not ok:
        raise HTTPException(422, {"code": "bad_path", "message": f"{raw!r} is not a folder this service can see"})
    roots = settings.source_root_list
    if roots and not any(path.is_relative_to(root) for root in roots):
        raise HTTPException(
            422,
            {
                "code": "outside_source_roots",
                "message": f"{raw!r} lies outside PHONONSCREEN_SOURCE_ROOTS ({', '.join(map(str, roots))})",
            },
        )
    return path


def _set_paused(session: SessionDep, source: Source, *, paused: bool) -> SourceOut:
    source.paused = paused
    session.flush()
    sync_source_schedules(session)
    session.commit()
    return _out(session, source)


def _out(session: SessionDep, source: Source, counts=None) -> SourceOut:
    counts = counts or count_sources(session, source_ids=[source.id])[source.id]
    return SourceOut(
        id=source.id,
        path=source.path,
        patterns=source.patterns,
        generator=source.generator.name if source.generator else None,
        generator_version=source.generator_version,
        protocol=source.protocol,
        potential=source.potential,
        interval_s=source.interval_s,
        cron=source.cron,
        paused=source.paused,
        created_at=source.created_at,
        last_scan_at=source.last_scan_at,
        last_error=source.last_error,
        files=counts.files,
        batches=counts.batches,
    )
