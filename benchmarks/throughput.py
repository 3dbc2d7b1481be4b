"""Throughput benchmark: the PhononBench reference loop against the pipeline, same structures, one run.

    python benchmarks/throughput.py --n 12 --potential sevennet-0 --protocol phononbench

Each arm runs in a fresh subprocess of this script (`--worker reference|pipeline`) so that its
peak memory is its own. The last line printed is `speedup <ratio> agreement <agreeing>/<total>`.
"""

from __future__ import annotations

import os

# Both arms: a fair baseline, not a gain of the pipeline (OpenBLAS threads fight torch's on CPU).
os.environ["OPENBLAS_NUM_THREADS"] = "1"

import argparse
import json
import math
import pickle
import platform
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

DATA = Path(os.environ.get("PHONONSCREEN_SHARED_DATA", ROOT.parent / "shared" / "data"))
# the benchmark hands each arm a folder for its stage log (read back for the GPU-utilisation split)
STAGE_LOG_ENV = "PHONONSCREEN_STAGE_LOG"
# Real generator outputs, raw and unrelaxed (shared/data/README.md section 1).
GENERATORS = {
    "mattergen": "mattergen_unconditional_pr54/generated_crystals_cif.zip",
    "diffcsp": "diffcsp_mp20/DiffCSP_mp_20.pt",
    "cdvae": "cdvae_eval_gen_jarvis/eval_gen.pt",
    "crystalformer": "crystalformer_mp20/CrystalFormer_mp_20.csv.gz",
}
# Pipeline timing keys -> the columns printed; unknown keys land in "other".
STAGES = {
    "relax": ("symmetrize", "relax"),
    "gamma": ("gamma",),
    "forces": ("forces", "confirm_forces"),
    "post": ("post", "confirm_post", "elastic"),
}
BORDERLINE_THZ = 0.05  # worst frequencies this close to the threshold are numerical noise territory


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.worker:
        return run_worker(args)
    return run_benchmark(args)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, required=True, help="structures in the sample")
    p.add_argument("--potential", default="sevennet-0")
    p.add_argument(
        "--protocol",
        default="phononbench",
        choices=("phononbench", "default", "both"),
        help="the pipeline's protocol; both: one pipeline arm per protocol against one shared reference arm",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=1, help="pipeline processes; 0: the layout the pipeline picks")
    p.add_argument(
        "--max-atoms", type=int, default=20, help="sample only cells of at most this many atoms (MP-20 generators: 20)"
    )
    p.add_argument(
        "--compile",
        default="auto",
        choices=("auto", "on", "off"),
        help="the pipeline's torch.compile mode (the reference always runs eager, as PhononBench did)",
    )
    p.add_argument(
        "--prescreen",
        default=None,
        help="the pipeline's cheap first pass (e.g. sevennet-0 before --potential auto); the reference has none",
    )
    p.add_argument("--prescreen-margin", type=float, default=None, help="THz; default: the CLI's")
    p.add_argument("--out", type=Path, default=Path("benchmark-out"))
    p.add_argument("--data", type=Path, default=DATA, help="the shared data folder")
    p.add_argument("--worker", choices=("reference", "pipeline"), help=argparse.SUPPRESS)
    p.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    return p


# --- the sample ----------------------------------------------------------------------------


def sample_structures(*, n: int, seed: int, data: Path, max_atoms: int, elements: frozenset[str] | None) -> list:
    """A fixed, seeded sample of n generator outputs, an equal share per generator, interleaved.

    Within each generator's share, P1 cells (no symmetry at the protocols' symprec) and the rest
    are drawn in that generator's own proportion of P1 cells among its outputs that pass the
    filter: what it emits is what the benchmark screens (P1 cells cost the most, and DiffCSP's and
    CDVAE's outputs are mostly P1, CrystalFormer's never). Records that fail ingest (including cells
    above `max_atoms`) or hold elements the potential does not cover are skipped; duplicates are
    kept as the generators produced them.
    """
    from workers.screening.ingest.read import read_structures

    pools = {}
    for gen, rel in GENERATORS.items():
        records = read_structures(data / rel, max_atoms=max_atoms, allowed_elements=elements)
        pools[gen] = [r for r in records if r.ok]
    quotas = {gen: n // len(pools) + (i < n % len(pools)) for i, gen in enumerate(pools)}
    picks = {}
    for gen, pool in pools.items():
        rng = random.Random(f"{seed}:{gen}")
        flags = [is_p1(r.structure) for r in pool]
        p1 = [r for r, flag in zip(pool, flags, strict=True) if flag]
        rest = [r for r, flag in zip(pool, flags, strict=True) if not flag]
        want = min(quotas[gen], len(pool))
        n_p1 = min(len(p1), max(want - len(rest), round(want * len(p1) / len(pool)))) if pool else 0
        chosen = rng.sample(p1, n_p1) + rng.sample(rest, want - n_p1)
        rng.shuffle(chosen)
        picks[gen] = chosen
    sample = []
    for i in range(max(quotas.values(), default=0)):
        sample.extend(picks[gen][i] for gen in picks if i < len(picks[gen]))
    return sample


def is_p1(structure) -> bool:
    """Whether `structure` has no symmetry but the identity at the protocols' symprec, by pymatgen's
    analyzer (5° angle tolerance) on the cell as the generator wrote it: a sampling rule only. The
    pipeline asks spglib about its own standardised cell (`relax.spacegroup_before`), which called
    MatterGen #39 P1 where this does not (the cells of the other generators were not compared)."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from workers.screening.protocols import get_protocol

    try:
        return SpacegroupAnalyzer(structure, symprec=get_protocol("default").symprec).get_space_group_number() == 1
    except Exception:  # noqa: BLE001 - spglib found no cell to work with: no symmetry either
        return True


def duplicate_groups(records: list, *, protocol: str) -> list[list[str]]:
    """Groups of sample names the pipeline itself treats as one crystal under `protocol`."""
    from workers.screening.pipeline import find_duplicates
    from workers.screening.protocols import get_protocol

    groups: dict[int, list[str]] = {}
    for record, first in zip(records, find_duplicates(records, protocol=get_protocol(protocol)), strict=True):
        if first is not None:
            groups.setdefault(first, [records[first].name]).append(record.name)
    return list(groups.values())


# --- the arms (each in its own process) ------------------------------------------------------


def run_worker(args: argparse.Namespace) -> int:
    import torch

    from workers.screening.potentials.registry import load_potential

    records = pickle.loads(args.input.read_bytes())
    start = time.perf_counter()
    # A process-parallel pipeline loads the model in each worker; a copy here would only add memory.
    in_process = args.worker == "reference" or args.jobs == 1
    # The reference runs the model eager, as PhononBench did; the pipeline as it would in production.
    compile_mode = "off" if args.worker == "reference" else args.compile
    cores = os.cpu_count() or 1
    if in_process:  # one process with every core (the fair single-process baseline), set before
        torch.set_num_threads(cores)  # loading so a compiled model is built for the threads it runs on
    potential = (
        load_potential(args.potential, compile=compile_mode, compile_cache=_compile_cache()) if in_process else None
    )
    load_s = time.perf_counter() - start
    loads = [os.getloadavg()]
    # An eager model load is left out of both arms' wall time; compiling is work the pipeline chose
    # to do, so its in-process load (warm-up compile included) counts: the clock keeps running from
    # before the load. Worker processes' loads are inside the wall time anyway.
    counted = in_process and potential.info.execution != "eager"
    if not counted:
        start = time.perf_counter()
    if args.worker == "reference":
        layout = {"processes": 1, "torch_threads": cores, "entry": "reference_phononbench"}
        results, info = _reference_arm(records, potential), _jsonable(potential.info)
    else:
        results, layout, info = _pipeline_arm(records, potential=potential, args=args, cores=cores)
    wall_s = time.perf_counter() - start
    loads.append(os.getloadavg())
    mib = 1024.0  # ru_maxrss is in KiB on Linux
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    report = {
        "arm": args.worker,
        "wall_s": wall_s,
        "potential_load_s": load_s,
        "load_counted_in_wall": counted,
        "potential": info,
        "layout": layout,
        "loadavg_1_5_15": loads,
        # CPU seconds of the whole arm (this process and its reaped children), potential load included
        "cpu_s": sum(u.ru_utime + u.ru_stime for u in usage),
        "maxrss_self_mib": usage[0].ru_maxrss / mib,
        "maxrss_children_mib": usage[1].ru_maxrss / mib,
        "results": results,
    }
    args.output.write_text(json.dumps(report, default=_jsonable))
    return 0


def _reference_arm(records: list, potential) -> list[dict]:
    from reference_phononbench import screen_reference

    out = []
    for i, rec in enumerate(records, 1):
        res = screen_reference(rec.structure, name=rec.name, calculator=potential.calculator)
        out.append(res.as_dict())
        _progress("reference", i, len(records), res.name, res.verdict, sum(res.timings_s.values()))
    return out


def _pipeline_arm(records: list, *, potential, args: argparse.Namespace, cores: int) -> tuple[list[dict], dict, dict]:
    """The project's pipeline: `screen_structures` in this process (--jobs 1), or `screen_parallel`
    over --jobs processes sharing the cores (--jobs 0: the layout the pipeline picks itself)."""
    from workers.screening.protocols import get_protocol

    protocol = get_protocol(args.protocol)
    done = [0]

    def progress(res) -> None:
        done[0] += 1
        _progress("pipeline", done[0], len(records), res.name, res.verdict, res.timings_s.get("total", 0.0))

    if args.jobs == 1:
        from workers.screening.pipeline import screen_structures

        layout = {"processes": 1, "torch_threads": cores, "entry": "screen_structures"}
        results = screen_structures(
            records,
            protocol=protocol,
            potential=potential,
            progress=progress,
            stage_log=_stage_log(),
            opinions=_opinions(args, device=potential.info.device).load(),
        )
        return [_slim(r) for r in results], layout, _jsonable(potential.info)

    from workers.screening.parallel import Layout, PotentialSpec, screen_parallel
    from workers.screening.potentials.registry import resolve_device

    device = resolve_device("auto")
    if args.jobs > 1:
        chosen = Layout(processes=args.jobs, threads_per_process=max(1, cores // args.jobs))
    else:
        chosen = Layout.for_device(device, cores=cores)
    layout = {"processes": chosen.processes, "torch_threads": chosen.threads_per_process, "entry": "screen_parallel"}
    spec = PotentialSpec(name=args.potential, device=device, compile=args.compile, compile_cache=_compile_cache())
    results = screen_parallel(
        records,
        protocol=protocol,
        potential=spec,
        layout=chosen,
        progress=progress,
        stage_log=_stage_log(),
        opinions=_opinions(args, device=device),
    )
    info = _jsonable(results[0].provenance.potential) if results else {}
    return [_slim(r) for r in results], layout, info


def _opinions(args: argparse.Namespace, *, device: str):
    """The pipeline arm's prescreen (--prescreen), as the CLI builds it."""
    from workers.screening.opinions import DEFAULT_PRESCREEN_MARGIN_THZ
    from workers.screening.parallel import OpinionSpecs, PotentialSpec

    margin = DEFAULT_PRESCREEN_MARGIN_THZ if args.prescreen_margin is None else args.prescreen_margin
    prescreen = PotentialSpec(name=args.prescreen, device=device) if args.prescreen else None
    return OpinionSpecs(prescreen=prescreen, prescreen_margin_thz=margin)


def _compile_cache() -> Path:
    """Where compiled graphs are kept: the app's setting (PHONONSCREEN_COMPILE_CACHE), as the CLI uses."""
    from app.config import Settings

    return Settings().compile_cache


def _stage_log() -> Path | None:
    """The folder this arm's stage intervals go to (set by `run_arm` for its child process)."""
    folder = os.environ.get(STAGE_LOG_ENV)
    return Path(folder) if folder else None


def _slim(result) -> dict:
    data = result.as_dict(bulky=False)
    data.pop("provenance", None)  # the same for every result; kept once per arm
    data.get("extra", {}).pop("traceback", None)
    return data


def _progress(arm: str, i: int, n: int, name: str, verdict: str, seconds: float) -> None:
    print(f"[{arm} {i}/{n}] {name}: {verdict} ({seconds:.1f} s)", file=sys.stderr, flush=True)


# --- the driver ----------------------------------------------------------------------------


def run_arm(arm: str, *, protocol: str, sample_path: Path, args: argparse.Namespace, workdir: Path) -> dict:
    """Run one arm in a fresh interpreter; add the sampled peak RSS of its whole process tree."""
    out = workdir / f"{arm}-{protocol}.json"
    stage_dir = workdir / f"{arm}-{protocol}-stages"
    stage_dir.mkdir()
    cmd = [
        sys.executable, str(Path(__file__).resolve()), "--worker", arm, "--input", str(sample_path),
        "--output", str(out), "--n", str(args.n), "--potential", args.potential, "--protocol", protocol,
        "--jobs", str(args.jobs), "--compile", args.compile,
    ]  # fmt: skip
    if args.prescreen:
        cmd += ["--prescreen", args.prescreen]
    if args.prescreen_margin is not None:
        cmd += ["--prescreen-margin", str(args.prescreen_margin)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env={**os.environ, STAGE_LOG_ENV: str(stage_dir)})
    peak = _TreeRss(proc.pid)
    gpu = GpuSampler()
    peak.start()
    gpu.start()
    rc = proc.wait()
    peak.stop()
    gpu.stop()
    if rc != 0:
        raise SystemExit(f"{arm} arm exited with status {rc}")
    report = json.loads(out.read_text())
    report["process_wall_s"] = time.perf_counter() - start
    report["peak_tree_rss_mib"] = peak.peak_mib
    report["gpu_utilisation"] = gpu_utilisation(gpu.samples, read_stage_log(stage_dir), available=gpu.available)
    return report


class GpuSampler(threading.Thread):
    """GPU utilisation (%) from `nvidia-smi` every `every_s`, as (Unix time, mean over GPUs)."""

    def __init__(self, *, every_s: float = 0.5, command: str = "nvidia-smi") -> None:
        super().__init__(daemon=True)
        import shutil

        self.command = shutil.which(command)
        self.available = self.command is not None
        self.every_s = every_s
        self.samples: list[tuple[float, float]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while self.available and not self._halt.is_set():
            try:
                out = subprocess.run(
                    [self.command, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                    capture_output=True, text=True, timeout=10,
                )  # fmt: skip
                values = [float(v) for v in out.stdout.split() if v.strip()]
                if out.returncode == 0 and values:
                    self.samples.append((time.time(), sum(values) / len(values)))
            except (OSError, ValueError, subprocess.SubprocessError):
                pass
            self._halt.wait(self.every_s)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def read_stage_log(folder: Path) -> list[tuple[str, float, float]]:
    """(stage, start, end) from every process's stage log in `folder` (see workers/screening/timing.py)."""
    intervals = []
    for path in sorted(folder.glob("stages-*.tsv")):
        for line in path.read_text().splitlines():
            stage, start, end = line.split("\t")
            intervals.append((stage, float(start), float(end)))
    return intervals


def gpu_utilisation(
    samples: list[tuple[float, float]], intervals: list[tuple[str, float, float]], *, available: bool
) -> dict | None:
    """Mean GPU utilisation over the whole arm and over the samples taken inside a force stage."""
    if not available:
        return None
    forces = [(a, b) for stage, a, b in intervals if stage in STAGES["forces"]]
    during = [u for t, u in samples if any(a <= t <= b for a, b in forces)]
    mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    return {"samples": len(samples), "mean_pct": mean([u for _t, u in samples]),
            "force_stage_samples": len(during), "force_stage_mean_pct": mean(during)}  # fmt: skip


class _TreeRss(threading.Thread):
    """Samples the summed RSS of a process and all its descendants; keeps the maximum."""

    def __init__(self, pid: int, *, every_s: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.pid, self.every_s, self.peak_mib = pid, every_s, 0.0
        self._halt = threading.Event()

    def run(self) -> None:
        import psutil  # a declared dependency (pyproject)

        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._halt.is_set():
            total = 0
            try:
                for p in [root, *root.children(recursive=True)]:
                    try:
                        total += p.memory_info().rss
                    except psutil.Error:
                        pass
            except psutil.Error:
                return
            self.peak_mib = max(self.peak_mib, total / 2**20)
            self._halt.wait(self.every_s)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def run_benchmark(args: argparse.Namespace) -> int:
    from workers.screening.potentials.registry import clear_potential_cache, load_potential

    # the element list, and the fixed-cell timing that makes runs on different machines comparable;
    # each arm loads its own model in its own process
    eager = load_potential(args.potential, device="cpu", compile="off")
    elements, calls_ms = eager.elements, fixed_cell_calls_ms(eager)
    clear_potential_cache()
    sample = sample_structures(n=args.n, seed=args.seed, data=args.data, max_atoms=args.max_atoms, elements=elements)
    if len(sample) < args.n:
        print(f"warning: only {len(sample)} structures available for --n {args.n}", file=sys.stderr)
    # `both` measures the reference loop once and each protocol's pipeline against it, in one run
    protocols = ("default", "phononbench") if args.protocol == "both" else (args.protocol,)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="throughput-") as tmp:
        workdir = Path(tmp)
        sample_path = workdir / "sample.pkl"
        sample_path.write_bytes(pickle.dumps(sample))
        # the reference loop is the same whatever the pipeline's protocol
        reference = run_arm("reference", protocol=protocols[0], sample_path=sample_path, args=args, workdir=workdir)
        pipelines = {
            protocol: run_arm("pipeline", protocol=protocol, sample_path=sample_path, args=args, workdir=workdir)
            for protocol in protocols
        }
    for protocol in protocols:  # phononbench last: its `speedup` line ends the output
        arms = {"reference": reference, "pipeline": pipelines[protocol]}
        one = argparse.Namespace(**{**vars(args), "protocol": protocol})
        report = {
            "command": " ".join(["python", *sys.argv]),
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(one).items() if k not in ("worker", "input", "output")},
            "machine": {**_machine(), "eager_call_ms_1_thread": calls_ms},
            "sample": [
                {"name": r.name, "generator": _generator(r.source), "formula": r.structure.composition.reduced_formula, "n_sites": len(r.structure)}
                for r in sample
            ],
            "sample_filter": f"ingest ok, <= {args.max_atoms} atoms, elements covered by {args.potential}",
            "duplicate_groups": duplicate_groups(sample, protocol=protocol),
            "summary": summarize(arms, n=len(sample)),
            "comparison": compare(reference["results"], pipelines[protocol]["results"], protocol=protocol),
            "arms": arms,
        }  # fmt: skip
        path = args.out / f"throughput_{protocol}_{args.potential}_n{len(sample)}_seed{args.seed}_jobs{args.jobs}.json"
        path.write_text(json.dumps(report, indent=1, default=_jsonable))
        print_report(report, path=path, args=one)
    return 0


def _generator(source: str) -> str:
    return next((gen for gen, rel in GENERATORS.items() if source.endswith(Path(rel).name)), "?")


def cpu_model() -> str:
    """The CPU's name as the kernel reports it (/proc/cpuinfo), else what Python knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fixed_cell_calls_ms(potential, *, repeats: int = 5) -> dict[str, float]:
    """Median milliseconds of one eager forces + stress call on 1 torch thread (how the pipeline's
    workers run) for a fixed cell, the rattled 8-atom diamond Si that compiled models warm up on,
    and its 2x2x2 supercell: the speed of this machine for this potential, printed beside every
    figure so that runs compare."""
    import torch

    from workers.screening.potentials.registry import _rattled_silicon

    atoms = _rattled_silicon()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = {}
        for label, cell in (("si8", atoms), ("si64", atoms * (2, 2, 2))):
            times = []
            for i in range(repeats + 1):
                probe = cell.copy()
                probe.calc = potential.new_calculator()
                start = time.perf_counter()
                probe.get_forces()
                probe.get_stress()
                if i:  # the first call builds what later calls reuse
                    times.append(time.perf_counter() - start)
            out[label] = 1e3 * sorted(times)[len(times) // 2]
        return out
    finally:
        torch.set_num_threads(threads)


def _machine() -> dict:
    import torch

    return {
        "cpu_model": cpu_model(),
        "torch_threads_default": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "loadavg_at_end": os.getloadavg(),
    }


def summarize(arms: dict, *, n: int) -> dict:
    out = {}
    for arm, rep in arms.items():
        split = dict.fromkeys((*STAGES, "other"), 0.0)
        for res in rep["results"]:
            for key, seconds in res["timings_s"].items():
                if key == "total":
                    continue
                stage = next((s for s, keys in STAGES.items() if key in keys), "other")
                split[stage] += seconds
        out[arm] = {
            "structures": n,
            "wall_s": rep["wall_s"],
            "structures_per_hour": n / rep["wall_s"] * 3600 if rep["wall_s"] > 0 else math.inf,
            "cpu_s": rep["cpu_s"],
            "loadavg_1min_start_end": [rep["loadavg_1_5_15"][0][0], rep["loadavg_1_5_15"][-1][0]],
            "time_split_s": split,
            "peak_tree_rss_mib": rep["peak_tree_rss_mib"],
            "maxrss_self_mib": rep["maxrss_self_mib"],
            "maxrss_largest_child_mib": rep["maxrss_children_mib"],
            "verdicts": _count(r["verdict"] for r in rep["results"]),
            "atom_force_evaluations": sum(map(WORK[arm], rep["results"])),
            "layout": rep["layout"],
        }
    ref, pipe = out["reference"]["structures_per_hour"], out["pipeline"]["structures_per_hour"]
    out["speedup"] = pipe / ref if ref > 0 else math.nan
    work = out["pipeline"]["atom_force_evaluations"]
    out["work_ratio"] = out["reference"]["atom_force_evaluations"] / work if work else math.nan
    return out


def reference_work(res: dict) -> int:
    """Atoms whose forces the reference evaluated: relax steps x cell + displacements x 2x2x2 supercell."""
    return res["relax_steps"] * res["n_sites"] + res["n_displacements"] * 8 * res["n_sites"]


def pipeline_work(res: dict) -> int:
    """The same count for the pipeline: relax, Γ-check displacements, supercell runs (confirmation
    included) and the elastic-tensor strains (12 stress calls), each times the cell it ran on."""
    extra = res.get("extra") or {}
    n = (extra.get("input_to_primitive") or {}).get("n_primitive_atoms") or res["n_sites"]
    work = ((res.get("relax") or {}).get("steps") or 0) * n
    gamma = extra.get("gamma_first")
    if isinstance(gamma, dict):
        work += (gamma.get("n_displacements") or 0) * n
    for run in (res.get("phonons"), res.get("confirmation_of")):
        if run:
            work += run["n_displacements"] * run["n_supercell_atoms"]
    if res.get("elastic_tensor_gpa") is not None:
        work += 12 * n
    return work


# Contention-proof complement to wall time: other users' load changes seconds, not this count.
WORK = {"reference": reference_work, "pipeline": pipeline_work}


def _count(items) -> dict[str, int]:
    counts: dict[str, int] = {}
    for x in items:
        counts[x] = counts.get(x, 0) + 1
    return counts


# --- verdict agreement ---------------------------------------------------------------------


def compare(reference: list[dict], pipeline: list[dict], *, protocol: str) -> dict:
    """Verdict agreement, every disagreement listed with both verdicts, frequencies and a reason.

    `phononbench`: the pipeline's verdict must equal the reference's (all four labels).
    `default`: the reference's stable/not-stable must equal the pipeline's `stable_phononbench`;
    where the default verdict itself differs from the reference, that is listed separately.
    """
    rows, disagreements, default_differs = [], [], []
    for ref, pipe in zip(reference, pipeline, strict=True):
        row = {
            "name": ref["name"],
            "reference": ref["verdict"],
            "pipeline": pipe["verdict"],
            "pipeline_stable_phononbench": pipe["stable_phononbench"],
            "reference_worst_thz": ref["min_path_frequency_thz"],
            "pipeline_worst_path_thz": (pipe.get("phonons") or {}).get("worst_path_frequency_thz"),
            "pipeline_worst_thz": pipe.get("min_frequency_thz"),
        }
        if protocol == "phononbench":
            row["agree"] = ref["verdict"] == pipe["verdict"]
        else:
            row["agree"] = (ref["verdict"] == "stable") == bool(pipe["stable_phononbench"])
        row["agree_stable_vs_not"] = (ref["verdict"] == "stable") == (pipe["verdict"] == "stable")
        if not row["agree"]:
            disagreements.append({**row, "why": explain(ref, pipe)})
        if protocol == "default" and ref["verdict"] != pipe["verdict"]:
            default_differs.append({**row, "why": explain(ref, pipe)})
        rows.append(row)
    out = {
        "rule": "verdict == verdict"
        if protocol == "phononbench"
        else "reference stable == pipeline stable_phononbench",
        "agreeing": sum(r["agree"] for r in rows),
        "total": len(rows),
        "agreeing_stable_vs_not": sum(r["agree_stable_vs_not"] for r in rows),
        "rows": rows,
        "disagreements": disagreements,
    }
    if protocol == "default":
        out["default_verdict_differs"] = default_differs
    return out


def explain(ref: dict, pipe: dict) -> str:
    """Best-effort account of why two verdicts differ, from what each arm recorded."""
    facts = []
    relax = pipe.get("relax") or {}
    if ref["verdict"] in ("relax_failed", "failed") or pipe["verdict"] in ("relax_failed", "failed"):
        facts.append(
            f"reference {ref['verdict']} ({ref['reason'] or 'relaxed'}; {ref['relax_steps']} steps, "
            f"{ref['relax_cycles']} cycles, final fmax {_fmt(ref['relax_max_force_ev_per_angstrom'])} eV/A)"
        )
        facts.append(
            f"pipeline {pipe['verdict']} ({pipe['reason'] or 'relaxed'}; {relax.get('steps')} steps, "
            f"{relax.get('cycles')} cycles, final fmax {_fmt(relax.get('max_force_ev_per_angstrom'))} eV/A)"
        )
        return "; ".join(facts)
    ref_f = ref["min_path_frequency_thz"]
    pipe_path = (pipe.get("phonons") or {}).get("worst_path_frequency_thz")
    worst = pipe.get("worst_mode") or {}
    facts.append(f"reference worst path {_fmt(ref_f)} THz, pipeline worst path {_fmt(pipe_path)} THz")
    if worst:
        facts.append(
            f"pipeline worst mode {_fmt(worst.get('frequency_thz'))} THz at q={worst.get('qpoint')} "
            f"({worst.get('where')}, {'acoustic' if worst.get('acoustic') else 'optical'}, "
            f"{'commensurate' if worst.get('commensurate') else 'incommensurate'})"
        )
    if pipe.get("reason"):
        facts.append(f"pipeline reason: {pipe['reason']}")
    if pipe.get("born_stable") is not None:
        facts.append(f"Born criterion {'passes' if pipe['born_stable'] else 'fails'}")
    near = [f for f in (ref_f, pipe_path) if f is not None and abs(f + 1e-3) < BORDERLINE_THZ]
    if near:
        facts.append(f"borderline: a worst path frequency within {BORDERLINE_THZ} THz of the -1e-3 THz threshold")
    e_ref, e_pipe = ref.get("energy_per_atom_ev"), relax.get("energy_per_atom_ev")
    if e_ref is not None and e_pipe is not None:
        facts.append(f"relaxed energy/atom differs by {1000 * (e_pipe - e_ref):+.2f} meV")
    facts.append(f"relax steps {ref['relax_steps']} (reference) vs {relax.get('steps')} (pipeline)")
    return "; ".join(facts)


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.4g}"


# --- printing ------------------------------------------------------------------------------


def print_report(report: dict, *, path: Path, args: argparse.Namespace) -> None:
    s, c = report["summary"], report["comparison"]
    gens = _count(x["generator"] for x in report["sample"])
    print(f"sample: {len(report['sample'])} structures (seed {args.seed}; {report['sample_filter']}): {gens}")
    print(f"duplicate groups in the sample (the pipeline's dedup): {len(report['duplicate_groups'])}")
    m = report["machine"]
    calls = m["eager_call_ms_1_thread"]
    print(
        f"machine: {m['cpu_model']}, {m['cpu_count']} cores, torch {m['torch']} ({m['torch_threads_default']} threads "
        f"by default); eager {args.potential} forces+stress on 1 thread: 8-atom Si {calls['si8']:.1f} ms, "
        f"64-atom Si {calls['si64']:.1f} ms"
    )
    prescreen = f", prescreen {args.prescreen} in the pipeline" if args.prescreen else ""
    print(f"potential {args.potential}{prescreen}, protocol {args.protocol}, OPENBLAS_NUM_THREADS=1 in both arms")
    header = (
        f"{'arm':<10} {'layout':<9} {'wall s':>8} {'struct/h':>9} {'relax':>8} {'gamma':>7} {'forces':>8} "
        f"{'post':>7} {'other':>7} {'peak MiB':>9} {'cpu s':>8} {'load 1m':>11}"
    )
    print(header)
    for arm in ("reference", "pipeline"):
        a = s[arm]
        t = a["time_split_s"]
        lay = a["layout"]
        layout = f"{lay.get('processes')}p x {lay.get('torch_threads')}t"
        load = "{:.1f}->{:.1f}".format(*a["loadavg_1min_start_end"])
        print(
            f"{arm:<10} {layout:<9} {a['wall_s']:>8.1f} {a['structures_per_hour']:>9.1f} {t['relax']:>8.1f} "
            f"{t['gamma']:>7.1f} {t['forces']:>8.1f} {t['post']:>7.1f} {t['other']:>7.1f} {a['peak_tree_rss_mib']:>9.0f} "
            f"{a['cpu_s']:>8.1f} {load:>11}"
        )
    print(
        "(time split: seconds summed over structures and processes; peak MiB: summed RSS of the arm's "
        "process tree; cpu s: user+system of the arm incl. potential load; load 1m: machine load average "
        "at the arm's start and end: other users share this machine)"
    )
    for arm in ("reference", "pipeline"):
        rep = report["arms"][arm]
        execution = (rep.get("potential") or {}).get("execution", "eager")
        where = (
            f"in-process load {rep['potential_load_s']:.1f} s, counted in wall"
            if rep.get("load_counted_in_wall")
            else "each worker's load inside wall"
            if rep["layout"].get("entry") == "screen_parallel"
            else f"load {rep['potential_load_s']:.1f} s, not counted"
        )
        print(f"model {arm}: {execution} ({where})")
    for arm in ("reference", "pipeline"):
        gpu = report["arms"][arm].get("gpu_utilisation")
        if gpu is None:
            print(f"gpu utilisation {arm}: no nvidia-smi on this machine")
        else:
            print(f"gpu utilisation {arm} (nvidia-smi every 0.5 s): whole arm {_fmt(gpu['mean_pct'])} % over "
                  f"{gpu['samples']} samples; force stage {_fmt(gpu['force_stage_mean_pct'])} % over "
                  f"{gpu['force_stage_samples']}")  # fmt: skip
    for arm in ("reference", "pipeline"):
        print(f"verdicts {arm}: {s[arm]['verdicts']}")
    print(
        f"work (atom-force evaluations, independent of machine load): reference "
        f"{s['reference']['atom_force_evaluations']}, pipeline {s['pipeline']['atom_force_evaluations']}, "
        f"ratio {s['work_ratio']:.2f}"
    )
    print(
        f"agreement ({c['rule']}): {c['agreeing']}/{c['total']}; stable-vs-not: {c['agreeing_stable_vs_not']}/{c['total']}"
    )
    for d in c["disagreements"]:
        print(f"  DISAGREE {d['name']}: reference {d['reference']} vs pipeline {d['pipeline']} "
              f"(stable_phononbench={d['pipeline_stable_phononbench']}): {d['why']}")  # fmt: skip
    for d in c.get("default_verdict_differs", []):
        print(f"  default differs {d['name']}: reference {d['reference']} vs default {d['pipeline']}: {d['why']}")
    n = len(report["sample"])
    ref_s, pipe_s = s["reference"]["wall_s"] / n, s["pipeline"]["wall_s"] / n
    print(
        f"cost per structure: pipeline ({args.protocol} protocol{prescreen}) {pipe_s:.1f} s, "
        f"PhononBench reference loop {ref_s:.1f} s: ratio {ref_s / pipe_s:.2f} (> 1: the pipeline costs less)"
    )
    print(f"json: {path}")
    print(f"speedup {s['speedup']:.2f} agreement {c['agreeing']}/{c['total']}")


def _jsonable(obj):
    import dataclasses

    import numpy as np

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    raise TypeError(f"not JSON-able: {type(obj).__name__}")


if __name__ == "__main__":
    sys.exit(main())
