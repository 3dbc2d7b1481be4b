"""Prescreen margin: what a cheap first pass would settle, change and save, at each margin.

    python benchmarks/prescreen_margin.py --set validation  --main sevennet-l3i5 --prescreen sevennet-0
    python benchmarks/prescreen_margin.py --set generators --n 12 --main sevennet-l3i5 --prescreen sevennet-0

Both potentials screen the same structures in plain `phononscreen screen` runs (the validation
set's CIFs, or a seeded sample of real generator outputs from ../shared/data, up to 20 atoms, an
equal share per generator: `throughput.sample_structures`), each into its own folder under --work,
named as `benchmarks/validation.py` names its plain runs, so pointing --work at a validation work
folder reuses those runs and an interrupted run resumes.

A prescreen run is then replayed from the two plain runs at each margin with the rule the CLI and
workers use (`workers.screening.opinions.would_settle`): a prescreen row that settles keeps its
verdict and costs its own time; every other structure costs the prescreen's time plus the main
potential's. Printed per margin: structures settled, verdicts that differ from the main
potential's alone, right/wrong against the literature (validation set only), and the time against
screening everything with the main potential (the rows' own total_time_s, summed).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

MARGINS_THZ = (0.1, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)


def _files_validation() -> tuple[list[Path], dict[str, str]]:
    from validation import SET, load_crystals

    crystals = load_crystals()
    return [SET / f"{c['id']}.cif" for c in crystals], {f"{c['id']}.cif": c["expected"] for c in crystals}


def _files_generators(*, n: int, seed: int, folder: Path) -> list[Path]:
    """The sample written as CIFs (the names say generator and position in its file)."""
    from throughput import DATA, GENERATORS, sample_structures

    sample = sample_structures(n=n, seed=seed, data=DATA, max_atoms=20, elements=None)
    folder.mkdir(parents=True, exist_ok=True)
    generator_of = {rel: gen for gen, rel in GENERATORS.items()}
    files = []
    for record in sample:
        gen = next((g for rel, g in generator_of.items() if str(record.source).endswith(rel)), "gen")
        stem = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in f"{gen}_{record.index}_{record.name}")
        path = folder / f"{stem[:80]}.cif"
        if not path.exists():
            record.structure.to(filename=str(path))
        files.append(path)
    return files


def replay(
    main: dict[str, dict[str, Any]],
    pre: dict[str, dict[str, Any]],
    *,
    margin_thz: float,
    expected: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A prescreen run at `margin_thz`, from the two plain runs' rows (names present in both)."""
    from validation import _total_time

    from workers.screening.opinions import would_settle

    names = sorted(set(main) & set(pre))
    settled, changed, time_main, time_with = [], [], 0.0, 0.0
    right_main = right_with = 0
    for name in names:
        m, p = main[name], pre[name]
        t_main, t_pre = _total_time(m) or 0.0, _total_time(p) or 0.0
        time_main += t_main
        settles = would_settle(p.get("verdict"), p.get("min_frequency_thz"), margin_thz=margin_thz)
        verdict = p.get("verdict") if settles else m.get("verdict")
        time_with += t_pre + (0.0 if settles else t_main)
        if settles:
            settled.append(name)
            if verdict != m.get("verdict"):
                changed.append(
                    {"name": name, "main": m.get("verdict"), "prescreen_min_thz": p.get("min_frequency_thz")}
                )
        if expected is not None:
            right_main += m.get("verdict") == expected[name]
            right_with += verdict == expected[name]
    return {
        "margin_thz": margin_thz,
        "n": len(names),
        "settled": settled,
        "changed": changed,
        "time_main_s": time_main,
        "time_with_prescreen_s": time_with,
        "time_ratio": time_with / time_main if time_main else None,
        "right_main": right_main if expected is not None else None,
        "right_with_prescreen": right_with if expected is not None else None,
    }


def format_table(rows: list[dict[str, Any]], *, labelled: bool) -> str:
    head = f"{'margin THz':>10s} {'settled':>8s} {'changed':>8s} {'time / main alone':>18s}"
    head += f" {'right (main alone -> with)':>27s}" if labelled else ""
    lines = [head, "-" * len(head)]
    for r in rows:
        ratio = f"{r['time_ratio']:.2f}" if r["time_ratio"] is not None else "-"
        line = f"{r['margin_thz']:10.1f} {len(r['settled']):>8d} {len(r['changed']):>8d} {ratio:>18s}"
        if labelled:
            line += f" {r['right_main']:>16d} -> {r['right_with_prescreen']:<3d}/{r['n']}"
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from validation import Run, read_rows, screen

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", choices=("validation", "generators"), required=True)
    parser.add_argument("--main", default="sevennet-l3i5", help="the main potential")
    parser.add_argument("--prescreen", default="sevennet-0", help="the cheap first pass")
    parser.add_argument("--protocol", default="default")
    parser.add_argument("--n", type=int, default=12, help="generator outputs in the sample (--set generators)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--margin", type=float, action="append", help="repeatable; default: a sweep")
    parser.add_argument("--jobs", type=int, default=None, help="passed to phononscreen screen")
    parser.add_argument("--work", type=Path, default=Path("benchmark-out/prescreen-runs"), help="run folders")
    parser.add_argument("--out", type=Path, default=None, help="JSON report")
    args = parser.parse_args(argv)
    if args.main == args.prescreen:
        parser.error("--main and --prescreen must be different potentials")

    args.work.mkdir(parents=True, exist_ok=True)
    if args.set == "validation":
        files, expected = _files_validation()
    else:
        files, expected = _files_generators(n=args.n, seed=args.seed, folder=args.work / "inputs"), None
    status = 0
    rows = {}
    for potential in (args.prescreen, args.main):
        run = Run(potential, args.protocol)
        _, rc = screen(run, files, work=args.work, jobs=args.jobs, device=None)
        status = status or rc
        wanted = {f.name for f in files}
        rows[potential] = {k: v for k, v in read_rows(args.work / run.folder).items() if k in wanted}
    table = [
        replay(rows[args.main], rows[args.prescreen], margin_thz=m, expected=expected)
        for m in (args.margin or MARGINS_THZ)
    ]
    print(f"\n{args.set}: {len(files)} structures; main {args.main}, prescreen {args.prescreen}, {args.protocol}")
    print(format_table(table, labelled=expected is not None))
    for r in table:
        for c in r["changed"]:
            right = f" (literature: {expected[c['name']]})" if expected else ""
            print(
                f"  margin {r['margin_thz']:.1f}: {c['name']} settled unstable at {c['prescreen_min_thz']:.2f} THz, "
                f"{args.main} alone: {c['main']}{right}"
            )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"set": args.set, "files": [f.name for f in files], "table": table}, indent=2))
    return 1 if status else 0


if __name__ == "__main__":
    sys.exit(main())
