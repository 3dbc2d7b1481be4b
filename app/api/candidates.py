"""Routes for candidates: search with filters, one candidate's detail, and its artifacts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Response

from app.api.deps import CANDIDATE_NOT_FOUND, CandidateDep, SessionDep, StoreDep
from app.exports import candidate_bundle, candidates_csv, csv_response
from app.schemas import (
    ID_MAX,
    CandidateDetail,
    CandidateOut,
    CandidatePage,
    ElementSymbols,
    SafeText,
    ScreeningOut,
    SecondOpinionOut,
    VerdictOut,
    WorstMode,
)
from models.candidate import Candidate
from models.queries import SORTS, CandidateFilters, get_candidate_screening, list_candidates
from models.screening import Screening
from models.verdict import Verdict
from workers.screening import opinions
from workers.screening.types import VERDICTS

router = APIRouter(prefix="/candidates", tags=["candidates"])
csv_router = APIRouter()  # /candidates.csv: beside the prefix, not under it
SORT_PATTERN = "^-?(" + "|".join(SORTS) + ")$"


@dataclass(frozen=True)
class CandidateQuery:
    filters: CandidateFilters
    sort: str
    page: int
    per_page: int


def get_candidate_query(
    batch_id: Annotated[int | None, Query(ge=1, le=ID_MAX)] = None,
    source_id: Annotated[int | None, Query(ge=1, le=ID_MAX, description="The batches of this watched source")] = None,
    generator: Annotated[SafeText | None, Query()] = None,
    verdict: Annotated[Literal[VERDICTS] | None, Query()] = None,  # type: ignore[valid-type]
    reason: Annotated[
        SafeText | None, Query(description="The verdict's reason: optical, acoustic, elastic, or a failure's text")
    ] = None,
    formula: Annotated[SafeText | None, Query(description="Reduced formula, e.g. NaCl")] = None,
    elements: Annotated[
        ElementSymbols | None, Query(description="Comma-separated element symbols; all must be present, e.g. Si,O")
    ] = None,
    space_group: Annotated[int | None, Query(ge=1, le=230, description="After relaxation when known")] = None,
    crystal_system: Annotated[SafeText | None, Query()] = None,
    min_frequency_gte: Annotated[float | None, Query(allow_inf_nan=False, description="THz")] = None,
    min_frequency_lte: Annotated[float | None, Query(allow_inf_nan=False, description="THz")] = None,
    stable_phononbench: Annotated[
        bool | None, Query(description="PhononBench's criterion: every band-path frequency >= -1e-3 THz")
    ] = None,
    stable_phononbench_v3: Annotated[
        bool | None, Query(description="PhononBench v3's headline criterion: every band-path frequency >= -0.1 THz")
    ] = None,
    stable_by_both: Annotated[
        bool | None, Query(description="true: stable by the main potential and by the second opinion")
    ] = None,
    agreement: Annotated[
        bool | None, Query(description="false: the second opinion disagrees (the list to send to DFT)")
    ] = None,
    settled_by_prescreen: Annotated[bool | None, Query(description="Verdicts the prescreen gave alone")] = None,
    sort: Annotated[str, Query(pattern=SORT_PATTERN, description="Field, '-' prefix for descending")] = "id",
    page: Annotated[int, Query(ge=1, le=ID_MAX)] = 1,
    per_page: Annotated[int, Query(ge=1, le=500)] = 50,
) -> CandidateQuery:
    """The candidate search's query parameters: one definition for the JSON page and its CSV."""
    filters = CandidateFilters(
        batch_id=batch_id,
        source_id=source_id,
        generator=generator,
        verdict=verdict,
        reason=reason,
        formula=formula,
        elements=[e.strip() for e in elements.split(",") if e.strip()] if elements else (),
        space_group=space_group,
        crystal_system=crystal_system,
        min_frequency_gte=min_frequency_gte,
        min_frequency_lte=min_frequency_lte,
        stable_phononbench=stable_phononbench,
        stable_phononbench_v3=stable_phononbench_v3,
        stable_by_both=stable_by_both,
        agreement=agreement,
        settled_by_prescreen=settled_by_prescreen,
    )
    return CandidateQuery(filters=filters, sort=sort, page=page, per_page=per_page)


CandidateQueryDep = Annotated[CandidateQuery, Depends(get_candidate_query)]


@router.get("", response_model=CandidatePage)
def read_candidates(session: SessionDep, query: CandidateQueryDep) -> CandidatePage:
    """Candidates with their latest verdict, filtered, sorted and paginated."""
    return _candidate_page(session, query)


@csv_router.get(
    "/candidates.csv", response_class=Response, responses={200: {"content": {"text/csv": {}}}}, tags=["candidates"]
)
def read_candidates_csv(session: SessionDep, query: CandidateQueryDep) -> Response:
    """The same page as GET /candidates (same parameters), as CSV: one row per candidate shown."""
    page = _candidate_page(session, query)
    return csv_response(candidates_csv(page.items), filename=f"candidates-page{query.page}.csv")


def _candidate_page(session, query: CandidateQuery) -> CandidatePage:
    offset = (query.page - 1) * query.per_page
    rows, total = list_candidates(session, filters=query.filters, sort=query.sort, offset=offset, limit=query.per_page)
    return CandidatePage(
        items=[get_candidate_out(c, s, v) for c, s, v in rows], total=total, page=query.page, per_page=query.per_page
    )


@router.get("/{candidate_id}", response_model=CandidateDetail, responses=CANDIDATE_NOT_FOUND)
def read_candidate(candidate: CandidateDep, session: SessionDep) -> CandidateDetail:
    """One candidate: structure as parsed, latest screening, verdict with worst mode, provenance."""
    screening, verdict = get_candidate_screening(session, candidate_id=candidate.id)
    base = get_candidate_out(candidate, screening, verdict)
    prefix = f"/api/v1/candidates/{candidate.id}"
    links = {"input_cif": f"{prefix}/input.cif", "bundle_zip": f"{prefix}/bundle.zip"}
    if verdict is not None and verdict.relaxed_cif_path:
        links["relaxed_cif"] = f"{prefix}/relaxed.cif"
    if verdict is not None and verdict.bands_path:
        links |= {
            "band_structure_json": f"{prefix}/band_structure.json",
            "band_structure_png": f"{prefix}/band_structure.png",
        }
    if verdict is not None and _force_constants_path(verdict):
        links["phonopy_params"] = f"{prefix}/phonopy_params.yaml.xz"
    return CandidateDetail(
        **base.model_dump(),
        structure=candidate.structure,
        cif=candidate.cif,
        screening=ScreeningOut.model_validate(screening, from_attributes=True) if screening else None,
        result=verdict.result if verdict else None,
        links=links,
    )


@router.get(
    "/{candidate_id}/input.cif",
    response_class=Response,
    responses={200: {"content": {"chemical/x-cif": {}}}, **CANDIDATE_NOT_FOUND},
)
def read_input_cif(candidate: CandidateDep) -> Response:
    """The structure as submitted (after parsing), as CIF."""
    return Response(candidate.cif, media_type="chemical/x-cif")


@router.get(
    "/{candidate_id}/phonopy_params.yaml.xz",
    response_class=Response,
    responses={
        200: {"content": {"application/x-xz": {}}},
        404: {"description": "No such candidate, or its force constants were not kept"},
    },
)
def read_force_constants(candidate: CandidateDep, session: SessionDep, store: StoreDep) -> Response:
    """Structure, displacements, forces and force constants (phonopy_params.yaml, xz); kept when the
    workers run with PHONONSCREEN_KEEP_FORCE_CONSTANTS. Open with `phonopy.load`."""
    _, verdict = get_candidate_screening(session, candidate_id=candidate.id)
    path = _force_constants_path(verdict) if verdict is not None else None
    if path is None:
        raise HTTPException(404, f"candidate {candidate.id} has no force constants (they are kept only on request)")
    return Response(store.read_bytes(path), media_type="application/x-xz")


@router.get(
    "/{candidate_id}/bundle.zip",
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}}, **CANDIDATE_NOT_FOUND},
)
def read_bundle(candidate: CandidateDep, session: SessionDep, store: StoreDep) -> Response:
    """Everything about one candidate in one zip: verdict.json (this API's detail), input.cif, and
    what exists of relaxed.cif, band_structure.json, band_structure.png and phonopy_params.yaml.xz."""
    detail = read_candidate(candidate, session)
    files: dict[str, bytes] = {"input.cif": candidate.cif.encode()}
    _, verdict = get_candidate_screening(session, candidate_id=candidate.id)
    if verdict is not None:
        if verdict.relaxed_cif_path:
            files["relaxed.cif"] = store.read_bytes(verdict.relaxed_cif_path)
        if verdict.bands_path:
            files["band_structure.json"] = store.read_bytes(verdict.bands_path)
            files["band_structure.png"] = _band_plot(candidate, verdict, store)
        if path := _force_constants_path(verdict):
            files["phonopy_params.yaml.xz"] = store.read_bytes(path)
    data = candidate_bundle(detail.model_dump_json(indent=1), files)
    name = f"candidate-{candidate.id}-{candidate.reduced_formula}.zip"
    return Response(
        data, media_type="application/zip", headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


def _force_constants_path(verdict: Verdict) -> str | None:
    return ((verdict.result or {}).get("files") or {}).get("force_constants")


@router.get(
    "/{candidate_id}/relaxed.cif",
    response_class=Response,
    responses={200: {"content": {"chemical/x-cif": {}}}, 404: {"description": "No such candidate, or not relaxed yet"}},
)
def read_relaxed_cif(candidate: CandidateDep, session: SessionDep, store: StoreDep) -> Response:
    """The relaxed structure as CIF."""
    verdict = _verdict_with(session, candidate, "relaxed_cif_path")
    return Response(store.read_bytes(verdict.relaxed_cif_path), media_type="chemical/x-cif")


@router.get(
    "/{candidate_id}/band_structure.json",
    response_class=Response,
    responses={
        200: {"content": {"application/json": {}}},
        404: {"description": "No such candidate, or no phonons yet"},
    },
)
def read_band_structure(candidate: CandidateDep, session: SessionDep, store: StoreDep) -> Response:
    """Band structure and DOS: distances in 1/Å, frequencies in THz (the core's BandData)."""
    verdict = _verdict_with(session, candidate, "bands_path")
    return Response(store.read_bytes(verdict.bands_path), media_type="application/json")


@router.get(
    "/{candidate_id}/band_structure.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, 404: {"description": "No such candidate, or no phonons yet"}},
)
def read_band_structure_png(candidate: CandidateDep, session: SessionDep, store: StoreDep) -> Response:
    """Band structure + DOS plot: the one the worker stored with the verdict (the same file the CLI
    writes), or drawn now from the stored data for a verdict saved without it."""
    verdict = _verdict_with(session, candidate, "bands_path")
    return Response(_band_plot(candidate, verdict, store), media_type="image/png")


def _band_plot(candidate: Candidate, verdict: Verdict, store) -> bytes:
    """The PNG stored with a verdict that has bands, or one drawn now from its stored band data."""
    stored = ((verdict.result or {}).get("files") or {}).get("plot")
    if stored and store.exists(stored):
        return store.read_bytes(stored)
    from workers.screening.report.plots import plot_band_structure  # matplotlib only when asked
    from workers.screening.types import BandData

    assert verdict.bands_path is not None
    bands = BandData(**json.loads(store.read_bytes(verdict.bands_path)))
    return plot_band_structure(bands, title=f"{candidate.reduced_formula} — {verdict.verdict}")


def _verdict_with(session, candidate: Candidate, attribute: str) -> Verdict:
    _, verdict = get_candidate_screening(session, candidate_id=candidate.id)
    if verdict is None or not getattr(verdict, attribute):
        raise HTTPException(404, f"candidate {candidate.id} has no such artifact (yet)")
    return verdict


def get_candidate_out(candidate: Candidate, screening: Screening | None, verdict: Verdict | None) -> CandidateOut:
    return CandidateOut(
        id=candidate.id,
        batch_id=candidate.batch_id,
        name=candidate.name,
        generator=candidate.generator.name if candidate.generator else None,
        source_file=candidate.source_file,
        source_index=candidate.source_index,
        reduced_formula=candidate.reduced_formula,
        elements=candidate.elements,
        n_sites=candidate.n_sites,
        spacegroup_number=candidate.spacegroup_number,
        spacegroup_symbol=candidate.spacegroup_symbol,
        crystal_system=candidate.crystal_system,
        fingerprint=candidate.fingerprint,
        # the queries hand a duplicate the screening it links to, which belongs to another candidate
        duplicate_of=screening.candidate_id if screening and screening.candidate_id != candidate.id else None,
        status=screening.status if screening else None,
        verdict=get_verdict_out(verdict) if verdict else None,
    )


def get_verdict_out(verdict: Verdict) -> VerdictOut:
    return VerdictOut(
        verdict=verdict.verdict,
        reason=verdict.reason,
        stable_phononbench=verdict.stable_phononbench,
        stable_phononbench_v3=verdict.stable_phononbench_v3,
        min_frequency_thz=verdict.min_frequency_thz,
        worst_mode=WorstMode(
            frequency_thz=verdict.min_frequency_thz,
            qpoint=verdict.worst_qpoint,
            branch=verdict.worst_branch,
            q_norm_inv_angstrom=verdict.worst_q_norm_inv_angstrom,
        ),
        spacegroup_after=verdict.spacegroup_after,
        spacegroup_number=verdict.spacegroup_number,
        crystal_system=verdict.crystal_system,
        energy_per_atom_ev=verdict.energy_per_atom_ev,
        formula=verdict.formula,
        potential=verdict.potential_name,
        potential_warning=verdict.potential_warning,
        settings_hash=verdict.settings_hash,
        settled_by_prescreen=verdict.settled_by_prescreen,
        second_opinion=SecondOpinionOut(
            potential=verdict.second_potential,
            verdict=verdict.second_verdict,
            min_frequency_thz=verdict.second_min_frequency_thz,
        )
        if verdict.second_potential and verdict.second_verdict
        else None,
        agreement=verdict.agreement,
        stable_by_both=(
            opinions.stable_by_both(verdict.verdict, verdict.second_verdict) if verdict.second_verdict else None
        ),
    )
