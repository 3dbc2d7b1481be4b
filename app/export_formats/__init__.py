"""Bulk exports of candidates with their verdicts: the formats by name, each a writer that takes
records one at a time and writes to a binary file, with no web in sight (the route is
app/api/candidate_exports.py, the CLI app/commands/export.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import IO, Literal, get_args

from app.export_formats.cif_zip import write_cif_zip
from app.export_formats.phononbench import write_phononbench
from app.export_formats.records import ExportRecord
from app.export_formats.structures import write_extxyz, write_jsonl, write_pymatgen_json

ExportFormatName = Literal["cif-zip", "extxyz", "jsonl", "pymatgen-json", "phononbench"]


@dataclass(frozen=True)
class ExportFormat:
    name: str
    label: str  # what the results page offers
    media_type: str
    filename: str  # Content-Disposition
    description: str  # what the file holds, for the OpenAPI document
    write: Callable[[Iterable[ExportRecord], IO[bytes]], None]


EXPORT_FORMATS: dict[str, ExportFormat] = {
    f.name: f
    for f in (
        ExportFormat(
            "cif-zip",
            "CIF files (zip)",
            "application/zip",
            "candidates-cif.zip",
            "`relaxed/ID-NAME.cif`, the verdict's relaxed structure; a candidate that never relaxed (not "
            "screened yet, relax_failed) has its input CIF in `unrelaxed_input/` instead; `manifest.csv`: a row "
            "per candidate with its file, verdict fields and `structure_source`.",
            write_cif_zip,
        ),
        ExportFormat(
            "extxyz",
            "extended XYZ (ase)",
            "chemical/x-xyz",
            "candidates.extxyz",
            "one extended-XYZ frame per candidate (read with `ase.io.read(path, index=':')`); its info holds "
            "candidate_id, name, batch_id, generator, generator_version, verdict, min_frequency_thz, "
            "stable_phononbench, stable_phononbench_v3, energy_per_atom_ev, space_group, structure_source and "
            "the other manifest fields (a field with no value is left out).",
            write_extxyz,
        ),
        ExportFormat(
            "jsonl",
            "JSON lines",
            "application/jsonl",
            "candidates.jsonl",
            "one JSON object per line: the candidate as GET /candidates lists it (every verdict field), with "
            "generator_version, worst_path_frequency_thz, structure_source and `structure` (pymatgen "
            "Structure.as_dict()).",
            write_jsonl,
        ),
        ExportFormat(
            "pymatgen-json",
            "pymatgen JSON",
            "application/json",
            "candidates-pymatgen.json",
            "a JSON list of pymatgen Structure.as_dict() whose `properties` hold the jsonl object (less the "
            "structure): `monty.serialization.loadfn` returns Structures.",
            write_pymatgen_json,
        ),
        ExportFormat(
            "phononbench",
            "PhononBench layout (zip)",
            "application/zip",
            "candidates-phononbench.zip",
            "PhononBench's own files, one folder per generator: `relaxed/Lable.txt` (its spelling; "
            "`name<TAB>Stable|unStable` by its -1e-3 THz band-path criterion), `relaxed/NAME_relaxed.cif` and "
            "`phonon_summary.csv` (structure_name, min_frequency, is_stable, yaml_path, cif_path, npz_path); "
            "`manifest.csv` and `README.txt` beside them.",
            write_phononbench,
        ),
    )
}
assert tuple(EXPORT_FORMATS) == get_args(ExportFormatName), "one list of format names"
