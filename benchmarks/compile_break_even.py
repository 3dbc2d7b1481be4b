"""Break-even of torch.compile for `phononscreen screen --compile auto`: load cost against per-atom saving.

    python benchmarks/compile_break_even.py [--json out.json] [--repeats 2] [--n-generator 4] [--seed 0]
        [--potential sevennet-0]

The potential (`--potential`, SevenNet-0 unless named) runs on the CPU, one torch thread per process
(the CLI's CPU layout). Every measurement runs in a fresh interpreter of this script
(`--worker load|screen`), because loaded potentials are cached per process:

  (a) eager load (`load_potential(..., compile="off")`), timed;
  (b) compiled load on a fresh machine: an empty compile-cache folder and an empty
      TORCHINDUCTOR_CACHE_DIR (the full ahead-of-time compile, ~2 minutes on a quiet machine);
  (c) compiled load with the graph saved by (b) and torch's inductor cache filled by it (a machine
      that has compiled before);
  (c') compiled load with the saved graph but an empty inductor cache (the graph survives in
      ~/.cache, while torch's inductor cache, under /tmp by default, was wiped, e.g. by a reboot);
  (d) the `default` protocol on a sample, eager and compiled, each in its own process after its
      own load (the compiled one loads as in (c)): `screen_structures(records, ...)`, the
      per-structure `timings_s["total"]` (and CPU seconds) and the number of atoms of each input
      structure. Each process then times a few force + stress calls on rattled diamond Si of 8 and
      64 atoms (per-call ms) and reports how many model calls ran and, when compiled, how many fell
      back to eager (`CompiledModel.eager_calls`, per structure; by design a 1-atom cell runs
      eager, anything else that falls back means the compiled graph was not what ran).
      The eager and the compiled process run at the same time, one core each (the CLI's CPU
      layout: one 1-thread process per core), so that whatever else loads the machine loads both;
      `--sequential` runs them one after the other instead. `--repeats N` runs the pair N times
      (alternating which starts first), as long as `--budget-min` allows.

The sample: the files of examples/ (what `make demo` screens) plus `--n-generator` real generator
cells of `--min-atoms`..`--max-atoms` atoms from ../shared/data (the throughput benchmark's
generator files, a seeded draw per generator, equal shares, topped up from the others where a
generator has too few such cells). A structure's cost under `default` follows its supercells
(cubic, >= 10 Å, and a 15 Å confirmation for stable ones), not its atom count: with the defaults
(4 cells of 8-12 atoms, seed 0) one 8-atom CDVAE cell takes ~5 (compiled) to ~11 (eager) minutes on
a busy 2-core machine. A run takes ~15 minutes on a quiet machine, ~30 on a busy one.

From (d): saving per structure s_i = eager total - compiled total (mean over the repeats); a
least-squares fit through zero s ~ k * n_atoms (k in seconds saved per input atom screened), with
the spread of s_i / n_i; the break-even work W* = (compiled load - eager load) / k in atoms summed
over the structures to screen (structures x atoms), for (b), (c) and (c'), also with k =
sum(s)/sum(n) and k = median(s_i / n_i) to show how much W* depends on the estimator. Duplicates
and structures whose verdict differs between the arms (different work) are left out of the fit.
The same numbers in CPU seconds (per-structure CPU time of the screening processes; CPU time of the
whole load process trees, C++ compilers included) are less sensitive to other work on the machine.
Compiling pays when the work exceeds W* (per process: the CLI shares the structures out over its
worker processes, and each process loads the model). Prints a table and the break-even numbers;
`--json PATH` writes everything, including every raw measurement. The last line reads
`break_even_atoms fresh <W_b> saved <W_c>`.
"""

from __future__ import annotations

import os

# OpenBLAS threads fight torch's on the CPU; the CLI sets this before numpy is imported too.
os.environ["OPENBLAS_NUM_THREADS"] = "1"

import argparse
import json
import math
import pickle
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

POTENTIAL = "sevennet-0"  # --potential replaces it, here and in the worker processes
PROTOCOL = "default"
EXAMPLES = ROOT / "examples"
DATA = Path(os.environ.get("PHONONSCREEN_SHARED_DATA", ROOT.parent / "shared" / "data"))
# Rattled diamond Si supercells for the per-call force timing: (repetitions per axis, timed calls).
MICRO = ((1, 8), (2, 4))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    global POTENTIAL
    POTENTIAL = args.potential
    if args.worker:
        return run_worker(args)
    if args.reanalyse:
        return reanalyse(args)
    return run_benchmark(args)


def reanalyse(args: argparse.Namespace) -> int:
    """Print the summary again from a saved --json file (no measurement)."""
    saved = json.loads(args.reanalyse.read_text())
    global POTENTIAL
    POTENTIAL = saved.get("potential", POTENTIAL)
    runs = saved["runs"]
    screens = []
    while f"d{len(screens) + 1}_screen_eager" in runs:
        n = len(screens) + 1
        screens.append((runs[f"d{n}_screen_eager"], runs[f"d{n}_screen_compiled"]))
    demo = saved["demo"]
    summary = analyse(runs, screens, example_atoms=demo["atoms"], n_examples=demo["structures"],
                      processes=demo["cli_processes"])  # fmt: skip
    for key in ("elapsed_s", "machine", "args", "screening_layout", "skipped_repeats"):
        summary[key] = saved.get(key)
    print_summary(summary, runs, screens)
    if args.json is not None:
        args.json.write_text(json.dumps({**summary, "runs": runs}, indent=1, default=str))
        print(f"json: {args.json}")
    be = summary["break_even_atoms"]
    print(f"break_even_atoms fresh {_fmt_w(be['fresh'])} saved {_fmt_w(be['saved'])}")
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-generator", type=int, default=4, help="real generator cells added to examples/")
    p.add_argument("--min-atoms", type=int, default=8, help="smallest generator cell drawn")
    p.add_argument("--max-atoms", type=int, default=12, help="largest generator cell drawn")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--potential", default=POTENTIAL, help="a compilable registry name")
    p.add_argument("--repeats", type=int, default=2, help="eager/compiled screening pairs (alternating order)")
    p.add_argument(
        "--sequential",
        action="store_true",
        help="screen eager and compiled one after the other (default: both at once, one core each)",
    )
    p.add_argument(
        "--budget-min",
        type=float,
        default=18.0,
        help="skip further repeats when the last one would end the run past this many minutes",
    )
    p.add_argument(
        "--no-cold-inductor", action="store_true", help="skip case (c'): saved graph with an empty inductor cache"
    )
    p.add_argument("--data", type=Path, default=DATA, help="the shared data folder")
    p.add_argument("--json", type=Path, default=None, help="write the numbers and raw measurements here")
    p.add_argument(
        "--reanalyse",
        type=Path,
        default=None,
        metavar="JSON",
        help="print the summary again from a --json file of an earlier run, measuring nothing",
    )
    p.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="folder for the sample, the caches and the workers' outputs (default: a new temporary one)",
    )
    p.add_argument("--worker", choices=("load", "screen"), help=argparse.SUPPRESS)
    p.add_argument("--compile", choices=("on", "off"), default="off", help=argparse.SUPPRESS)
    p.add_argument("--compile-cache", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    return p


# --- the sample ----------------------------------------------------------------------------


def build_sample(args: argparse.Namespace, elements: frozenset[str] | None) -> list:
    """examples/ (every record, as `make demo` reads it) + a seeded draw of generator cells."""
    from throughput import GENERATORS

    from workers.screening.ingest.read import read_structures

    examples = read_structures(EXAMPLES)
    pools = {}
    for gen, rel in GENERATORS.items():
        records = read_structures(args.data / rel, max_atoms=args.max_atoms, allowed_elements=elements)
        pool = [r for r in records if r.ok and len(r.structure) >= args.min_atoms]
        rng = random.Random(f"{args.seed}:{gen}")
        pools[gen] = [pool[i] for i in rng.sample(range(len(pool)), len(pool))]  # a seeded order
    picks: list = []
    # round-robin over the generators: equal shares, and a generator with too few cells is topped
    # up by the next ones
    while len(picks) < args.n_generator and any(pools.values()):
        for gen in GENERATORS:
            if pools[gen] and len(picks) < args.n_generator:
                picks.append(pools[gen].pop(0))
    return list(examples) + picks


# --- the workers (each in its own process) --------------------------------------------------


def run_worker(args: argparse.Namespace) -> int:
    t_process = time.perf_counter()
    import torch

    from workers.screening.potentials.compiled import CompiledModel
    from workers.screening.potentials.registry import load_potential, saved_graph_exists

    torch.set_num_threads(1)  # before loading: the CLI's CPU layout, one thread per process
    warnings.simplefilter("ignore")
    imports_s = time.perf_counter() - t_process
    cache_before = _listing(args.compile_cache)
    inductor_dir = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    inductor_before = _count_files(Path(inductor_dir)) if inductor_dir else None
    loadavg_before = os.getloadavg()
    calls = {"model": 0}
    original_call = CompiledModel.__call__

    def counted_call(self, data):  # every call of the compiled model, fallbacks included
        calls["model"] += 1
        return original_call(self, data)

    CompiledModel.__call__ = counted_call
    start, cpu_start = time.perf_counter(), _cpu_s()
    potential = load_potential(POTENTIAL, device="cpu", compile=args.compile, compile_cache=args.compile_cache)
    load_s = time.perf_counter() - start
    load_cpu_s = _cpu_s() - cpu_start
    compiled = potential._compiled
    if compiled is None:  # eager: count the model's forward calls instead
        potential.calculator.model.register_forward_hook(lambda *_: calls.__setitem__("model", calls["model"] + 1))
    calls_after_load = calls["model"]
    eager_calls_after_load = compiled.eager_calls if compiled is not None else None
    report: dict = {
        "worker": args.worker,
        "compile": args.compile,
        "pid": os.getpid(),
        "imports_s": imports_s,
        "load_s": load_s,
        # CPU seconds of the load, this process and its reaped children (inductor's C++ compiles);
        # less sensitive than wall time to whatever else runs on the machine
        "load_cpu_s": load_cpu_s,
        "execution": potential.info.execution,
        "how": compiled.how if compiled is not None else "eager",
        "failure": compiled.failure if compiled is not None else None,
        "eager_calls_after_load": eager_calls_after_load,
        "compile_cache_before": cache_before,
        "inductor_files_before": inductor_before,
        "torch_threads": torch.get_num_threads(),
        "loadavg_before": loadavg_before,
    }
    if args.worker == "screen":
        report.update(_screen(args, potential, calls=calls))
        report["micro_ms_per_call"] = _micro(potential)
    report["model_calls_after_load"] = calls["model"] - calls_after_load
    report["eager_calls"] = compiled.eager_calls if compiled is not None else None
    report["failure"] = compiled.failure if compiled is not None else None
    report["execution_after"] = potential.current_info().execution
    report["loadavg_after"] = os.getloadavg()
    if args.compile == "on":
        report["saved_graph_exists_after"] = saved_graph_exists(
            POTENTIAL, device="cpu", compile_cache=args.compile_cache
        )
        report["compile_cache_after"] = _listing(args.compile_cache)
        report["inductor_files_after"] = _count_files(Path(inductor_dir)) if inductor_dir else None
    args.output.write_text(json.dumps(report, default=str))
    return 0


def _screen(args: argparse.Namespace, potential, *, calls: dict) -> dict:
    from workers.screening.pipeline import screen_structures
    from workers.screening.protocols import get_protocol

    records = pickle.loads(args.input.read_bytes())
    atoms_of = {r.name: (len(r.structure) if r.ok and r.structure is not None else 0) for r in records}
    compiled = potential._compiled
    done = [0]
    # model calls and eager fallbacks of each structure (progress runs right after each one)
    # and CPU seconds (this process: screening is serial, one torch thread)
    marks = {"calls": calls["model"], "eager": compiled.eager_calls if compiled is not None else 0,
             "cpu": time.process_time()}  # fmt: skip
    per_structure: dict[str, tuple[int, int]] = {}
    cpu_of: dict[str, float] = {}

    def progress(res) -> None:
        done[0] += 1
        eager_now = compiled.eager_calls if compiled is not None else 0
        per_structure[res.name] = (calls["model"] - marks["calls"], eager_now - marks["eager"])
        cpu_now = time.process_time()
        cpu_of[res.name] = cpu_now - marks["cpu"]
        marks.update(calls=calls["model"], eager=eager_now, cpu=cpu_now)
        fallback = f", {per_structure[res.name][1]} fell back to eager" if compiled is not None else ""
        print(
            f"  [{args.compile} {done[0]}/{len(records)}] {res.name} ({atoms_of[res.name]} atoms): "
            f"{res.verdict} {res.timings_s.get('total', 0.0):.1f} s, {per_structure[res.name][0]} model calls"
            f"{fallback}",
            file=sys.stderr,
            flush=True,
        )

    start = time.perf_counter()
    results = screen_structures(records, protocol=get_protocol(PROTOCOL), potential=potential, progress=progress)
    wall_s = time.perf_counter() - start
    rows = []
    for rec, res in zip(records, results, strict=True):
        prim = res.extra.get("input_to_primitive", {}) if isinstance(res.extra, dict) else {}
        rows.append({
            "name": res.name,
            "n_atoms": atoms_of[rec.name],
            "n_primitive_atoms": prim.get("n_primitive_atoms"),
            "verdict": res.verdict,
            "reason": res.reason,
            # a failed result may come back without "total": the sum of its stages then
            "total_s": float(res.timings_s.get("total", sum(v for k, v in res.timings_s.items() if k != "total"))),
            # CPU seconds from the previous structure's end to this one's (the first also holds
            # the run's dedup); 0 for a duplicate
            "cpu_s": cpu_of.get(res.name, 0.0),
            "timings_s": {k: float(v) for k, v in res.timings_s.items()},
            "relax_steps": res.relax.steps if res.relax is not None else None,
            "duplicate_of": res.extra.get("duplicate_of") if isinstance(res.extra, dict) else None,
            "model_calls": per_structure.get(res.name, (0, 0))[0],
            "eager_calls": per_structure.get(res.name, (0, 0))[1] if compiled is not None else None,
        })  # fmt: skip
    return {"screen_wall_s": wall_s, "structures": rows}


def _micro(potential) -> dict:
    """Per-call ms of force + stress on rattled diamond Si supercells (a fresh calculator)."""
    import numpy as np
    from ase.build import bulk

    calc = potential.new_calculator()
    out = {}
    rng = np.random.default_rng(0)
    for reps, n_calls in MICRO:
        atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat((reps, reps, reps))
        atoms.positions += rng.normal(0.0, 0.01, atoms.positions.shape)
        atoms.calc = calc
        atoms.get_forces()  # first call at this size, not timed
        times = []
        for _ in range(n_calls):
            atoms.positions += rng.normal(0.0, 1e-4, atoms.positions.shape)  # a new geometry: no cached result
            start = time.perf_counter()
            atoms.get_forces()
            atoms.get_stress()
            times.append((time.perf_counter() - start) * 1e3)
        out[str(len(atoms))] = statistics.median(times)
    return out


def _cpu_s() -> float:
    """CPU seconds of this process and of its children that have been waited for."""
    import resource

    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def _listing(folder: Path | None) -> list[str]:
    if folder is None or not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir())


def _count_files(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


# --- the driver ----------------------------------------------------------------------------


def run_benchmark(args: argparse.Namespace) -> int:
    started = time.time()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="compile-break-even-"))
    work.mkdir(parents=True, exist_ok=True)
    cache = work / "compiled"
    inductor = work / "inductor"
    inductor_cold = work / "inductor-cold"
    for folder in (cache, inductor, inductor_cold):
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir()

    # The eager model here only gives the element list for the sample (it also warms the page cache
    # for the workers' loads, so that the first measurement is not the only one reading from disk).
    from workers.screening.parallel import Layout
    from workers.screening.potentials.registry import load_potential

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        elements = load_potential(POTENTIAL, device="cpu", compile="off").elements
    records = build_sample(args, elements)
    sample_path = work / "sample.pkl"
    sample_path.write_bytes(pickle.dumps(records))
    n_examples = sum(1 for r in records if Path(r.source).resolve() == EXAMPLES.resolve())
    example_atoms = sum(len(r.structure) for r in records[:n_examples] if r.ok)
    print(
        f"sample: {len(records)} structures ({n_examples} from examples/, {len(records) - n_examples} generator "
        f"cells of {args.min_atoms}-{args.max_atoms} atoms, seed {args.seed}); workdir {work}",
        flush=True,
    )
    for r in records:
        print(
            f"  {r.name}: {len(r.structure) if r.ok else 0} atoms{'' if r.ok else f' (ingest failed: {r.error})'}",
            flush=True,
        )

    def start(worker: str, mode: str, label: str, *, inductor_dir: Path) -> tuple:
        out = work / f"{label}.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", worker, "--compile", mode,
               "--potential", POTENTIAL, "--compile-cache", str(cache), "--input", str(sample_path), "--output", str(out)]  # fmt: skip
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(inductor_dir), "OPENBLAS_NUM_THREADS": "1"}
        print(
            f"[{time.strftime('%H:%M:%S')}] {label}: {worker} compile={mode} "
            f"(inductor cache {inductor_dir.name}: {_count_files(inductor_dir)} files; "
            f"compile cache: {len(_listing(cache))} files)",
            flush=True,
        )
        return label, out, subprocess.Popen(cmd, env=env), time.perf_counter()

    def finish(*started: tuple) -> list[dict]:
        """Wait for these children (each is timed to its own exit, also when they run at once)."""
        ended: dict[int, tuple] = {}
        while len(ended) < len(started):
            for i, (_label, _out, proc, t0) in enumerate(started):
                if i in ended:
                    continue
                # wait4: the CPU seconds of the child's whole tree (its waited-for children
                # included: inductor's compile workers and C++ compilers)
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    proc.returncode = os.waitstatus_to_exitcode(status)
                    ended[i] = (time.perf_counter() - t0, usage)
            if len(ended) < len(started):
                time.sleep(0.2)
        reports = []
        for i, (label, out, proc, _t0) in enumerate(started):
            wall, usage = ended[i]
            if proc.returncode != 0:
                raise SystemExit(f"worker {label} failed (exit {proc.returncode})")
            report = json.loads(out.read_text())
            report["process_wall_s"] = wall
            report["process_cpu_s"] = usage.ru_utime + usage.ru_stime
            report["label"] = label
            extra = f"; screen {report['screen_wall_s']:.1f} s" if "screen_wall_s" in report else ""
            print(
                f"[{time.strftime('%H:%M:%S')}] {label} done: load {report['load_s']:.1f} s ({report['how']}){extra}; "
                f"process {wall:.1f} s wall, {report['process_cpu_s']:.1f} s CPU; load average "
                f"{report['loadavg_before'][0]:.2f} -> {report['loadavg_after'][0]:.2f}",
                flush=True,
            )
            reports.append(report)
        return reports

    def child(worker: str, mode: str, label: str, *, inductor_dir: Path) -> dict:
        return finish(start(worker, mode, label, inductor_dir=inductor_dir))[0]

    runs: dict = {}
    runs["a_eager_load"] = child("load", "off", "a_eager_load", inductor_dir=inductor)
    if _listing(cache) or _count_files(inductor):
        raise SystemExit("the caches of case (b) are not empty")
    runs["b_fresh_compile"] = child("load", "on", "b_fresh_compile", inductor_dir=inductor)
    runs["c_saved_graph"] = child("load", "on", "c_saved_graph", inductor_dir=inductor)
    if not args.no_cold_inductor:
        runs["c2_saved_graph_cold_inductor"] = child(
            "load", "on", "c2_saved_graph_cold_inductor", inductor_dir=inductor_cold
        )
    screens: list[tuple[dict, dict]] = []
    skipped_repeats = 0
    last_repeat_s = 0.0
    for rep in range(args.repeats):
        elapsed = time.time() - started
        if rep > 0 and elapsed + last_repeat_s > args.budget_min * 60:
            skipped_repeats = args.repeats - rep
            print(
                f"[{time.strftime('%H:%M:%S')}] {skipped_repeats} repeat(s) skipped: {elapsed / 60:.1f} min "
                f"elapsed + {last_repeat_s / 60:.1f} min for another would pass --budget-min {args.budget_min}",
                flush=True,
            )
            break
        t_rep = time.perf_counter()
        order = ("off", "on") if rep % 2 == 0 else ("on", "off")
        labels = {mode: f"d{rep + 1}_screen_{'eager' if mode == 'off' else 'compiled'}" for mode in order}
        pair = {}
        if args.sequential:
            for mode in order:
                pair[mode] = child("screen", mode, labels[mode], inductor_dir=inductor)
        else:  # both at once, one core each (the CLI's CPU layout): the same machine load on both
            handles = {mode: start("screen", mode, labels[mode], inductor_dir=inductor) for mode in order}
            pair = dict(zip(order, finish(*(handles[mode] for mode in order)), strict=True))
        for mode in order:
            runs[labels[mode]] = pair[mode]
        screens.append((pair["off"], pair["on"]))
        last_repeat_s = time.perf_counter() - t_rep

    layout = Layout.for_device("cpu")
    summary = analyse(runs, screens, example_atoms=example_atoms, n_examples=n_examples,
                      processes=layout.processes)  # fmt: skip
    summary["elapsed_s"] = time.time() - started
    summary["screening_layout"] = "sequential" if args.sequential else "concurrent (eager and compiled at once)"
    summary["skipped_repeats"] = skipped_repeats
    summary["machine"] = {"platform": platform.platform(), "cpus": os.cpu_count(), "python": sys.version.split()[0]}
    summary["args"] = {k: str(v) for k, v in vars(args).items() if k not in ("worker", "input", "output")}
    print_summary(summary, runs, screens)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**summary, "runs": runs}, indent=1, default=str))
        print(f"json: {args.json}")
    be = summary["break_even_atoms"]
    print(f"break_even_atoms fresh {_fmt_w(be['fresh'])} saved {_fmt_w(be['saved'])}")
    return 0


def analyse(runs: dict, screens: list[tuple[dict, dict]], *, example_atoms: int, n_examples: int,
            processes: int) -> dict:  # fmt: skip
    """Per-structure savings, the fit through zero and the break-even work of each load case."""
    names = [row["name"] for row in screens[0][0]["structures"]]
    per: list[dict] = []
    for i, name in enumerate(names):
        eager = [pair[0]["structures"][i] for pair in screens]
        fast = [pair[1]["structures"][i] for pair in screens]
        assert all(r["name"] == name for r in eager + fast)
        e_t, c_t = [r["total_s"] for r in eager], [r["total_s"] for r in fast]
        e_cpu, c_cpu = [r["cpu_s"] for r in eager], [r["cpu_s"] for r in fast]
        per.append({
            "name": name,
            "n_atoms": eager[0]["n_atoms"],
            "n_primitive_atoms": eager[0]["n_primitive_atoms"],
            "example": i < n_examples,
            "eager_s": e_t,
            "compiled_s": c_t,
            "saving_s": statistics.mean(e_t) - statistics.mean(c_t),
            "saving_per_rep_s": [a - b for a, b in zip(e_t, c_t, strict=True)],
            "eager_cpu_s": e_cpu,
            "compiled_cpu_s": c_cpu,
            "cpu_saving_s": statistics.mean(e_cpu) - statistics.mean(c_cpu),
            "verdicts_eager": [r["verdict"] for r in eager],
            "verdicts_compiled": [r["verdict"] for r in fast],
            "relax_steps_eager": [r["relax_steps"] for r in eager],
            "relax_steps_compiled": [r["relax_steps"] for r in fast],
            "duplicate": any(r["duplicate_of"] for r in eager + fast),
            "model_calls_eager": [r["model_calls"] for r in eager],
            "model_calls_compiled": [r["model_calls"] for r in fast],
            "eager_fallbacks_compiled": [r["eager_calls"] for r in fast],
        })  # fmt: skip
    # Left out of the fit: duplicates (no work) and structures whose verdict differs between the
    # runs (the two arms did different work, e.g. a relaxation that diverged in one of them).
    for p in per:
        p["mismatch"] = len(set(p["verdicts_eager"] + p["verdicts_compiled"])) > 1
    used = [p for p in per if not p["duplicate"] and not p["mismatch"] and p["n_atoms"] > 0]
    fit = _fit(used, key=lambda p: p["saving_s"])
    fits_per_rep = [_fit(used, key=lambda p, j=j: p["saving_per_rep_s"][j]) for j in range(len(screens))]
    # load times: (a) and (c) are also measured by every screening process of the same kind
    eager_loads = [runs["a_eager_load"]["load_s"]] + [pair[0]["load_s"] for pair in screens]
    saved_loads = [runs["c_saved_graph"]["load_s"]] + [pair[1]["load_s"] for pair in screens]
    loads = {
        "eager": statistics.mean(eager_loads),
        "fresh": runs["b_fresh_compile"]["load_s"],
        "saved": statistics.mean(saved_loads),
    }
    if "c2_saved_graph_cold_inductor" in runs:
        loads["saved_cold_inductor"] = runs["c2_saved_graph_cold_inductor"]["load_s"]
    # The same in CPU seconds: the per-structure CPU time of the screening processes, and the CPU
    # time of the dedicated load processes (a, b, c, c'; whole process trees, imports included,
    # which cancel in the differences)
    fit_cpu = _fit(used, key=lambda p: p["cpu_saving_s"])
    cpu_loads = {"eager": runs["a_eager_load"]["process_cpu_s"], "fresh": runs["b_fresh_compile"]["process_cpu_s"],
                 "saved": runs["c_saved_graph"]["process_cpu_s"]}  # fmt: skip
    if "c2_saved_graph_cold_inductor" in runs:
        cpu_loads["saved_cold_inductor"] = runs["c2_saved_graph_cold_inductor"]["process_cpu_s"]
    k_cpu = fit_cpu["k_s_per_atom"]
    break_even_cpu = {
        case: (max(0.0, (cpu_loads[case] - cpu_loads["eager"]) / k_cpu) if k_cpu > 0 else math.inf)
        for case in cpu_loads if case != "eager"
    }  # fmt: skip
    k = fit["k_s_per_atom"]
    # Other estimators of k, for the sensitivity of W*: sum(saving)/sum(atoms) (the expected saving
    # of a run of many such structures) and the median per-structure saving per atom (robust to a
    # few long structures, but it ignores that the saving is concentrated in them)
    break_even_alt = {
        name: {case: (max(0.0, (loads[case] - loads["eager"]) / kk) if kk > 0 else math.inf)
               for case in loads if case != "eager"}
        for name, kk in (("ratio_of_sums", fit["k_ratio_of_sums"]), ("median", fit["ratio_median"]))
    }  # fmt: skip
    break_even = {
        case: (max(0.0, (loads[case] - loads["eager"]) / k) if k > 0 else math.inf)
        for case in loads if case != "eager"
    }  # fmt: skip
    demo = {
        "structures": n_examples,
        "atoms": example_atoms,
        "atoms_per_process": example_atoms / max(1, min(processes, n_examples)),
        "cli_processes": processes,
        "pays": {case: example_atoms / max(1, min(processes, n_examples)) >= w for case, w in break_even.items()},
        "pays_single_process": {case: example_atoms >= w for case, w in break_even.items()},
    }
    # The demo measured directly: the examples' own savings (they are smaller per atom than the
    # fitted k, which the generator cells dominate) against each process's extra load
    examples = [p for p in per[:n_examples] if not p["duplicate"]]
    shares = max(1, min(processes, n_examples))
    demo["saving_s"] = sum(p["saving_s"] for p in examples)
    demo["cpu_saving_s"] = sum(p["cpu_saving_s"] for p in examples)
    demo["pays_measured"] = {case: demo["saving_s"] / shares >= loads[case] - loads["eager"] for case in break_even}
    demo["pays_measured_cpu"] = {
        case: demo["cpu_saving_s"] / shares >= cpu_loads[case] - cpu_loads["eager"] for case in break_even_cpu
    }
    checks = {
        "eager_calls": [pair[1]["eager_calls"] for pair in screens],
        "compiled_model_calls": [pair[1]["model_calls_after_load"] for pair in screens],
        "eager_model_calls": [pair[0]["model_calls_after_load"] for pair in screens],
        "execution": [pair[1]["execution_after"] for pair in screens],
        "failure": [pair[1]["failure"] for pair in screens],
        "micro_eager_ms": [pair[0]["micro_ms_per_call"] for pair in screens],
        "micro_compiled_ms": [pair[1]["micro_ms_per_call"] for pair in screens],
        "eager_fallbacks_by_structure": {p["name"]: p["eager_fallbacks_compiled"] for p in per
                                         if any(p["eager_fallbacks_compiled"])},
        "verdict_mismatches": [p["name"] for p in per if p["mismatch"]],
        "screen_wall_s": {"eager": [pair[0]["screen_wall_s"] for pair in screens],
                          "compiled": [pair[1]["screen_wall_s"] for pair in screens]},
        "loadavg_1m": {label: [r["loadavg_before"][0], r["loadavg_after"][0]] for label, r in runs.items()},
    }  # fmt: skip
    return {
        "potential": POTENTIAL, "protocol": PROTOCOL, "torch_threads": 1,
        "loads_s": loads, "eager_loads_s": eager_loads, "saved_loads_s": saved_loads,
        "fit": fit, "fits_per_repeat": fits_per_rep,
        "break_even_atoms": break_even,
        "break_even_atoms_other_k": break_even_alt,
        "excluded_from_fit": [p["name"] for p in per if p not in used],
        "fit_cpu": fit_cpu, "load_process_cpu_s": cpu_loads, "break_even_atoms_cpu": break_even_cpu,
        "break_even_atoms_per_repeat": [
            {case: (max(0.0, (loads[case] - loads["eager"]) / f["k_s_per_atom"]) if f["k_s_per_atom"] > 0
                    else math.inf) for case in break_even} for f in fits_per_rep
        ],
        "demo": demo, "checks": checks, "structures": per,
    }  # fmt: skip


def _fit(rows: list[dict], *, key) -> dict:
    """Least squares through zero, saving = k * n_atoms, and the spread of the per-structure ratio."""
    n = [p["n_atoms"] for p in rows]
    s = [key(p) for p in rows]
    k = sum(a * b for a, b in zip(n, s, strict=True)) / sum(a * a for a in n)
    resid = [b - k * a for a, b in zip(n, s, strict=True)]
    ratios = sorted(b / a for a, b in zip(n, s, strict=True))
    ss_tot = sum(b * b for b in s)  # uncentred: the model has no intercept
    return {
        "k_s_per_atom": k,
        "k_ratio_of_sums": sum(s) / sum(n),
        "rms_residual_s": math.sqrt(sum(r * r for r in resid) / len(resid)),
        "r2_uncentred": 1.0 - sum(r * r for r in resid) / ss_tot if ss_tot > 0 else float("nan"),
        "ratio_min": ratios[0],
        "ratio_median": statistics.median(ratios),
        "ratio_max": ratios[-1],
        "ratio_stdev": statistics.stdev(ratios) if len(ratios) > 1 else 0.0,
        "n_structures": len(rows),
    }


def _fmt_w(w: float) -> str:
    return "inf" if math.isinf(w) else f"{w:.0f}"


def print_summary(summary: dict, runs: dict, screens: list[tuple[dict, dict]]) -> None:
    loads = summary["loads_s"]
    print()
    print(
        f"potential {POTENTIAL}, CPU, 1 torch thread per process, protocol {PROTOCOL}, {len(screens)} repeat(s) "
        f"of the screening, {summary['screening_layout']}"
        + (f"; {summary['skipped_repeats']} repeat(s) skipped for time" if summary["skipped_repeats"] else "")
    )
    print("loads (each in a fresh process; seconds of the load_potential call):")
    print(
        f"  (a)  eager                                   {loads['eager']:7.1f}   "
        f"(measurements: {', '.join(f'{x:.1f}' for x in summary['eager_loads_s'])})"
    )
    print(f"  (b)  compiled, fresh (empty caches)          {loads['fresh']:7.1f}   ({runs['b_fresh_compile']['how']})")
    print(
        f"  (c)  compiled, saved graph + inductor cache  {loads['saved']:7.1f}   "
        f"(measurements: {', '.join(f'{x:.1f}' for x in summary['saved_loads_s'])})"
    )
    if "saved_cold_inductor" in loads:
        print(f"  (c') compiled, saved graph, empty inductor   {loads['saved_cold_inductor']:7.1f}")
    print()
    reps = len(screens)
    head = (f"{'structure':44s} {'atoms':>5s} {'prim':>4s} "
            + " ".join(f"{'eager' + str(j + 1):>7s}" for j in range(reps)) + " "
            + " ".join(f"{'comp' + str(j + 1):>7s}" for j in range(reps))
            + f" {'saving':>7s} {'s/atom':>7s} {'cpu sav':>7s}"
            + "  verdicts (eager|compiled)  relax steps (e|c)")  # fmt: skip
    print(head)
    for p in summary["structures"]:
        name = p["name"] if len(p["name"]) <= 44 else "..." + p["name"][-41:]
        ratio = p["saving_s"] / p["n_atoms"] if p["n_atoms"] else float("nan")
        flag = (" DUP" if p["duplicate"] else "") + (" MISMATCH (not fitted)" if p["mismatch"] else "")
        print(f"{name:44s} {p['n_atoms']:5d} {str(p['n_primitive_atoms'] or '-'):>4s} "
              + " ".join(f"{x:7.2f}" for x in p["eager_s"]) + " "
              + " ".join(f"{x:7.2f}" for x in p["compiled_s"])
              + f" {p['saving_s']:7.2f} {ratio:7.3f} {p['cpu_saving_s']:7.2f}  "
              + f"{','.join(p['verdicts_eager'])}|{','.join(p['verdicts_compiled'])}"
              + f"  {p['relax_steps_eager']}|{p['relax_steps_compiled']}{flag}")  # fmt: skip
    tot_e = [sum(p["eager_s"][j] for p in summary["structures"]) for j in range(reps)]
    tot_c = [sum(p["compiled_s"][j] for p in summary["structures"]) for j in range(reps)]
    n_tot = sum(p["n_atoms"] for p in summary["structures"])
    print(f"{'sum':44s} {n_tot:5d} {'':4s} " + " ".join(f"{x:7.1f}" for x in tot_e) + " "
          + " ".join(f"{x:7.1f}" for x in tot_c))  # fmt: skip
    fit = summary["fit"]
    if summary["excluded_from_fit"]:
        print(f"left out of the fit: {', '.join(summary['excluded_from_fit'])}")
    print()
    print(
        f"fit saving = k * n_atoms (least squares through zero, {fit['n_structures']} structures, mean of repeats): "
        f"k = {fit['k_s_per_atom']:.4f} s/atom (sum(saving)/sum(atoms) = {fit['k_ratio_of_sums']:.4f}); "
        f"rms residual {fit['rms_residual_s']:.2f} s; uncentred R^2 {fit['r2_uncentred']:.2f}"
    )
    print(
        f"  per-structure saving/atom: min {fit['ratio_min']:.3f}, median {fit['ratio_median']:.3f}, "
        f"max {fit['ratio_max']:.3f}, stdev {fit['ratio_stdev']:.3f} s/atom"
    )
    for j, f in enumerate(summary["fits_per_repeat"]):
        print(
            f"  repeat {j + 1} alone: k = {f['k_s_per_atom']:.4f} s/atom, rms residual {f['rms_residual_s']:.2f} s, "
            f"ratio median {f['ratio_median']:.3f} [{f['ratio_min']:.3f}, {f['ratio_max']:.3f}]"
        )
    print()
    labels = {
        "fresh": "(b) fresh machine",
        "saved": "(c) saved graph",
        "saved_cold_inductor": "(c') saved graph, cold inductor",
    }
    print("break-even work W* = (compiled load - eager load) / k, atoms summed over the structures (per process):")
    alt = summary["break_even_atoms_other_k"]
    for case, w in summary["break_even_atoms"].items():
        per_rep = ", ".join(_fmt_w(b[case]) for b in summary["break_even_atoms_per_repeat"])
        print(
            f"  {labels[case]:34s} delta load {loads[case] - loads['eager']:6.1f} s  W* = {_fmt_w(w):>6s} atoms"
            f"   (per repeat: {per_rep}; with k = sum/sum: {_fmt_w(alt['ratio_of_sums'][case])}, "
            f"with k = median saving/atom: {_fmt_w(alt['median'][case])})"
        )
    fc, cl = summary["fit_cpu"], summary["load_process_cpu_s"]
    print(
        f"the same in CPU seconds (less sensitive to the machine's load): k = {fc['k_s_per_atom']:.4f} CPU s/atom "
        f"(saving/atom median {fc['ratio_median']:.3f} [{fc['ratio_min']:.3f}, {fc['ratio_max']:.3f}]); "
        f"load processes {', '.join(f'{c} {v:.1f}' for c, v in cl.items())} CPU s"
    )
    for case, w in summary["break_even_atoms_cpu"].items():
        print(f"  {labels[case]:34s} delta CPU {cl[case] - cl['eager']:6.1f} s  W* = {_fmt_w(w):>6s} atoms")
    demo = summary["demo"]
    print()
    print(
        f"make demo (examples/): {demo['structures']} structures, {demo['atoms']} atoms; the CLI's CPU layout runs "
        f"{demo['cli_processes']} process(es): {demo['atoms_per_process']:.1f} atoms per process"
    )
    yes = {True: "yes", False: "no"}
    shares = max(1, min(demo["cli_processes"], demo["structures"]))
    print(
        f"  measured on examples/ themselves: saving {demo['saving_s']:.1f} s wall, {demo['cpu_saving_s']:.1f} s CPU "
        f"in all ({demo['saving_s'] / shares:.1f} / {demo['cpu_saving_s'] / shares:.1f} s per process)"
    )
    for case in summary["break_even_atoms"]:
        print(
            f"  {labels[case]:34s} compiling pays: by W* per process {yes[demo['pays'][case]]}, "
            f"in one process {yes[demo['pays_single_process'][case]]}; measured per process: wall "
            f"{yes[demo['pays_measured'][case]]}, CPU {yes[demo['pays_measured_cpu'][case]]}"
        )
    checks = summary["checks"]
    print()
    print("checks:")
    print(f"  compiled execution: {checks['execution']}; failure: {checks['failure']}")
    print(
        f"  compiled model calls {checks['compiled_model_calls']}, of which fell back to eager (eager_calls) "
        f"{checks['eager_calls']}; eager model calls {checks['eager_model_calls']}"
    )
    for name, fallbacks in checks["eager_fallbacks_by_structure"].items():
        p = next(q for q in summary["structures"] if q["name"] == name)
        print(
            f"    {name} ({p['n_atoms']} atoms, primitive {p['n_primitive_atoms']}): {fallbacks} of "
            f"{p['model_calls_compiled']} compiled-model calls ran eager"
        )
    for j, (e, c) in enumerate(zip(checks["micro_eager_ms"], checks["micro_compiled_ms"], strict=True)):
        print(
            f"  repeat {j + 1} force+stress per call (rattled Si, ms): "
            + ", ".join(f"{n} atoms {e[n]:.1f} -> {c[n]:.1f} ({e[n] / c[n]:.2f}x)" for n in e)
        )
    print(
        f"  screen wall s: eager {[round(x, 1) for x in checks['screen_wall_s']['eager']]}, "
        f"compiled {[round(x, 1) for x in checks['screen_wall_s']['compiled']]}"
    )
    print(f"  verdict mismatches (any run): {checks['verdict_mismatches'] or 'none'}")
    print(
        "  load average 1 min (before -> after each process): "
        + "; ".join(f"{k} {v[0]:.1f}->{v[1]:.1f}" for k, v in checks["loadavg_1m"].items())
    )
    if summary.get("elapsed_s") is not None:
        print(f"elapsed {summary['elapsed_s'] / 60:.1f} min")


if __name__ == "__main__":
    sys.exit(main())
