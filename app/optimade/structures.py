"""Screened candidates as OPTIMADE structure resources: the relaxed structure where one was
written, else the structure as submitted; formulas as searched (models.formulas); provider fields."""

from __future__ import annotations

import logging
from datetime import UTC
from typing import TYPE_CHECKING, Any

from optimade.exceptions import NotFound
from optimade.models import (
    StructureResource,
    StructureResourceAttributes,
    StructureResponseMany,
    StructureResponseOne,
    ToplevelLinks,
)
from sqlalchemy.orm import Session

from app.optimade.fields import FIELDS, PROVIDER, STANDARD, TOP_LEVEL, UNSERVED, get_candidate_id
from app.optimade.filters import translate_filter
from app.optimade.params import EntryQuery
from app.optimade.responses import get_meta
from models.artifacts import ArtifactStore
from models.screened import Screened, count_screened, get_screened, list_screened

if TYPE_CHECKING:
    from fastapi import Request
    from pymatgen.core import Structure

logger = logging.getLogger(__name__)


def get_structures_page(
    request: Request, session: Session, *, store: ArtifactStore, query: EntryQuery
) -> StructureResponseMany:
    """/structures: one page of the structures matching the filter, sorted, with a link to the next."""
    where = translate_filter(query.filter)
    order = [(FIELDS[name].sql, descending) for name, descending in query.sort]
    page = list_screened(session, where=where, order_by=order, offset=query.page_offset, limit=query.page_limit)
    returned = count_screened(session, where=where)
    available = returned if where is None else count_screened(session)
    more = query.page_offset + len(page) < returned
    next_url = str(request.url.include_query_params(page_offset=query.page_offset + len(page))) if more else None
    return StructureResponseMany(
        data=[get_structure(s, store=store, fields=query.response_fields) for s in page],
        meta=get_meta(request, more_data_available=more, data_returned=returned, data_available=available),
        links=ToplevelLinks(next=next_url),
    )


def get_structure_by_id(
    request: Request, session: Session, *, entry_id: str, store: ArtifactStore, query: EntryQuery
) -> StructureResponseOne:
    """/structures/{id}: one structure; 404 for an id that names no screened candidate."""
    candidate_id = get_candidate_id(entry_id)
    found = get_screened(session, candidate_id=candidate_id) if candidate_id is not None else None
    if found is None:
        raise NotFound(detail=f"no structure with id {entry_id[:40]!r}")
    data = get_structure(found, store=store, fields=query.response_fields)
    return StructureResponseOne(data=data, meta=get_meta(request, data_returned=1))


def get_structure(screened: Screened, *, store: ArtifactStore, fields: tuple[str, ...] | None) -> dict[str, Any]:
    """The resource of one screened candidate (validated by the package's model) as JSON, with every
    field served or only `fields` (a standard field not served is null)."""
    from optimade.adapters.structures.pymatgen import from_pymatgen  # its adapters package loads on first use

    candidate = screened.candidate
    computed = from_pymatgen(get_published_structure(screened, store=store)).model_dump(exclude_unset=True)
    if computed["nsites"] != screened.n_sites:  # the stored record and the relaxed CIF disagree
        logger.warning(
            "structure %s: %s sites in its CIF, %s searched", candidate.id, computed["nsites"], screened.n_sites
        )
    moment = screened.last_modified
    computed |= {
        "last_modified": moment if moment.tzinfo else moment.replace(tzinfo=UTC),  # SQLite keeps UTC, naive
        # the formulas as searched: the candidate's columns
        "chemical_formula_descriptive": candidate.reduced_formula,
        "chemical_formula_reduced": candidate.alphabetical_formula,
        "chemical_formula_anonymous": candidate.anonymous_formula,
    }
    attributes = {name: computed[name] for name in STANDARD if name not in TOP_LEVEL}
    attributes |= {name: field.read(screened) for name, field in PROVIDER.items() if field.read is not None}
    resource = StructureResource(
        id=str(candidate.id), type="structures", attributes=StructureResourceAttributes(**attributes)
    )
    document = resource.model_dump(mode="json", exclude_unset=True)
    if fields is not None:
        served = document["attributes"]
        document["attributes"] = {n: served.get(n) for n in fields if n in served or n in UNSERVED}
    return document


def get_published_structure(screened: Screened, *, store: ArtifactStore) -> Structure:
    """The structure a screened candidate is published with: relaxed where a CIF of it was written
    (and is still in the store), else as submitted."""
    from pymatgen.core import Structure

    relaxed = store.read_if_present(screened.verdict.relaxed_cif_path)
    if relaxed is not None:
        return Structure.from_str(relaxed.decode(), fmt="cif")
    return Structure.from_dict(screened.candidate.structure)
