"""Typed inputs and results of the screening core: what goes in, what comes out, with units."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

if TYPE_CHECKING:
    from pymatgen.core import Structure

Verdict = Literal["stable", "unstable", "relax_failed", "failed"]
# every verdict, in the order tables show them (the one definition: CLI, API and reports use it)
VERDICTS: tuple[Verdict, ...] = get_args(Verdict)
# why an `unstable` verdict was given (PROTOCOL.md's rule, in this order of precedence);
# `unconfirmed_incommensurate`: unstable only at incommensurate q-points, and the supercell cap kept
# the larger-supercell check from running (physics.supercells.confirm_incommensurate)
UnstableReason = Literal["optical", "elastic", "acoustic", "unconfirmed_incommensurate"]

# Codes of per-structure input problems; each one is a 4xx at the API and a row in results.csv.
IngestErrorCode = Literal[
    "parse_error",
    "unsupported_format",
    "partial_occupancy",
    "overlapping_atoms",
    "too_many_atoms",
    "unsupported_element",
    "degenerate_cell",
    "empty",
    "too_large",
]


@dataclass(frozen=True)
class IngestError:
    """Why one structure of a source could not be accepted."""

    code: IngestErrorCode
    message: str


@dataclass(frozen=True)
class StructureRecord:
    """One structure read from a source, or the error that stopped it.

    `name` is stable within its source (`file.zip:gen_12.cif`, `eval_gen.pt#37`); `source` is the
    path of the file given by the user and `index` the structure's position within it (0-based).
    Exactly one of `structure` and `error` is set.
    """

    name: str
    source: str
    index: int
    structure: Structure | None = None
    error: IngestError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.structure is not None


class PotentialRefused(RuntimeError):
    """A potential declined to evaluate a cell it cannot handle here (e.g. too large for the memory
    it may use): the screening fails with this reason; the relaxation does not call it divergence."""


@dataclass(frozen=True)
class PotentialInfo:
    """Provenance of the interatomic potential that produced a verdict."""

    name: str  # registry name, e.g. "sevennet-0"
    version: str  # package version that evaluated it, e.g. "sevenn 0.13.0"
    checkpoint: str  # checkpoint name or path
    checkpoint_sha256: str
    device: str  # "cpu" or "cuda"
    requested: str = ""  # what the user asked for, e.g. "auto"
    warning: str | None = None  # e.g. why `auto` fell back to SevenNet
    # how the model ran: "eager", "torch.compile", "torch.compile, k of n calls eager", or
    # "eager (...)" when a compiled model ran eager (failed, or every call fell back)
    execution: str = "eager"
    # a compiled model's calls during this screening: through the compiled graph, and eager
    # (inputs outside it, e.g. a 1-atom cell); None when the model is not compiled
    compiled_calls: int | None = None
    eager_calls: int | None = None


@dataclass(frozen=True)
class Mode:
    """One phonon mode: where it is and how soft it is.

    `qpoint` is in reduced coordinates of the reciprocal lattice of the cell the phonons were
    computed for (`phonon_cell`); `q_norm_inv_angstrom` is |q| in Cartesian 1/Å, 2π included.
    """

    frequency_thz: float
    qpoint: tuple[float, float, float]
    q_norm_inv_angstrom: float
    branch: int  # band index, frequencies sorted ascending at that q
    acoustic: bool  # one of the three modes of most translational character (only decided near Γ)
    commensurate: bool  # q is a commensurate point of the supercell (force constants exact there)
    where: Literal["path", "mesh", "commensurate", "gamma"]


@dataclass(frozen=True)
class Decision:
    """What the verdict rule says about one zone scan: the verdict and, when unstable, why."""

    verdict: Literal["stable", "unstable"]
    reason: UnstableReason | None = None


@dataclass(frozen=True)
class RelaxSummary:
    converged: bool
    steps: int
    cycles: int
    max_force_ev_per_angstrom: float
    stress_gpa: tuple[float, ...]  # Voigt xx, yy, zz, yz, xz, xy; ASE sign (positive = tensile)
    energy_per_atom_ev: float
    volume_change_fraction: float
    spacegroup_before: str  # "Fm-3m (225)"
    spacegroup_after: str
    reason: str | None = None  # why it failed, when it did


@dataclass(frozen=True)
class PhononRun:
    """What one supercell's force constants said across the Brillouin zone."""

    supercell_matrix: tuple[tuple[int, int, int], ...]
    n_supercell_atoms: int
    n_displacements: int
    min_supercell_width_angstrom: float
    worst_mode: Mode | None
    worst_path_frequency_thz: float  # minimum over the band path, the PhononBench criterion
    n_qpoints_checked: int


@dataclass(frozen=True)
class BandData:
    """Band structure and DOS for plots: distances in 1/Å (2π included), frequencies in THz."""

    distances: list[list[float]]  # per segment
    frequencies: list[list[list[float]]]  # per segment, per q, per band
    labels: list[str]  # one per segment end, seekpath labels ('GAMMA' -> 'Γ')
    path_connections: list[bool]
    dos_frequencies_thz: list[float]
    dos_states_per_thz: list[float]


@dataclass(frozen=True)
class ThermalProperties:
    temperature_k: float
    free_energy_kj_per_mol: float
    entropy_j_per_k_mol: float
    heat_capacity_j_per_k_mol: float


@dataclass(frozen=True)
class Provenance:
    protocol: str
    protocol_settings: dict[str, Any]
    settings_hash: str
    potential: PotentialInfo
    versions: dict[str, str]


@dataclass(frozen=True)
class Opinion:
    """Another potential's verdict on the same structure: the prescreen's, or the second opinion's."""

    potential: str  # registry name of the potential that gave it
    verdict: Verdict
    reason: str | None
    min_frequency_thz: float | None
    stable_phononbench: bool
    seconds: float


@dataclass(frozen=True)
class ScreeningResult:
    """The verdict on one structure and everything needed to trust it."""

    name: str
    verdict: Verdict
    reason: str | None  # unstable: optical/acoustic/elastic; relax_failed/failed: why
    stable_phononbench: bool  # path only, every frequency >= -1e-3 THz (the paper's scripts)
    stable_phononbench_v3: bool  # path only, every frequency >= -0.1 THz (PhononBench v3's headline)
    formula: str
    n_sites: int
    crystal_system: str | None  # of the relaxed structure (or the input, if it never relaxed)
    spacegroup_number: int | None  # after relaxation
    worst_mode: Mode | None
    min_frequency_thz: float | None  # = worst_mode.frequency_thz
    relax: RelaxSummary | None
    phonons: PhononRun | None  # the run whose verdict stands
    confirmation_of: PhononRun | None  # the first run, when a larger supercell confirmed it
    elastic_tensor_gpa: list[list[float]] | None  # 6x6 Voigt, clamped ion
    born_stable: bool | None
    thermal: ThermalProperties | None
    bands: BandData | None
    relaxed_cif: str | None
    timings_s: dict[str, float]
    warnings: list[str]
    provenance: Provenance
    input_spacegroup: str | None = None
    n_displacements_saved: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    # phonopy_params yaml (structure, displacements, forces, force constants), xz-compressed;
    # only when asked for (keep_force_constants), never part of as_dict
    phonopy_params_xz: bytes | None = field(default=None, repr=False)
    # opinions of other potentials (workers.screening.opinions)
    settled_by_prescreen: bool = False  # this is the prescreen's verdict: unstable beyond the margin
    main_potential: str | None = None  # when settled by the prescreen: the potential it spared
    prescreen: Opinion | None = None  # the prescreen's verdict, when the main potential decided
    second_opinion: Opinion | None = None  # another potential's verdict, from the relaxed structure
    agreement: bool | None = None  # same verdict from both; None without a second opinion or when one failed

    def as_dict(self, *, bulky: bool = True) -> dict[str, Any]:
        """Plain JSON-able dict; `bulky=False` drops band/DOS arrays and the relaxed CIF."""
        data = dataclasses.asdict(dataclasses.replace(self, phonopy_params_xz=None))
        data.pop("phonopy_params_xz")
        if not bulky:
            data.pop("bands", None)
            data.pop("relaxed_cif", None)
        return data
