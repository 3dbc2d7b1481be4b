"""The `cif-zip` export: a zip of relaxed CIFs, the input CIF of a candidate that has none, and
manifest.csv."""

from __future__ import annotations

import zipfile
from collections.abc import Iterable
from typing import IO

from app.export_formats.manifest import Manifest
from app.export_formats.records import ExportRecord, get_file_stem

RELAXED_FOLDER = "relaxed"  # the verdict's relaxed structure, as the worker stored it
# candidates that never relaxed (not screened yet, relax_failed, failed before relaxing): the structure as uploaded
UNRELAXED_FOLDER = "unrelaxed_input"


def get_cif_member(record: ExportRecord) -> tuple[str, str]:
    """(path in the zip, CIF text) of one candidate."""
    stem = get_file_stem(record)
    if record.relaxed_cif is not None:
        return f"{RELAXED_FOLDER}/{stem}.cif", record.relaxed_cif
    return f"{UNRELAXED_FOLDER}/{stem}.cif", record.input_cif


def write_cif_zip(records: Iterable[ExportRecord], out: IO[bytes]) -> None:
    """Write the zip to `out`: relaxed/ID-NAME.cif, unrelaxed_input/ID-NAME.cif, manifest.csv
    (one row per candidate: its file, verdict fields and `structure_source`)."""
    with Manifest() as manifest, zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for record in records:
            path, text = get_cif_member(record)
            archive.writestr(path, text)
            manifest.add(record, file=path)
        manifest.write_into(archive)
