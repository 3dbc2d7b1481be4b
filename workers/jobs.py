"""What a screening task does: claim screenings by id, run the core on them, hand each result to persistence."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import groupby

from celery.exceptions import SoftTimeLimitExceeded

from models.crud import claim_screenings, fail_screenings, get_screenings
from models.queries import get_batch_ids
from workers.leases import lease_until
from workers.persistence import save_result
from workers.runtime import WorkerContext
from workers.screening.opinions import DEFAULT_PRESCREEN_MARGIN_THZ, OpinionNames, Opinions
from workers.screening.types import ScreeningResult, StructureRecord


@dataclass(frozen=True)
class Job:
    screening_id: int
    batch_id: int
    protocol: str
    potential: str
    record: StructureRecord
    opinions: OpinionNames = OpinionNames()  # the batch's other potentials


TIME_LIMIT = "time_limit"  # the error of screenings a task left unfinished at its soft time limit


def claim(
    context: WorkerContext, *, ids: Sequence[int], worker: str, task_id: str, sent_at: datetime | None = None
) -> list[int]:
    """Claim the screenings this task may run, each with a fresh lease (committed before any work starts)."""
    with context.session() as session:
        return claim_screenings(
            session,
            ids=ids,
            worker=worker,
            task_id=task_id,
            lease_until=lease_until(context.config.lease_s),
            sent_at=sent_at,
        )


def mark_failed(context: WorkerContext, *, ids: Sequence[int], error: str) -> None:
    with context.session() as session:
        fail_screenings(session, ids=ids, error=error)


def batch_ids_of(context: WorkerContext, *, ids: Sequence[int]) -> list[int]:
    """Batches these screenings belong to, and those of the duplicates that share their verdicts."""
    with context.session() as session:
        return get_batch_ids(session, screening_ids=ids)


def load_jobs(context: WorkerContext, *, ids: Sequence[int]) -> list[Job]:
    """The claimed screenings as core inputs, grouped-ready (sorted by protocol and potential)."""
    from pymatgen.core import Structure

    with context.session() as session:
        jobs = [
            Job(
                screening_id=s.id,
                batch_id=s.batch_id,
                protocol=s.protocol,
                potential=s.potential,
                record=StructureRecord(
                    name=s.candidate.name,
                    source=s.candidate.source_file,
                    index=s.candidate.source_index,
                    structure=Structure.from_dict(s.candidate.structure),
                ),
                opinions=OpinionNames(
                    prescreen=s.batch.prescreen,
                    prescreen_margin_thz=s.batch.prescreen_margin_thz,
                    second_opinion=s.batch.second_opinion,
                ),
            )
            for s in get_screenings(session, ids=ids)
        ]
    return sorted(jobs, key=_group_key)


def _group_key(job: Job) -> tuple[str, str, str, float, str]:
    """Jobs run together when they share protocol, potential and opinions (sortable: None as "")."""
    o = job.opinions
    return (job.protocol, job.potential, o.prescreen or "", o.margin_thz or 0.0, o.second_opinion or "")


def run_jobs(context: WorkerContext, *, jobs: Sequence[Job]) -> int:
    """Run the core once per (protocol, potential, opinions) group; each verdict is saved as it arrives.

    Returns how many verdicts this call stored (an already stored one is not stored again).
    Raises SoftTimeLimitExceeded when the task's soft time limit struck inside the core, which
    reports it as one structure's `failed` verdict: that verdict is not saved, and the caller
    marks the screenings left `failed` with TIME_LIMIT.
    """
    from workers.screening.pipeline import screen_structures
    from workers.screening.potentials import LoadedPotential, load_potential
    from workers.screening.protocols import get_protocol

    config = context.config
    saved = 0

    def load(name: str) -> LoadedPotential:
        # cached per process: a compiled model pays its warm-up once per worker process
        return load_potential(
            name,
            device=config.device,
            compile=config.compile,
            compile_cache=config.compile_cache,
            memory_budget_mib=config.memory_budget_mib,
        )

    for _, grouped_jobs in groupby(jobs, key=_group_key):
        grouped = list(grouped_jobs)
        protocol, potential, names = grouped[0].protocol, grouped[0].potential, grouped[0].opinions
        loaded = load(potential)
        opinions = Opinions(
            prescreen=load(names.prescreen) if names.prescreen else None,
            prescreen_margin_thz=names.margin_thz if names.prescreen else DEFAULT_PRESCREEN_MARGIN_THZ,
            second_opinion=load(names.second_opinion) if names.second_opinion else None,
        )
        # the API cannot know which elements a potential covers without loading it; here we can
        group = [_check_elements(job, loaded.elements) for job in grouped]
        pending = iter(group)

        def on_result(result: ScreeningResult, _pending=pending) -> None:
            # the core reports one result per record, in order: save each as it arrives so
            # batch progress moves, exactly once
            nonlocal saved
            if result.verdict == "failed" and (result.reason or "").startswith(SoftTimeLimitExceeded.__name__):
                raise SoftTimeLimitExceeded(result.reason)
            saved += save_result(context, screening_id=next(_pending).screening_id, result=result)

        screen_structures(
            [job.record for job in group],
            protocol=get_protocol(protocol),
            potential=loaded,
            progress=on_result,
            keep_force_constants=config.keep_force_constants,
            opinions=opinions,
        )
    return saved


def _check_elements(job: Job, elements: frozenset[str] | None) -> Job:
    """The job with an `unsupported_element` error when the potential does not cover it."""
    from workers.screening.ingest.read import validate_structure

    record = job.record
    if elements is None or record.structure is None:
        return job
    error = validate_structure(record.structure, max_atoms=len(record.structure), allowed_elements=elements)
    if error is None:
        return job
    failed = StructureRecord(name=record.name, source=record.source, index=record.index, error=error)
    return dataclasses.replace(job, record=failed)
