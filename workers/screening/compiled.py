"""The potential's model through `torch.compile` (inductor): the same model, fewer, fused kernels.

Measured on this project's 2-core CPU (issue 4; `benchmarks/compile_forces.py`): SevenNet-0 spends
much of an eager force call in autograd bookkeeping of e3nn's tensor products (a quarter in zero
fills of slice gradients alone); compiled, force + stress calls are 1.65x faster on real
generator cells and their 2x2x2 supercells (2-12-atom cells 1.47x, 16-96-atom supercells
1.68x), forces equal to eager to ~2e-6 eV/Å (float32 rounding: the
same kind of difference as one thread against two). Compiling costs 90-250 s on first use on a
machine and ~25 s with torch's on-disk cache warm, paid once per process at load time (a
warm-up call), which a long-lived worker amortises over thousands of structures.

`auto` compiles where that was measured: SevenNet on the CPU with a C++ compiler on the machine.
GPUs are not measured yet (`on` forces it anywhere, at your risk); CHGNet builds its graphs
in Python and is not compiled. A model whose compiled call fails falls back to eager once, with
a warning, and the fact is kept in the potential's provenance.
"""

from __future__ import annotations

import logging
import shutil
import threading
import warnings
from typing import Any, Literal

__all__ = ["COMPILE_MODES", "CompileMode", "CompiledModel", "compile_decision"]

CompileMode = Literal["auto", "on", "off"]
COMPILE_MODES: tuple[str, ...] = ("auto", "on", "off")
# Registry names whose model this module knows how to compile (and whose output was compared).
COMPILABLE = frozenset({"sevennet-0"})


class CompileFallbackWarning(RuntimeWarning):
    """A compiled model failed and the potential runs eager from now on."""


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
    return True, "auto: CPU with a C++ compiler"


class CompiledModel:
    """Callable like the model it wraps (SevenNet's AtomGraphSequential): `torch.compile(model)`.

    Dynamo splits the model where it must (a data-dependent branch, `requires_grad_` on the edge
    vectors, `torch.autograd.grad` in the force head) and compiles the pieces; the force head's
    gradient runs the compiled backward. Tried and measured slower: compiling only the body
    between those points as one graph (1.4x instead of ~2x per call, and minutes to compile).

    Shared by every calculator of a loaded potential (threads included): the compiled callable is
    reentrant, and the switch to eager after a failure happens once, under a lock.
    """

    def __init__(self, model: Any) -> None:
        import torch

        # Dynamo reports every graph break and fallback at WARNING; they are expected here (see
        # above) and would bury the progress bars. Errors still show.
        torch._logging.set_logs(dynamo=logging.ERROR)
        self.eager = model
        # dynamic=True: one set of graphs for every cell size (atoms and edges vary).
        self._compiled = torch.compile(model, dynamic=True)
        self.failure: str | None = None
        self._lock = threading.Lock()

    @property
    def execution(self) -> str:
        return "torch.compile" if self.failure is None else f"eager (torch.compile failed: {self.failure})"

    def __call__(self, data: Any) -> Any:
        if self.failure is None:
            try:
                # on a copy: a call that fails half-way must leave the eager retry its input
                return self._compiled(data.clone())
            except Exception as exc:  # noqa: BLE001 - retried eager below
                # An input the model itself rejects fails eager too: that error propagates and
                # the compiled path stays on. Only a failure that eager does not share is the
                # compiler's, and switches this model to eager for good.
                result = self.eager(data)
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
        return self.eager(data)

    def __getattr__(self, name: str) -> Any:  # the model's attributes (cutoff, type_map, ...)
        eager = self.__dict__.get("eager")
        if eager is None:
            raise AttributeError(name)
        return getattr(eager, name)
