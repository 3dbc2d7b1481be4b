"""manifest.csv of the archive exports: one row per candidate, its file in the archive and its
flat fields, spooled to a temporary file while the archive is written (memory stays bounded)."""

from __future__ import annotations

import csv
import tempfile
import zipfile
from types import TracebackType
from typing import Any

from app.export_formats.records import FLAT_FIELDS, ExportRecord, get_flat_fields

MANIFEST_NAME = "manifest.csv"
MANIFEST_COLUMNS: tuple[str, ...] = ("file", *FLAT_FIELDS)
SPOOL_CHARS = 4 * 2**20  # rows beyond this go to a temporary file on disk
COPY_CHARS = 2**16


def format_csv_value(value: Any) -> str:
    """A cell of a machine-read CSV: empty for None, true/false, floats in full (repr)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


class Manifest:
    """Rows added one at a time, written into a zip at the end (`write_into`)."""

    def __init__(self) -> None:
        self._file = tempfile.SpooledTemporaryFile(max_size=SPOOL_CHARS, mode="w+", encoding="utf-8", newline="")
        self._writer = csv.writer(self._file, lineterminator="\n")
        self._writer.writerow(MANIFEST_COLUMNS)

    def add(self, record: ExportRecord, *, file: str | None) -> None:
        """The record's row; `file` is its path in the archive, None when it has none there."""
        fields = get_flat_fields(record)
        self._writer.writerow([file or "", *(format_csv_value(fields[name]) for name in FLAT_FIELDS)])

    def write_into(self, archive: zipfile.ZipFile, name: str = MANIFEST_NAME) -> None:
        self._file.seek(0)
        with archive.open(name, "w") as member:
            while chunk := self._file.read(COPY_CHARS):
                member.write(chunk.encode("utf-8"))

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
