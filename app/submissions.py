"""Turn an upload (files or JSON) into a batch: the intake rule (workers.intake) under the API's
answers, its key's quota and one transaction per request."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from fastapi import HTTPException
from sqlalchemy.orm import Session

from app.schemas import BatchCreated, StructureOutcome
from app.security import charge_quota
from models.api_key import ApiKey
from models.artifacts import ArtifactStore
from workers.intake import Intake, NothingAccepted, Outcome, register_intake, write_raw_files


class SubmissionRejected(Exception):
    """The whole submission is refused (HTTP status + a detail that names the problem)."""

    def __init__(self, status_code: int, detail: object) -> None:
        super().__init__(str(detail))
        self.status_code = status_code
        self.detail = detail


Submission = Intake  # an upload is one kind of intake (source "upload" or "json")


@dataclass(frozen=True, kw_only=True)
class Registered:
    """A batch whose rows are flushed: the API answer, and what to do once they are committed."""

    created: BatchCreated
    screening_ids: list[int]  # to enqueue
    raw_files: list[tuple[str, bytes]]  # (artifact path, bytes): the uploads the rows' submitted_path names


def register_batch(session: Session, *, submission: Submission) -> Registered:
    """Rows for the batch, its candidates and their queued screenings (flushed, not committed).

    Raises SubmissionRejected (422) when not one structure is usable. Writes nothing to the artifact
    store (see workers.intake.register_intake).
    """
    try:
        registration = register_intake(session, intake=submission)
    except NothingAccepted as exc:
        raise SubmissionRejected(
            422,
            {
                "code": "nothing_accepted",
                "message": str(exc),
                "structures": [_outcome(o).model_dump(exclude_none=True) for o in exc.outcomes],
            },
        ) from None
    created = BatchCreated(
        id=registration.batch_id,
        status="done" if registration.done else "queued",
        accepted=registration.accepted,
        rejected=registration.rejected,
        duplicates=registration.duplicates,
        structures=[_outcome(o) for o in registration.outcomes],
    )
    return Registered(created=created, screening_ids=registration.screening_ids, raw_files=registration.raw_files)


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


def _outcome(outcome: Outcome) -> StructureOutcome:
    return StructureOutcome(**dataclasses.asdict(outcome))
