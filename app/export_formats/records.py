"""One candidate as every export format sees it, and the rules the formats share: which structure
is exported, the file stem it goes under, and its fields as JSON or as flat scalars."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from app.schemas import CandidateOut

if TYPE_CHECKING:
    from pymatgen.core import Structure

StructureSource = Literal["relaxed", "input"]
# PhononBench names a structure by its file name up to the first dot, so a stem keeps no dot
_NOT_IN_STEM = re.compile(r"[^A-Za-z0-9_-]+")
STEM_MAX = 60  # characters of the name kept in a stem


@dataclass(frozen=True, kw_only=True)
class ExportRecord:
    """One candidate with its latest verdict, in the API's own serialization, and its structures."""

    candidate: CandidateOut
    generator_version: str | None
    input_structure: dict[str, Any]  # as parsed at upload: pymatgen Structure.as_dict()
    input_cif: str  # the same, as CIF
    relaxed_cif: str | None  # the verdict's relaxed structure (its artifact); None when it never relaxed
    worst_path_frequency_thz: float | None = None  # lowest frequency on the band path (PhononBench's), THz

    @property
    def structure_source(self) -> StructureSource:
        """The structure a format exports: the relaxed one when there is one, else the input."""
        return "relaxed" if self.relaxed_cif is not None else "input"


def get_structure(record: ExportRecord) -> Structure:
    """The exported structure (see `ExportRecord.structure_source`) as a pymatgen Structure."""
    from pymatgen.core import Structure

    if record.relaxed_cif is not None:
        return Structure.from_str(record.relaxed_cif, fmt="cif")
    return Structure.from_dict(record.input_structure)


def get_file_stem(record: ExportRecord) -> str:
    """The stem of the record's files in an archive: candidate id and the name's last file name
    without its extension, e.g. `17-gen_1` for `gen.zip:tmp/gen_1.cif`; unique by the id."""
    last = re.split(r"[:/\\]", record.candidate.name)[-1]
    base = last.rsplit(".", 1)[0] if "." in last.strip(".") else last
    slug = _NOT_IN_STEM.sub("_", base).strip("_-")[:STEM_MAX]
    return f"{record.candidate.id}-{slug or 'structure'}"


def get_record_json(record: ExportRecord) -> dict[str, Any]:
    """The record as JSON: the API's CandidateOut (every verdict field) with the batch's generator
    version, the band-path minimum and which structure goes with it."""
    return {
        **record.candidate.model_dump(mode="json"),
        "generator_version": record.generator_version,
        "worst_path_frequency_thz": record.worst_path_frequency_thz,
        "structure_source": record.structure_source,
    }


FLAT_FIELDS: tuple[str, ...] = (
    "candidate_id", "name", "batch_id", "generator", "generator_version", "formula", "n_sites", "status",
    "duplicate_of", "verdict", "reason", "min_frequency_thz", "worst_path_frequency_thz", "stable_phononbench",
    "stable_phononbench_v3", "stable_by_both", "agreement", "second_opinion_verdict", "settled_by_prescreen",
    "energy_per_atom_ev", "space_group", "space_group_number", "crystal_system", "potential", "settings_hash",
    "structure_source",
)  # fmt: skip
_VERDICT_FIELDS = (
    "verdict", "reason", "min_frequency_thz", "stable_phononbench", "stable_phononbench_v3", "stable_by_both",
    "agreement", "settled_by_prescreen", "energy_per_atom_ev", "potential", "settings_hash",
)  # fmt: skip


def get_flat_fields(record: ExportRecord) -> dict[str, Any]:
    """FLAT_FIELDS of the record, scalars or None: what a manifest row or an extxyz frame carries.
    Space group and crystal system are those of the exported structure (relaxed, else input)."""
    c, v = record.candidate, record.candidate.verdict
    if v is not None and record.structure_source == "relaxed":
        # the verdict writes "Fd-3m (227)"; the symbol alone, as the input's
        space_group = (v.spacegroup_after or "").split(" (")[0] or None
        space_group_number, crystal_system = v.spacegroup_number, v.crystal_system
    else:
        space_group, space_group_number, crystal_system = c.spacegroup_symbol, c.spacegroup_number, c.crystal_system
    fields: dict[str, Any] = {
        "candidate_id": c.id,
        "name": c.name,
        "batch_id": c.batch_id,
        "generator": c.generator,
        "generator_version": record.generator_version,
        "formula": c.reduced_formula,
        "n_sites": c.n_sites,
        "status": c.status,
        "duplicate_of": c.duplicate_of,
        **{name: getattr(v, name) if v is not None else None for name in _VERDICT_FIELDS},
        "worst_path_frequency_thz": record.worst_path_frequency_thz,
        "second_opinion_verdict": v.second_opinion.verdict if v is not None and v.second_opinion else None,
        "space_group": space_group,
        "space_group_number": space_group_number,
        "crystal_system": crystal_system,
        "structure_source": record.structure_source,
    }
    return {name: fields[name] for name in FLAT_FIELDS}
