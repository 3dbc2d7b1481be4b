"""Potential registry: a name -> an ASE calculator plus provenance, loaded once per process."""

from __future__ import annotations

import hashlib
import importlib.util
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.screening.potentials.compiled import COMPILABLE, CompiledModel, compile_decision
from workers.screening.potentials.mattersim import (
    MATTERSIM_FILES,
    PotentialUnavailableError,
    find_mattersim_checkpoint,
    load_mattersim,
    missing_weights_message,
)
from workers.screening.potentials.memory import ModelMemoryError, budgeted_converter
from workers.screening.types import PotentialInfo

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator

__all__ = [
    "POTENTIAL_NAMES",
    "LoadedPotential",
    "ModelMemoryError",
    "PotentialFallbackWarning",
    "PotentialUnavailableError",
    "clear_potential_cache",
    "load_potential",
    "resolve_device",
]

POTENTIAL_NAMES: tuple[str, ...] = (
    "auto",
    "mattersim-v1.0.0-5m",
    "mattersim-v1.0.0-1m",
    "sevennet-l3i5",
    "sevennet-0",
    "chgnet-0.3.0",
)
AUTO_PREFERRED = "mattersim-v1.0.0-5m"
# Potentials that estimate a call's memory before making it (`memory_budget_mib` applies to them).
MEMORY_ESTIMATED = frozenset({"chgnet-0.3.0"})
# The most phonon-accurate model that needs no download: Matbench Discovery's kappa_SRME 0.550
# (MatterSim-5M 0.575, SevenNet-0 0.767), at 2.4-2.8x SevenNet-0's cost per force call here
# (`benchmarks/compile_forces.py --potential sevennet-l3i5`; README, "Potentials and MatterSim weights").
AUTO_FALLBACK = "sevennet-l3i5"
# Registry name -> the name sevenn gives the checkpoint inside its wheel (`pretrained_name_to_path`).
SEVENNET_CHECKPOINTS = {"sevennet-l3i5": "7net-l3i5", "sevennet-0": "7net-0"}


class PotentialFallbackWarning(RuntimeWarning):
    """`auto` could not use MatterSim and is running SevenNet-l3i5 instead."""


@dataclass(frozen=True)
class LoadedPotential:
    """A loaded potential: its provenance, a ready ASE calculator and the elements it covers.

    `calculator` is shared; threads that evaluate concurrently should each take
    `new_calculator()`, which shares the (read-only) model weights but not the results cache.
    `elements` is None when the potential does not say which elements it knows.
    """

    info: PotentialInfo
    calculator: Calculator
    elements: frozenset[str] | None
    _factory: Callable[[], Calculator] = field(repr=False, compare=False)
    _compiled: CompiledModel | None = field(default=None, repr=False, compare=False)

    def new_calculator(self) -> Calculator:
        return self._factory()

    def current_info(self) -> PotentialInfo:
        """`info`, with how the model runs now (a compiled model may have fallen back to eager)."""
        if self._compiled is None or self._compiled.execution == self.info.execution:
            return self.info
        import dataclasses

        return dataclasses.replace(self.info, execution=self._compiled.execution)

    def call_counts(self) -> tuple[int, int] | None:
        """(compiled, eager) model calls this thread has made so far; None when not compiled."""
        return None if self._compiled is None else self._compiled.calls()

    def info_since(self, before: tuple[int, int] | None) -> PotentialInfo:
        """`current_info()` for the calls made since `call_counts()` returned `before` (one
        screening): its compiled and eager calls, and `execution` saying which really ran."""
        info = self.current_info()
        if self._compiled is None or before is None:
            return info
        import dataclasses

        compiled, eager = (now - then for now, then in zip(self._compiled.calls(), before, strict=True))
        execution = self._compiled.execution_of(compiled, eager)
        return dataclasses.replace(info, execution=execution, compiled_calls=compiled, eager_calls=eager)


_CACHE: dict[tuple[str, str, str, str | None, bool, bool, float | None], LoadedPotential] = {}
_LOCK = threading.Lock()


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when torch sees a GPU, else 'cpu'; anything else is passed through."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_potential(
    name: str = "auto",
    *,
    device: str = "auto",
    checkpoint: str | Path | None = None,
    compile: str = "off",
    compile_cache: Path | None = None,
    memory_budget_mib: float | None = None,
) -> LoadedPotential:
    """Load potential `name` (one of POTENTIAL_NAMES) on `device`, once per process.

    `checkpoint` is a path to a MatterSim .pth file; it is accepted with a MatterSim name (or with
    `auto`, which then means `mattersim-v1.0.0-5m`) and replaces the lookup in MatterSim's cache
    folder. Missing MatterSim weights for an explicit name raise PotentialUnavailableError; they
    are never downloaded and the name is never swapped for another potential. `auto` uses
    `mattersim-v1.0.0-5m` when its checkpoint is in the cache folder, otherwise `sevennet-l3i5` with a
    PotentialFallbackWarning (emitted once, when loaded) that is also kept in `info.warning`.

    `compile` (auto/on/off; the edge decides, default off) runs the model through torch.compile
    where that was measured to pay
    (see `workers.screening.potentials.compiled`); the compilation happens here, in a warm-up call, so the
    first structure is not charged for it. `info.execution` says what ran. `compile_cache` is the
    folder where compiled graphs are kept between processes (None: compiled in this process only).

    `memory_budget_mib`: what one call may use in this process; a potential that can estimate its
    memory before a call (CHGNet, `workers.screening.potentials.memory`) raises ModelMemoryError
    for a cell over it instead of running the machine out of memory. None: no limit.
    """
    if name not in POTENTIAL_NAMES:
        raise ValueError(f"unknown potential {name!r}; valid names: {', '.join(POTENTIAL_NAMES)}")
    resolved, path, warning = _resolve(name, checkpoint)
    dev = resolve_device(device)
    use_compile, _why = compile_decision(resolved, device=dev, mode=compile)
    # `auto` keeps the compiled model only where it measures faster at warm-up; `on` keeps it anyway.
    measure = use_compile and compile == "auto"
    budget = memory_budget_mib if resolved in MEMORY_ESTIMATED else None  # the others ignore it
    key = (name, resolved, dev, str(path) if path else None, use_compile, measure, budget)
    with _LOCK:  # one load per key even when threads ask at once
        if key not in _CACHE:
            if warning:
                how_to = missing_weights_message(AUTO_PREFERRED, fallback=False)
                warnings.warn(f"{warning}. {how_to}", PotentialFallbackWarning, stacklevel=2)
            _CACHE[key] = _load(
                resolved,
                requested=name,
                device=dev,
                path=path,
                warning=warning,
                compiled=use_compile,
                measure=measure,
                compile_cache=compile_cache,
                memory_budget_mib=budget,
            )
        return _CACHE[key]


def resolved_name(name: str, checkpoint: str | Path | None = None) -> str:
    """The registry name `load_potential(name, checkpoint=...)` would load (what `auto` means
    here), without loading anything; raises like `load_potential` for a missing MatterSim."""
    return _resolve(name, checkpoint)[0]


def clear_potential_cache() -> None:
    """Forget every loaded potential (tests, or a worker that changes settings)."""
    with _LOCK:
        _CACHE.clear()
        _MODELS.clear()


def _resolve(name: str, checkpoint: str | Path | None) -> tuple[str, Path | None, str | None]:
    """(registry name to load, MatterSim checkpoint file or None, fallback warning or None)."""
    if checkpoint is not None:
        resolved = AUTO_PREFERRED if name == "auto" else name
        if resolved not in MATTERSIM_FILES:
            raise ValueError(f"a checkpoint path applies only to MatterSim potentials, not to {name!r}")
        path = Path(checkpoint).expanduser().resolve()
        if not path.is_file():
            raise PotentialUnavailableError(f"potential {resolved!r}: checkpoint {path} not found")
        return resolved, path, None
    if name in MATTERSIM_FILES:
        found = find_mattersim_checkpoint(name)
        if found is None:
            raise PotentialUnavailableError(missing_weights_message(name))
        return name, found, None
    if name == "auto":
        found = find_mattersim_checkpoint(AUTO_PREFERRED)
        if found is not None and importlib.util.find_spec("mattersim") is not None:
            return AUTO_PREFERRED, found, None
        # Short, because every verdict stores it; the how-to is printed once, with the warning.
        return (
            AUTO_FALLBACK,
            None,
            (
                f"potential 'auto' resolved to {AUTO_FALLBACK!r}: MatterSim weights "
                f"({MATTERSIM_FILES[AUTO_PREFERRED]}) are not on this machine, so this verdict is "
                f"{AUTO_FALLBACK}'s, not MatterSim's (the reference)"
            ),
        )
    return name, None, None


@dataclass(frozen=True)
class _Model:
    """What loading a checkpoint yields once, shared by every LoadedPotential that uses it."""

    factory: Callable[[], Calculator]
    elements: frozenset[str]
    version: str
    path: Path
    label: str
    compiled: CompiledModel | None = None


_MODELS: dict[tuple[str, str, str | None, bool, bool, float | None], _Model] = {}


def _load(
    name: str,
    *,
    requested: str,
    device: str,
    path: Path | None,
    warning: str | None,
    compiled: bool,
    measure: bool = False,
    compile_cache: Path | None = None,
    memory_budget_mib: float | None = None,
) -> LoadedPotential:
    # `auto` that fell back and an explicit `sevennet-l3i5` share one model in memory.
    model_key = (name, device, str(path) if path else None, compiled, measure, memory_budget_mib)
    if model_key not in _MODELS:
        _MODELS[model_key] = _load_model(
            name,
            device=device,
            path=path,
            compiled=compiled,
            measure=measure,
            compile_cache=compile_cache,
            memory_budget_mib=memory_budget_mib,
        )
    model = _MODELS[model_key]
    info = PotentialInfo(
        name=name,
        version=model.version,
        checkpoint=model.label,
        checkpoint_sha256=sha256_file(model.path),
        device=device,
        requested=requested,
        warning=warning,
        execution=model.compiled.execution if model.compiled is not None else "eager",
    )
    return LoadedPotential(
        info=info,
        calculator=model.factory(),
        elements=model.elements,
        _factory=model.factory,
        _compiled=model.compiled,
    )


def _load_model(
    name: str,
    *,
    device: str,
    path: Path | None,
    compiled: bool = False,
    measure: bool = False,
    compile_cache: Path | None = None,
    memory_budget_mib: float | None = None,
) -> _Model:
    compiled_model = None
    if name in MATTERSIM_FILES:
        assert path is not None
        factory, elements, pkg = load_mattersim(path, device=device)
        # Pretrained weights are named by file so provenance does not depend on $HOME; a
        # user-supplied file keeps its path. The checksum identifies the weights either way.
        cached = find_mattersim_checkpoint(name)
        in_cache = cached is not None and cached.resolve() == path.resolve()
        label = path.name if in_cache else str(path)
    elif name in SEVENNET_CHECKPOINTS:
        factory, elements, pkg, path, compiled_model = _load_sevennet(
            SEVENNET_CHECKPOINTS[name], device=device, compiled=compiled, measure=measure, compile_cache=compile_cache
        )
        label = "sevenn:" + "/".join(path.parts[-2:])
    elif name == "chgnet-0.3.0":
        factory, elements, pkg, path = _load_chgnet(device=device, memory_budget_mib=memory_budget_mib)
        label = "chgnet:" + "/".join(path.parts[-2:])
    else:  # pragma: no cover - _resolve only returns registry names
        raise ValueError(name)
    return _Model(factory=factory, elements=elements, version=pkg, path=path, label=label, compiled=compiled_model)


def _load_sevennet(
    checkpoint: str,
    *,
    device: str,
    compiled: bool = False,
    measure: bool = False,
    compile_cache: Path | None = None,
) -> tuple[Callable[[], Calculator], frozenset[str], str, Path, CompiledModel | None]:
    """SevenNet's pretrained `checkpoint` (its own name, e.g. "7net-l3i5"), from the sevenn wheel."""
    from ase.data import chemical_symbols
    from sevenn.calculator import SevenNetCalculator
    from sevenn.util import pretrained_name_to_path

    # The file inside the wheel that sevenn's name means; loading it by path hashes what runs. The
    # checkpoints used here ship in the wheel and have no download link in sevenn, so a missing file
    # raises instead of downloading.
    try:
        path = Path(pretrained_name_to_path(checkpoint))
    except FileNotFoundError as exc:
        raise PotentialUnavailableError(
            f"SevenNet checkpoint {checkpoint!r} is not in the installed sevenn wheel ({exc}); reinstall sevenn"
        ) from exc
    with warnings.catch_warnings():
        # SevenNet warns on every calculator that no CUDA tensor-product kernel is enabled.
        warnings.simplefilter("ignore", UserWarning)
        first = SevenNetCalculator(str(path), device=device)
    model = first.model
    # Inference only: forces and stress are gradients with respect to positions and strain, never
    # the weights; weights that do not ask for gradients spare autograd work (~10 % per call).
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    compiled_model = CompiledModel(model, example=_example_graph(first), cache=compile_cache) if compiled else None

    def make_calculator() -> Calculator:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            calc: Any = SevenNetCalculator(model, file_type="model_instance", device=device)
        if compiled_model is not None:
            calc.model = compiled_model  # the calculator only calls it; its setup used the model
        return calc

    if compiled_model is not None:
        compiled_model.settle_warm_up(lambda: _warm_up(make_calculator()))
        if measure:
            compiled_model.keep_if_faster()
    # SevenNet's stress is already ASE's (eV/Å^3, positive = tensile): its calculator negates
    # the model's virial-like output. Checked against finite differences in the tests.
    elements = frozenset(chemical_symbols[int(z)] for z in first.type_map)
    return make_calculator, elements, f"sevenn {version('sevenn')}", path, compiled_model


def _rattled_silicon():
    """8-atom diamond Si, rattled: the structure compiled graphs are traced with and warmed on."""
    import numpy as np
    from ase.build import bulk

    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.positions += np.random.default_rng(0).normal(0.0, 0.01, atoms.positions.shape)
    return atoms


def _example_graph(calc: Any) -> Any:
    """SevenNet's input graph for `_rattled_silicon()`, built the way its calculator builds it."""
    from sevenn.atom_graph_data import AtomGraphData
    from sevenn.train.dataload import unlabeled_atoms_to_graph

    data = AtomGraphData.from_numpy_dict(unlabeled_atoms_to_graph(_rattled_silicon(), calc.cutoff, with_shift=False))
    return data.to(calc.device)


def _warm_up(calc: Calculator) -> None:
    """The first call, at load: forces and stress of a rattled 8-atom Si cell.

    The one-graph path was compiled (or loaded) before; this runs it once. The per-module path
    compiles here, graphs with symbolic sizes that every later cell reuses. Not a 2-atom cell:
    torch gives sizes that happen to be equal one symbol ("duck sizing"), and 2 atoms equals the
    2 rows of the edge index, which made the next real cell recompile everything.
    """
    atoms = _rattled_silicon()
    atoms.calc = calc
    atoms.get_forces()
    atoms.get_stress()


def _load_chgnet(
    *, device: str, memory_budget_mib: float | None = None
) -> tuple[Callable[[], Calculator], frozenset[str], str, Path]:
    import contextlib
    import io

    from ase.data import chemical_symbols
    from ase.units import GPa
    from chgnet import model as chgnet_model
    from chgnet.model import CHGNet
    from chgnet.model.dynamics import CHGNetCalculator

    model = CHGNet.load(model_name="0.3.0", use_device=device, verbose=False)
    if memory_budget_mib is not None:  # every call builds its graph through this converter first
        model.graph_converter = budgeted_converter(
            model.graph_converter, name="chgnet-0.3.0", budget_mib=memory_budget_mib
        )

    def make_calculator() -> Calculator:
        # CHGNet predicts GPa; stress_weight=GPa gives ASE's eV/Å^3. Its __init__ prints a line.
        with contextlib.redirect_stdout(io.StringIO()):
            return CHGNetCalculator(model=model, use_device=device, stress_weight=GPa)

    # Atom embedding rows are atomic numbers 1..N (94: H to Pu).
    n_z = int(model.atom_embedding.embedding.num_embeddings)
    elements = frozenset(chemical_symbols[1 : n_z + 1])
    pretrained = Path(chgnet_model.__file__).resolve().parents[1] / "pretrained" / "0.3.0"
    (path,) = pretrained.glob("chgnet_0.3.0_*.pth.tar")  # the file CHGNet.load reads
    return make_calculator, elements, f"chgnet {version('chgnet')}", path


_SHA_CACHE: dict[tuple[str, int, float], str] = {}


def sha256_file(path: Path) -> str:
    """SHA-256 of a weight file, hex; memoised on (path, size, mtime) since files are large."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime)
    if key not in _SHA_CACHE:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _SHA_CACHE[key] = digest.hexdigest()
    return _SHA_CACHE[key]


def saved_graph_exists(
    name: str,
    *,
    device: str = "auto",
    checkpoint: str | Path | None = None,
    compile_cache: Path | None,
    threads: int | None = None,
) -> bool:
    """Whether `compile_cache` holds the compiled graph that `load_potential(name, compile=...)` would
    load in a process of `threads` torch threads (so compiling costs seconds, not minutes). Loads the
    eager model to find out (once per process; it is kept for later loads)."""
    resolved = _resolve(name, checkpoint)[0]
    if compile_cache is None or resolved not in COMPILABLE:
        return False
    from workers.screening.potentials.compiled import saved_graph_path

    calc: Any = load_potential(name, device=device, checkpoint=checkpoint, compile="off").calculator
    return saved_graph_path(calc.model, _example_graph(calc), cache=compile_cache, threads=threads).is_file()
