"""Counts and stability rates over screening results, overall and by group, and their text table."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from workers.screening.opinions import summarize_opinions
from workers.screening.types import VERDICTS

_CRYSTAL_SYSTEMS = (
    "triclinic",
    "monoclinic",
    "orthorhombic",
    "tetragonal",
    "trigonal",
    "hexagonal",
    "cubic",
)
UNKNOWN = "unknown"


def _relaxed(row: Mapping[str, Any]) -> bool:
    relax = row.get("relax")
    if isinstance(relax, Mapping):
        return bool(relax.get("converged"))
    # A verdict on the phonons implies that the relaxation went through.
    return row.get("verdict") in ("stable", "unstable")


@dataclass(frozen=True, kw_only=True)
class StabilityRates:
    """The one definition of a stability rate (CLI summary, API reports and pages use it).

    Fractions in [0, 1], None when the denominator is 0. `stable_rate` is stable over every
    structure counted (PhononBench's "25.8 % of all generated"), `stable_rate_relaxed` stable over
    those whose relaxation converged, `stable_phononbench_rate` and `stable_phononbench_v3_rate`
    PhononBench's path-only criteria (-1e-3 THz, its scripts; -0.1 THz, its v3 headline) over every
    structure counted.
    """

    stable_rate: float | None
    stable_rate_relaxed: float | None
    stable_phononbench_rate: float | None
    stable_phononbench_v3_rate: float | None

    def as_dict(self) -> dict[str, float | None]:
        return asdict(self)


def stability_rates(
    *, n: int, n_relaxed: int, n_stable: int, n_stable_phononbench: int, n_stable_phononbench_v3: int
) -> StabilityRates:
    """Rates of `n` structures of which `n_relaxed` relaxed and `n_stable` are stable (see StabilityRates)."""
    return StabilityRates(
        stable_rate=_rate(n_stable, n),
        stable_rate_relaxed=_rate(n_stable, n_relaxed),
        stable_phononbench_rate=_rate(n_stable_phononbench, n),
        stable_phononbench_v3_rate=_rate(n_stable_phononbench_v3, n),
    )


def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


def _group(rows: list[Mapping[str, Any]]) -> dict[str, Any]:
    counts = Counter(str(r.get("verdict")) for r in rows)
    n = len(rows)
    n_relaxed = sum(_relaxed(r) for r in rows)
    stable = counts.get("stable", 0)
    pb = sum(bool(r.get("stable_phononbench")) for r in rows)
    pb3 = sum(bool(r.get("stable_phononbench_v3")) for r in rows)
    rates = stability_rates(
        n=n, n_relaxed=n_relaxed, n_stable=stable, n_stable_phononbench=pb, n_stable_phononbench_v3=pb3
    )
    return {
        "n": n,
        "counts": {v: counts.get(v, 0) for v in VERDICTS},
        "n_relaxed": n_relaxed,
        "stable_phononbench": pb,
        "stable_phononbench_v3": pb3,
        **rates.as_dict(),
    }


def _potential(row: Mapping[str, Any]) -> Mapping[str, Any]:
    prov = row.get("provenance") or {}
    return prov.get("potential") or {}


def _spacegroup_key(row: Mapping[str, Any]) -> str:
    number = row.get("spacegroup_number")
    return str(int(number)) if number is not None else UNKNOWN


def _spacegroup_symbol(row: Mapping[str, Any]) -> str | None:
    relax = row.get("relax")
    label = relax.get("spacegroup_after") if isinstance(relax, Mapping) else None
    return label.split(" (")[0] if label else None


def _grouped(rows: list[Mapping[str, Any]], key: Callable[[Mapping[str, Any]], str]) -> dict[str, dict[str, Any]]:
    buckets: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        buckets[key(row)].append(row)
    return {k: _group(v) for k, v in buckets.items()}


def _warning_key(text: str) -> str:
    # Per-structure warnings carry numbers after a colon ("supercell capped: 412 atoms"); counting
    # by the part before it keeps the table to one line per kind.
    return text.split(":", 1)[0].strip() or text


def summarize_results(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Verdict counts and stability rates of `ScreeningResult.as_dict(bulky=False)` rows.

    Rates are `stability_rates` over all rows (stable/all, stable/relaxed, PhononBench/all at
    -1e-3 and at -0.1 THz). The
    same numbers are given by crystal system and by space-group number of
    the relaxed structure, by potential and by generator; warnings are counted by kind.
    """
    rows = list(rows)
    summary = _group(rows)
    summary["unstable_reasons"] = dict(Counter(str(r.get("reason")) for r in rows if r.get("verdict") == "unstable"))
    summary["failure_reasons"] = dict(
        Counter(_warning_key(str(r.get("reason"))) for r in rows if r.get("verdict") in ("failed", "relax_failed"))
    )
    by_system = _grouped(rows, lambda r: r.get("crystal_system") or UNKNOWN)
    order = {name: i for i, name in enumerate((*_CRYSTAL_SYSTEMS, UNKNOWN))}
    summary["by_crystal_system"] = dict(sorted(by_system.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))
    by_sg = _grouped(rows, _spacegroup_key)
    symbols = {_spacegroup_key(r): _spacegroup_symbol(r) for r in rows}
    for key, group in by_sg.items():
        group["symbol"] = symbols.get(key)
    summary["by_spacegroup"] = dict(
        sorted(by_sg.items(), key=lambda kv: (kv[0] == UNKNOWN, int(kv[0]) if kv[0].isdigit() else 0))
    )
    summary["by_potential"] = _grouped(rows, lambda r: _potential(r).get("name") or UNKNOWN)
    generators = {r.get("generator") for r in rows}
    if generators - {None, ""}:
        summary["by_generator"] = _grouped(rows, lambda r: r.get("generator") or UNKNOWN)
    warnings: Counter[str] = Counter()
    for row in rows:
        pot_warning = _potential(row).get("warning")
        if pot_warning:
            warnings[f"potential: {_warning_key(pot_warning)}"] += 1
        for text in row.get("warnings") or ():
            if text != pot_warning:  # the pipeline repeats it per structure: count it once
                warnings[_warning_key(str(text))] += 1
    summary["warnings"] = dict(warnings.most_common())
    opinions = summarize_opinions(rows)
    if opinions:
        summary["opinions"] = opinions
    return summary


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100.0 * value:.1f} %"


def _table(title: str, groups: Mapping[str, Mapping[str, Any]], *, symbol: bool = False) -> list[str]:
    head = (
        f"{title:<22} {'n':>6} {'stable':>7} {'unstab':>7} {'relaxF':>7} {'failed':>7}"
        f" {'stable/all':>11} {'stable/relaxed':>15} {'PB -1e-3':>9} {'PB v3 -0.1':>10}"
    )
    lines = [head, "-" * len(head)]
    for key, g in groups.items():
        label = f"{key} {g.get('symbol') or ''}".strip() if symbol else key
        c = g["counts"]
        lines.append(
            f"{label[:22]:<22} {g['n']:>6} {c['stable']:>7} {c['unstable']:>7}"
            f" {c['relax_failed']:>7} {c['failed']:>7} {_pct(g['stable_rate']):>11}"
            f" {_pct(g['stable_rate_relaxed']):>15} {_pct(g['stable_phononbench_rate']):>9}"
            f" {_pct(g['stable_phononbench_v3_rate']):>10}"
        )
    return lines


def _opinion_lines(opinions: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    if pre := opinions.get("prescreen"):
        lines += [
            "",
            f"prescreen: settled {pre['settled']} (unstable beyond the margin), passed on {pre['passed_on']} to the "
            f"main potential, which gave the prescreen's verdict on {pre['same_verdict_as_main']} of them",
        ]
    if second := opinions.get("second_opinion"):
        lines += [
            "",
            f"second opinion on {second['n']}: agree {second['agree']}, disagree {second['disagree']}, "
            f"undecided {second['undecided']}; stable by both {second['stable_by_both']}",
        ]
        lines += [
            f"  disagree: {d['name']}: {d['verdict']} vs {d['second_verdict']} ({d['second_potential']})"
            for d in second["disagreements"]
        ]
    return lines


def format_summary(summary: Mapping[str, Any]) -> str:
    """Readable text tables of `summarize_results(...)`: overall, then each grouping."""
    lines = _table("overall", {"all structures": summary})
    extra = []
    if summary.get("unstable_reasons"):
        reasons = ", ".join(f"{k} {v}" for k, v in summary["unstable_reasons"].items())
        extra.append(f"unstable because: {reasons}")
    if summary.get("failure_reasons"):
        reasons = ", ".join(f"{k} {v}" for k, v in summary["failure_reasons"].items())
        extra.append(f"failed / relax_failed because: {reasons}")
    lines += extra
    for title, key, symbol in (
        ("crystal system", "by_crystal_system", False),
        ("space group", "by_spacegroup", True),
        ("potential", "by_potential", False),
        ("generator", "by_generator", False),
    ):
        if summary.get(key):
            lines += ["", *_table(title, summary[key], symbol=symbol)]
    lines += _opinion_lines(summary.get("opinions") or {})
    if summary.get("warnings"):
        lines += ["", "warnings (structures)"]
        lines += [f"  {count:>6}  {text}" for text, count in summary["warnings"].items()]
    return "\n".join(lines) + "\n"
