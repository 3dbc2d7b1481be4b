"""The CLI's output folder: crash-safe results.jsonl, results.csv, per-structure artifacts, summary.

One of the two back ends of the core's result writer (`workers.screening.report.artifacts`); the
other is the service's artifact store. Both use the same layout: a folder per result holding
relaxed.cif, bands.json, band_structure.png and (when kept) phonopy_params.yaml.xz.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from models.artifacts import ArtifactStore
from workers.screening.report.artifacts import result_record, safe_name, write_result_files
from workers.screening.report.summary import format_summary, summarize_results
from workers.screening.types import ScreeningResult

ResultKey = tuple[str, str, str]  # (structure name, protocol settings hash, potential name)

CSV_COLUMNS = (
    "name",
    "verdict",
    "reason",
    "stable_phononbench",
    "stable_phononbench_v3",
    "formula",
    "n_sites",
    "crystal_system",
    "spacegroup_before",
    "spacegroup_after",
    "spacegroup_number",
    "min_frequency_thz",
    "worst_qpoint",
    "worst_q_norm_inv_angstrom",
    "worst_branch",
    "worst_acoustic",
    "worst_where",
    "worst_path_frequency_thz",
    "relax_converged",
    "relax_steps",
    "relax_max_force_ev_per_angstrom",
    "energy_per_atom_ev",
    "born_stable",
    "supercell_matrix",
    "n_supercell_atoms",
    "n_displacements",
    "confirmed_in_larger_supercell",
    "free_energy_300k_kj_per_mol",
    "total_time_s",
    "potential",
    "protocol",
    "settings_hash",
    "generator",
    "source",
    "warnings",
    "settled_by_prescreen",
    "prescreen_verdict",
    "second_potential",
    "second_verdict",
    "second_min_frequency_thz",
    "agreement",
)


def row_key(row: Mapping[str, Any]) -> ResultKey:
    """The skip-on-rerun key of a results.jsonl row."""
    prov = row.get("provenance") or {}
    potential = row.get("run") or (prov.get("potential") or {}).get("name", "")  # rows before `run`: the potential
    return (str(row.get("name")), str(prov.get("settings_hash", "")), str(potential))


def _fmt(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return json.dumps(value, separators=(",", ":"))
    return value


def flatten_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """One results.csv row (CSV_COLUMNS) from one results.jsonl row."""
    relax = row.get("relax") or {}
    phonons = row.get("phonons") or {}
    worst = row.get("worst_mode") or {}
    thermal = row.get("thermal") or {}
    prov = row.get("provenance") or {}
    timings = row.get("timings_s") or {}
    total = timings.get("total", sum(v for v in timings.values() if isinstance(v, (int, float))))
    # The fallback warning is a paragraph (with how to get MatterSim); a cell needs the gist.
    pot_warning = (prov.get("potential") or {}).get("warning")
    warnings = [w for w in row.get("warnings") or [] if w != pot_warning]
    if pot_warning:
        warnings.insert(0, f"potential fallback ({pot_warning.split(':', 1)[0]})")
    flat = {
        "name": row.get("name"),
        "verdict": row.get("verdict"),
        "reason": row.get("reason"),
        "stable_phononbench": row.get("stable_phononbench"),
        "stable_phononbench_v3": row.get("stable_phononbench_v3"),
        "formula": row.get("formula"),
        "n_sites": row.get("n_sites"),
        "crystal_system": row.get("crystal_system"),
        "spacegroup_before": relax.get("spacegroup_before") or row.get("input_spacegroup"),
        "spacegroup_after": relax.get("spacegroup_after"),
        "spacegroup_number": row.get("spacegroup_number"),
        "min_frequency_thz": row.get("min_frequency_thz"),
        "worst_qpoint": worst.get("qpoint"),
        "worst_q_norm_inv_angstrom": worst.get("q_norm_inv_angstrom"),
        "worst_branch": worst.get("branch"),
        "worst_acoustic": worst.get("acoustic"),
        "worst_where": worst.get("where"),
        "worst_path_frequency_thz": phonons.get("worst_path_frequency_thz"),
        "relax_converged": relax.get("converged"),
        "relax_steps": relax.get("steps"),
        "relax_max_force_ev_per_angstrom": relax.get("max_force_ev_per_angstrom"),
        "energy_per_atom_ev": relax.get("energy_per_atom_ev"),
        "born_stable": row.get("born_stable"),
        "supercell_matrix": phonons.get("supercell_matrix"),
        "n_supercell_atoms": phonons.get("n_supercell_atoms"),
        "n_displacements": phonons.get("n_displacements"),
        "confirmed_in_larger_supercell": row.get("confirmation_of") is not None,
        "free_energy_300k_kj_per_mol": thermal.get("free_energy_kj_per_mol"),
        "total_time_s": total if timings else None,
        "potential": (prov.get("potential") or {}).get("name"),
        "protocol": prov.get("protocol"),
        "settings_hash": prov.get("settings_hash"),
        "generator": row.get("generator"),
        "source": row.get("source"),
        "warnings": "; ".join(str(w) for w in warnings),
        "settled_by_prescreen": row.get("settled_by_prescreen") or None,
        "prescreen_verdict": (row.get("prescreen") or {}).get("verdict"),
        "second_potential": (row.get("second_opinion") or {}).get("potential"),
        "second_verdict": (row.get("second_opinion") or {}).get("verdict"),
        "second_min_frequency_thz": (row.get("second_opinion") or {}).get("min_frequency_thz"),
        "agreement": row.get("agreement"),
    }
    return {k: _fmt(v) if not isinstance(v, str) else v for k, v in flat.items()}


class OutputFolder:
    """The `--out` folder of `phononscreen screen`.

    `results.jsonl` is the source of truth: one JSON object per structure, appended and flushed
    as each finishes, so a crash loses at most the structure in flight. Its artefacts
    (`structures/<safe name>/`) are written before its line, so a line means they exist.
    `results.csv` and `summary.{json,txt}` are rebuilt from it by `write_tables`.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.jsonl = self.root / "results.jsonl"
        self.store = ArtifactStore(self.root)

    def read_rows(self) -> list[dict[str, Any]]:
        """Every complete row of results.jsonl, later rows replacing earlier ones of the same key."""
        if not self.jsonl.exists():
            return []
        rows: dict[ResultKey, dict[str, Any]] = {}
        with self.jsonl.open(encoding="utf-8") as fh:
            for line in fh:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a crash; that structure is simply redone
                if isinstance(row, dict):
                    rows[row_key(row)] = row
        return list(rows.values())

    def done_keys(self) -> set[ResultKey]:
        return {row_key(r) for r in self.read_rows()}

    @staticmethod
    def folder_of(name: str) -> str:
        """The folder (relative to the root) that holds the artifacts of structure `name`."""
        return f"structures/{safe_name(name)}"

    def write_result(
        self,
        result: ScreeningResult,
        *,
        source: str | None = None,
        generator: str | None = None,
        run: str | None = None,
    ) -> dict[str, Any]:
        """Write one result's artefacts, then append its row to results.jsonl; return the row.
        `run`: the potentials of the run (`opinions.run_label`), its rows' key on a re-run."""
        files = write_result_files(result, sink=self.store, folder=self.folder_of(result.name))
        labels = {"run": run} if run is not None else {}
        row = result_record(result, files=files, source=source, generator=generator, **labels)
        self._append(row)
        return row

    def _append(self, row: Mapping[str, Any]) -> None:
        line = json.dumps(row, separators=(",", ":"), default=str)
        with self.jsonl.open("a+b") as fh:
            # After a crash mid-line the file does not end in a newline: start a fresh line so
            # the new row is not glued to the broken one.
            if fh.tell() > 0:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    fh.write(b"\n")
            fh.write(line.encode("utf-8") + b"\n")
            fh.flush()
            os.fsync(fh.fileno())

    def write_tables(self, *, keys: set[ResultKey] | None = None) -> dict[str, Any]:
        """Rewrite results.csv from results.jsonl, and summary.{json,txt} of the rows whose
        `row_key` is in `keys` (default: all)."""
        all_rows = self.read_rows()
        tmp = self.root / "results.csv.tmp"
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            for row in all_rows:
                writer.writerow(flatten_row(row))
        tmp.replace(self.root / "results.csv")
        summary = summarize_results(all_rows if keys is None else [r for r in all_rows if row_key(r) in keys])
        self.store.write_text("summary.json", json.dumps(summary, indent=2))
        self.store.write_text("summary.txt", format_summary(summary))
        return summary
