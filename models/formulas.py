"""Formulas derived from a stored structure (pymatgen `Structure.as_dict()`), for formula search:
reduced with elements in alphabetical order ("ClNa") and anonymous ("AB2"), as OPTIMADE writes them."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator, Mapping
from itertools import count, product
from string import ascii_lowercase
from typing import Any

OCCUPANCY_TOL = 1e-6  # an element's total occupancy this close to an integer counts as that integer


def count_elements(structure: Mapping[str, Any]) -> dict[str, int] | None:
    """Atoms of each element in the cell; None for an empty cell or one whose totals are not
    whole numbers (partial occupancy)."""
    totals: defaultdict[str, float] = defaultdict(float)
    for site in structure.get("sites", ()):
        for species in site.get("species", ()):
            totals[str(species["element"])] += float(species.get("occu", 1.0))
    counts = {element: round(total) for element, total in totals.items()}
    if not counts or any(abs(totals[e] - n) > OCCUPANCY_TOL or n < 1 for e, n in counts.items()):
        return None
    return counts


def alphabetical_formula(structure: Mapping[str, Any]) -> str | None:
    """The reduced formula with elements in alphabetical order and no 1s: "ClNa", "Al2O3"."""
    reduced = _reduced(structure)
    return None if reduced is None else "".join(_term(e, n) for e, n in sorted(reduced.items()))


def anonymous_formula(structure: Mapping[str, Any]) -> str | None:
    """The reduced formula with proportions in descending order, elements named A, B, ..., Z, Aa,
    Ba, ...: "A2B3" for Al2O3."""
    reduced = _reduced(structure)
    if reduced is None:
        return None
    numbers = sorted(reduced.values(), reverse=True)
    return "".join(_term(name, n) for name, n in zip(_anonymous_names(), numbers, strict=False))


def _reduced(structure: Mapping[str, Any]) -> dict[str, int] | None:
    counts = count_elements(structure)
    if counts is None:
        return None
    divisor = math.gcd(*counts.values())
    return {element: n // divisor for element, n in counts.items()}


def _term(symbol: str, n: int) -> str:
    return symbol if n == 1 else f"{symbol}{n}"


def _anonymous_names() -> Iterator[str]:
    for size in count(1):
        for letters in product(ascii_lowercase, repeat=size):
            yield letters[0].upper() + "".join(letters[1:])
