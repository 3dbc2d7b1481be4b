"""Intake: structures read from one submission become a batch, its candidates and their queued
screenings. One rule for every way in: the API's uploads (app.submissions) and the scans of
watched folders (workers.scan)."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from models.artifacts import ArtifactStore
from models.candidate import Candidate
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

SYMPREC = 0.01  # Å, as the protocols use
NAME_MAX: int = Candidate.__table__.c.name.type.length  # type: ignore[attr-defined]


@dataclass(frozen=True, kw_only=True)
class Intake:
    """What one submission brings: its files, the records read from each, and the batch's settings."""

    source: str  # "upload", "json" or "scan"
    generator: str | None
    generator_version: str | None = None
    protocol: str
    potential: str
    opinions: OpinionNames = OpinionNames()  # resolved: the margin that applies is filled in
    files: list[tuple[str, bytes]] = dataclasses.field(default_factory=list)  # (file name, raw bytes)
    parsed: list[list[StructureRecord]] = dataclasses.field(default_factory=list)  # the records of each file
    source_id: int | None = None  # the watched folder of a scan


@dataclass(kw_only=True)
class Outcome:
    """One structure's fate: accepted (with its candidate, and the earlier one it duplicates), or why not."""

    name: str
    source: str
    index: int
    accepted: bool
    code: str | None = None
    reason: str | None = None
    candidate_id: int | None = None
    duplicate_of: int | None = None


@dataclass(frozen=True, kw_only=True)
class Registration:
    """A batch whose rows are flushed: what to answer, and what to do once they are committed."""

    batch_id: int
    done: bool  # nothing to screen: every structure duplicates a finished screening
    outcomes: list[Outcome]
    screening_ids: list[int]  # to enqueue
    raw_files: list[tuple[str, bytes]]  # (artifact path, bytes): the files the rows' submitted_path names

    @property
    def accepted(self) -> int:
        return sum(o.accepted for o in self.outcomes)

    @property
    def rejected(self) -> int:
        return sum(not o.accepted for o in self.outcomes)

    @property
    def duplicates(self) -> int:
        return sum(o.duplicate_of is not None for o in self.outcomes)


class NothingAccepted(Exception):
    """Not one structure of the submission is usable; `outcomes` says why for each."""

    def __init__(self, message: str, outcomes: list[Outcome]) -> None:
        super().__init__(message)
        self.outcomes = outcomes


def register_intake(session: Session, *, intake: Intake) -> Registration:
    """Rows for the batch, its candidates and their queued screenings (flushed, not committed).

    Raises NothingAccepted when not one structure is usable. Writes nothing to the artifact store:
    the caller writes `raw_files` after the commit (`write_raw_files`), so a rollback leaves no file.
    """
    parsed = [(file_index, r) for file_index, records in enumerate(intake.parsed) for r in records]
    outcomes: list[Outcome] = []
    accepted: list[tuple[int, StructureRecord, CandidateValues]] = []
    for file_index, record in parsed:
        described, problem = _describe(record)
        outcome = Outcome(name=record.name, source=record.source, index=record.index, accepted=described is not None)
        if described is None:
            outcome.code, outcome.reason = problem
        else:
            accepted.append((file_index, record, described))
        outcomes.append(outcome)
    if not accepted:
        raise NothingAccepted(
            "no structure in the submission could be used" if parsed else "the submission holds no structure",
            outcomes,
        )
    generator = get_or_create_generator(session, name=intake.generator) if intake.generator else None
    rejected = [{"name": o.name, "code": o.code, "message": o.reason} for o in outcomes if not o.accepted]
    batch = create_batch(
        session,
        source=intake.source,
        source_id=intake.source_id,
        generator=generator,
        generator_version=intake.generator_version,
        protocol=intake.protocol,
        potential=intake.potential,
        n_submitted=len(outcomes),
        rejected=rejected,
        **dataclasses.asdict(intake.opinions),
    )
    used = {file_index for file_index, _, _ in accepted}
    raw_paths = {i: f"uploads/batch-{batch.id}/{i:03d}-{safe_name(name)}" for i, (name, _) in enumerate(intake.files)}
    raw_files = [(raw_paths[i], data) for i, (_, data) in enumerate(intake.files) if i in used]
    values = [replace(v, submitted_path=raw_paths.get(i)) for i, _, v in accepted]
    originals = find_duplicates(
        session,
        structures=[(r.structure, v) for _, r, v in accepted if r.structure is not None],
        protocol=intake.protocol,
        potential=intake.potential,
        opinions=intake.opinions,
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
    return Registration(batch_id=batch.id, done=done, outcomes=outcomes, screening_ids=to_run, raw_files=raw_files)


def write_raw_files(store: ArtifactStore, *, raw_files: list[tuple[str, bytes]]) -> None:
    """Write the files of a committed batch; one that cannot be written is logged, not raised: the
    batch is stored and its screenings need only the rows."""
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


def describe_structure(
    structure: Structure, *, name: str, source_file: str, source_index: int, submitted_path: str | None
) -> CandidateValues:
    """Row values for one accepted structure: formula, symmetry and the dedup bucket key."""
    from pymatgen.io.cif import CifWriter
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from workers.screening.dedup import fingerprint

    try:
        analyzer = SpacegroupAnalyzer(structure, symprec=SYMPREC)
        number: int | None = analyzer.get_space_group_number()
        symbol: str | None = analyzer.get_space_group_symbol()
        system: str | None = analyzer.get_crystal_system()
    except Exception:  # noqa: BLE001 - spglib gives up on some broken generator outputs; symmetry stays unknown
        number, symbol, system = None, None, None
    composition = structure.composition
    return CandidateValues(
        name=name,
        source_file=source_file,
        source_index=source_index,
        structure=structure.as_dict(),
        cif=str(CifWriter(structure)),
        reduced_formula=composition.reduced_formula,
        elements=sorted(el.symbol for el in composition.elements),
        n_sites=len(structure),
        spacegroup_number=number,
        spacegroup_symbol=symbol,
        crystal_system=system,
        # the dedup core's bucket key: candidates are compared only within (reduced_formula, fingerprint)
        fingerprint=fingerprint(structure),
        submitted_path=submitted_path,
    )


def _describe(record: StructureRecord) -> tuple[CandidateValues | None, tuple[str, str]]:
    if record.structure is None:
        error = record.error
        return None, (error.code, error.message) if error else ("empty", "no structure")
    if len(record.name) > NAME_MAX or "\x00" in record.name:  # an archive member's name, unchecked so far
        return None, ("name_too_long", f"a structure name must be at most {NAME_MAX} characters, without NUL")
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
