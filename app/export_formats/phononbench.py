"""The `phononbench` export: PhononBench's own output files, so results drop into its scripts.

PhononBench (Han et al., arXiv 2512.21227; github.com/xqh19970407/PhononBench) writes, per model:
  relaxed/.../Lable.txt                 (sic) `structure_name<TAB>Stable|unStable`, sorted by name: every
                                        structure it processed; a failed one is `unStable`
  relaxed/.../NAME_relaxed.cif          the relaxed structure, when relaxation succeeded
  phonon_summary.csv                    export_phonon_summary.py: structure_name, min_frequency (THz,
                                        band path), is_stable (min_frequency >= -1e-3), yaml_path,
                                        cif_path, npz_path; a row per structure with force constants
and its summarize_relaxation_and_stability.py finds Lable.txt and *_relaxed.cif by walking a
model's relaxed/ folder. Here, one folder per generator holds the same files (flat: without the
gpuN_partM level that only splits PhononBench's work across GPUs; its readers walk the tree).
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO

from app.export_formats.manifest import MANIFEST_NAME, Manifest
from app.export_formats.records import ExportRecord, get_file_stem

LABEL_FILE = "Lable.txt"  # PhononBench's spelling: its scripts look for exactly this name
STABLE, UNSTABLE = "Stable", "unStable"  # its label values (its reader compares them lower-cased)
RELAXED_FOLDER = "relaxed"
RELAXED_SUFFIX = "_relaxed.cif"
SUMMARY_FILE = "phonon_summary.csv"
SUMMARY_COLUMNS = ("structure_name", "min_frequency", "is_stable", "yaml_path", "cif_path", "npz_path")
NO_GENERATOR = "no_generator"
README_NAME = "README.txt"
_NOT_IN_FOLDER = re.compile(r"[^A-Za-z0-9._-]+")
README = """\
PhononBench layout (github.com/xqh19970407/PhononBench), one folder per generator:
  GENERATOR/relaxed/Lable.txt          structure_name<TAB>Stable|unStable, every screened candidate
  GENERATOR/relaxed/NAME_relaxed.cif   the relaxed structure, when there is one
  GENERATOR/phonon_summary.csv         as export_phonon_summary.py writes it, one row per candidate
                                       whose phonons ran (verdict stable or unstable)
Labels and is_stable are PhononBench's criterion: every band-path frequency >= -1e-3 THz
(stable_phononbench), not phononscreen's verdict; min_frequency is the band-path minimum in THz.
yaml_path and npz_path are empty: force constants and band arrays are not part of this export
(GET /api/v1/candidates/{id}/phonopy_params.yaml.xz when they were kept).
Candidates not screened yet are in no Lable.txt. manifest.csv: every candidate, its id, name,
verdict, both PhononBench flags (-1e-3 and v3's -0.1 THz), and its file here.
"""


@dataclass
class _Generator:
    folder: str
    labels: list[tuple[str, str]] = field(default_factory=list)  # (structure_name, label)
    summary: list[tuple[str, float | None, bool, str | None]] = field(default_factory=list)


def get_label(record: ExportRecord) -> str | None:
    """The record's Lable.txt value, None when it has no verdict (PhononBench has not processed it)."""
    verdict = record.candidate.verdict
    if verdict is None:
        return None
    return STABLE if verdict.stable_phononbench else UNSTABLE


def write_phononbench(records: Iterable[ExportRecord], out: IO[bytes]) -> None:
    """Write the zip to `out`: GENERATOR/relaxed/Lable.txt, GENERATOR/relaxed/ID-NAME_relaxed.cif,
    GENERATOR/phonon_summary.csv, manifest.csv and README.txt. Labels and summary rows (a few dozen
    bytes per candidate) are kept until the end, to be written sorted by name as PhononBench does."""
    generators: dict[str | None, _Generator] = {}
    with Manifest() as manifest, zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for record in records:
            name = record.candidate.generator
            if name not in generators:
                taken = {MANIFEST_NAME, README_NAME, *(g.folder for g in generators.values())}
                generators[name] = _Generator(folder=_folder(name, taken=taken))
            group = generators[name]
            structure_name = get_file_stem(record)
            cif_path = None
            if record.relaxed_cif is not None:
                cif_path = f"{RELAXED_FOLDER}/{structure_name}{RELAXED_SUFFIX}"
                archive.writestr(f"{group.folder}/{cif_path}", record.relaxed_cif)
            manifest.add(record, file=f"{group.folder}/{cif_path}" if cif_path else None)
            label = get_label(record)
            if label is not None:
                group.labels.append((structure_name, label))
            verdict = record.candidate.verdict
            if verdict is not None and verdict.verdict in ("stable", "unstable"):  # its phonons ran
                row = (structure_name, record.worst_path_frequency_thz, verdict.stable_phononbench, cif_path)
                group.summary.append(row)
        for group in generators.values():
            archive.writestr(f"{group.folder}/{RELAXED_FOLDER}/{LABEL_FILE}", format_labels(group.labels))
            archive.writestr(f"{group.folder}/{SUMMARY_FILE}", format_summary(group.summary))
        manifest.write_into(archive)
        archive.writestr(README_NAME, README)


def format_labels(labels: Iterable[tuple[str, str]]) -> str:
    """Lable.txt: `name<TAB>label` lines sorted by name."""
    return "".join(f"{name}\t{label}\n" for name, label in sorted(labels))


def format_summary(rows: Iterable[tuple[str, float | None, bool, str | None]]) -> str:
    """phonon_summary.csv sorted by structure_name, cells as pandas' to_csv writes them (True/False,
    floats in full, None empty); cif_path is relative to the CSV's folder."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(SUMMARY_COLUMNS)
    for name, min_frequency, is_stable, cif_path in sorted(rows, key=lambda row: row[0]):
        frequency = "" if min_frequency is None else repr(float(min_frequency))
        writer.writerow([name, frequency, str(bool(is_stable)), "", cif_path or "", ""])
    return out.getvalue()


def _folder(generator: str | None, *, taken: set[str]) -> str:
    """A folder name for a generator: its name with unsafe characters replaced, made unique."""
    base = _NOT_IN_FOLDER.sub("_", generator).strip("._-") if generator else ""
    base = base or NO_GENERATOR
    folder, n = base, 1
    while folder in taken:
        n += 1
        folder = f"{base}-{n}"
    return folder
