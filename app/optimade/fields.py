"""The structure fields this OPTIMADE server knows: type, description and unit of each, the SQL a
queryable one is searched by (models.screened), and how a provider field is read from a row."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from optimade.models import DataType, StructureResource, StructureResourceAttributes
from sqlalchemy import ColumnElement, String, cast

from app.schemas import ID_MAX
from models.batch import Batch
from models.candidate import Candidate
from models.generator import Generator
from models.screened import Screened, last_modified, n_elements, published_n_sites
from models.verdict import Verdict

PREFIX = "phononscreen"
ELEMENTS = "elements"  # the one list searched by HAS / LENGTH in SQL (Candidate.chemsys)
_ID = re.compile(r"[1-9][0-9]{0,9}")  # a structure's id: its candidate's, as str() writes it


def get_candidate_id(entry_id: str) -> int | None:
    """The candidate an OPTIMADE id names, or None where it can name none ("01", "x", 2**40)."""
    return int(entry_id) if _ID.fullmatch(entry_id) and int(entry_id) <= ID_MAX else None


@dataclass(frozen=True)
class Field:
    """One field. `sql`: the scalar it is compared as; `constant`: the value every structure has
    (compared in Python); neither: served but not searchable beyond IS KNOWN."""

    type: DataType
    sql: ColumnElement[Any] | None = None
    constant: Any = None
    description: str = ""
    unit: str | None = None
    read: Callable[[Screened], Any] | None = None  # a provider field's value

    @property
    def sortable(self) -> bool:
        return self.sql is not None


def _standard(name: str, type_: DataType, **kwargs: Any) -> Field:
    model = StructureResource if name in ("id", "type") else StructureResourceAttributes
    unit = "Å" if name in ("lattice_vectors", "cartesian_site_positions") else None
    return Field(type=type_, description=model.model_fields[name].description or name, unit=unit, **kwargs)


def _provider(
    type_: DataType, description: str, read: Callable[[Screened], Any], sql: Any, unit: str | None = None
) -> Field:
    return Field(type=type_, sql=sql, description=description, unit=unit, read=read)


# the standard fields served, in the order of the specification
STANDARD: dict[str, Field] = {
    "id": _standard("id", DataType.STRING, sql=cast(Candidate.id, String)),
    "type": _standard("type", DataType.STRING, constant="structures"),
    "last_modified": _standard("last_modified", DataType.TIMESTAMP, sql=last_modified()),
    "elements": _standard("elements", DataType.LIST),
    "nelements": _standard("nelements", DataType.INTEGER, sql=n_elements()),
    "elements_ratios": _standard("elements_ratios", DataType.LIST),
    "chemical_formula_descriptive": _standard(
        "chemical_formula_descriptive", DataType.STRING, sql=Candidate.reduced_formula
    ),
    "chemical_formula_reduced": _standard(
        "chemical_formula_reduced", DataType.STRING, sql=Candidate.alphabetical_formula
    ),
    "chemical_formula_anonymous": _standard(
        "chemical_formula_anonymous", DataType.STRING, sql=Candidate.anonymous_formula
    ),
    "dimension_types": _standard("dimension_types", DataType.LIST, constant=(1, 1, 1)),
    "nperiodic_dimensions": _standard("nperiodic_dimensions", DataType.INTEGER, constant=3),
    "lattice_vectors": _standard("lattice_vectors", DataType.LIST),
    "cartesian_site_positions": _standard("cartesian_site_positions", DataType.LIST),
    "nsites": _standard("nsites", DataType.INTEGER, sql=published_n_sites()),
    "species": _standard("species", DataType.LIST),
    "species_at_sites": _standard("species_at_sites", DataType.LIST),
    "structure_features": _standard("structure_features", DataType.LIST, constant=()),
}

_S, _I, _F, _B = DataType.STRING, DataType.INTEGER, DataType.FLOAT, DataType.BOOLEAN
PROVIDER: dict[str, Field] = {
    f"_{PREFIX}_{name}": field
    for name, field in {
        "verdict": _provider(
            _S,
            "The screening's verdict: stable, unstable, relax_failed or failed.",
            lambda s: s.verdict.verdict,
            Verdict.verdict,
        ),
        "reason": _provider(
            _S,
            "Why: optical / acoustic / elastic for an unstable verdict, the error of a failed one.",
            lambda s: s.verdict.reason,
            Verdict.reason,
        ),
        "min_frequency_thz": _provider(
            _F,
            "Lowest phonon frequency found; imaginary frequencies are negative.",
            lambda s: s.verdict.min_frequency_thz,
            Verdict.min_frequency_thz,
            unit="THz",
        ),
        "stable_phononbench": _provider(
            _B,
            "PhononBench's criterion: every band-path frequency >= -1e-3 THz.",
            lambda s: s.verdict.stable_phononbench,
            Verdict.stable_phononbench,
        ),
        "stable_phononbench_v3": _provider(
            _B,
            "PhononBench v3's headline criterion: every band-path frequency >= -0.1 THz (null: cannot be decided).",
            lambda s: s.verdict.stable_phononbench_v3,
            Verdict.stable_phononbench_v3,
        ),
        "space_group": _provider(
            _I,
            "International space group number after relaxation (null: not relaxed).",
            lambda s: s.verdict.spacegroup_number,
            Verdict.spacegroup_number,
        ),
        "energy_per_atom_ev": _provider(
            _F,
            "Potential energy of the relaxed structure per atom.",
            lambda s: s.verdict.energy_per_atom_ev,
            Verdict.energy_per_atom_ev,
            unit="eV/atom",
        ),
        "potential": _provider(
            _S,
            "The interatomic potential that gave the verdict, e.g. sevennet-0.",
            lambda s: s.verdict.potential_name,
            Verdict.potential_name,
        ),
        "relaxed": _provider(
            _B,
            "true: the structure served is the relaxed one; false: as submitted (the relaxation did not converge).",
            lambda s: s.verdict.relaxed_cif_path is not None,
            Verdict.relaxed_cif_path.is_not(None),
        ),
        "generator": _provider(
            _S,
            "The generative model the structure came from, as its batch named it.",
            lambda s: s.generator.name if s.generator else None,
            Generator.name,
        ),
        "generator_version": _provider(
            _S,
            "The generator's version or checkpoint, as its batch gave it.",
            lambda s: s.batch.generator_version,
            Batch.generator_version,
        ),
        "batch_id": _provider(
            _I,
            "The phononscreen batch the structure was submitted in.",
            lambda s: s.batch.id,
            Candidate.batch_id,
        ),
    }.items()
}

FIELDS: dict[str, Field] = STANDARD | PROVIDER
# standard structure fields this server does not serve: their value is unknown (null) everywhere
UNSERVED = frozenset(StructureResourceAttributes.model_fields) - frozenset(STANDARD)
TOP_LEVEL = frozenset({"id", "type", "links", "relationships"})  # fields outside `attributes`
