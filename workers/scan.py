"""Scanning a watched source: every new or changed file whose size and modification time held
still since the last scan is read once, whole, into a batch of its own; bytes the source has
ingested before (under any path) cost nothing."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.artifacts import ArtifactStore
from models.base import utc_now
from models.source import INGESTED, SAME_CONTENT, UNREADABLE, WAITING, Source, SourceContent, SourceFile
from workers.intake import Intake, NothingAccepted, register_intake, write_raw_files

logger = logging.getLogger(__name__)

Sessions = Callable[[], AbstractContextManager[Session]]  # one committed unit of work per call
DEFAULT_PATTERNS = ("**/*",)  # every file in a known structure format, hidden ones aside


@dataclass(frozen=True, kw_only=True)
class ScanLimits:
    """What one file may cost to read (the API's PHONONSCREEN_MAX_* limits of one request)."""

    max_atoms: int
    max_structures: int
    max_bytes: int


@dataclass(kw_only=True)
class ScanReport:
    source_id: int
    skipped: str | None = None  # "paused" or "deleted": nothing was looked at
    error: str | None = None  # the folder could not be listed
    files: int = 0  # matching files seen
    waiting: int = 0  # new or changed since the last scan: read once they hold still
    batches: list[int] = field(default_factory=list)  # one per file ingested
    same_content: int = 0
    unreadable: int = 0
    screening_ids: list[int] = field(default_factory=list)  # to enqueue, committed

    def counts(self) -> dict[str, int]:
        return {
            "files": self.files,
            "waiting": self.waiting,
            "batches": len(self.batches),
            "same_content": self.same_content,
            "unreadable": self.unreadable,
        }


@dataclass(frozen=True)
class _Settings:
    root: Path
    patterns: tuple[str, ...]
    generator: str | None
    generator_version: str | None
    protocol: str
    potential: str


def scan_source(
    sessions: Sessions, *, source_id: int, store: ArtifactStore, limits: ScanLimits, manual: bool = False
) -> ScanReport:
    """Scan one source (a paused one only when `manual`); each file ingested commits on its own, so
    a scan killed half-way keeps what it did, and the next one does the rest."""
    report = ScanReport(source_id=source_id)
    with sessions() as session:
        source = session.get(Source, source_id)
        if source is None:
            report.skipped = "deleted"
            return report
        if source.paused and not manual:
            report.skipped = "paused"
            return report
        settings = _Settings(
            root=Path(source.path),
            patterns=tuple(source.patterns) or DEFAULT_PATTERNS,
            generator=source.generator.name if source.generator else None,
            generator_version=source.generator_version,
            protocol=source.protocol,
            potential=source.potential,
        )
    try:
        seen = dict(list_files(settings.root, settings.patterns))
    except OSError as exc:
        report.error = f"cannot list {settings.root}: {exc.strerror or exc}"
    else:
        report.files = len(seen)
        for path in _hold_still(sessions, source_id=source_id, seen=seen, report=report):
            _ingest(
                sessions, source_id=source_id, settings=settings, path=path, store=store, limits=limits, report=report
            )
    with sessions() as session:
        source = session.get(Source, source_id)
        if source is not None:
            source.last_scan_at, source.last_error = utc_now(), report.error
    return report


def list_files(root: Path, patterns: tuple[str, ...]) -> Iterator[tuple[str, tuple[int, int]]]:
    """(path relative to `root`, (size, mtime in ns)) of the regular files the patterns match,
    sorted; the default patterns take known structure formats only. OSError when `root` is not a
    readable directory."""
    from workers.screening.ingest import known_structure_file

    if not root.is_dir():
        raise NotADirectoryError(20, "not a directory", str(root))
    real_root = root.resolve()
    found: dict[str, tuple[int, int]] = {}
    for pattern in patterns:
        for file in root.glob(pattern):
            relative = file.relative_to(root).as_posix()
            if relative in found or any(part.startswith(".") for part in Path(relative).parts):
                continue
            if patterns == DEFAULT_PATTERNS and not known_structure_file(relative):
                continue
            try:
                if not file.is_file() or not file.resolve().is_relative_to(real_root):  # no links out of the folder
                    continue
                stat = file.stat()
            except OSError:  # gone since the listing
                continue
            found[relative] = (stat.st_size, stat.st_mtime_ns)
    yield from sorted(found.items())


def _hold_still(
    sessions: Sessions, *, source_id: int, seen: dict[str, tuple[int, int]], report: ScanReport
) -> list[str]:
    """Record what this scan saw; the paths to read now: waiting ones unchanged since the last scan."""
    ready = []
    with sessions() as session:
        known = {f.path: f for f in session.scalars(select(SourceFile).where(SourceFile.source_id == source_id))}
        for path, (size, mtime_ns) in seen.items():
            row = known.get(path)
            if row is None:
                session.add(
                    SourceFile(
                        source_id=source_id,
                        path=path,
                        size=size,
                        mtime_ns=mtime_ns,
                        state=WAITING,
                        changed_at=utc_now(),
                    )
                )
                report.waiting += 1
            elif (row.size, row.mtime_ns) != (size, mtime_ns):  # new content, or still being written
                row.size, row.mtime_ns, row.state, row.changed_at = size, mtime_ns, WAITING, utc_now()
                row.sha256 = row.batch_id = row.message = None
                report.waiting += 1
            elif row.state == WAITING:
                ready.append(path)
    return ready


def _ingest(
    sessions: Sessions,
    *,
    source_id: int,
    settings: _Settings,
    path: str,
    store: ArtifactStore,
    limits: ScanLimits,
    report: ScanReport,
) -> None:
    """Read one file that held still, and store it as a batch of its own (or say why not)."""
    from workers.screening.ingest.read import ReadBudget, read_bytes

    file = settings.root / path
    try:
        before = file.stat()
        data = file.read_bytes() if before.st_size <= limits.max_bytes else None
        after = file.stat()
    except OSError as exc:
        logger.warning("watched file %s not read: %s", file, exc)
        return
    key = (after.st_size, after.st_mtime_ns)
    if (before.st_size, before.st_mtime_ns) != key:
        return  # written to while being read: the next scan sees it changed and waits again
    sha256 = hashlib.sha256(data).hexdigest() if data is not None else None
    raw_files: list[tuple[str, bytes]] = []
    try:
        with sessions() as session:
            row = session.scalar(select(SourceFile).where(SourceFile.source_id == source_id, SourceFile.path == path))
            if row is None or row.state != WAITING or (row.size, row.mtime_ns) != key:
                return  # another scan took it, or it changed since this scan listed it
            row.sha256, row.changed_at = sha256, utc_now()
            if data is None:
                row.state, row.message = UNREADABLE, f"{before.st_size} bytes, more than the {limits.max_bytes} allowed"
                report.unreadable += 1
                return
            earlier = session.scalar(
                select(SourceContent).where(SourceContent.source_id == source_id, SourceContent.sha256 == sha256)
            )
            if earlier is not None:
                row.state, row.batch_id = SAME_CONTENT, earlier.batch_id
                row.message = f"same bytes as {earlier.path}"
                report.same_content += 1
                return
            content = SourceContent(source_id=source_id, sha256=sha256, path=path, created_at=utc_now())
            session.add(content)
            session.flush()  # a racing scan's insert of the same bytes fails (or waits) here
            budget = ReadBudget(
                max_atoms=limits.max_atoms, max_bytes=limits.max_bytes, max_structures=limits.max_structures
            )
            records = read_bytes(data, path, budget=budget)
            intake = Intake(
                source="scan",
                source_id=source_id,
                generator=settings.generator,
                generator_version=settings.generator_version,
                protocol=settings.protocol,
                potential=settings.potential,
                files=[(path, data)],
                parsed=[records],
            )
            try:
                registration = register_intake(session, intake=intake)
            except NothingAccepted as exc:
                problems = sorted({o.reason or o.code or "?" for o in exc.outcomes})
                row.state, row.message = UNREADABLE, f"{exc}: {'; '.join(problems[:3])}"[:2000]
                report.unreadable += 1
                return
            content.batch_id = row.batch_id = registration.batch_id
            row.state = INGESTED
            row.message = f"{registration.accepted} structures, {registration.rejected} refused"
            raw_files = registration.raw_files
            report.batches.append(registration.batch_id)
            report.screening_ids.extend(registration.screening_ids)
    except IntegrityError:  # the same bytes were ingested by a scan that ran beside this one
        report.same_content += 1
        return
    write_raw_files(store, raw_files=raw_files)  # after the commit: a rollback leaves no file behind
