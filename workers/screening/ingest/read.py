"""Read user structure files (any supported format, archives included) into validated StructureRecords."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import IO, Any

from workers.screening.ingest import formats as fmt
from workers.screening.ingest.validate import DEFAULT_MAX_ATOMS, validate_structure
from workers.screening.types import IngestError, StructureRecord

__all__ = ["ReadBudget", "read_bytes", "read_files", "read_structures", "sniff_format", "validate_structure"]

DEFAULT_MAX_BYTES = 200_000_000  # decompressed bytes per source, archives and gzip included
DEFAULT_MAX_STRUCTURES = 100_000

_TEXT_FORMATS = {
    "cif": fmt.parse_cif,
    "poscar": fmt.parse_poscar,
    "extxyz": fmt.parse_extxyz,
    "json": fmt.parse_json,
    "csv": fmt.parse_csv,
}
_SUFFIXES = {
    ".cif": "cif", ".mcif": "cif", ".vasp": "poscar", ".poscar": "poscar", ".extxyz": "extxyz",
    ".xyz": "extxyz", ".json": "json", ".csv": "csv", ".pt": "pt", ".pth": "pt", ".zip": "zip",
    ".tar": "tar", ".tgz": "tar", ".tbz2": "tar", ".txz": "tar", ".gz": "gz", ".bz2": "bz2", ".xz": "xz",
}  # fmt: skip
_COMPRESSED = ("gz", "bz2", "xz")
MAX_COMPRESSION_LAYERS = 3  # x.cif.gz inside a .tar.xz is 2
# Files that ride along in archives and directories of structures; skipped without a record.
_IGNORED_SUFFIXES = {
    ".txt", ".md", ".rst", ".pdf", ".png", ".jpg", ".jpeg", ".svg", ".gif", ".log", ".yaml",
    ".yml", ".toml", ".ini", ".py", ".sh", ".ipynb", ".html", ".out", ".err",
}  # fmt: skip


@dataclass
class ReadBudget:
    """Limits shared by everything read from one source, or from every file of one request when
    passed to each `read_bytes` call (hostile uploads nest, repeat and multiply).

    `exceeded` says which limit stopped the reading, if any: what follows it was not read.
    """

    max_atoms: int = DEFAULT_MAX_ATOMS
    max_bytes: int = DEFAULT_MAX_BYTES  # decompressed bytes, archives, gzip and .pt included
    max_structures: int = DEFAULT_MAX_STRUCTURES  # structures and archive members
    bytes_used: int = 0
    members_seen: int = 0
    structures_seen: int = 0
    exceeded: str | None = None

    def refuse(self, message: str) -> IngestError:
        """Stop reading: every later read of this budget finds no room."""
        self.exceeded = self.exceeded or message
        self.bytes_used = self.max_bytes
        return IngestError("too_large", message)


def sniff_format(filename: str, head: bytes) -> str | None:
    """Format of a file from its name, else from its first bytes; None when unknown."""
    lower = PurePosixPath(filename.lower()).name
    if lower.endswith((".tar.gz", ".tar.bz2", ".tar.xz")):
        return "tar"
    if lower.startswith(("poscar", "contcar")):
        return "poscar"
    suffix = PurePosixPath(lower).suffix
    if suffix in _SUFFIXES:
        return _SUFFIXES[suffix]
    if head.startswith(b"\x1f\x8b"):
        return "gz"
    if head.startswith(b"BZh"):
        return "bz2"
    if head.startswith(b"\xfd7zXZ"):
        return "xz"
    if head.startswith(b"PK\x03\x04"):
        return "pt" if b"data.pkl" in head[:512] else "zip"
    if len(head) > 262 and head[257:262] == b"ustar":
        return "tar"
    text = head[:4096].decode("utf-8", errors="replace")
    stripped = text.lstrip()
    first = stripped.split("\n", 2)
    if stripped.startswith(("{", "[")):
        return "json"
    if fmt.CIF_BLOCK.search(text):
        return "cif"
    if len(first) > 1 and first[0].strip().isdigit() and "lattice=" in first[1].lower():
        return "extxyz"
    if first and "cif" in [c.strip().lower() for c in first[0].split(",")]:
        return "csv"
    return None


def _read_capped(stream: IO[bytes] | io.BufferedIOBase, budget: ReadBudget) -> bytes | None:
    """Read a decompressing stream up to what the budget still allows; None if it holds more."""
    room = budget.max_bytes - budget.bytes_used
    data = stream.read(room + 1)
    if len(data) > room:
        return None
    budget.bytes_used += len(data)
    return data


def _open_compressed(kind: str, data: bytes) -> io.BufferedIOBase:
    raw = io.BytesIO(data)
    if kind == "gz":
        return gzip.GzipFile(fileobj=raw)
    if kind == "bz2":
        return bz2.BZ2File(raw)
    return lzma.LZMAFile(raw)


def _too_large(budget: ReadBudget) -> IngestError:
    return budget.refuse(f"more than {budget.max_bytes} bytes once decompressed; the rest was not read")


def _unsafe_member(member: str) -> bool:
    parts = PurePosixPath(member.replace("\\", "/")).parts
    return member.startswith(("/", "\\")) or ".." in parts or (len(member) > 1 and member[1] == ":")


def _skipped_member(member: str) -> bool:
    parts = PurePosixPath(member.replace("\\", "/")).parts
    return not parts or "__MACOSX" in parts or any(p.startswith(".") and p not in (".", "..") for p in parts)


def known_structure_file(relative: str) -> bool:
    """A file a watched folder's default patterns take: a format known by its name, not hidden
    (editors' and downloaders' temporary files are), nor inside a hidden folder."""
    return not _skipped_member(relative) and sniff_format(relative, b"") is not None


def _iter_zip(data: bytes, name: str, budget: ReadBudget) -> Iterator[fmt.Item]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        yield name, fmt.parse_error(f"unreadable zip: {exc}")
        return
    for info in infos:
        if info.is_dir() or _skipped_member(info.filename):
            continue
        yield from _iter_member(info.filename, name, budget, partial(archive.open, info), info.file_size)
        if budget.bytes_used >= budget.max_bytes:
            return


def _iter_tar(data: bytes, name: str, budget: ReadBudget) -> Iterator[fmt.Item]:
    try:
        # Iterate lazily: getmembers() would decompress a whole bomb just to list it.
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
            for member in archive:
                if not member.isfile() or _skipped_member(member.name):
                    continue  # links, devices, directories: nothing a structure lives in
                yield from _iter_member(member.name, name, budget, partial(archive.extractfile, member), member.size)
                if budget.bytes_used >= budget.max_bytes:
                    return
    except (tarfile.TarError, OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
        yield name, fmt.parse_error(f"unreadable tar archive: {exc}")


def _iter_member(
    member: str, name: str, budget: ReadBudget, opener: Callable[[], Any], declared_size: int
) -> Iterator[fmt.Item]:
    """One archive member: refuse unsafe or oversized ones, parse the rest (no nested archives).

    `opener` opens the member's binary stream (zip's `open`, tar's `extractfile` of a regular file).
    """
    label = f"{name}:{member}"
    budget.members_seen += 1
    if budget.members_seen > budget.max_structures:
        yield label, budget.refuse(f"more than {budget.max_structures} archive members; the rest was not read")
        return
    if _unsafe_member(member):
        yield label, IngestError("unsupported_format", "archive member with an absolute or '..' path refused")
        return
    kind = sniff_format(member, b"")
    if kind is None and PurePosixPath(member.lower()).suffix in _IGNORED_SUFFIXES:
        return
    if kind in ("zip", "tar"):
        yield label, IngestError("unsupported_format", "archives inside archives are not read")
        return
    if declared_size > budget.max_bytes - budget.bytes_used:
        yield label, _too_large(budget)
        return
    try:
        with opener() as stream:
            content = _read_capped(stream, budget)
    except (zipfile.BadZipFile, tarfile.TarError, OSError, RuntimeError, EOFError, ValueError, zlib.error) as exc:
        yield label, fmt.parse_error(f"unreadable archive member: {exc}")
        return
    if content is None:
        yield label, _too_large(budget)
        return
    yield from _iter_data(content, member, label, budget, in_archive=True)


def _iter_data(
    data: bytes, filename: str, name: str, budget: ReadBudget, *, in_archive: bool = False, layers: int = 0
) -> Iterator[fmt.Item]:
    """Structures of one file's bytes; `filename` picks the format, `name` prefixes the names.
    `layers`: compressions already taken off (a file compressed 2,000 times exhausted the stack)."""
    kind = sniff_format(filename, data[:4096])
    if kind in _COMPRESSED and layers >= MAX_COMPRESSION_LAYERS:
        yield name, IngestError("unsupported_format", f"compressed more than {MAX_COMPRESSION_LAYERS} times over")
    elif kind in _COMPRESSED:
        with _open_compressed(kind, data) as stream:
            try:
                inner = _read_capped(stream, budget)
            except (OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
                yield name, fmt.parse_error(f"cannot decompress: {exc}")
                return
        if inner is None:
            yield name, _too_large(budget)
            return
        stem = filename[: filename.rfind(".")] if "." in filename else filename
        yield from _iter_data(inner, stem, name, budget, in_archive=in_archive, layers=layers + 1)
    elif kind in ("zip", "tar") and not in_archive:
        yield from (_iter_zip if kind == "zip" else _iter_tar)(data, name, budget)
    elif kind == "pt":
        checked = _inflate_pt(data, budget)
        if isinstance(checked, IngestError):
            yield name, checked
        else:
            yield from fmt.parse_pt(checked, name=name, max_atoms=budget.max_atoms)
    elif kind in _TEXT_FORMATS:
        text = data.decode("utf-8", errors="replace")
        yield from _TEXT_FORMATS[kind](text, name=name, max_atoms=budget.max_atoms)
    else:
        yield (
            name,
            IngestError("unsupported_format", f"cannot tell the format of {PurePosixPath(filename).name!r}"),
        )


def _inflate_pt(data: bytes, budget: ReadBudget) -> bytes | IngestError:
    """A torch zip archive whose records all fit the budget, uncompressed: `torch.load` inflates
    deflated records without a limit (a 1 MB file grew the process by 600 MB), so they are inflated
    here under the cap and handed over stored. Legacy (pre-1.6, not zip) files are refused: their
    storages are allocated at the size the pickle declares."""
    if not data.startswith(b"PK\x03\x04"):
        return IngestError(
            "unsupported_format", "legacy (pre-1.6) torch file: not read; save it again with a recent torch.save"
        )
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
        if all(info.compress_type == zipfile.ZIP_STORED for info in infos):
            return data  # its records are its bytes: nothing grows on loading
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as stored:
            for info in infos:
                if info.file_size > budget.max_bytes - budget.bytes_used:
                    return _too_large(budget)
                with archive.open(info) as stream:
                    content = _read_capped(stream, budget)
                if content is None:
                    return _too_large(budget)
                stored.writestr(info.filename, content)
        return out.getvalue()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, RuntimeError, zlib.error) as exc:
        return fmt.parse_error(f"unreadable torch archive: {exc}")


def _collect(
    items: Iterator[fmt.Item],
    *,
    source: str,
    name: str,
    budget: ReadBudget,
    allowed_elements: frozenset[str] | None,
) -> list[StructureRecord]:
    """Validate parsed items into records with unique names, stopping at the structure cap."""
    records: list[StructureRecord] = []
    seen: set[str] = set()
    for item_name, item in items:
        index = len(records)
        if budget.structures_seen >= budget.max_structures:
            error = budget.refuse(f"more than {budget.max_structures} structures; the rest were not read")
            records.append(StructureRecord(name=f"{name}#{index}", source=source, index=index, error=error))
            break
        budget.structures_seen += 1
        if item_name in seen:
            base, k = item_name, index
            while (item_name := f"{base}#{k}") in seen:  # an earlier record may carry name#index already
                k += 1
        seen.add(item_name)
        if isinstance(item, IngestError):
            records.append(StructureRecord(name=item_name, source=source, index=index, error=item))
            continue
        invalid = validate_structure(item, max_atoms=budget.max_atoms, allowed_elements=allowed_elements)
        structure = None if invalid else item
        records.append(StructureRecord(name=item_name, source=source, index=index, structure=structure, error=invalid))
    if not records:
        error = IngestError("empty", "no structures found")
        records.append(StructureRecord(name=name, source=source, index=0, error=error))
    return records


def read_bytes(
    data: bytes,
    filename: str,
    *,
    max_atoms: int = DEFAULT_MAX_ATOMS,
    allowed_elements: frozenset[str] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_structures: int = DEFAULT_MAX_STRUCTURES,
    budget: ReadBudget | None = None,
) -> list[StructureRecord]:
    """Structures in an uploaded file's bytes (format from `filename`, else content); one record
    per structure, per-structure problems as `record.error`, never raised.

    `budget`, when given, replaces the three limits and is shared with other calls (one request).
    """
    name = PurePosixPath(filename.replace("\\", "/")).name or "upload"
    if budget is None:
        budget = ReadBudget(max_atoms=max_atoms, max_bytes=max_bytes, max_structures=max_structures)
    room = budget.max_bytes - budget.bytes_used
    if len(data) > room:
        items: Iterator[fmt.Item] = iter([(name, budget.refuse(f"{len(data)} bytes, more than the {room} left"))])
    else:
        budget.bytes_used += len(data)  # the file itself counts, then whatever it inflates to
        items = _iter_data(data, name, name, budget)
    return _collect(items, source=filename, name=name, budget=budget, allowed_elements=allowed_elements)


def read_files(
    files: list[tuple[str, bytes]], *, budget: ReadBudget, allowed_elements: frozenset[str] | None = None
) -> list[list[StructureRecord]]:
    """The records of each (file name, bytes), all read under one budget; when `budget.exceeded`
    is set afterwards, the files from the one that hit it on were not (fully) read."""
    out: list[list[StructureRecord]] = []
    for filename, data in files:
        if budget.exceeded:
            break
        out.append(read_bytes(data, filename, budget=budget, allowed_elements=allowed_elements))
    return out


def read_structures(
    path: str | Path,
    *,
    max_atoms: int = DEFAULT_MAX_ATOMS,
    allowed_elements: frozenset[str] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_structures: int = DEFAULT_MAX_STRUCTURES,
) -> list[StructureRecord]:
    """Structures in a file or a directory of files (recursively, known formats only, named by
    relative path). Raises FileNotFoundError for a missing path, nothing for bad content."""
    path = Path(path)
    budget = ReadBudget(max_atoms=max_atoms, max_bytes=max_bytes, max_structures=max_structures)
    if path.is_dir():
        items = _iter_directory(path, budget)
        return _collect(items, source=str(path), name=path.name, budget=budget, allowed_elements=allowed_elements)
    size = path.stat().st_size
    if size > max_bytes:
        items = iter([(path.name, budget.refuse(f"{size} bytes, more than {max_bytes}"))])
    else:
        data = path.read_bytes()
        budget.bytes_used += len(data)  # as read_bytes counts it
        items = _iter_data(data, path.name, path.name, budget)
    return _collect(items, source=str(path), name=path.name, budget=budget, allowed_elements=allowed_elements)


def _iter_directory(root: Path, budget: ReadBudget) -> Iterator[fmt.Item]:
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = file.relative_to(root).as_posix()
        if _skipped_member(relative):
            continue
        if sniff_format(relative, b"") is None and file.suffix.lower() in _IGNORED_SUFFIXES:
            continue
        size = file.stat().st_size
        if size > budget.max_bytes - budget.bytes_used:
            yield relative, _too_large(budget)
            return
        budget.bytes_used += size
        yield from _iter_data(file.read_bytes(), relative, relative, budget)
