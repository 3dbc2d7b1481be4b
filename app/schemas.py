"""Request and response bodies of the HTTP API (pydantic), units in the field names."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, StringConstraints, field_validator, model_validator

from models.batch import Batch
from models.candidate import Candidate
from models.generator import Generator

# the lengths of the columns these values land in, so a request that passes validation fits its row
GENERATOR_NAME_MAX: int = Generator.__table__.c.name.type.length
GENERATOR_VERSION_MAX: int = Batch.__table__.c.generator_version.type.length
FILE_NAME_MAX: int = Candidate.__table__.c.source_file.type.length
STRUCTURE_NAME_MAX: int = Candidate.__table__.c.name.type.length
POTENTIAL_NAME_MAX: int = Batch.__table__.c.potential.type.length
ID_MAX = 2**31 - 1  # ids are INTEGER columns


def reject_nul(value: str) -> str:
    """Postgres text cannot hold NUL, so no text with one may reach a query."""
    if "\x00" in value:
        raise ValueError("must not contain NUL (\\x00) characters")
    return value


def check_element_symbols(value: str) -> str:
    """A comma-separated list of element symbols (case matters: Si, not si)."""
    from pymatgen.core.periodic_table import Element  # pymatgen only when the filter is used

    bad = [s for s in (s.strip() for s in value.split(",")) if s and not Element.is_valid_symbol(s)]
    if bad:
        raise ValueError(f"not element symbols: {', '.join(repr(s[:10]) for s in bad[:5])}")
    return value


def get_upload_name(name: str) -> str:
    """The file name a JSON structure is stored under: its name, with `.cif` when it has no extension."""
    return name if "." in name else f"{name}.cif"


SafeText = Annotated[str, AfterValidator(reject_nul)]
GeneratorName = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=GENERATOR_NAME_MAX), AfterValidator(reject_nul)
]
GeneratorVersion = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=GENERATOR_VERSION_MAX), AfterValidator(reject_nul)
]
FileName = Annotated[str, StringConstraints(max_length=FILE_NAME_MAX), AfterValidator(reject_nul)]
ElementSymbols = Annotated[str, AfterValidator(check_element_symbols)]


class StructureIn(BaseModel):
    name: SafeText = Field(min_length=1, description="Name of the structure within the batch (its file name).")
    cif: str = Field(description="CIF text (or any text format the core reads, named by `name`).")

    @field_validator("name")
    @classmethod
    def _fits_as_file_name(cls, value: str) -> str:
        if len(get_upload_name(value)) > FILE_NAME_MAX:
            raise ValueError(f"longer than {FILE_NAME_MAX} characters (with `.cif` added when it has no extension)")
        return value


PotentialName = Annotated[str, StringConstraints(max_length=POTENTIAL_NAME_MAX), AfterValidator(reject_nul)]
PRESCREEN_DOC = (
    "A cheap potential that screens first: what it finds unstable below -prescreen_margin_thz is settled "
    "there (settled_by_prescreen), everything else is screened by `potential`."
)
MARGIN_DOC = "THz below 0 that a prescreen instability must reach to settle (server default if omitted)."
SECOND_DOC = (
    "Another potential that screens the main potential's relaxed structure after its verdict; both verdicts "
    "are stored, with `agreement`."
)


class BatchSettingsIn(BaseModel):
    """The settings of a batch, shared by the JSON body and the multipart form."""

    generator: GeneratorName | None = None
    generator_version: GeneratorVersion | None = None
    protocol: str | None = Field(None, description="default | phononbench (server default if omitted)")
    potential: str | None = Field(None, description="auto | sevennet-0 | ... (server default if omitted)")
    prescreen: PotentialName | None = Field(None, description=PRESCREEN_DOC)
    prescreen_margin_thz: float | None = Field(None, ge=0, allow_inf_nan=False, description=MARGIN_DOC)
    second_opinion: PotentialName | None = Field(None, description=SECOND_DOC)


class BatchJSONIn(BatchSettingsIn):
    """JSON alternative to the multipart upload."""

    structures: list[StructureIn] = Field(min_length=1)


class UploadedFile(BaseModel):
    filename: FileName


class UploadForm(BatchSettingsIn):
    """The fields of the multipart upload, validated by the rules of the JSON body."""

    files: list[UploadedFile]


class StructureOutcome(BaseModel):
    name: str
    source: str
    index: int
    accepted: bool
    candidate_id: int | None = None
    # candidate whose screening (same protocol and potential) this one shares: nothing is recomputed
    duplicate_of: int | None = None
    code: str | None = None  # why it was rejected
    reason: str | None = None


class BatchCreated(BaseModel):
    id: int
    status: Literal["queued", "done"] = "queued"  # done at once when every structure is a finished duplicate
    accepted: int
    rejected: int
    duplicates: int = Field(0, description="Accepted structures linked to an existing screening (no compute).")
    structures: list[StructureOutcome]


class BatchCounts(BaseModel):
    queued: int
    running: int
    done: int
    failed: int
    stable: int
    unstable: int
    relax_failed: int
    verdict_failed: int
    settled_by_prescreen: int = Field(0, description="Verdicts given by the prescreen alone.")
    agree: int = Field(0, description="Verdicts whose second opinion agrees.")
    disagree: int = Field(0, description="Verdicts whose second opinion disagrees: the list to send to DFT.")
    stable_by_both: int = Field(0, description="Stable by the main potential and by the second opinion.")


class BatchOut(BaseModel):
    id: int
    status: Literal["queued", "running", "done"]
    source: str
    generator: str | None
    generator_version: str | None = None
    protocol: str
    potential: str
    prescreen: str | None = Field(None, description=PRESCREEN_DOC)
    prescreen_margin_thz: float | None = None
    second_opinion: str | None = Field(None, description=SECOND_DOC)
    created_at: datetime
    finished_at: datetime | None
    submitted: int
    accepted: int
    rejected: int
    counts: BatchCounts
    progress: float = Field(description="Fraction of screenings that have ended (0..1).")
    seconds_per_structure: float | None = Field(
        None,
        description="Measured pace: wall seconds since the batch's first screening started, per screening of "
        "its own that has ended (all workers together); none until one has ended.",
    )
    eta_s: float | None = Field(
        None, description="Seconds left at the measured pace: screenings not ended x seconds_per_structure."
    )
    rejected_structures: list[dict[str, Any]]


class WorstMode(BaseModel):
    frequency_thz: float | None
    qpoint: list[float] | None
    branch: int | None
    q_norm_inv_angstrom: float | None


class SecondOpinionOut(BaseModel):
    potential: str
    verdict: str
    min_frequency_thz: float | None


class VerdictOut(BaseModel):
    verdict: str
    reason: str | None = Field(
        description="unstable: optical, acoustic, elastic or unconfirmed_incommensurate (only interpolated "
        "q-points were unstable and the supercell cap kept the larger-supercell check from running); "
        "relax_failed / failed: why."
    )
    stable_phononbench: bool = Field(description="PhononBench's scripts: every band-path frequency >= -1e-3 THz.")
    stable_phononbench_v3: bool | None = Field(
        description="PhononBench v3's headline: every band-path frequency >= -0.1 THz. None only on a verdict "
        "stored before this field existed whose stored frequencies could not decide it."
    )
    min_frequency_thz: float | None
    worst_mode: WorstMode
    spacegroup_after: str | None
    spacegroup_number: int | None
    crystal_system: str | None
    energy_per_atom_ev: float | None
    formula: str
    potential: str = Field(description="The potential that gave this verdict (the prescreen's when it settled it).")
    potential_warning: str | None
    settings_hash: str
    settled_by_prescreen: bool = Field(
        False, description="Given by the batch's prescreen alone; the main potential never ran."
    )
    second_opinion: SecondOpinionOut | None = None
    agreement: bool | None = Field(
        None, description="The second opinion's verdict is this one's; None without one or when either failed."
    )
    stable_by_both: bool | None = Field(None, description="Stable by both potentials; None without a second opinion.")


class CandidateOut(BaseModel):
    id: int
    batch_id: int
    name: str
    generator: str | None
    source_file: str
    source_index: int
    reduced_formula: str
    elements: list[str]
    n_sites: int
    spacegroup_number: int | None
    spacegroup_symbol: str | None
    crystal_system: str | None
    fingerprint: str
    duplicate_of: int | None = Field(None, description="Candidate whose screening and verdict this one shares.")
    status: str | None = Field(description="Status of its latest screening (for a duplicate: of the one it shares).")
    verdict: VerdictOut | None


class CandidatePage(BaseModel):
    items: list[CandidateOut]
    total: int
    page: int
    per_page: int


class ScreeningOut(BaseModel):
    id: int
    protocol: str
    potential: str
    status: str
    attempts: int
    worker: str | None
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None


class CandidateDetail(CandidateOut):
    structure: dict[str, Any] = Field(description="As parsed: pymatgen Structure.as_dict().")
    cif: str
    screening: ScreeningOut | None
    result: dict[str, Any] | None = Field(description="Everything the core returned (no bulky arrays).")
    links: dict[str, str]


class ReportRow(BaseModel):
    group: str
    generated: int | None = Field(
        None, description="Structures in the files, refused ones included (grouped by generator only)."
    )
    submitted: int = Field(description="Valid: structures accepted, a candidate each.")
    unique: int = Field(0, description="Valid and not a duplicate of a structure screened before or earlier.")
    screened: int
    relaxed: int
    stable: int
    stable_phononbench: int
    stable_phononbench_v3: int
    stable_rate: float | None = Field(description="stable / submitted (stable/all, as PhononBench reports).")
    stable_rate_relaxed: float | None = Field(description="stable / relaxed (relaxation converged).")
    stable_phononbench_rate: float | None = Field(
        description="stable by PhononBench's scripts' criterion (band path >= -1e-3 THz) / submitted."
    )
    stable_phononbench_v3_rate: float | None = Field(
        description="stable by PhononBench v3's headline criterion (band path >= -0.1 THz) / submitted."
    )
    second_opinions: int = Field(0, description="Verdicts with a second opinion.")
    stable_by_both: int = Field(0, description="Stable by the main potential and by the second opinion.")


class StabilityReport(BaseModel):
    group_by: str
    rows: list[ReportRow]
    total: ReportRow


class Problem(BaseModel):
    detail: Any


SOURCE_PATTERN_MAX = 256
SourcePattern = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=SOURCE_PATTERN_MAX),
    AfterValidator(reject_nul),
]


class SourceIn(BaseModel):
    """A folder of generator output to watch: scanned on its schedule, each new or changed file
    screened as a batch of its own."""

    path: Annotated[str, StringConstraints(min_length=1, max_length=1024), AfterValidator(reject_nul)] = Field(
        description="Absolute path of the folder, as the service's workers see it."
    )
    patterns: list[SourcePattern] = Field(
        default_factory=list,
        max_length=32,
        description="Globs relative to `path` (e.g. `**/*.cif`, `eval_gen*.pt`); empty: every file in a known "
        "structure format, in subfolders too, hidden files aside.",
    )
    generator: GeneratorName | None = None
    generator_version: GeneratorVersion | None = None
    protocol: str | None = Field(None, description="default | phononbench (server default if omitted)")
    potential: str | None = Field(None, description="auto | sevennet-0 | ... (server default if omitted)")
    interval_s: float | None = Field(
        None, ge=5, le=31 * 86400, allow_inf_nan=False, description="Seconds between scans (or give `cron`)."
    )
    cron: Annotated[str, StringConstraints(strip_whitespace=True, max_length=128)] | None = Field(
        None, description="Five fields, UTC: minute hour day-of-month month day-of-week, e.g. `*/10 * * * *`."
    )

    @field_validator("patterns")
    @classmethod
    def _relative_patterns(cls, value: list[str]) -> list[str]:
        bad = [p for p in value if p.startswith(("/", "\\")) or ".." in p.replace("\\", "/").split("/")]
        if bad:
            raise ValueError(f"patterns are relative to the folder, without '..': {bad[:3]}")
        return value

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        from workers.schedule import parse_cron

        if value is not None:
            parse_cron(value)  # ValueError names the problem
        return value

    @model_validator(mode="after")
    def _one_schedule(self) -> SourceIn:
        if self.interval_s is not None and self.cron is not None:
            raise ValueError("give interval_s or cron, not both")
        return self


class SourceOut(BaseModel):
    id: int
    path: str
    patterns: list[str]
    generator: str | None
    generator_version: str | None
    protocol: str
    potential: str
    interval_s: float | None
    cron: str | None
    paused: bool
    created_at: datetime
    last_scan_at: datetime | None
    last_error: str | None = Field(description="Why the last scan could not list the folder; null when it could.")
    files: dict[str, int] = Field(description="Files seen, by state: waiting, ingested, same_content, unreadable.")
    batches: int = Field(description="Batches this source made.")


class SourceFileOut(BaseModel):
    path: str
    size: int
    state: str = Field(description="waiting (read once size and mtime hold still), ingested, same_content, unreadable")
    sha256: str | None
    batch_id: int | None
    message: str | None
    changed_at: datetime | None


class ScanSent(BaseModel):
    source_id: int
    message: str
