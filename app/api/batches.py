"""Routes for batches: submit structures (multipart or JSON) and follow a batch's progress."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC
from typing import Any, TypeVar

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api.deps import (
    BATCH_NOT_FOUND,
    BatchDep,
    CallerDep,
    CeleryDep,
    SessionDep,
    SettingsDep,
    StoreDep,
    resolve_protocol_and_potential,
)
from app.config import Settings
from app.parsing import ReadLimits, check_file_count, read_upload, too_many_files
from app.queue import enqueue_screenings
from app.schemas import (
    MARGIN_DOC,
    PRESCREEN_DOC,
    SECOND_DOC,
    BatchCounts,
    BatchCreated,
    BatchJSONIn,
    BatchOut,
    BatchSettingsIn,
    Problem,
    UploadForm,
    get_upload_name,
)
from app.security import refuse_if_quota_spent
from app.submissions import Submission, SubmissionRejected, store_batch
from models.base import utc_now
from models.batch import Batch
from models.queries import count_batch
from workers.screening.opinions import OpinionNames
from workers.screening.potentials.registry import POTENTIAL_NAMES
from workers.screening.protocols import PROTOCOLS
from workers.screening.types import VERDICTS

router = APIRouter(prefix="/batches", tags=["batches"])
T = TypeVar("T")

_MULTIPART_SCHEMA = {
    "type": "object",
    "required": ["files"],
    "properties": {
        "files": {
            "type": "array",
            "items": {"type": "string", "format": "binary"},
            "description": "Structure files: CIF, POSCAR, extxyz, pymatgen JSON, CSV with a cif column, "
            "zip/tar.gz of these, CDVAE/DiffCSP eval_gen.pt. Repeat the field for several.",
        },
        "generator": {"type": "string"},
        "generator_version": {"type": "string", "description": "The generator's version or checkpoint"},
        "protocol": {"type": "string", "enum": sorted(PROTOCOLS)},
        "potential": {"type": "string", "enum": list(POTENTIAL_NAMES)},
        "prescreen": {"type": "string", "enum": list(POTENTIAL_NAMES), "description": PRESCREEN_DOC},
        "prescreen_margin_thz": {"type": "number", "minimum": 0, "description": MARGIN_DOC},
        "second_opinion": {"type": "string", "enum": list(POTENTIAL_NAMES), "description": SECOND_DOC},
    },
}


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with its `$defs` references replaced by the definitions: the body is parsed by hand,
    so FastAPI never lists its models under components, where a `$ref` would have to point."""
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return resolve(definitions[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return resolve(schema)


_OPENAPI_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": _MULTIPART_SCHEMA},
            "application/json": {"schema": _inline(BatchJSONIn.model_json_schema())},
        },
    }
}


@router.post(
    "",
    status_code=202,
    response_model=BatchCreated,
    openapi_extra=_OPENAPI_BODY,
    responses={
        401: {"model": Problem, "description": "No API key, or an unknown one (when keys are required)"},
        403: {"model": Problem, "description": "Revoked API key"},
        413: {
            "model": Problem,
            "description": "Over a limit of one request: body size, files, structures, inflated bytes, reading time",
        },
        422: {"model": Problem, "description": "No usable structure, or bad fields"},
        429: {"model": Problem, "description": "Rate limit or daily structure quota of the key; see Retry-After"},
        503: {"model": Problem, "description": "Stored, but the broker could not be reached"},
    },
)
async def create_batch(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    store: StoreDep,
    celery: CeleryDep,
    caller: CallerDep,
) -> BatchCreated:
    """Submit structures for screening; answers with the batch id and each structure's fate."""
    quota = settings.daily_structure_quota
    if caller is not None:
        refuse_if_quota_spent(caller, quota=quota)  # before reading the body
    try:
        submission = await _read_submission(request, settings=settings)
        registered = await run_in_threadpool(
            store_batch, session, submission=submission, store=store, caller=caller, quota=quota
        )
    except SubmissionRejected as exc:
        raise HTTPException(exc.status_code, exc.detail) from None
    created = registered.created
    try:  # only after the commit: a worker may start on these ids at once
        enqueue_screenings(celery, screening_ids=registered.screening_ids, chunk=settings.screen_chunk)
    except Exception as exc:  # noqa: BLE001 - any broker failure: the rows stay queued, said in the answer
        raise HTTPException(
            503,
            {
                "code": "broker_unreachable",
                "batch_id": created.id,
                "message": f"batch stored but not queued yet: {exc}; the reconciler sends it once the broker is back "
                "(do not submit it again)",
            },
            headers={"Retry-After": str(settings.reconcile_every_s)},
        ) from None
    return created


async def _read_submission(request: Request, *, settings: Settings) -> Submission:
    """The request's fields, checked, and its structures, read off the event loop under the
    request's limits (SubmissionRejected 413 beyond them)."""
    limits = ReadLimits(
        max_atoms=settings.max_atoms,
        max_files=settings.max_files,
        max_structures=settings.max_structures,
        max_decompressed_bytes=settings.max_decompressed_bytes,
        timeout_s=settings.parse_timeout_s,
    )
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        body = _validate(BatchJSONIn.model_validate_json, await request.body())
        check_file_count(len(body.structures), limits=limits)
        files = [(get_upload_name(s.name), s.cif.encode()) for s in body.structures]
        fields: BatchSettingsIn = body
        source = "json"
    elif content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        form = await _read_form(request, max_files=limits.max_files)
        uploads = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
        if not uploads:
            raise HTTPException(422, {"code": "no_files", "message": "send one or more `files` fields"})
        names = [f.filename or f"upload-{i}" for i, f in enumerate(uploads)]
        values = {k: form[k] or None for k in BatchSettingsIn.model_fields if k in form}
        fields = _validate(UploadForm.model_validate, {**values, "files": [{"filename": n} for n in names]})
        files = [(name, await f.read()) for name, f in zip(names, uploads, strict=True)]
        source = "upload"
    else:
        raise HTTPException(415, "send multipart/form-data (field `files`) or application/json")
    protocol, potential = resolve_protocol_and_potential(fields.protocol, fields.potential, settings=settings)
    opinions = OpinionNames(
        prescreen=fields.prescreen,
        prescreen_margin_thz=fields.prescreen_margin_thz,
        second_opinion=fields.second_opinion,
    )
    problem = opinions.problem(potential=potential, known=POTENTIAL_NAMES)
    if problem is not None:
        raise HTTPException(422, {"code": problem[0], "message": problem[1]})
    parsed = await read_upload(files, limits=limits, workers=settings.parse_workers)
    return Submission(
        source=source,
        generator=fields.generator or None,
        generator_version=fields.generator_version or None,
        protocol=protocol,
        potential=potential,
        opinions=opinions.resolved(),
        files=files,
        parsed=parsed,
    )


def _validate(validate: Callable[[Any], T], data: Any) -> T:
    """`validate(data)`, its errors raised as the request's (422, located in the body)."""
    try:
        return validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None


async def _read_form(request: Request, *, max_files: int) -> FormData:
    try:
        # one more than allowed: a form over the limit is then refused by check_file_count, by name
        return await request.form(max_files=max_files + 1, max_fields=100)
    except StarletteHTTPException as exc:  # starlette's 400 for a form it cannot parse (or too many files)
        if "too many files" in str(exc.detail).lower():
            raise too_many_files(max_files=max_files) from None
        raise HTTPException(422, {"code": "malformed_body", "message": str(exc.detail)}) from None


@router.get("/{batch_id}", response_model=BatchOut, responses=BATCH_NOT_FOUND)
def read_batch(batch: BatchDep, session: SessionDep) -> BatchOut:
    """Status, counts by screening status and by verdict, and progress of one batch."""
    return get_batch_out(batch, counts=count_batch(session, batch_id=batch.id))


def get_batch_out(batch: Batch, *, counts) -> BatchOut:
    s = counts.by_status
    v = {verdict: counts.by_verdict.get(verdict, 0) for verdict in VERDICTS}
    ended = s["done"] + s["failed"]
    total = counts.total
    if batch.finished_at is not None or (total and ended == total):
        status = "done"
    elif s["running"] or ended:
        status = "running"
    else:
        status = "queued"
    pace = _pace(counts, ended=ended, total=total) if status == "running" else (None, None)
    return BatchOut(
        id=batch.id,
        status=status,
        source=batch.source,
        generator=batch.generator.name if batch.generator else None,
        generator_version=batch.generator_version,
        protocol=batch.protocol,
        potential=batch.potential,
        prescreen=batch.prescreen,
        prescreen_margin_thz=batch.prescreen_margin_thz,
        second_opinion=batch.second_opinion,
        created_at=batch.created_at,
        finished_at=batch.finished_at,
        submitted=batch.n_submitted,
        accepted=batch.n_accepted,
        rejected=batch.n_rejected,
        counts=BatchCounts(
            queued=s["queued"],
            running=s["running"],
            done=s["done"],
            failed=s["failed"],
            stable=v["stable"],
            unstable=v["unstable"],
            relax_failed=v["relax_failed"],
            verdict_failed=v["failed"],
            **counts.opinions,
        ),
        progress=round(ended / total, 4) if total else 1.0,
        seconds_per_structure=pace[0],
        eta_s=pace[1],
        rejected_structures=batch.rejected or [],
    )


def _pace(counts, *, ended: int, total: int) -> tuple[float | None, float | None]:
    """(seconds per structure, seconds left) of a running batch, from its own screenings' pace."""
    first = counts.first_started_at
    if first is None or counts.ended_here == 0:
        return None, None
    if first.tzinfo is None:  # SQLite hands back naive UTC
        first = first.replace(tzinfo=UTC)
    per = max(0.0, (utc_now() - first).total_seconds()) / counts.ended_here
    return round(per, 1), round(per * (total - ended), 1)
