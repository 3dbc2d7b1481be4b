"""OPTIMADE filters to SQL: the package's grammar (optimade.filterparser.LarkParser) and a
transformer of its trees into a where-clause on the screened candidates (app.optimade.operators)."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

from lark import Lark, Token
from lark.exceptions import VisitError
from optimade.exceptions import BadRequest, NotImplementedResponse, OptimadeHTTPException
from optimade.filterparser import LarkParser
from optimade.filterparser.lark_parser import AVAILABLE_PARSERS
from optimade.filtertransformers.base_transformer import BaseTransformer
from sqlalchemy import ColumnElement, and_, not_, or_

from app.optimade.fields import FIELDS, PREFIX, UNSERVED
from app.optimade.operators import Target, compare, compare_constants, fuzzy, has, known, length

MAX_FILTER_CHARS = 2000
MAX_DEPTH = 32  # nested parentheses: deeper trees would exhaust the recursion of the parser and of SQL compilation
_ESCAPE = re.compile(r'\\(["\\])')

Rhs = Callable[[Target], ColumnElement[bool]]  # the right-hand side of a comparison, applied to its property


def translate_filter(text: str | None) -> ColumnElement[bool] | None:
    """The where-clause of an OPTIMADE filter, None for no filter: 400 for one that does not parse
    or asks the impossible, 501 for one this server does not support."""
    if text is None or not text.strip():
        return None
    if len(text) > MAX_FILTER_CHARS:
        raise BadRequest(detail=f"a filter of at most {MAX_FILTER_CHARS} characters, please")
    if _depth(text) > MAX_DEPTH:
        raise BadRequest(detail=f"parentheses nested at most {MAX_DEPTH} deep, please")
    tree = _parser().parse(text)
    try:
        return SqlTransformer().transform(tree)
    except VisitError as exc:  # lark wraps what a transformer method raises
        if isinstance(exc.orig_exc, OptimadeHTTPException):
            raise exc.orig_exc from None
        if isinstance(exc.orig_exc, NotImplementedError):
            raise NotImplementedResponse(detail=str(exc.orig_exc)) from None
        raise


def resolve(name: str) -> Target:
    """The field a filter names; unknown (null everywhere) for a standard field not served and for
    another provider's field; 400 for any other name."""
    if name in FIELDS:
        return Target(name, FIELDS[name])
    if name in UNSERVED or (name.startswith("_") and not name.startswith(f"_{PREFIX}_")):
        return Target(name, None)
    raise BadRequest(detail=f"{name!r} is not a known or searchable quantity")


@functools.cache
def _parser() -> LarkParser:
    parser = LarkParser()  # the newest grammar
    grammar = AVAILABLE_PARSERS[parser.version][parser.variant].read_text()
    # the grammar's `bool: ( "TRUE" | "FALSE" )` leaves neither word in the tree (lark drops
    # anonymous tokens); `!` keeps them, so TRUE and FALSE can be told apart
    fixed = grammar.replace("\nbool:", "\n!bool:")
    if fixed == grammar:
        raise RuntimeError("the OPTIMADE grammar has no `bool` rule to keep the tokens of")
    parser.lark = Lark(fixed, maybe_placeholders=False)
    return parser


def _depth(text: str) -> int:
    """How deep parentheses nest outside string literals."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            escaped, in_string = (False, True) if escaped else (char == "\\", char != '"')
        elif char == '"':
            in_string = True
        elif char in "()":
            depth += 1 if char == "(" else -1
            deepest = max(deepest, depth)
    return deepest


class SqlTransformer(BaseTransformer):
    """A parsed filter to a where-clause. Right-hand sides wait for their property (`Rhs`)."""

    def __init__(self) -> None:
        super().__init__(mapper=None)

    def expression(self, args: list[Any]) -> ColumnElement[bool]:
        return or_(*args) if len(args) > 1 else args[0]

    def expression_clause(self, args: list[Any]) -> ColumnElement[bool]:
        return and_(*args) if len(args) > 1 else args[0]

    def expression_phrase(self, args: list[Any]) -> ColumnElement[bool]:
        return not_(args[1]) if len(args) == 2 else args[0]

    def property(self, args: list[Any]) -> Target:
        if len(args) > 1:
            raise NotImplementedResponse(detail=f"nested properties ({'.'.join(args)}) are not supported")
        return resolve(str(args[0]))

    def string(self, args: list[Any]) -> str:
        value = _ESCAPE.sub(r"\1", str(args[0])[1:-1])
        if "\x00" in value:
            raise BadRequest(detail="a string in a filter may not contain NUL characters")
        return value

    def bool(self, args: list[Any]) -> bool:
        return str(args[0]) == "TRUE"

    def value_list(self, args: list[Any]) -> list[Any]:
        if any(isinstance(a, Token) and a.type == "OPERATOR" for a in args):
            raise NotImplementedResponse(detail="operators inside a value list are not supported")
        return list(args)

    def value_op_rhs(self, args: list[Any]) -> Rhs:
        op, value = args
        return lambda target: compare(target, str(op), value)

    def known_op_rhs(self, args: list[Any]) -> Rhs:
        return lambda target: known(target, is_known=args[1].type == "KNOWN")

    def fuzzy_string_op_rhs(self, args: list[Any]) -> Rhs:
        kind, value = args[0].type, args[-1]
        return lambda target: fuzzy(target, kind, value)

    def set_op_rhs(self, args: list[Any]) -> Rhs:
        rest = args[1:]  # after HAS: a value, OPERATOR value, or ALL / ANY / ONLY and a list
        first = rest[0]
        if not isinstance(first, Token):
            return lambda target: has(target, "", [first])
        if first.type == "OPERATOR":
            if first != "=":
                raise NotImplementedResponse(detail=f"HAS {first} is not supported (HAS and HAS = are)")
            return lambda target: has(target, "", [rest[1]])
        return lambda target: has(target, first.type, rest[1])

    def length_op_rhs(self, args: list[Any]) -> Rhs:
        op = str(args[1]) if len(args) == 3 else "="
        return lambda target: length(target, op, args[-1])

    def set_zip_op_rhs(self, args: list[Any]) -> Rhs:
        raise NotImplementedResponse(detail="correlated list queries (a:b HAS ...) are not supported")

    def property_zip_addon(self, args: list[Any]) -> Any:
        raise NotImplementedResponse(detail="correlated list queries (a:b HAS ...) are not supported")

    def value_zip(self, args: list[Any]) -> Any:
        raise NotImplementedResponse(detail="correlated list queries (a:b HAS ...) are not supported")

    def value_zip_list(self, args: list[Any]) -> Any:
        raise NotImplementedResponse(detail="correlated list queries (a:b HAS ...) are not supported")

    def property_first_comparison(self, args: list[Any]) -> ColumnElement[bool]:
        target, rhs = args
        return rhs(target)

    def constant_first_comparison(self, args: list[Any]) -> ColumnElement[bool]:
        left, op, right = args
        return compare_constants(left, str(op), right)

    def not_implemented_string(self, args: list[Any]) -> Any:
        raise NotImplementedResponse(detail="comparing a string constant with another constant is not supported")
