"""From a core result to stored rows: artifact files first (the core's one layout), then the verdict row."""

from __future__ import annotations

import math
from typing import Any

from models.artifacts import ArtifactStore
from models.crud import save_verdict
from workers.runtime import WorkerContext
from workers.screening.report.artifacts import result_record, write_result_files
from workers.screening.types import ScreeningResult


def save_result(context: WorkerContext, *, screening_id: int, result: ScreeningResult) -> bool:
    """Write the artifacts, then the verdict row (so a row never points at a missing file).

    Returns whether a row was stored (a verdict saved before for this screening is not saved again).
    """
    values = get_verdict_values(result, store=context.store, screening_id=screening_id)
    with context.session() as session:
        return save_verdict(session, screening_id=screening_id, values=values)


def artifact_folder(screening_id: int) -> str:
    """The store folder of one screening's artifacts."""
    return f"screenings/{screening_id}"


def get_verdict_values(result: ScreeningResult, *, store: ArtifactStore, screening_id: int) -> dict[str, Any]:
    """Row values for `result`; its artifact files are written to the store first."""
    files = write_result_files(result, sink=store, folder=artifact_folder(screening_id))
    mode, relax, info = result.worst_mode, result.relax, result.provenance.potential
    second = result.second_opinion
    return {
        "verdict": result.verdict,
        "reason": (result.reason or None) and result.reason[:512],
        "stable_phononbench": bool(result.stable_phononbench),
        "stable_phononbench_v3": bool(result.stable_phononbench_v3),
        "min_frequency_thz": _finite(result.min_frequency_thz),
        "worst_qpoint": [float(x) for x in mode.qpoint] if mode else None,
        "worst_branch": int(mode.branch) if mode else None,
        "worst_q_norm_inv_angstrom": _finite(mode.q_norm_inv_angstrom) if mode else None,
        "formula": result.formula,
        "spacegroup_after": relax.spacegroup_after if relax else None,
        "spacegroup_number": result.spacegroup_number,
        "crystal_system": result.crystal_system,
        "energy_per_atom_ev": _finite(relax.energy_per_atom_ev) if relax else None,
        "potential_name": info.name,
        "potential_warning": (info.warning or None) and info.warning[:1024],
        "settings_hash": result.provenance.settings_hash,
        "settled_by_prescreen": bool(result.settled_by_prescreen),
        "second_potential": second.potential if second else None,
        "second_verdict": second.verdict if second else None,
        "second_min_frequency_thz": _finite(second.min_frequency_thz) if second else None,
        "agreement": result.agreement,
        "result": result_record(result, files=files),
        "relaxed_cif_path": files.get("relaxed_cif"),
        "bands_path": files.get("bands"),
    }


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None
