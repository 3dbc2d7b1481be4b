"""The potential's model through `torch.compile` (inductor): the same model, fewer, fused kernels.

Measured on this project's 2-core CPU (issue 4; `benchmarks/compile_forces.py`): SevenNet-0 spends
much of an eager force call in autograd bookkeeping of e3nn's tensor products and in Python
between small kernels; compiled, force + stress calls on real generator cells and their 2x2x2
supercells are markedly faster, forces equal to eager to ~3e-6 eV/Å (float32 rounding: the same
kind of difference as one thread against two). SevenNet-l3i5 (lmax 3, the same five interaction
layers) compiles through the same one graph: 2.17x per call on 2-10 atoms, 1.74x on 16-80 atoms,
forces equal to eager to ~1.4e-5 eV/Å (same benchmark, `--potential sevennet-l3i5`).

SevenNet is compiled as one graph (`workers.screening.potentials.sevennet_graph`), ahead of time, and the
compiled graph is saved in the folder the caller passes (`cache`, from the edge's settings: the
core reads no environment), keyed by the weights, this code, the library versions, Python and the
CPU's vector extensions. The first compile on a machine takes ~2
minutes; every later process loads it in seconds (torch's own inductor cache, by default under
/tmp, keeps the built kernels; with it empty, loading rebuilds them, ~35 s). A model that cannot
be taken as one graph is compiled per module as dynamo splits it, traced anew in every process.
Saving and loading use torch's ahead-of-time compile of a module (`_aot_compile`,
`_save_aot_compiled_module`, `_load_aot_compiled_module`, marked experimental in torch 2.13, the
version pyproject pins): any failure there, at compile or at load, lands on the per-module path or
a fresh compile, never on a wrong result; the tests compile, save, reload and compare with eager.

`auto` compiles SevenNet on the CPU with a C++ compiler on the machine, and keeps the compiled model
only if it is measurably faster than eager on the warm-up cell, timed at load on this machine
(`CompiledModel.keep_if_faster`: a graph that does not pay on this machine is not used here, whatever
was measured elsewhere). GPUs are not measured yet (`on` forces it anywhere, at your risk); CHGNet
builds its graphs in Python and is not compiled. A model whose compiled call fails falls back to eager once, with
a warning, and the fact is kept in the potential's provenance.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import warnings
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "COMPILE_MODES",
    "CompileMode",
    "CompiledModel",
    "compile_decision",
    "compile_pays",
    "saved_graph_path",
]

CompileMode = Literal["auto", "on", "off"]
COMPILE_MODES: tuple[str, ...] = ("auto", "on", "off")
# Registry names whose model this module knows how to compile (and whose output was compared).
COMPILABLE = frozenset({"sevennet-0", "sevennet-l3i5"})


class CompileFallbackWarning(RuntimeWarning):
    """A compiled model failed and the potential runs eager from now on."""


# Break-even of compiling for one process, in atoms of work (input atoms summed over the structures it
# will screen): below it, an eager run finishes sooner than compile + compiled run. Per potential:
# (with a saved graph, without). SevenNet-0, measured with `python benchmarks/compile_break_even.py` (`default`
# protocol, 1 thread per process, 15 structures: examples/ and 4 generator cells; README, "Compile
# break-even"): compiled runs saved k = 7.1 s per input atom; a fresh compile cost 258 s more than an
# eager load (W* = 37 atoms), loading the saved graph 8 s more (W* = 1) with torch's kernel cache warm
# and 91 s more with it cold (W* = 13, e.g. after /tmp was cleared). Whether torch's cache is warm is
# not checked, so a saved graph counts at the cold figure. SevenNet-l3i5, measured by hand on a busy
# machine (README, "Potentials and MatterSim weights"): 6 MatterGen cells of 4-10 atoms, `phononscreen
# screen --compile off|on`, saved k = 63 s / 36 atoms = 1.75 s per atom (SevenNet-0 saved 3.2 on the
# same cells, against its 7.1 above: a small sample of cheap cells, so these thresholds err towards
# eager); a fresh compile cost 268 s more than an eager load (W* = 153), the saved graph with a cold
# kernel cache 222 s more (W* = 127), with it warm 3 s.
BREAK_EVEN_ATOMS: dict[str, tuple[int, int]] = {"sevennet-0": (13, 37), "sevennet-l3i5": (127, 153)}


def compile_pays(name: str, *, work_atoms: float, graph_saved: bool) -> tuple[bool, str]:
    """(compile?, why) for `auto` with potential `name` in a run of `work_atoms` atoms per process (the
    CLI's choice)."""
    if work_atoms <= 0:
        return False, "auto: nothing to screen"
    saved, fresh = BREAK_EVEN_ATOMS[name]
    threshold = saved if graph_saved else fresh
    where = "graph saved on this machine" if graph_saved else "no saved graph: a first compile"
    if work_atoms >= threshold:
        return True, f"auto: {work_atoms:.0f} atoms of work per process >= break-even {threshold} ({where})"
    return False, f"auto: {work_atoms:.0f} atoms of work per process < break-even {threshold} ({where})"


def cxx_compiler() -> str | None:
    """The C++ compiler inductor would use on the CPU, or None."""
    for name in ("c++", "g++", "clang++"):
        path = shutil.which(name)
        if path:
            return path
    return None


def compile_decision(name: str, *, device: str, mode: str) -> tuple[bool, str]:
    """(compile?, why) for potential `name` on `device` under `mode` (auto/on/off)."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"unknown compile mode {mode!r}; choose one of {', '.join(COMPILE_MODES)}")
    if mode == "off":
        return False, "compile off"
    if name not in COMPILABLE:
        if mode == "on":
            raise ValueError(
                f"compile 'on' is implemented for {', '.join(sorted(COMPILABLE))}, not {name!r}; "
                "use compile 'auto' or 'off'"
            )
        return False, f"{name} is not compiled"
    on_cpu = device == "cpu"
    if on_cpu and cxx_compiler() is None:
        if mode == "on":
            raise ValueError("compile 'on' on the CPU needs a C++ compiler (g++ or clang++) on PATH")
        return False, "no C++ compiler on PATH"
    if mode == "on":
        return True, "compile on"
    if not on_cpu:
        return False, "auto compiles on the CPU only (GPU not measured)"
    return True, "auto: CPU with a C++ compiler; kept if faster than eager at warm-up"


class CompiledModel:
    """Callable like the model it wraps (SevenNet's AtomGraphSequential), compiled.

    With an `example` graph (a SevenNet `AtomGraphData`), the model is compiled as one graph
    (`workers.screening.sevennet_graph.ForceStressField`) ahead of time, with symbolic atom and
    edge counts, and saved in the folder `cache` (not saved when None); a later process with the same weights, code and
    library versions loads it instead of compiling (`how` says which). Inputs outside what the
    graph was compiled for (e.g. a 1-atom cell: sizes 0 and 1 are never symbolic) run eager, one
    call at a time (`eager_calls` counts them). If the one-graph path cannot be built, the model
    is compiled per module as torch.compile splits it (~35 graphs; slower on small cells and
    traced again in every process), and `execution` says so.

    Shared by every calculator of a loaded potential (threads included): the compiled callable is
    reentrant, and the switch to eager after a failure happens once, under a lock.
    """

    def __init__(self, model: Any, *, example: Any = None, cache: Path | None = None) -> None:
        import torch

        # Dynamo reports every graph break and fallback at WARNING; the per-module path expects
        # them and they would bury the progress bars. Errors still show.
        torch._logging.set_logs(dynamo=logging.ERROR)
        self.eager = model
        self.failure: str | None = None
        self.how = "compiled per module"
        self.eager_calls = 0  # this process, every thread
        self.compiled_calls = 0
        self._lock = threading.Lock()
        self._tally = threading.local()  # this thread's (compiled, eager) calls: one screening runs in one thread
        self._note = ""
        self.declined: str | None = None  # `auto` measured the compiled model slower: it runs eager
        self.timing: tuple[float, float] | None = None  # (compiled, eager) s per warm-up call, when measured
        self._graph = None
        self._modules: Any = None
        self._example, self._cache = example, cache
        if example is not None:
            try:
                self._graph, self.how = _full_graph(model, example, cache=cache)
            except Exception as exc:  # noqa: BLE001 - the per-module path below still compiles
                text = str(exc).splitlines()[0] if str(exc) else ""
                self._note = f" (per-module graphs; one graph failed: {type(exc).__name__}: {text[:200]})"
                logging.getLogger(__name__).warning("compiling the potential per module%s", self._note)
        if self._graph is not None:
            self._compiled = self._call_graph
        else:
            # dynamic=True: one set of graphs for every cell size (atoms and edges vary).
            self._modules = modules = torch.compile(model, dynamic=True)

            def call_modules(data: Any) -> Any:
                out = modules(data)
                self._count(compiled=True)
                return out

            self._compiled = call_modules

    @property
    def execution(self) -> str:
        """How the model runs now: compiled, or eager for good after a failure."""
        if self.failure is not None:
            return f"eager (torch.compile failed: {self.failure})"
        if self.declined is not None:
            return f"eager ({self.declined})"
        return "torch.compile" + self._note

    def calls(self) -> tuple[int, int]:
        """(compiled, eager) calls made by this thread so far."""
        return getattr(self._tally, "compiled", 0), getattr(self._tally, "eager", 0)

    def execution_of(self, compiled: int, eager: int) -> str:
        """What ran in a span of `compiled` compiled and `eager` eager calls (one screening's):
        never "torch.compile" when the compiled graph was not what computed the forces."""
        if eager == 0 or self.declined is not None:
            return self.execution
        if compiled == 0:
            why = f": {self.failure}" if self.failure else " (inputs outside the compiled graph, or its guards failed)"
            return f"eager (torch.compile loaded, every call ran eager{why})"
        return f"torch.compile, {eager} of {compiled + eager} calls eager (inputs outside the compiled graph)"

    def _count(self, *, compiled: bool) -> None:
        key = "compiled" if compiled else "eager"
        setattr(self._tally, key, getattr(self._tally, key, 0) + 1)
        with self._lock:
            if compiled:
                self.compiled_calls += 1
            else:
                self.eager_calls += 1

    def settle_warm_up(self, warm_up: Any) -> None:
        """Run `warm_up()` (a call on a cell the graph was built for) and make sure it ran compiled.

        A graph whose guards fail on that cell would run every call eager: it is compiled afresh
        (replacing a saved graph that does not fit this process) and warmed up again; if that one
        falls back too, the model is switched to eager with a warning, never reported as compiled.
        """
        for attempt in range(2):
            before = self.calls()[1]
            warm_up()
            if self.failure is not None or self.calls()[1] == before:
                return
            if attempt == 0 and self._graph is not None and self._example is not None:
                logging.getLogger(__name__).warning("the compiled graph ran eager at warm-up; compiling afresh")
                self._graph, self.how = _full_graph(self.eager, self._example, cache=self._cache, fresh=True)
                self.how += " (the first graph fell back to eager at warm-up)"
            else:
                break
        with self._lock:
            self.failure = "the compiled graph ran eager on its own warm-up cell (guards fail in this process)"
        warnings.warn(f"{self.failure}; running the potential eager", CompileFallbackWarning, stacklevel=2)

    def keep_if_faster(self, *, pairs: int = 7, min_speedup: float = 1.05) -> None:
        """`auto`'s decision, measured here: the compiled model and the eager one evaluate the
        warm-up cell (`example`) in `pairs` alternating pairs after one untimed call each; unless
        the fastest compiled call is at least `min_speedup` times faster than the fastest eager one,
        the model runs eager from now on and `execution` says why. The fastest of several calls,
        because other processes' load only ever adds time: on a machine loaded 3x over, medians of
        wall time (and CPU time, which counts the threads' spin-waiting) called a 1.9x faster graph
        slower. Call after `settle_warm_up`. The timed calls are not counted as screening calls."""
        import time

        if self.failure is not None or self._example is None:
            return

        def seconds(call: Any) -> float:
            data = self._example.clone()
            start = time.perf_counter()
            call(data)
            return time.perf_counter() - start

        seconds(self._uncounted)  # untimed: the first call of each may still build caches
        seconds(self.eager)
        timed = [(seconds(self._uncounted), seconds(self.eager)) for _ in range(pairs)]
        compiled_s, eager_s = min(c for c, _ in timed), min(e for _, e in timed)
        self.timing = (compiled_s, eager_s)
        measured = (
            f"{compiled_s * 1e3:.1f} ms compiled vs {eager_s * 1e3:.1f} ms eager per warm-up call "
            f"(fastest of {pairs}), {eager_s / compiled_s:.2f}x"
        )
        if compiled_s * min_speedup > eager_s:
            with self._lock:
                self.declined = f"auto: torch.compile did not pay at warm-up, {measured}"
            logging.getLogger(__name__).warning("running the potential eager: %s", self.declined)
        else:
            self._note += f" (auto: {measured})"

    def _uncounted(self, data: Any) -> Any:
        """One compiled call that no tally sees (the warm-up measurement)."""
        if self._graph is not None:
            return run_graph(self._graph, data)
        return self._modules(data)

    def _call_graph(self, data: Any) -> Any:
        try:
            out = run_graph(self._graph, data)
        except RuntimeError as exc:
            if "GuardManager check failed" not in str(exc):
                raise
            self._count(compiled=False)
            return self.eager(data)
        self._count(compiled=True)
        return out

    def __call__(self, data: Any) -> Any:
        if self.failure is None and self.declined is None:
            try:
                # on a copy: a call that fails half-way must leave the eager retry its input
                return self._compiled(data.clone())
            except Exception as exc:  # noqa: BLE001 - retried eager below
                # An input the model itself rejects fails eager too: that error propagates and
                # the compiled path stays on. Only a failure that eager does not share is the
                # compiler's, and switches this model to eager for good.
                result = self.eager(data)
                self._count(compiled=False)
                with self._lock:
                    if self.failure is None:
                        text = str(exc).splitlines()[0] if str(exc) else ""
                        self.failure = f"{type(exc).__name__}: {text}"[:300]
                        warnings.warn(
                            f"torch.compile of the potential failed ({self.failure}); running it eager",
                            CompileFallbackWarning,
                            stacklevel=2,
                        )
                return result
        self._count(compiled=False)
        return self.eager(data)

    def __getattr__(self, name: str) -> Any:  # the model's attributes (cutoff, type_map, ...)
        eager = self.__dict__.get("eager")
        if eager is None:
            raise AttributeError(name)
        return getattr(eager, name)


# Inductor options for the one graph. realize_opcount_threshold (default 30): inductor inlines a
# pointwise producer into each of its consumers unless it has more ops than this; in a graph that
# holds the backward pass too, inlined edge-wise chains were recomputed for every consumer.
# Measured on 16 generator cells and their 2x2x2 supercells, 1 thread (a probe, two runs): per call
# 25.6 -> 21.7 / 22.6 ms on 2-12 atoms, 208.8 -> 175.6 / 197.5 ms on 16-96 atoms; compare with
# `python benchmarks/compile_forces.py --realize-opcount 30`.
_INDUCTOR = {"realize_opcount_threshold": 4}
# How `_full_graph` compiles (options, guards, symbolic sizes): change it when they change, and
# every saved graph is compiled again.
_RECIPE = "one graph; fullgraph, dynamic atoms and edges, portable guards; v1"


def run_graph(graph: Any, data: Any) -> Any:
    """Evaluate SevenNet graph `data` with a `ForceStressField` (compiled or not); the results are
    written into `data` under the keys SevenNet's own model writes, and `data` is returned."""
    from workers.screening.potentials import sevennet_graph as g

    inputs = _graph_inputs(data)
    data[g.TOTAL_ENERGY], data[g.ATOMIC_ENERGY], data[g.FORCE], data[g.STRESS] = graph(inputs)
    return data


def _graph_inputs(data: Any) -> dict:
    """The field's input: the graph's tensors, with fresh edge vectors to differentiate."""
    from workers.screening.potentials import sevennet_graph as g

    inputs = dict(data.items())
    inputs[g.EDGE_VEC] = inputs[g.EDGE_VEC].detach().requires_grad_(True)
    return inputs


def saved_graph_path(model: Any, example: Any, *, cache: Path, threads: int | None = None) -> Path:
    """Where the one graph of `model` (traced on `example`) is saved in folder `cache`, for a process
    running `threads` torch threads (default: this process's)."""
    return cache / f"sevennet-{_cache_key(model, _graph_inputs(example), threads=threads)}.bin"


def _full_graph(model: Any, example: Any, *, cache: Path | None, fresh: bool = False) -> tuple[Any, str]:
    """(compiled one-graph callable, how it was obtained): loaded from `cache` (unless `fresh`), or
    compiled (and saved there when `cache` is a folder)."""
    import torch
    from torch._dynamo.aot_compile import ModelInput

    from workers.screening.potentials import sevennet_graph as g

    field = g.ForceStressField(model)
    # Only guards on the inputs' tensors, shapes and global state: the frozen model's modules are
    # not re-checked on every call (and could not be saved with the graph).
    compiled: Any = torch.compile(
        field, fullgraph=True, dynamic=True, options={"guard_filter_fn": torch.compiler.keep_portable_guards_unsafe}
    )
    inputs = _graph_inputs(example)
    path = saved_graph_path(model, example, cache=cache) if cache is not None else None
    with torch._dynamo.config.patch(enable_aot_compile=True, trace_autograd_ops=True):
        if path is not None and path.is_file() and not fresh:
            try:
                compiled._load_aot_compiled_module(path.read_bytes())
                return compiled, f"loaded from {path}"
            except Exception as exc:  # noqa: BLE001 - stale or damaged: compile again and replace it
                stale = f"{type(exc).__name__}"
        else:
            stale = ""
        n_atoms, n_edges = inputs[g.ATOMIC_NUMBERS].shape[0], inputs[g.EDGE_VEC].shape[0]
        for value in inputs.values():  # atom and edge counts symbolic, everything else fixed
            if isinstance(value, torch.Tensor):
                for dim, size in enumerate(value.shape):
                    if size in (n_atoms, n_edges):
                        torch._dynamo.mark_dynamic(value, dim)
        with torch._inductor.config.patch(_INDUCTOR):
            compiled._aot_compile([ModelInput(args=(inputs,), kwargs={}, contexts=[])])
        blob = compiled._save_aot_compiled_module()
    how = "compiled now" + (f" (the saved graph did not load: {stale})" if stale else "")
    if path is None:
        return compiled, how + ", not saved (no cache folder)"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(blob)
        os.replace(tmp, path)  # atomic: workers that start together never read half a file
        how += f", saved to {path}"
    except OSError as exc:
        how += f", not saved ({exc})"
    return compiled, how


def _cache_key(model: Any, inputs: dict, *, threads: int | None = None) -> str:
    """What a saved graph depends on: weights, this code, library versions, Python, CPU features and
    torch's thread count (the graph guards on it: saved under 2 threads, it failed its guard on every
    call of a 1-thread worker, which then ran eager)."""
    import hashlib
    import platform
    import sys
    from importlib.metadata import version

    import torch

    from workers.screening.potentials import sevennet_graph

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    digest.update(Path(sevennet_graph.__file__).read_bytes())
    context = [
        _RECIPE, repr(sorted(_INDUCTOR.items())), torch.__version__, version("sevenn"), sys.version, platform.machine(),
        torch.backends.cpu.get_cpu_capability(), f"threads={threads or torch.get_num_threads()}", str(sorted(inputs)),
        str({k: (str(v.dtype), str(v.device)) for k, v in sorted(inputs.items()) if isinstance(v, torch.Tensor)}),
    ]  # fmt: skip
    digest.update(repr(context).encode())
    return digest.hexdigest()[:24]
