"""OPTIMADE comparisons on one field as SQL clauses: what each operator means for each kind of field,
and a 400 for what cannot be asked or a 501 for what this server does not support."""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import reduce
from typing import Any

from optimade.exceptions import BadRequest, NotImplementedResponse
from optimade.models import DataType
from sqlalchemy import Boolean, ColumnElement, and_, case, cast, false, not_, null, or_, true

from app.optimade.fields import ELEMENTS, Field, get_candidate_id
from models.candidate import Candidate
from models.screened import has_element, n_elements, text_contains, text_ends, text_starts

# a comparison with an unknown value is neither true nor false, and neither is its negation
# (SQL's NULL): only IS UNKNOWN holds
UNKNOWN: ColumnElement[bool] = cast(null(), Boolean)
OPS: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
REVERSED = {"=": "=", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}  # 3 < x is x > 3
FUZZY = {"CONTAINS": text_contains, "STARTS": text_starts, "ENDS": text_ends}
_SYMBOL = re.compile(r"[A-Z][a-z]{0,2}")  # what can be an element of `elements` ("Al-O" is not)
_INT64 = 2**63


@dataclass(frozen=True)
class Target:
    """A property named in a filter; `field` None: its value is unknown for every structure (a
    standard field not served, or another provider's field)."""

    name: str
    field: Field | None


def compare(target: Target, op: str, value: Any) -> ColumnElement[bool]:
    """`target op value` for a scalar field."""
    field = target.field
    if field is None:
        return UNKNOWN
    if field.type is DataType.LIST:
        raise BadRequest(detail=f"{target.name} is a list: filter it with HAS, HAS ALL, HAS ANY, HAS ONLY or LENGTH")
    value = _checked(target, field, value)
    if field.type is DataType.BOOLEAN and op not in ("=", "!="):
        raise BadRequest(detail=f"{target.name} is a boolean: compare it with = or != only")
    if field.sql is None:
        return _truth(OPS[op](field.constant, value))
    if target.name == "id" and op in ("=", "!="):  # the primary key, where an id can name a row
        candidate_id = get_candidate_id(value)
        same = Candidate.id == candidate_id if candidate_id is not None else false()
        return same if op == "=" else not_(same)
    return OPS[op](field.sql, value)


def compare_constants(left: Any, op: str, right: Any) -> ColumnElement[bool]:
    """`left op right` for two numbers (a filter may compare constants)."""
    if isinstance(right, Target):
        return compare(right, REVERSED[op], left)
    if _is_number(left) and _is_number(right):
        return _truth(OPS[op](left, right))
    raise BadRequest(detail=f"cannot compare {left!r} with {right!r}")


def fuzzy(target: Target, kind: str, value: Any) -> ColumnElement[bool]:
    """CONTAINS, STARTS [WITH] or ENDS [WITH] on a string field (case-sensitive)."""
    field = target.field
    if field is None:
        return UNKNOWN
    if field.type is not DataType.STRING or not isinstance(value, str):
        raise BadRequest(
            detail=f"{kind} compares strings: {target.name} is of type {field.type.value}, {value!r} given"
        )
    if field.sql is None:
        method = {"CONTAINS": str.__contains__, "STARTS": str.startswith, "ENDS": str.endswith}[kind]
        return _truth(method(field.constant, value))
    return FUZZY[kind](field.sql, value)


def known(target: Target, *, is_known: bool) -> ColumnElement[bool]:
    """IS KNOWN (`is_known`) or IS UNKNOWN."""
    field = target.field
    if field is None:
        present = false()
    elif field.sql is not None:
        present = field.sql.is_not(None)
    else:  # constants, and the lists every structure has
        present = true()
    return present if is_known else not_(present)


def has(target: Target, mode: str, values: Sequence[Any]) -> ColumnElement[bool]:
    """HAS (mode ""), HAS ALL, HAS ANY or HAS ONLY on a list field."""
    field = _list_field(target, "HAS")
    if field is None:
        return UNKNOWN
    values = list(dict.fromkeys(values))
    if field.constant is not None:
        items = list(field.constant)
        found = [any(_same(v, item) for item in items) for v in values]
        if mode == "ONLY":
            return _truth(all(any(_same(item, v) for v in values) for item in items))
        return _truth(any(found) if mode == "ANY" else all(found))
    if target.name != ELEMENTS:
        raise NotImplementedResponse(detail=f"HAS on {target.name} is not supported (elements supports it)")
    if any(not isinstance(v, str) for v in values):
        raise BadRequest(detail=f"elements are strings (chemical symbols): {values!r} given")
    present = [has_element(v) if _SYMBOL.fullmatch(v) else false() for v in values]
    if mode == "ONLY":  # every element of the structure is among `values`
        return reduce(operator.add, [case((p, 1), else_=0) for p in present]) == n_elements()
    return or_(*present) if mode == "ANY" else and_(*present)


def length(target: Target, op: str, n: int) -> ColumnElement[bool]:
    """LENGTH [op] n on a list field."""
    field = _list_field(target, "LENGTH")
    if field is None:
        return UNKNOWN
    if field.constant is not None:
        return _truth(OPS[op](len(field.constant), n))
    if target.name != ELEMENTS:
        raise NotImplementedResponse(detail=f"LENGTH on {target.name} is not supported (elements supports it)")
    return OPS[op](n_elements(), _bounded(n))


def _list_field(target: Target, what: str) -> Field | None:
    field = target.field
    if field is not None and field.type is not DataType.LIST:
        raise BadRequest(detail=f"{what} applies to lists: {target.name} is of type {field.type.value}")
    return field


def _checked(target: Target, field: Field, value: Any) -> Any:
    """`value` as a parameter compared with `field`; 400 where the types cannot be compared."""
    if isinstance(value, Target):
        raise NotImplementedResponse(detail=f"comparing {target.name} with another property is not supported")
    kind = field.type
    if kind is DataType.STRING and isinstance(value, str):
        return value
    if kind in (DataType.INTEGER, DataType.FLOAT) and _is_number(value):
        return _bounded(value)
    if kind is DataType.BOOLEAN and isinstance(value, bool):
        return value
    if kind is DataType.TIMESTAMP and isinstance(value, str):
        return _timestamp(target, value)
    raise BadRequest(detail=f"{target.name} is of type {kind.value}: it cannot be compared with {value!r}")


def _timestamp(target: Target, text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(detail=f"{target.name} is a timestamp: {text!r} is not RFC 3339") from None
    # naive: UTC; SQLite keeps UTC without an offset, so parameters go as UTC too
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _bounded(value: int | float) -> int | float:
    # a database integer parameter stops at 64 bits; beyond, a float orders the same way
    if not isinstance(value, int) or abs(value) < _INT64:
        return value
    try:
        return float(value)
    except OverflowError:
        return math.copysign(math.inf, value)


def _same(a: Any, b: Any) -> bool:
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def _truth(value: bool) -> ColumnElement[bool]:
    return true() if value else false()
