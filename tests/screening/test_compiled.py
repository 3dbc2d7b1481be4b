"""torch.compile of the potential: when it applies, that it gives the eager forces, and that a
compiler failure falls back to eager and says so in the provenance."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from ase.build import bulk

from workers.screening.potentials import compiled
from workers.screening.potentials.compiled import CompiledModel, CompileFallbackWarning, compile_decision


def test_decision_auto_compiles_sevennet_on_cpu_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compiled, "cxx_compiler", lambda: "/usr/bin/g++")
    auto = (True, "auto: CPU with a C++ compiler; kept if faster than eager at warm-up")
    assert compile_decision("sevennet-0", device="cpu", mode="auto") == auto
    assert compile_decision("sevennet-l3i5", device="cpu", mode="auto") == auto
    use, why = compile_decision("sevennet-0", device="cuda", mode="auto")
    assert not use and "GPU not measured" in why
    assert compile_decision("sevennet-0", device="cuda", mode="on")[0]
    assert compile_decision("sevennet-0", device="cpu", mode="off") == (False, "compile off")
    use, why = compile_decision("chgnet-0.3.0", device="cpu", mode="auto")
    assert not use and "chgnet-0.3.0 is not compiled" == why
    with pytest.raises(ValueError, match="implemented for sevennet-0, sevennet-l3i5, not 'chgnet-0.3.0'"):
        compile_decision("chgnet-0.3.0", device="cpu", mode="on")
    with pytest.raises(ValueError, match="unknown compile mode 'fast'"):
        compile_decision("sevennet-0", device="cpu", mode="fast")


def test_decision_without_a_cxx_compiler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert compiled.cxx_compiler() is None
    assert compile_decision("sevennet-0", device="cpu", mode="auto") == (False, "no C++ compiler on PATH")
    with pytest.raises(ValueError, match="needs a C\\+\\+ compiler"):
        compile_decision("sevennet-0", device="cpu", mode="on")


class _Data:
    """Stands in for a graph: `clone()` gives an independent copy, as AtomGraphData's does."""

    def __init__(self, value: float) -> None:
        self.value = value

    def clone(self) -> _Data:
        return _Data(self.value)


@pytest.mark.parametrize("name", sorted(compiled.COMPILABLE))
def test_auto_compiles_only_when_the_work_pays_for_it(name: str) -> None:
    """The CLI's `auto`: compile when the work per process reaches the break-even measured for this
    potential, which is lower when the compiled graph is already saved on the machine; nothing to
    screen, no compile."""
    saved, fresh = compiled.BREAK_EVEN_ATOMS[name]
    assert 0 < saved < fresh
    assert compiled.compile_pays(name, work_atoms=0, graph_saved=True) == (False, "auto: nothing to screen")
    for graph_saved, threshold in ((True, saved), (False, fresh)):
        below, why = compiled.compile_pays(name, work_atoms=threshold - 0.5, graph_saved=graph_saved)
        assert not below and f"< break-even {threshold}" in why
        assert compiled.compile_pays(name, work_atoms=threshold, graph_saved=graph_saved)[0]
    assert compiled.compile_pays(name, work_atoms=(saved + fresh) / 2, graph_saved=True)[0]
    assert not compiled.compile_pays(name, work_atoms=(saved + fresh) / 2, graph_saved=False)[0]


def test_every_compilable_potential_has_a_measured_break_even() -> None:
    assert set(compiled.BREAK_EVEN_ATOMS) == compiled.COMPILABLE
    # l3i5 costs more per call, but its compile costs more too and saved less per atom where measured
    assert compiled.BREAK_EVEN_ATOMS["sevennet-l3i5"][1] > compiled.BREAK_EVEN_ATOMS["sevennet-0"][1]


def test_compiler_failure_falls_back_to_eager_once() -> None:
    calls = []

    def eager(data: _Data) -> float:
        calls.append(data)
        return data.value * 2

    model = CompiledModel(eager)

    def broken(data: _Data) -> float:
        data.value = -1.0  # a failed compiled call may have written into its input
        raise RuntimeError("inductor: C++ compile failed\nlong log")

    model._compiled = broken  # what a compiler failure looks like to the caller
    original = _Data(3.0)
    with pytest.warns(CompileFallbackWarning, match="C\\+\\+ compile failed"):
        assert model(original) == 6.0
    assert calls == [original] and original.value == 3.0  # eager saw the untouched input
    assert model.execution == "eager (torch.compile failed: RuntimeError: inductor: C++ compile failed)"
    assert model(_Data(1.0)) == 2.0  # no second attempt, no second warning
    assert len(calls) == 2


def test_an_input_that_fails_eager_too_does_not_turn_compile_off() -> None:
    def eager(data: _Data) -> float:
        if data.value < 0:
            raise ValueError("no edges within the cutoff")
        return data.value

    model = CompiledModel(eager)
    model._compiled = eager  # stands in for the compiled graph: same behaviour as eager
    with pytest.raises(ValueError, match="no edges"):
        model(_Data(-1.0))
    assert model.execution == "torch.compile"
    assert model(_Data(2.0)) == 2.0


def _graph_model(monkeypatch: pytest.MonkeyPatch, *, fits: set[str]) -> CompiledModel:
    """A one-graph CompiledModel whose graph `g` runs only when `g in fits`; elsewhere its guard
    fails, as torch's does (the message is torch's)."""

    def run_graph(graph: str, data: _Data) -> float:
        if graph not in fits:
            raise RuntimeError("GuardManager check failed: GLOBAL_STATE changed: num_threads")
        return data.value * 10

    monkeypatch.setattr(compiled, "run_graph", run_graph)
    model = CompiledModel(lambda data: data.value * 2)
    model._graph, model._example = "saved", object()
    model._compiled = model._call_graph
    return model


def test_failed_guards_are_counted_and_never_reported_as_compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _graph_model(monkeypatch, fits=set())
    before = model.calls()
    assert [model(_Data(1.0)) for _ in range(3)] == [2.0, 2.0, 2.0]  # eager's answer
    compiled_calls, eager_calls = (now - then for now, then in zip(model.calls(), before, strict=True))
    assert (compiled_calls, eager_calls) == (0, 3) and model.eager_calls == 3
    assert model.execution_of(compiled_calls, eager_calls).startswith(
        "eager (torch.compile loaded, every call ran eager"
    )
    assert model.execution_of(2, 1) == "torch.compile, 1 of 3 calls eager (inputs outside the compiled graph)"
    assert model.execution_of(4, 0) == "torch.compile"


def test_a_graph_that_falls_back_at_warm_up_is_compiled_afresh(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _graph_model(monkeypatch, fits={"fresh"})
    fresh_calls = []

    def full_graph(eager, example, *, cache, fresh=False):
        fresh_calls.append(fresh)
        return "fresh", "compiled now"

    monkeypatch.setattr(compiled, "_full_graph", full_graph)
    model.settle_warm_up(lambda: model(_Data(1.0)))
    assert fresh_calls == [True] and model.failure is None
    assert model.how == "compiled now (the first graph fell back to eager at warm-up)"
    before = model.calls()
    assert model(_Data(1.0)) == 10.0 and model.calls()[0] == before[0] + 1  # the graph, compiled
    assert model.execution == "torch.compile"


def test_a_graph_that_still_falls_back_switches_to_eager_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _graph_model(monkeypatch, fits=set())
    monkeypatch.setattr(compiled, "_full_graph", lambda *a, **k: ("fresh", "compiled now"))
    with pytest.warns(CompileFallbackWarning, match="ran eager on its own warm-up cell"):
        model.settle_warm_up(lambda: model(_Data(1.0)))
    assert model.execution.startswith("eager (torch.compile failed: the compiled graph ran eager")
    assert model(_Data(1.0)) == 2.0


def _timed_model(monkeypatch: pytest.MonkeyPatch, *, compiled_s: float, eager_s: float) -> CompiledModel:
    """A one-graph stand-in whose compiled and eager calls take the given (slept) times."""
    import time

    def run_graph(graph: str, data: _Data) -> float:
        time.sleep(compiled_s)
        return data.value * 10

    def eager(data: _Data) -> float:
        time.sleep(eager_s)
        return data.value * 2

    monkeypatch.setattr(compiled, "run_graph", run_graph)
    model = CompiledModel(eager)
    model._graph, model._example = "saved", _Data(1.0)
    model._compiled = model._call_graph
    return model


def test_auto_runs_eager_where_the_compiled_model_is_not_faster_at_warm_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """`auto` times both on the warm-up cell: a compiled model slower than eager (a stale graph, a
    machine where the compiler does not pay) runs eager, and the provenance says why."""
    model = _timed_model(monkeypatch, compiled_s=0.03, eager_s=0.005)
    model.keep_if_faster(pairs=3)
    assert model.declined is not None and model.timing is not None
    assert model.timing[0] > model.timing[1]
    assert model.execution.startswith("eager (auto: torch.compile did not pay at warm-up, ")
    assert "ms compiled vs" in model.execution
    assert (model.compiled_calls, model.eager_calls) == (0, 0)  # the timing calls are not screening calls
    before = model.calls()
    assert model(_Data(1.0)) == 2.0  # eager from now on
    assert model.calls() == (before[0], before[1] + 1)
    assert model.execution_of(0, 1) == model.execution


def test_load_on_the_machine_does_not_decide(monkeypatch: pytest.MonkeyPatch) -> None:
    """Other processes' load only adds time: a compiled model delayed on most calls (as on a machine
    loaded several times over, where medians called a 1.9x faster graph slower) is still kept."""
    import itertools
    import time

    model = _timed_model(monkeypatch, compiled_s=0.0, eager_s=0.02)
    delays = itertools.cycle([0.06, 0.002, 0.06])  # two calls in three held up by other work
    monkeypatch.setattr(compiled, "run_graph", lambda graph, data: time.sleep(next(delays)) or data.value * 10)
    model.keep_if_faster(pairs=5)
    assert model.declined is None, model.execution


def test_auto_keeps_a_compiled_model_that_is_faster_at_warm_up(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _timed_model(monkeypatch, compiled_s=0.002, eager_s=0.03)
    model.keep_if_faster(pairs=3)
    assert model.declined is None and model.timing is not None
    assert (
        model.execution.startswith("torch.compile (auto: ")
        and "ms eager per warm-up call (fastest of 3)" in model.execution
    )
    assert model(_Data(1.0)) == 10.0 and model.calls()[0] == 1


def _evaluate_with(calc, atoms) -> tuple:
    probe = atoms.copy()
    probe.calc = calc
    return probe.get_potential_energy(), probe.get_forces(), probe.get_stress(), probe.get_potential_energies()


def _evaluate(pot, atoms) -> tuple:
    return _evaluate_with(pot.new_calculator(), atoms)


def _rattled_cells() -> list:
    rng = np.random.default_rng(7)
    cells = [bulk("GaN", "wurtzite", a=3.19, c=5.19), bulk("MgO", "rocksalt", a=4.21) * (2, 2, 2)]
    for atoms in cells:
        atoms.positions += rng.normal(0.0, 0.03, atoms.positions.shape)
    return cells


def _assert_same(a: tuple, b: tuple, n_atoms: int) -> None:
    (e0, f0, s0, a0), (e1, f1, s1, a1) = a, b
    assert np.abs(f0).max() > 0.05  # rattled: forces that matter
    np.testing.assert_allclose(f1, f0, atol=1e-5)
    np.testing.assert_allclose(s1, s0, atol=1e-6)
    np.testing.assert_allclose(a1, a0, atol=1e-5)
    assert abs(e1 - e0) < 1e-4 * n_atoms


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sevennet-0", "sevennet-l3i5"])
def test_one_graph_field_is_sevennets_own_model(name: str) -> None:
    """ForceStressField (SevenNet's modules, its force/stress head written branch-free) gives what
    SevenNet's model gives, eager, for both SevenNets (l3i5: lmax 3), and refuses a model of
    another shape."""
    import copy
    import functools

    import torch

    from workers.screening.potentials.registry import load_potential
    from workers.screening.potentials.sevennet_graph import ForceStressField, UnsupportedModel

    pot = load_potential(name, device="cpu", compile="off")
    calc = pot.new_calculator()
    field = ForceStressField(calc.model)
    for atoms in _rattled_cells():
        own = _evaluate_with(calc, atoms)
        field_calc = pot.new_calculator()
        field_calc.model = functools.partial(compiled.run_graph, field)
        _assert_same(own, _evaluate_with(field_calc, atoms), len(atoms))
    batch_mode = copy.deepcopy(calc.model)
    batch_mode.set_is_batch_data(True)
    with pytest.raises(UnsupportedModel, match="batch"):
        ForceStressField(batch_mode)
    with pytest.raises(UnsupportedModel, match="not a SevenNet model"):
        ForceStressField(torch.nn.Linear(3, 3))


@pytest.mark.slow
def test_compiled_sevennet_gives_eager_forces_and_stress(tmp_path) -> None:
    """The compiled model (one graph, compiled ahead of time) equals eager to float32 rounding in
    a small cell and a 2x2x2 supercell with other elements; it is saved, and a new load reads it
    back instead of compiling; a 1-atom cell (outside the symbolic sizes) runs eager, correctly;
    a damaged saved graph is compiled again and replaced. The provenance says what ran."""
    from workers.screening.potentials.registry import clear_potential_cache, load_potential

    if compiled.cxx_compiler() is None:
        pytest.fail("a C++ compiler is required for the compiled path (g++ is on this project's machines)")
    clear_potential_cache()
    eager = load_potential("sevennet-0", device="cpu", compile="off")
    fast = load_potential("sevennet-0", device="cpu", compile="auto", compile_cache=tmp_path)
    assert eager.info.execution == "eager"
    # auto timed both on the warm-up cell and kept the graph: compiling pays on this machine
    assert fast.info.execution.startswith("torch.compile (auto: ") and fast.current_info() == fast.info
    assert fast._compiled.timing is not None and fast._compiled.timing[0] < fast._compiled.timing[1]
    assert fast._compiled.how.startswith("compiled now, saved to " + str(tmp_path))
    (saved,) = tmp_path.glob("sevennet-*.bin")
    for atoms in _rattled_cells():
        _assert_same(_evaluate(eager, atoms), _evaluate(fast, atoms), len(atoms))
    assert fast._compiled.eager_calls == 0
    copper = bulk("Cu", "fcc", a=3.55)  # 1 atom: sizes 0 and 1 are never symbolic
    copper.cell[0, 1] += 0.05
    np.testing.assert_allclose(_evaluate(fast, copper)[2], _evaluate(eager, copper)[2], atol=1e-6)
    assert fast._compiled.eager_calls == 1 and fast.current_info().execution == fast.info.execution

    clear_potential_cache()
    again = load_potential("sevennet-0", device="cpu", compile="auto", compile_cache=tmp_path)
    assert again._compiled.how == f"loaded from {saved}"
    atoms = _rattled_cells()[1]
    _assert_same(_evaluate(eager, atoms), _evaluate(again, atoms), len(atoms))

    saved.write_bytes(b"not a compiled graph")
    clear_potential_cache()
    rebuilt = load_potential("sevennet-0", device="cpu", compile="auto", compile_cache=tmp_path)
    assert rebuilt._compiled.how.startswith("compiled now (the saved graph did not load: ")
    assert saved.stat().st_size > 1_000_000
    clear_potential_cache()
