"""Other potentials' opinions on a structure: a cheap prescreen that settles clear instabilities
before the main potential runs, and a second opinion after it. One rule for the CLI and the workers.

Prescreen: the cheap potential screens first; a verdict of `unstable` whose worst mode lies below
`-margin_thz` is kept as the structure's verdict (recorded as settled by the prescreen), anything
else is screened by the main potential. A false instability that deep is what the margin must make
rare: see README "Prescreen and second opinion" for how it was chosen.

Second opinion: after the main verdict, another potential screens the main potential's relaxed
structure (relaxing it to its own minimum first, a few steps from where it starts); both verdicts
are kept, with whether they agree. Disagreements are the list to send to DFT.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from workers.screening.types import Opinion, ScreeningResult

if TYPE_CHECKING:
    from pymatgen.core import Structure

    from workers.screening.potentials.registry import LoadedPotential

# The margin in THz below which a prescreen instability is trusted. Measured on the validation set
# (`python benchmarks/prescreen_margin.py --set validation`, SevenNet-0 before SevenNet-l3i5,
# README "Prescreen and second opinion"): SevenNet-0 calls stable LiNbO3 unstable at -2.16 THz where
# l3i5 is right, so any margin below that loses a right verdict; 2.5 THz changes none of the 44.
DEFAULT_PRESCREEN_MARGIN_THZ = 2.5


@dataclass(frozen=True, kw_only=True)
class Opinions:
    """The other potentials of a run (loaded), and the prescreen's margin."""

    prescreen: LoadedPotential | None = None
    prescreen_margin_thz: float = DEFAULT_PRESCREEN_MARGIN_THZ
    second_opinion: LoadedPotential | None = None

    def __post_init__(self) -> None:
        if not self.prescreen_margin_thz >= 0:
            raise ValueError(f"prescreen margin must be >= 0 THz, not {self.prescreen_margin_thz}")


@dataclass(frozen=True, kw_only=True)
class OpinionNames:
    """The other potentials of a run by name, as a batch stores them: what the service and the CLI
    both check (`problem`), label (`label`) and compare (two runs share verdicts only when equal)."""

    prescreen: str | None = None
    prescreen_margin_thz: float | None = None  # None with a prescreen: DEFAULT_PRESCREEN_MARGIN_THZ
    second_opinion: str | None = None

    @property
    def margin_thz(self) -> float | None:
        """The margin that applies: None without a prescreen."""
        if self.prescreen is None:
            return None
        return DEFAULT_PRESCREEN_MARGIN_THZ if self.prescreen_margin_thz is None else self.prescreen_margin_thz

    def resolved(self) -> OpinionNames:
        """With the margin that applies filled in (or dropped without a prescreen): the form to store."""
        return dataclasses.replace(self, prescreen_margin_thz=self.margin_thz)

    def problem(self, *, potential: str, known: tuple[str, ...]) -> tuple[str, str] | None:
        """(code, message) when these opinions cannot go with main `potential`, else None."""
        for field, name in (("prescreen", self.prescreen), ("second_opinion", self.second_opinion)):
            if name is not None and name not in known:
                return f"unknown_{field}", f"{field} {name!r}; choose one of {list(known)}"
            if name is not None and name == potential:
                return f"same_{field}", f"{field} {name!r} is the main potential: choose another one"
        margin = self.prescreen_margin_thz
        if margin is not None and self.prescreen is None:
            return "margin_without_prescreen", "prescreen_margin_thz is set but no prescreen potential is"
        if margin is not None and not (0 <= margin < float("inf")):
            return "bad_prescreen_margin", f"prescreen_margin_thz must be a finite number >= 0, not {margin}"
        return None

    def label(self, potential: str) -> str:
        return run_label(potential, prescreen=self.prescreen, second_opinion=self.second_opinion)


def run_label(potential: str, *, prescreen: str | None = None, second_opinion: str | None = None) -> str:
    """What a run used, as the CLI keys its rows by: `sevennet-l3i5+prescreen:sevennet-0+second:chgnet-0.3.0`."""
    parts = [potential]
    parts += [f"+prescreen:{prescreen}"] if prescreen else []
    parts += [f"+second:{second_opinion}"] if second_opinion else []
    return "".join(parts)


def stable_by_both(verdict: str | None, second_verdict: str | None) -> bool:
    """The one rule for "stable by both": the main verdict and the second opinion are `stable`."""
    return verdict == "stable" and second_verdict == "stable"


def summarize_opinions(rows: list[Mapping[str, Any]]) -> dict[str, Any] | None:
    """What the other potentials did over result rows (as_dict(bulky=False)); None when none ran.

    Prescreen: how many it settled, and of the rest how often its verdict was the main one's.
    Second opinion: agreements, disagreements (listed: the structures to send to DFT), stable by both.
    """
    settled = [r for r in rows if r.get("settled_by_prescreen")]
    prescreened = [r for r in rows if r.get("prescreen")]
    seconded = [r for r in rows if r.get("second_opinion")]
    if not (settled or prescreened or seconded):
        return None
    out: dict[str, Any] = {}
    if settled or prescreened:
        same = sum(r["prescreen"]["verdict"] == r.get("verdict") for r in prescreened)
        out["prescreen"] = {
            "settled": len(settled),
            "passed_on": len(prescreened),
            "same_verdict_as_main": same,
            "seconds": sum(float((r.get("timings_s") or {}).get("total", 0.0)) for r in settled)
            + sum(float(r["prescreen"].get("seconds") or 0.0) for r in prescreened),
        }
    if seconded:
        disagree = [r for r in seconded if r.get("agreement") is False]
        out["second_opinion"] = {
            "n": len(seconded),
            "agree": sum(r.get("agreement") is True for r in seconded),
            "disagree": len(disagree),
            "undecided": sum(r.get("agreement") is None for r in seconded),
            "stable_by_both": sum(stable_by_both(r.get("verdict"), r["second_opinion"]["verdict"]) for r in seconded),
            "disagreements": [
                {
                    "name": r.get("name"),
                    "verdict": r.get("verdict"),
                    "min_frequency_thz": r.get("min_frequency_thz"),
                    "second_potential": r["second_opinion"]["potential"],
                    "second_verdict": r["second_opinion"]["verdict"],
                    "second_min_frequency_thz": r["second_opinion"].get("min_frequency_thz"),
                }
                for r in disagree
            ],
        }
    return out


def settles(result: ScreeningResult, *, margin_thz: float) -> bool:
    """Whether a prescreen result stands as the verdict: unstable, its worst mode below -margin."""
    return would_settle(result.verdict, result.min_frequency_thz, margin_thz=margin_thz)


def would_settle(verdict: str | None, min_frequency_thz: float | None, *, margin_thz: float) -> bool:
    """`settles` on a stored row's verdict and worst frequency (benchmarks replay it at other margins)."""
    return verdict == "unstable" and min_frequency_thz is not None and min_frequency_thz < -margin_thz


def opinion_of(result: ScreeningResult) -> Opinion:
    return Opinion(
        potential=result.provenance.potential.name,
        verdict=result.verdict,
        reason=result.reason,
        min_frequency_thz=result.min_frequency_thz,
        stable_phononbench=result.stable_phononbench,
        seconds=float(result.timings_s.get("total", 0.0)),
    )


def agreement(main: ScreeningResult, second: ScreeningResult) -> bool | None:
    """Same verdict from both potentials; None when either could not give one (`failed`)."""
    if main.verdict == "failed" or second.verdict == "failed":
        return None
    return main.verdict == second.verdict


def second_opinion_start(main: ScreeningResult, structure: Structure) -> Structure:
    """Where the second potential starts: the main potential's relaxed structure, else the input."""
    from pymatgen.core import Structure as PmgStructure

    if main.relaxed_cif:
        try:
            return PmgStructure.from_str(main.relaxed_cif, fmt="cif")
        except Exception:  # noqa: BLE001 - an unreadable relaxed CIF: the input will do
            return structure
    return structure


def with_prescreen(first: ScreeningResult, *, main_potential: str) -> ScreeningResult:
    """A prescreen result that settles the structure, marked as such."""
    return dataclasses.replace(first, settled_by_prescreen=True, main_potential=main_potential)


def with_second(main: ScreeningResult, second: ScreeningResult) -> ScreeningResult:
    return dataclasses.replace(main, second_opinion=opinion_of(second), agreement=agreement(main, second))
