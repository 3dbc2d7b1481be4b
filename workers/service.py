"""Glue between the queue and the core: load screenings by id, run the core, save verdicts."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from models.artifacts import ArtifactStore
from models.crud import claim_screenings, fail_screenings, get_screenings, save_verdict
from models.queries import get_batch_ids
from models.session import create_db_engine, create_session_factory
from workers.screening.types import ScreeningResult, StructureRecord


@dataclass(frozen=True, kw_only=True)
class WorkerConfig:
    """What a worker process needs, read from Settings once at start-up."""

    database_url: str
    artifacts_dir: Path
    device: str = "auto"
    compile: str = "auto"  # torch.compile of the potential: auto/on/off (workers.screening.potentials.compiled)
    keep_force_constants: bool = False  # phonopy_params yaml (xz) of each screening in the store


@dataclass(frozen=True)
class Job:
    screening_id: int
    batch_id: int
    protocol: str
    potential: str
    record: StructureRecord


class WorkerContext:
    """Per-process database engine and artifact store (a forked child builds its own engine)."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.store = ArtifactStore(config.artifacts_dir)
        self._engine: Engine | None = None
        self._sessions = None
        self._pid = -1

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One session per unit of work, committed here at the edge, rolled back on error."""
        if self._engine is None or self._pid != os.getpid():
            self._engine, self._pid = create_db_engine(self.config.database_url), os.getpid()
            self._sessions = create_session_factory(self._engine)
        with self._sessions() as session, session.begin():
            yield session


_CONTEXT: WorkerContext | None = None


def configure_worker(config: WorkerConfig) -> WorkerContext:
    global _CONTEXT
    _CONTEXT = WorkerContext(config)
    return _CONTEXT


def get_worker_context() -> WorkerContext:
    if _CONTEXT is None:
        raise RuntimeError("worker not configured: start it with `phononscreen worker`")
    return _CONTEXT


def claim(context: WorkerContext, *, ids: Sequence[int], worker: str, task_id: str) -> list[int]:
    """Claim the screenings this task may run (committed before any work starts)."""
    with context.session() as session:
        return claim_screenings(session, ids=ids, worker=worker, task_id=task_id)


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
            )
            for s in get_screenings(session, ids=ids)
        ]
    return sorted(jobs, key=lambda job: (job.protocol, job.potential))


def run_jobs(context: WorkerContext, *, jobs: Sequence[Job]) -> int:
    """Run the core once per (protocol, potential) group; each verdict is saved as it arrives.

    Returns how many verdicts this call stored (an already stored one is not stored again).
    """
    from workers.screening.pipeline import screen_structures
    from workers.screening.potentials.registry import load_potential
    from workers.screening.protocols import get_protocol

    saved = 0
    for (protocol, potential), group in groupby(jobs, key=lambda job: (job.protocol, job.potential)):
        group = list(group)
        # cached per process: a compiled model pays its warm-up once per worker process
        loaded = load_potential(potential, device=context.config.device, compile=context.config.compile)
        # the API cannot know which elements a potential covers without loading it; here we can
        group = [_check_elements(job, loaded.elements) for job in group]
        pending = iter(group)

        def on_result(result: ScreeningResult, _pending=pending) -> None:
            # the core reports one result per record, in order: save each as it arrives so
            # batch progress moves, exactly once
            nonlocal saved
            saved += save_result(context, job=next(_pending), result=result)

        screen_structures(
            [job.record for job in group], protocol=get_protocol(protocol), potential=loaded, progress=on_result,
            keep_force_constants=context.config.keep_force_constants,
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


def save_result(context: WorkerContext, *, job: Job, result: ScreeningResult) -> bool:
    """Write the artifacts, then the verdict row (so a row never points at a missing file)."""
    values = get_verdict_values(result, store=context.store, screening_id=job.screening_id)
    with context.session() as session:
        return save_verdict(session, screening_id=job.screening_id, values=values)


def get_verdict_values(result: ScreeningResult, *, store: ArtifactStore, screening_id: int) -> dict[str, Any]:
    """Row values for `result`; bulky arrays are written to the artifact store first."""
    folder = f"screenings/{screening_id}"
    relaxed_cif_path = bands_path = None
    if result.relaxed_cif:
        relaxed_cif_path = store.write_text(f"{folder}/relaxed.cif", result.relaxed_cif)
    if result.bands is not None:
        bands_path = store.write_text(f"{folder}/bands.json", json.dumps(to_jsonable(dataclasses.asdict(result.bands))))
    artifacts = {}
    if result.phonopy_params_xz is not None:
        artifacts["force_constants"] = store.write_bytes(f"{folder}/phonopy_params.yaml.xz", result.phonopy_params_xz)
    mode, relax, info = result.worst_mode, result.relax, result.provenance.potential
    return {
        "verdict": result.verdict,
        "reason": (result.reason or None) and result.reason[:512],
        "stable_phononbench": bool(result.stable_phononbench),
        "min_frequency_thz": _finite(result.min_frequency_thz),
        "worst_qpoint": [float(x) for x in mode.qpoint] if mode else None,
        "worst_branch": int(mode.branch) if mode else None,
        "worst_q_norm_inv_angstrom": _finite(mode.q_norm_inv_angstrom) if mode else None,
        "formula": result.formula,
        "spacegroup_after": relax.spacegroup_after if relax else None,
        "spacegroup_number": result.spacegroup_number,
        "crystal_system": result.crystal_system,
        "energy_per_atom_ev": _finite(relax.energy_per_atom_ev) if relax else None,
        "potential_name": info.name,
        "potential_warning": (info.warning or None) and info.warning[:1024],
        "settings_hash": result.provenance.settings_hash,
        "result": to_jsonable({**result.as_dict(bulky=False), "artifacts": artifacts}),
        "relaxed_cif_path": relaxed_cif_path,
        "bands_path": bands_path,
    }


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def to_jsonable(value: Any) -> Any:
    """Plain JSON types; NaN/inf become None (Postgres JSON rejects them), numpy becomes Python."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return to_jsonable(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)
