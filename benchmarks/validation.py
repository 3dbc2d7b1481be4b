"""Validation: screen the crystals of benchmarks/validation/ and compare each verdict with the literature.

    python benchmarks/validation.py --potential sevennet-0 --protocol default
        [--potential P ...] [--protocol Q ...] [--prescreen P ...] [--second-opinion P ...]
        [--only ID,...] [--limit N] [--jobs N] [--device D] [--work DIR] [--out FILE.json]

Every combination potential x protocol x run (plain, +prescreen:P, +second:P) is one
`phononscreen screen` run (`python -m app.cli screen`, the front door users have) over the selected
CIFs, into its own folder under --work; a re-run reuses what that folder already holds, so an
interrupted full run resumes. Its results.jsonl rows are compared with `expected` in
benchmarks/validation/crystals.yaml: a `stable` crystal must get the verdict `stable`, an `unstable`
one `unstable` (relax_failed or failed count as wrong, with their reason). Printed per combination:
agreement (n correct / n, per label), the PhononBench criterion's agreement on the same run, the
second opinion's and "stable by both" where there is one, what the prescreen settled, every wrong
crystal (id, expected, got, min frequency, reason) and the time per structure (the rows' own
total_time_s, and this invocation's wall time). --out writes all of it as JSON.

A plain run is not repeated when a second-opinion run of the same potential and protocol is asked
for: the second opinion re-screens the main potential's relaxed structure after its verdict, so the
main verdicts of that run are the plain run's (the JSON says `derived_from`).

--limit N takes the first N crystals alternating stable/unstable (manifest order within each
label), so a short run sees both labels. The full set costs hours on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
SET = ROOT / "benchmarks" / "validation"
LABELS = ("stable", "unstable")


@dataclass(frozen=True)
class Run:
    """One `phononscreen screen` invocation: a potential, a protocol and the other opinions."""

    potential: str
    protocol: str
    prescreen: str | None = None
    second_opinion: str | None = None

    @property
    def label(self) -> str:
        """`sevennet-0+prescreen:chgnet-0.3.0`, as the CLI labels a run's rows."""
        extra = f"+prescreen:{self.prescreen}" if self.prescreen else ""
        extra += f"+second:{self.second_opinion}" if self.second_opinion else ""
        return self.potential + extra

    @property
    def folder(self) -> str:
        return f"{self.protocol}__{self.label}".replace(":", "-").replace("+", "__")

    def cli_args(self) -> list[str]:
        args = ["--potential", self.potential, "--protocol", self.protocol]
        args += ["--prescreen", self.prescreen] if self.prescreen else []
        args += ["--second-opinion", self.second_opinion] if self.second_opinion else []
        return args


@dataclass
class Outcome:
    """How one run did on the selected crystals."""

    run: str
    potential: str
    protocol: str
    n: int
    correct: int
    by_label: dict[str, list[int]]  # label -> [correct, n]
    phononbench_correct: int
    wrong: list[dict[str, Any]]
    time_per_structure_s: dict[str, float | None]
    wall_s: float | None
    derived_from: str | None = None
    second_opinion: dict[str, Any] | None = None
    prescreen: dict[str, Any] | None = None
    missing: list[str] = field(default_factory=list)
    # crystals the incommensurate-only rule re-checked in a larger supercell: the first supercell's
    # worst mode, and what the re-check decided
    rechecked: list[dict[str, Any]] = field(default_factory=list)


def load_crystals(manifest: Path = SET / "crystals.yaml") -> list[dict[str, Any]]:
    """The manifest's crystals, in file order."""
    return list(yaml.safe_load(manifest.read_text(encoding="utf-8"))["crystals"])


def select_crystals(
    crystals: list[dict[str, Any]], *, only: str = "", limit: int | None = None
) -> list[dict[str, Any]]:
    """`only` (comma-separated ids, in manifest order) or all; then the first `limit`, alternating labels."""
    ids = [s for s in only.split(",") if s]
    known = {c["id"] for c in crystals}
    if unknown := [i for i in ids if i not in known]:
        raise SystemExit(f"unknown crystal id(s): {', '.join(unknown)} (see {SET / 'crystals.yaml'})")
    chosen = [c for c in crystals if not ids or c["id"] in ids]
    if limit is None:
        return chosen
    queues = {label: [c for c in chosen if c["expected"] == label] for label in LABELS}
    interleaved = [c for pair in zip(*queues.values(), strict=False) for c in pair]
    longest = max(queues.values(), key=len)
    interleaved += longest[len(min(queues.values(), key=len)) :]
    return interleaved[:limit]


def cli_accepts(option: str) -> bool:
    """Whether this checkout's `phononscreen screen` has `option` (read from its --help)."""
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", "screen", "--help"], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    return proc.returncode == 0 and option in proc.stdout


def plan_runs(
    *, potentials: Iterable[str], protocols: Iterable[str], prescreens: Iterable[str], seconds: Iterable[str]
) -> list[tuple[Run, Run | None]]:
    """(run to report, run whose rows it reads or None = itself), plain runs first."""
    plan: list[tuple[Run, Run | None]] = []
    seconds = list(seconds)
    for potential in potentials:
        for protocol in protocols:
            plain = Run(potential, protocol)
            plan.append((plain, Run(potential, protocol, second_opinion=seconds[0]) if seconds else None))
            plan += [(Run(potential, protocol, prescreen=p), None) for p in prescreens]
            plan += [(Run(potential, protocol, second_opinion=s), None) for s in seconds]
    return plan


def read_rows(folder: Path) -> dict[str, dict[str, Any]]:
    """The last results.jsonl row of each structure name in `folder` (a crash can cut a line)."""
    rows: dict[str, dict[str, Any]] = {}
    path = folder / "results.jsonl"
    if not path.exists():
        return rows
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and "name" in row:
            rows[str(row["name"])] = row
    return rows


def _total_time(row: Mapping[str, Any]) -> float | None:
    timings = row.get("timings_s") or {}
    if not timings:
        return None
    total = timings.get("total")
    return float(total) if total is not None else sum(v for v in timings.values() if isinstance(v, (int, float)))


def _as_label(verdict: Any) -> str:
    return str(verdict) if verdict else "missing"


def evaluate(
    crystals: list[dict[str, Any]], rows: Mapping[str, Mapping[str, Any]], *, run: Run, wall_s: float | None = None
) -> Outcome:
    """Compare each crystal's expected label with its row's verdict (and the other opinions')."""
    by_label = {label: [0, 0] for label in LABELS}
    wrong, times, missing = [], [], []
    correct = pb_correct = 0
    second = {"potential": run.second_opinion, "correct": 0, "both_correct": 0, "disagree": 0, "wrong": []}
    settled = settled_correct = 0
    rechecked = []
    for crystal in crystals:
        expected, row = crystal["expected"], rows.get(f"{crystal['id']}.cif")
        by_label[expected][1] += 1
        if row is None:
            missing.append(crystal["id"])
        got = _as_label(row.get("verdict") if row else None)
        ok = got == expected
        correct += ok
        by_label[expected][0] += ok
        pb = (row or {}).get("stable_phononbench")
        pb_correct += pb is not None and ("stable" if pb else "unstable") == expected
        if (t := _total_time(row or {})) is not None:
            times.append(t)
        if not ok:
            wrong.append(
                {
                    "id": crystal["id"], "expected": expected, "got": got,
                    "min_frequency_thz": (row or {}).get("min_frequency_thz"),
                    "reason": (row or {}).get("reason"),
                }
            )  # fmt: skip
        if run.second_opinion:
            other = (row or {}).get("second_opinion") or {}
            got2 = _as_label(other.get("verdict"))
            second["correct"] += got2 == expected
            # "stable by both": stable only when both say so, as the CLI's summary counts it
            both = "stable" if got == "stable" and got2 == "stable" else "unstable"
            second["both_correct"] += both == expected
            second["disagree"] += got2 != got
            if got2 != expected:
                freq = other.get("min_frequency_thz")
                second["wrong"].append(
                    {"id": crystal["id"], "expected": expected, "got": got2, "min_frequency_thz": freq}
                )
        if first := (row or {}).get("confirmation_of"):
            worst = (first.get("worst_mode") or {}).get("frequency_thz")
            rechecked.append(
                {
                    "id": crystal["id"], "expected": expected, "first_supercell_atoms": first.get("n_supercell_atoms"),
                    "first_min_thz": worst, "got": got, "min_frequency_thz": (row or {}).get("min_frequency_thz"),
                }
            )  # fmt: skip
        if run.prescreen and (row or {}).get("settled_by_prescreen"):
            settled += 1
            settled_correct += ok
    time_stats = {
        "mean": statistics.fmean(times) if times else None,
        "median": statistics.median(times) if times else None,
        "sum": sum(times) if times else None,
    }
    return Outcome(
        run=run.label, potential=run.potential, protocol=run.protocol, n=len(crystals), correct=correct,
        by_label=by_label, phononbench_correct=pb_correct, wrong=wrong, time_per_structure_s=time_stats,
        wall_s=wall_s, second_opinion=second if run.second_opinion else None,
        prescreen={"potential": run.prescreen, "settled": settled, "settled_correct": settled_correct}
        if run.prescreen else None,
        missing=missing, rechecked=rechecked,
    )  # fmt: skip


def screen(run: Run, files: list[Path], *, work: Path, jobs: int | None, device: str | None) -> tuple[float, int]:
    """Run `phononscreen screen` for `run` over `files` into its folder; (wall seconds, exit status)."""
    cmd = [sys.executable, "-m", "app.cli", "screen", *map(str, files), *run.cli_args()]
    cmd += ["--out", str(work / run.folder)]
    cmd += ["--jobs", str(jobs)] if jobs else []
    cmd += ["--device", device] if device else []
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    print(f"\n$ {' '.join(cmd[1:])}", flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.perf_counter() - start
    # the CLI's own lines, less the progress bar's redraws
    for line in proc.stdout.replace("\r", "\n").splitlines():
        if line.strip() and "%|" not in line:
            print(f"  | {line}")
    return wall, proc.returncode


def _pct(a: int, b: int) -> str:
    return f"{a}/{b} ({100 * a / b:.0f} %)" if b else "0/0"


def _thz(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else "-"


def format_outcome(o: Outcome) -> str:
    """The lines printed for one run."""
    t = o.time_per_structure_s
    head = f"{o.potential} | {o.protocol} | {o.run}"
    lines = [head + (f"   (main verdicts of the {o.derived_from} run)" if o.derived_from else "")]
    labels = ", ".join(f"{label} {_pct(*o.by_label[label])}" for label in LABELS)
    lines.append(f"  agreement {_pct(o.correct, o.n)}   [{labels}]")
    lines.append(f"  PhononBench criterion (stable_phononbench) on the same run: {_pct(o.phononbench_correct, o.n)}")
    if o.second_opinion:
        s = o.second_opinion
        lines.append(
            f"  second opinion {s['potential']}: {_pct(s['correct'], o.n)}; 'stable by both': "
            f"{_pct(s['both_correct'], o.n)}; disagreements with the main verdict: {s['disagree']}"
        )
    if o.prescreen:
        p = o.prescreen
        lines.append(f"  prescreen {p['potential']} settled {p['settled']} (correct {p['settled_correct']})")
    mean = f"{t['mean']:.1f} s" if t["mean"] is not None else "-"
    median = f"{t['median']:.1f} s" if t["median"] is not None else "-"
    wall = f"{o.wall_s:.0f} s" if o.wall_s is not None else "-"
    lines.append(f"  time per structure: mean {mean}, median {median} (rows' total_time_s); wall this run {wall}")
    if o.missing:
        lines.append(f"  no result for: {', '.join(o.missing)}")
    if o.rechecked:
        lines.append(f"  re-checked in a larger supercell (instability only at incommensurate q) ({len(o.rechecked)}):")
        for r in o.rechecked:
            first, final = r["first_min_thz"], r["min_frequency_thz"]
            lines.append(
                f"    {r['id']:26s} {r['first_supercell_atoms'] or '?':>4} atoms {_thz(first)} THz -> "
                f"{r['got']} {_thz(final)} THz (expected {r['expected']})"
            )
    if o.wrong:
        lines.append(f"  wrong ({len(o.wrong)}):")
        lines.append(f"    {'id':26s} {'expected':9s} {'got':13s} {'min THz':>9s}  reason")
        for w in o.wrong:
            f = w["min_frequency_thz"]
            freq = f"{f:9.3f}" if isinstance(f, (int, float)) else f"{'-':>9s}"
            lines.append(f"    {w['id']:26s} {w['expected']:9s} {w['got']:13s} {freq}  {w['reason'] or ''}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--potential", action="append", help="repeatable; default sevennet-0")
    parser.add_argument("--protocol", action="append", help="repeatable; default: default")
    parser.add_argument("--prescreen", action="append", default=[], metavar="POTENTIAL", help="repeatable")
    parser.add_argument("--second-opinion", action="append", default=[], metavar="POTENTIAL", help="repeatable")
    parser.add_argument("--only", default="", help="comma-separated crystal ids")
    parser.add_argument("--limit", type=int, default=None, help="first N crystals, alternating stable/unstable")
    parser.add_argument("--jobs", type=int, default=None, help="passed to phononscreen screen")
    parser.add_argument("--device", default=None, help="passed to phononscreen screen")
    parser.add_argument("--work", type=Path, default=Path("benchmark-out/validation-runs"), help="run folders")
    parser.add_argument("--out", type=Path, default=Path("benchmark-out/validation.json"), help="JSON report")
    args = parser.parse_args(argv)

    for option, values in (("--prescreen", args.prescreen), ("--second-opinion", args.second_opinion)):
        if values and not cli_accepts(option):
            print(
                f"phononscreen screen on this checkout has no {option} option yet; "
                f"nothing was run. Run without {option}, or update the CLI first.",
                file=sys.stderr,
            )
            return 2
    crystals = select_crystals(load_crystals(), only=args.only, limit=args.limit)
    files = [SET / f"{c['id']}.cif" for c in crystals]
    plan = plan_runs(
        potentials=args.potential or ["sevennet-0"], protocols=args.protocol or ["default"],
        prescreens=args.prescreen, seconds=args.second_opinion,
    )  # fmt: skip
    print(f"{len(crystals)} crystals ({', '.join(c['id'] for c in crystals)}); {len(plan)} combination(s)")
    args.work.mkdir(parents=True, exist_ok=True)
    walls: dict[Run, tuple[float, int]] = {}
    for run, source in plan:
        target = source or run
        if target not in walls:
            walls[target] = screen(target, files, work=args.work, jobs=args.jobs, device=args.device)
    outcomes = []
    for run, source in plan:
        target = source or run
        wall, status = walls[target]
        outcome = evaluate(crystals, read_rows(args.work / target.folder), run=run, wall_s=wall)
        outcome.derived_from = source.label if source else None
        outcomes.append((outcome, status))
    print("\n" + "=" * 100)
    for outcome, status in outcomes:
        print(format_outcome(outcome) + (f"\n  phononscreen screen exited with status {status}" if status else ""))
    report = {
        "crystals": [c["id"] for c in crystals],
        "work": str(args.work),
        "outcomes": [{**asdict(o), "exit_status": status} for o, status in outcomes],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(f"\nreport: {args.out}")
    return 1 if any(status for _, status in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
