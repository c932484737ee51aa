"""What the rule SQL's operators do to values: EMQ X's comparisons (a number and a
numeric string compare as numbers, ...), arithmetic, topic matching, CASE's exact match,
and how selected fields are put into the output (a null one is left out).

The code `sqlcode.py` generates calls these by name (its helpers); pure functions.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from starling.mqtt import is_valid_topic_filter, matches

from .functions import (
    FUNCTIONS,
    Key,
    SqlRuntimeError,
    as_text,
    decode_json,
    int_div,
    is_number,
    nested_get,
    parse_number,
    to_str,
)


def coerce_pair(a: Any, b: Any) -> tuple[Any, Any]:
    """Make two operands of different types comparable as EMQ X does: a number and a
    numeric string compare as numbers, a boolean and a string as 'true'/'false', bytes as
    text.  Operands that stay incomparable are returned as they are."""
    if isinstance(a, (bytes, bytearray)):
        a = as_text(a) if as_text(a) is not None else a
    if isinstance(b, (bytes, bytearray)):
        b = as_text(b) if as_text(b) is not None else b
    if isinstance(a, str):
        if is_number(b):
            number = parse_number(a)
            return (number, b) if number is not None else (a, b)
        if isinstance(b, bool):
            return a, "true" if b else "false"
    elif isinstance(b, str):
        if is_number(a):
            number = parse_number(b)
            return (a, number) if number is not None else (a, b)
        if isinstance(a, bool):
            return "true" if a else "false", b
    return a, b


def eq(a: Any, b: Any) -> bool:
    if type(a) is type(b):
        return bool(a == b)
    if is_number(a) and is_number(b):
        return bool(a == b)
    a, b = coerce_pair(a, b)
    if type(a) is type(b) or (is_number(a) and is_number(b)):
        return bool(a == b)
    return False


def ordered(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(a: Any, b: Any) -> bool:
        ta, tb = type(a), type(b)
        if ta is tb and (ta is int or ta is float or ta is str):
            return op(a, b)
        a, b = coerce_pair(a, b)
        if (is_number(a) and is_number(b)) or (isinstance(a, str) and isinstance(b, str)):
            return op(a, b)
        return False  # null or mismatched types: not ordered, so the comparison is false

    return compare


def topic_match(topic: Any, topic_filter: Any) -> bool:
    t, f = as_text(topic), as_text(topic_filter)
    if t is None or f is None or not is_valid_topic_filter(f):
        return False
    return matches(f, t)


COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": eq,
    "!=": lambda a, b: not eq(a, b),
    "<>": lambda a, b: not eq(a, b),
    ">": ordered(operator.gt),
    "<": ordered(operator.lt),
    ">=": ordered(operator.ge),
    "<=": ordered(operator.le),
    "=~": topic_match,
}


def arith_error(op: str, a: Any, b: Any) -> SqlRuntimeError:
    return SqlRuntimeError(f"bad operands for {op}: {a!r} {op} {b!r}")


def add(a: Any, b: Any) -> Any:
    """Numbers add; if either side is a string the two are concatenated as strings."""
    ta, tb = type(a), type(b)
    if (ta is int or ta is float) and (tb is int or tb is float):
        return a + b
    if isinstance(a, (str, bytes)) or isinstance(b, (str, bytes)):
        if a is None or b is None:
            raise arith_error("+", a, b)
        return to_str(a) + to_str(b)
    raise arith_error("+", a, b)


def numeric(op: str, fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def apply(a: Any, b: Any) -> Any:
        if is_number(a) and is_number(b):
            return fn(a, b)
        raise arith_error(op, a, b)

    return apply


def divide(a: Any, b: Any) -> float:
    if b == 0:
        raise SqlRuntimeError(f"division by zero: {a!r} / {b!r}")
    return a / b  # type: ignore[no-any-return]


ARITH: dict[str, Callable[[Any, Any], Any]] = {
    "+": add,
    "-": numeric("-", operator.sub),
    "*": numeric("*", operator.mul),
    "/": numeric("/", divide),
    "div": int_div,
    "mod": FUNCTIONS["mod"].impl,
}


def negate(value: Any) -> Any:
    if not is_number(value):
        raise SqlRuntimeError(f"bad operand for unary -: {value!r}")
    return -value


def member(value: Any, items: list[Any]) -> bool:
    return any(eq(value, item) for item in items)


def nested_json(value: Any, keys: tuple[Key, ...]) -> Any:
    """`nested_get`, into the JSON a str/bytes value holds (as into a column)."""
    if isinstance(value, (str, bytes, bytearray)):
        value = decode_json(value)
    return nested_get(value, keys)


def same(a: Any, b: Any) -> bool:
    """``CASE x WHEN v``: EMQ X matches the value as an Erlang pattern, exactly (no
    coercion: 1 is not 1.0 nor '1'); bytes that are text match the same text."""
    if isinstance(a, (bytes, bytearray)):
        a = as_text(a) if as_text(a) is not None else a
    if isinstance(b, (bytes, bytearray)):
        b = as_text(b) if as_text(b) is not None else b
    return type(a) is type(b) and bool(a == b)


def overlay(base: Any, *puts: tuple[tuple[str, ...], Any]) -> Any:
    """A name as later dotted aliases left it: ``x as p.a`` then ``p`` is the column
    (or earlier value) `p` with key ``a`` set, as EMQ X's nested_put does."""
    if isinstance(base, (str, bytes, bytearray)):
        base = decode_json(base)
    out = dict(base) if isinstance(base, dict) else {}
    for keys, value in puts:
        put(out, keys, value)
    return out


def filter_matcher(topic_filter: str) -> Callable[[Any], bool]:
    """``x =~ 'a/+'`` with a constant, checked filter."""

    def topic_matches(topic: Any) -> bool:
        if type(topic) is not str:
            topic = as_text(topic)
            if topic is None:
                return False
        return matches(topic_filter, topic)

    return topic_matches


def put(out: dict[str, Any], keys: tuple[str, ...], value: Any) -> None:
    """out[k1][k2]...[kn] = value, making (or replacing non-object) levels on the way.
    A null value is not put (EMQ X drops an undefined field from the output)."""
    if value is None:
        return
    node = out
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[keys[-1]] = value


def defined(out: dict[str, Any]) -> dict[str, Any]:
    """The selected fields without the null ones (see `put`)."""
    return {key: value for key, value in out.items() if value is not None}
