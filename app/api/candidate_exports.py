"""GET /candidates/export: every candidate the search's filters match, in one file of a chosen
format (app/export_formats), read from the database in chunks and written to a spooled temporary
file, then streamed with its length."""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterator
from typing import IO, Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from app.api.candidates import CandidateQueryDep, get_candidate_out
from app.api.deps import SessionDep, StoreDep
from app.export_formats import EXPORT_FORMATS, ExportFormatName, ExportRecord
from models.artifacts import ArtifactStore
from models.candidate import Candidate
from models.queries import CandidateFilters, list_candidates
from models.screening import Screening
from models.verdict import Verdict

# Declared before the candidates router (app/api/__init__.py): /candidates/{candidate_id} would take "export".
router = APIRouter(prefix="/candidates", tags=["candidates"])
EXPORT_CHUNK = 200  # candidates per query
SPOOL_BYTES = 16 * 2**20  # an export larger than this is written to a temporary file on disk
STREAM_BLOCK = 2**16
COUNT_HEADER = "X-Candidate-Count"

_FORMATS_DOC = "\n".join(f"- `{f.name}` ({f.media_type}): {f.description}" for f in EXPORT_FORMATS.values())
EXPORT_DESCRIPTION = f"""Every candidate that GET /candidates would list with the same filters, in one file:
no page limit (`page` and `per_page` are accepted and ignored), in the order of `sort`.

{_FORMATS_DOC}

The structure is the verdict's relaxed one; a candidate that never relaxed comes with its input
structure, marked `structure_source: input` (or in `unrelaxed_input/`). File names in archives are
`ID-NAME` (the candidate id, then its name's file stem). An empty selection is a valid, empty
export. The file is complete before the answer starts, so a 200 always carries all of it
(Content-Length); `{COUNT_HEADER}` says how many candidates it holds."""


def iter_export_records(
    session: Session, *, store: ArtifactStore, filters: CandidateFilters, sort: str = "id", chunk: int = EXPORT_CHUNK
) -> Iterator[ExportRecord]:
    """Every candidate matching `filters` as an ExportRecord, `chunk` rows per query, in `sort`
    order; a candidate that a concurrent change moves into a later chunk is given once."""
    seen: set[int] = set()
    offset = 0
    while True:
        rows, _ = list_candidates(session, filters=filters, sort=sort, offset=offset, limit=chunk)
        for candidate, screening, verdict in rows:
            if candidate.id not in seen:
                seen.add(candidate.id)
                yield get_export_record(candidate, screening, verdict, store=store)
        if len(rows) < chunk:
            return
        offset += chunk


def get_export_record(
    candidate: Candidate, screening: Screening | None, verdict: Verdict | None, *, store: ArtifactStore
) -> ExportRecord:
    """One candidate row with its latest screening and verdict, and its relaxed CIF from the store."""
    data = store.read_if_present(verdict.relaxed_cif_path) if verdict is not None else None
    relaxed = data.decode("utf-8") if data is not None else None  # else the input structure, marked so
    phonons: Any = ((verdict.result or {}).get("phonons") if verdict is not None else None) or {}
    worst_path = phonons.get("worst_path_frequency_thz") if isinstance(phonons, dict) else None
    return ExportRecord(
        candidate=get_candidate_out(candidate, screening, verdict),
        generator_version=candidate.batch.generator_version,
        input_structure=candidate.structure,
        input_cif=candidate.cif,
        relaxed_cif=relaxed,
        worst_path_frequency_thz=float(worst_path) if isinstance(worst_path, int | float) else None,
    )


@router.get(
    "/export",
    response_class=StreamingResponse,
    description=EXPORT_DESCRIPTION,
    responses={
        200: {
            "description": "The export, as an attachment",
            "content": {media_type: {} for media_type in dict.fromkeys(f.media_type for f in EXPORT_FORMATS.values())},
            "headers": {
                "Content-Disposition": {"schema": {"type": "string"}, "description": "attachment; its file name"},
                COUNT_HEADER: {"schema": {"type": "integer"}, "description": "Candidates in the export"},
            },
        }
    },
)
def export_candidates(
    session: SessionDep,
    store: StoreDep,
    query: CandidateQueryDep,
    export_format: Annotated[ExportFormatName, Query(alias="format", description="The file format")],
) -> StreamingResponse:
    """Every candidate matching the filters, in one file."""
    spec = EXPORT_FORMATS[export_format]
    count = 0

    def counted() -> Iterator[ExportRecord]:
        nonlocal count
        for record in iter_export_records(session, store=store, filters=query.filters, sort=query.sort):
            count += 1
            yield record

    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)
    try:
        spec.write(counted(), spool)
        size = spool.seek(0, io.SEEK_END)
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    headers = {
        "Content-Disposition": f'attachment; filename="{spec.filename}"',
        "Content-Length": str(size),
        COUNT_HEADER: str(count),
    }
    return StreamingResponse(_blocks(spool), media_type=spec.media_type, headers=headers)


def _blocks(file: IO[bytes]) -> Iterator[bytes]:
    try:
        while block := file.read(STREAM_BLOCK):
            yield block
    finally:
        file.close()
