"""Pure screening science: ingest, potentials, relax, phonons, verdict. No web, queue or database.

The public surface is re-exported here and imported on first use (PEP 562), so importing one
light part (types, ingest) never loads phonopy or torch. Rooms: `ingest/` (files -> records),
`potentials/` (named potentials, adapters, compiled graphs), `physics/` (cells, relax, Γ check,
elastic tensor, supercell phonons, verdict rule), `report/` (summaries, rates, plots, artifact
layout); `pipeline` and `parallel` run them; `protocols`, `types`, `dedup`, `provenance` and
`timing` are shared by all.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "screen_structures": "workers.screening.pipeline",
    "find_duplicates": "workers.screening.pipeline",
    "screen_parallel": "workers.screening.parallel",
    "Layout": "workers.screening.parallel",
    "PotentialSpec": "workers.screening.parallel",
    "read_structures": "workers.screening.ingest",
    "read_bytes": "workers.screening.ingest",
    "load_potential": "workers.screening.potentials",
    "POTENTIAL_NAMES": "workers.screening.potentials",
    "PotentialUnavailableError": "workers.screening.potentials",
    "PROTOCOLS": "workers.screening.protocols",
    "ProtocolSettings": "workers.screening.protocols",
    "get_protocol": "workers.screening.protocols",
    "duplicate_index": "workers.screening.dedup",
    "ScreeningResult": "workers.screening.types",
    "StructureRecord": "workers.screening.types",
    "VERDICTS": "workers.screening.types",
    "summarize_results": "workers.screening.report.summary",
    "format_summary": "workers.screening.report.summary",
    "stability_rates": "workers.screening.report.summary",
    "write_result_files": "workers.screening.report.artifacts",
    "safe_name": "workers.screening.report.artifacts",
}
__all__ = [
    "Layout",
    "POTENTIAL_NAMES",
    "PROTOCOLS",
    "PotentialSpec",
    "PotentialUnavailableError",
    "ProtocolSettings",
    "ScreeningResult",
    "StructureRecord",
    "VERDICTS",
    "duplicate_index",
    "find_duplicates",
    "format_summary",
    "get_protocol",
    "load_potential",
    "read_bytes",
    "read_structures",
    "safe_name",
    "screen_parallel",
    "screen_structures",
    "stability_rates",
    "summarize_results",
    "write_result_files",
]

if TYPE_CHECKING:
    from workers.screening.dedup import duplicate_index
    from workers.screening.ingest import read_bytes, read_structures
    from workers.screening.parallel import Layout, PotentialSpec, screen_parallel
    from workers.screening.pipeline import find_duplicates, screen_structures
    from workers.screening.potentials import POTENTIAL_NAMES, PotentialUnavailableError, load_potential
    from workers.screening.protocols import PROTOCOLS, ProtocolSettings, get_protocol
    from workers.screening.report.artifacts import safe_name, write_result_files
    from workers.screening.report.summary import format_summary, stability_rates, summarize_results
    from workers.screening.types import VERDICTS, ScreeningResult, StructureRecord


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'workers.screening' has no attribute {name!r}")
    return getattr(import_module(module), name)
