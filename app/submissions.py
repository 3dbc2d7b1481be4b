"""Turn an upload (files or JSON) into a batch: parse, validate, describe, store the rows."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import HTTPException
from sqlalchemy.orm import Session

from app.fingerprint import describe_structure
from app.schemas import STRUCTURE_NAME_MAX, BatchCreated, StructureOutcome
from app.security import charge_quota
from models.api_key import ApiKey
from models.artifacts import ArtifactStore
from models.crud import (
    CandidateValues,
    add_candidates,
    create_batch,
    finish_batches,
    get_or_create_generator,
    mark_duplicates,
)
from models.queries import get_dedup_candidates
from workers.screening.opinions import OpinionNames
from workers.screening.report.artifacts import safe_name
from workers.screening.types import StructureRecord

if TYPE_CHECKING:
    from pymatgen.core import Structure

logger = logging.getLogger(__name__)


class SubmissionRejected(Exception):
    """The whole submission is refused (HTTP status + a detail that names the problem)."""

    def __init__(self, status_code: int, detail: object) -> None:
        super().__init__(str(detail))
        self.status_code = status_code
        self.detail = detail


@dataclass(frozen=True, kw_only=True)
class Submission:
    source: str  # "upload" or "json"
    generator: str | None
    generator_version: str | None = None
    protocol: str
    potential: str
    opinions: OpinionNames = OpinionNames()  # resolved: the margin that applies is filled in
    files: list[tuple[str, bytes]] = field(default_factory=list)  # (file name, raw bytes)
    parsed: list[list[StructureRecord]] = field(default_factory=list)  # the records of each file


@dataclass(frozen=True, kw_only=True)
class Registered:
    """A batch whose rows are flushed: the API answer, and what to do once they are committed."""

    created: BatchCreated
    screening_ids: list[int]  # to enqueue
    raw_files: list[tuple[str, bytes]]  # (artifact path, bytes): the uploads the rows' submitted_path names


def register_batch(session: Session, *, submission: Submission) -> Registered:
    """Rows for the batch, its candidates and their queued screenings (flushed, not committed).

    Raises SubmissionRejected (422) when not one structure is usable. Writes nothing to the artifact
    store: the caller writes `raw_files` after the commit (`write_raw_files`), so a rollback leaves
    no file behind.
    """
    parsed = [(file_index, r) for file_index, records in enumerate(submission.parsed) for r in records]
    outcomes: list[StructureOutcome] = []
    accepted: list[tuple[int, StructureRecord, CandidateValues]] = []
    for file_index, record in parsed:
        values, problem = _describe(record)
        if values is None:
            outcomes.append(
                StructureOutcome(
                    name=record.name,
                    source=record.source,
                    index=record.index,
                    accepted=False,
                    code=problem[0],
                    reason=problem[1],
                )
            )
        else:
            accepted.append((file_index, record, values))
            outcomes.append(StructureOutcome(name=record.name, source=record.source, index=record.index, accepted=True))
    if not accepted:
        message = "no structure in the submission could be used" if parsed else "the submission holds no structure"
        raise SubmissionRejected(
            422,
            {
                "code": "nothing_accepted",
                "message": message,
                "structures": [o.model_dump(exclude_none=True) for o in outcomes],
            },
        )
    generator = get_or_create_generator(session, name=submission.generator) if submission.generator else None
    rejected = [{"name": o.name, "code": o.code, "message": o.reason} for o in outcomes if not o.accepted]
    batch = create_batch(
        session,
        source=submission.source,
        generator=generator,
        generator_version=submission.generator_version,
        protocol=submission.protocol,
        potential=submission.potential,
        n_submitted=len(outcomes),
        rejected=rejected,
        **dataclasses.asdict(submission.opinions),
    )
    used = {file_index for file_index, _, _ in accepted}
    raw_paths = {
        i: f"uploads/batch-{batch.id}/{i:03d}-{safe_name(name)}" for i, (name, _) in enumerate(submission.files)
    }
    raw_files = [(raw_paths[i], data) for i, (_, data) in enumerate(submission.files) if i in used]
    values = [_with_path(v, raw_paths[i]) for i, _, v in accepted]
    originals = find_duplicates(
        session,
        structures=[(r.structure, v) for _, r, v in accepted],
        protocol=submission.protocol,
        potential=submission.potential,
        opinions=submission.opinions,
    )
    screenings = add_candidates(session, batch=batch, candidates=values)
    # an original is an earlier screening (its id and candidate id) or an earlier position in this batch
    links = [
        (s, *(o if isinstance(o, tuple) else (screenings[o].id, screenings[o].candidate_id)))
        for s, o in zip(screenings, originals, strict=True)
        if o is not None
    ]
    mark_duplicates(session, links=[(s, original_id) for s, original_id, _ in links])
    duplicate_of = {s.id: candidate_id for s, _, candidate_id in links}
    by_name = iter(screenings)
    for outcome in outcomes:
        if outcome.accepted:
            screening = next(by_name)
            outcome.candidate_id, outcome.duplicate_of = screening.candidate_id, duplicate_of.get(screening.id)
    to_run = [s.id for s in screenings if s.id not in duplicate_of]
    # a batch of duplicates of finished screenings has nothing to wait for
    done = not to_run and finish_batches(session, batch_ids=[batch.id]) == [batch.id]
    created = BatchCreated(
        id=batch.id,
        status="done" if done else "queued",
        accepted=len(accepted),
        rejected=len(rejected),
        duplicates=len(links),
        structures=outcomes,
    )
    return Registered(created=created, screening_ids=to_run, raw_files=raw_files)


def store_batch(
    session: Session, *, submission: Submission, store: ArtifactStore, caller: ApiKey | None, quota: int
) -> Registered:
    """Register the batch, charge the caller's daily quota in the same transaction (a batch that does
    not fit stores nothing), commit, then write the raw uploads (so a rollback leaves no file)."""
    registered = register_batch(session, submission=submission)
    if caller is not None:
        try:
            charge_quota(session, key=caller, structures=registered.created.accepted, quota=quota)
        except HTTPException:
            session.rollback()
            raise
    session.commit()  # one transaction per request: all of the batch or none of it
    write_raw_files(store, raw_files=registered.raw_files)
    return registered


def write_raw_files(store: ArtifactStore, *, raw_files: list[tuple[str, bytes]]) -> None:
    """Write the uploads of a committed batch; one that cannot be written is logged, not raised:
    the batch is stored and its screenings need only the rows."""
    for path, data in raw_files:
        try:
            store.write_bytes(path, data)
        except OSError:
            logger.exception("raw upload %s not written; its candidates keep their parsed structure", path)


def find_duplicates(
    session: Session,
    *,
    structures: list[tuple[Structure, CandidateValues]],
    protocol: str,
    potential: str,
    opinions: OpinionNames | None = None,
) -> list[tuple[int, int] | int | None]:
    """For each structure: (screening id, candidate id) of an equivalent one already screened or
    queued under `protocol`, `potential` and the same `opinions` (resolved; None: none), else the
    position of an equivalent earlier one in this list, else None (it must be screened).
    "Equivalent" is the protocol's own dedup rule, the one the CLI's runs use
    (`workers.screening.dedup.duplicate_index`).

    Only candidates sharing (reduced formula, fingerprint) are loaded and compared, so the cost
    follows the size of those buckets, not of the table.
    """
    from pymatgen.core import Structure as PmgStructure

    from workers.screening.dedup import duplicate_index
    from workers.screening.protocols import get_protocol

    settings = get_protocol(protocol)
    index = duplicate_index(settings.dedup, symprec=settings.symprec)
    if index is None:
        return [None] * len(structures)
    keys = {(v.reduced_formula, v.fingerprint) for _, v in structures}
    for screening_id, candidate_id, key, data in get_dedup_candidates(
        session, keys=keys, protocol=protocol, potential=potential, **dataclasses.asdict(opinions or OpinionNames())
    ):
        index.add(PmgStructure.from_dict(data), (screening_id, candidate_id), key=key)
    return [index.find_or_add(structure, position) for position, (structure, _) in enumerate(structures)]


def _describe(record: StructureRecord) -> tuple[CandidateValues | None, tuple[str, str]]:
    if not record.ok:
        error = record.error
        return None, (error.code, error.message) if error else ("empty", "no structure")
    if len(record.name) > STRUCTURE_NAME_MAX or "\x00" in record.name:  # an archive member's name, unchecked so far
        return None, ("name_too_long", f"a structure name must be at most {STRUCTURE_NAME_MAX} characters, without NUL")
    try:
        return describe_structure(
            record.structure,
            name=record.name,
            source_file=record.source,
            source_index=record.index,
            submitted_path=None,
        ), ("", "")
    except Exception as exc:  # noqa: BLE001 - a structure pymatgen can read but not write back is not usable
        return None, ("parse_error", f"cannot describe the structure: {exc}")


def _with_path(values: CandidateValues, path: str) -> CandidateValues:
    from dataclasses import replace

    return replace(values, submitted_path=path)
