"""The built-in functions of EMQ X v3.2's rule SQL, with EMQ X's argument order and types.

Each function is registered with `@builtin` under its SQL name; the arity is taken from
the Python signature, so `parse_sql` can refuse a wrong argument count (or an unknown
name) when the rule is created, not when the first message arrives.  Functions marked
``context=True`` read the event being evaluated (``clientid()``, ``topic(2)``, ...) and
get the `Context` as their first argument.

A value of the wrong type is an evaluation error (`SqlRuntimeError`), as a failed guard
is in EMQ X: the rule engine counts the rule as failed for that event.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import inspect
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starling.mqtt import matches

__all__ = [
    "FUNCTIONS",
    "Context",
    "Function",
    "Key",
    "SqlRuntimeError",
    "as_text",
    "builtin",
    "decode_json",
    "is_number",
    "nested_get",
    "parse_number",
    "to_str",
]


class SqlRuntimeError(Exception):
    """A rule's SQL failed on one event (bad argument type, division by zero, ...)."""


_NOT_JSON = object()


def decode_json(value: Any) -> Any:
    """`value` decoded as JSON if it is a str/bytes holding JSON; `_NOT_JSON` otherwise."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            value = (value if isinstance(value, bytes) else bytes(value)).decode("utf-8")
        except UnicodeDecodeError:
            return _NOT_JSON
    if not isinstance(value, str):
        return _NOT_JSON
    try:
        return json.loads(value)
    except ValueError:
        return _NOT_JSON


class Context:
    """One event's columns while a rule evaluates them.

    JSON held in a column (the payload, typically) is decoded lazily, at most once per
    evaluation, and only when a nested access (``payload.x``) or a function needs it.
    """

    __slots__ = ("_decoded", "columns", "get")

    def __init__(self, columns: Mapping[str, Any]) -> None:
        self.columns = columns
        #: A column's value (None when absent): the mapping's own `get`, bound once.
        self.get: Callable[[str], Any] = columns.get
        self._decoded: dict[str, Any] | None = None

    def structured(self, name: str) -> Any:
        """The column as a dict/list: itself if it already is one, else its JSON decoding
        (None when it holds no JSON)."""
        value = self.columns.get(name)
        if isinstance(value, (dict, list)) or value is None:
            return value
        cache = self._decoded
        if cache is None:
            cache = self._decoded = {}
        elif name in cache:
            return cache[name]
        decoded = decode_json(value)
        if decoded is _NOT_JSON:
            decoded = None
        cache[name] = decoded
        return decoded


Key = str | int


def nested_get(value: Any, keys: tuple[Key, ...] | list[Key]) -> Any:
    """Walk `keys` into nested objects; an int key indexes an array, 1-based (negative
    from the end).  None when a step is missing."""
    for key in keys:
        if isinstance(value, dict):
            value = value.get(key if isinstance(key, str) else str(key))
        elif isinstance(value, list):
            if isinstance(key, str):
                if not key.lstrip("-").isdigit():
                    return None
                key = int(key)
            if 0 < key <= len(value):
                value = value[key - 1]
            elif 0 < -key <= len(value):
                value = value[key]
            else:
                return None
        else:
            return None
    return value


@dataclass(frozen=True)
class Function:
    """A built-in SQL function: its implementation and how many arguments it takes."""

    name: str
    impl: Callable[..., Any]
    min_args: int
    max_args: int
    context: bool

    def arity_text(self) -> str:
        if self.min_args == self.max_args:
            return str(self.min_args)
        return f"{self.min_args}..{self.max_args}"


FUNCTIONS: dict[str, Function] = {}


def builtin(name: str, *, context: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register `fn` as the SQL function `name` (arity from its signature)."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        params = list(inspect.signature(fn).parameters.values())
        if context:
            params = params[1:]
        required = sum(1 for p in params if p.default is inspect.Parameter.empty)
        FUNCTIONS[name] = Function(name, fn, required, len(params), context)
        return fn

    return register


# -- argument checks ---------------------------------------------------------------------

def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def _bad(fn: str, expected: str, value: Any) -> SqlRuntimeError:
    return SqlRuntimeError(f"{fn}(): expected {expected}, got {_type_name(value)}: {value!r}")


def is_number(value: Any) -> bool:
    """int or float, but not bool (Python's bool is an int; EMQ X's true is not)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _num(fn: str, value: Any) -> int | float:
    if not is_number(value):
        raise _bad(fn, "a number", value)
    return value  # type: ignore[no-any-return]


def _int(fn: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _bad(fn, "an integer", value)
    return value


def as_text(value: Any) -> str | None:
    """A str, or bytes that are UTF-8 text, as str; None for anything else."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return None
    return None


def _text(fn: str, value: Any) -> str:
    text = as_text(value)
    if text is None:
        raise _bad(fn, "a string", value)
    return text


def _binary(fn: str, value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    raise _bad(fn, "a string", value)


def to_str(value: Any) -> str:
    """EMQ X's str(): numbers as digits, booleans as true/false, objects and arrays as
    compact JSON, undefined/null as ``undefined``."""
    if isinstance(value, str):
        return value
    if value is None:
        return "undefined"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    raise _bad("str", "a string, number, boolean, object or array", value)


def _math(fn: str, op: Callable[[float], float], value: Any) -> float:
    try:
        return op(_num(fn, value))
    except (ValueError, OverflowError) as exc:
        raise SqlRuntimeError(f"{fn}({value!r}): {exc}") from None


# -- message context -------------------------------------------------------------------

@builtin("msgid", context=True)
def msgid(ctx: Context) -> Any:
    return ctx.get("id")


@builtin("qos", context=True)
def qos(ctx: Context) -> Any:
    return ctx.get("qos")


@builtin("topic", context=True)
def topic(ctx: Context, level: Any = None) -> Any:
    """topic() is the topic; topic(n) its n-th level, 1-based."""
    name = ctx.get("topic")
    if level is None or name is None:
        return name
    n = _int("topic", level)
    levels = _text("topic", name).split("/")
    if not 0 < n <= len(levels):
        raise SqlRuntimeError(f"topic({n}): topic {name!r} has {len(levels)} levels")
    return levels[n - 1]


@builtin("flags", context=True)
def flags(ctx: Context) -> Any:
    value = ctx.get("flags")
    return {} if value is None else value


@builtin("flag", context=True)
def flag(ctx: Context, name: Any) -> Any:
    value = ctx.get("flags")
    return value.get(_text("flag", name)) if isinstance(value, dict) else None


@builtin("headers", context=True)
def headers(ctx: Context) -> Any:
    value = ctx.get("headers")
    return {} if value is None else value


@builtin("header", context=True)
def header(ctx: Context, name: Any) -> Any:
    value = ctx.get("headers")
    return value.get(_text("header", name)) if isinstance(value, dict) else None


@builtin("clientid", context=True)
def clientid(ctx: Context) -> Any:
    value = ctx.get("clientid")
    return ctx.get("client_id") if value is None else value


@builtin("username", context=True)
def username(ctx: Context) -> Any:
    value = ctx.get("username")
    if value is None:
        hdrs = ctx.get("headers")
        if isinstance(hdrs, dict):
            return hdrs.get("username")
    return value


@builtin("peername", context=True)
def peername(ctx: Context) -> Any:
    return ctx.get("peername")


@builtin("clientip", context=True)
def clientip(ctx: Context) -> Any:
    """The IP address part of the ``ip:port`` peername (IPv6 without brackets)."""
    for column in ("clientip", "peerhost"):
        value = ctx.get(column)
        if value is not None:
            return value
    name = ctx.get("peername")
    if not isinstance(name, str) or ":" not in name:
        return None
    host = name.rsplit(":", 1)[0]
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host


@builtin("payload", context=True)
def payload(ctx: Context, path: Any = None) -> Any:
    """payload() is the raw payload; payload('a.b') a field of the JSON payload."""
    if path is None:
        return ctx.get("payload")
    if isinstance(path, list):
        keys: list[Key] = [k if isinstance(k, int) else to_str(k) for k in path]
    else:
        keys = list(_text("payload", path).split("."))
    return nested_get(ctx.structured("payload"), keys)


@builtin("timestamp", context=True)
def timestamp(ctx: Context) -> Any:
    """The event's timestamp (epoch ms), or now when the event has none."""
    value = ctx.get("timestamp")
    return int(time.time() * 1000) if value is None else value


# -- topic helpers -----------------------------------------------------------------------

def _filters(fn: str, value: Any) -> list[tuple[str, Any]]:
    """topic_filters in any of the shapes an event may carry them: a list of filters, of
    [filter, opts] pairs or of {"topic": .., "qos": ..} objects, or a {filter: opts} map."""
    if isinstance(value, dict):
        return [(str(k), v) for k, v in value.items()]
    if not isinstance(value, list):
        raise _bad(fn, "a list of topic filters", value)
    out: list[tuple[str, Any]] = []
    for item in value:
        if isinstance(item, str):
            out.append((item, {}))
        elif isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str):
            out.append((item[0], item[1]))
        elif isinstance(item, dict) and isinstance(item.get("topic"), str):
            out.append((item["topic"], item))
        else:
            raise _bad(fn, "a list of topic filters", value)
    return out


def _opts_qos(opts: Any) -> Any:
    if isinstance(opts, dict):
        return opts.get("qos")
    return opts if is_number(opts) else None


@builtin("contains_topic")
def contains_topic(filters: Any, topic: Any, qos: Any = None) -> bool:
    """Is `topic` one of `filters` (exactly; with `qos`, subscribed at that QoS)?"""
    name = _text("contains_topic", topic)
    for flt, opts in _filters("contains_topic", filters):
        if flt == name:
            return qos is None or _opts_qos(opts) == qos
    return False


@builtin("contains_topic_match")
def contains_topic_match(filters: Any, topic: Any, qos: Any = None) -> bool:
    """Is one of `filters` matched by the filter `topic` (with `qos`, at that QoS)?"""
    pattern = _text("contains_topic_match", topic)
    for flt, opts in _filters("contains_topic_match", filters):
        if matches(pattern, flt):
            return qos is None or _opts_qos(opts) == qos
    return False


# -- arithmetic (also the infix operators) --------------------------------------------------

@builtin("mod")
def mod(x: Any, y: Any) -> int:
    """Integer remainder with the sign of the dividend (Erlang's rem)."""
    a, b = _int("mod", x), _int("mod", y)
    if b == 0:
        raise SqlRuntimeError("mod(): division by zero")
    r = abs(a) % abs(b)
    return -r if a < 0 else r


@builtin("div")
def int_div(x: Any, y: Any) -> int:
    """Integer division truncating toward zero (Erlang's div)."""
    a, b = _int("div", x), _int("div", y)
    if b == 0:
        raise SqlRuntimeError("div: division by zero")
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


# -- math --------------------------------------------------------------------------------

def _unary_math(name: str, op: Callable[[float], float]) -> None:
    def impl(x: Any) -> float:
        return _math(name, op, x)

    impl.__name__ = name
    impl.__doc__ = f"math:{name}/1"
    builtin(name)(impl)


for _name in ("acos", "acosh", "asin", "asinh", "atan", "atanh", "cos", "cosh", "exp",
              "log", "log10", "log2", "sin", "sinh", "sqrt", "tan", "tanh"):
    _unary_math(_name, getattr(math, _name))


@builtin("abs")
def abs_(x: Any) -> int | float:
    return abs(_num("abs", x))


@builtin("ceil")
def ceil(x: Any) -> int:
    return math.ceil(_num("ceil", x))


@builtin("floor")
def floor(x: Any) -> int:
    return math.floor(_num("floor", x))


@builtin("round")
def round_(x: Any) -> int:
    """Round half away from zero to an integer (Erlang's round, not banker's)."""
    n = _num("round", x)
    if isinstance(n, int):
        return n
    if not math.isfinite(n):
        raise SqlRuntimeError(f"round({n!r}): not a finite number")
    return math.floor(n + 0.5) if n >= 0 else -math.floor(-n + 0.5)


@builtin("fmod")
def fmod(x: Any, y: Any) -> float:
    a, b = _num("fmod", x), _num("fmod", y)
    try:
        return math.fmod(a, b)
    except ValueError as exc:
        raise SqlRuntimeError(f"fmod({a!r}, {b!r}): {exc}") from None


@builtin("power")
def power(x: Any, y: Any) -> float:
    a, b = _num("power", x), _num("power", y)
    try:
        return math.pow(a, b)
    except (ValueError, OverflowError) as exc:
        raise SqlRuntimeError(f"power({a!r}, {b!r}): {exc}") from None


# -- bits --------------------------------------------------------------------------------

@builtin("bitnot")
def bitnot(x: Any) -> int:
    return ~_int("bitnot", x)


@builtin("bitand")
def bitand(x: Any, y: Any) -> int:
    return _int("bitand", x) & _int("bitand", y)


@builtin("bitor")
def bitor(x: Any, y: Any) -> int:
    return _int("bitor", x) | _int("bitor", y)


@builtin("bitxor")
def bitxor(x: Any, y: Any) -> int:
    return _int("bitxor", x) ^ _int("bitxor", y)


_MAX_SHIFT = 4096  # a shift past this would only build a huge integer


def _shift(fn: str, x: Any, n: Any, left: bool) -> int:
    value, count = _int(fn, x), _int(fn, n)
    if not left:
        count = -count
    if count > _MAX_SHIFT:
        raise SqlRuntimeError(f"{fn}(): shift by {abs(count)} is too large")
    return value << count if count >= 0 else value >> -count


@builtin("bitsl")
def bitsl(x: Any, n: Any) -> int:
    """Shift left by n bits (a negative n shifts right)."""
    return _shift("bitsl", x, n, left=True)


@builtin("bitsr")
def bitsr(x: Any, n: Any) -> int:
    """Arithmetic shift right by n bits (a negative n shifts left)."""
    return _shift("bitsr", x, n, left=False)


# -- strings -----------------------------------------------------------------------------

@builtin("lower")
def lower(s: Any) -> str:
    return _text("lower", s).lower()


@builtin("upper")
def upper(s: Any) -> str:
    return _text("upper", s).upper()


@builtin("trim")
def trim(s: Any) -> str:
    return _text("trim", s).strip()


@builtin("ltrim")
def ltrim(s: Any) -> str:
    return _text("ltrim", s).lstrip()


@builtin("rtrim")
def rtrim(s: Any) -> str:
    return _text("rtrim", s).rstrip()


@builtin("reverse")
def reverse(s: Any) -> str:
    return _text("reverse", s)[::-1]


@builtin("strlen")
def strlen(s: Any) -> int:
    """Length in characters (not bytes)."""
    return len(_text("strlen", s))


@builtin("substr")
def substr(s: Any, start: Any, length: Any = None) -> str:
    """substr(s, start[, len]) with a 0-based start, like Erlang's string:slice."""
    text, first = _text("substr", s), _int("substr", start)
    if first < 0:
        raise SqlRuntimeError(f"substr(): negative start {first}")
    if length is None:
        return text[first:]
    count = _int("substr", length)
    if count < 0:
        raise SqlRuntimeError(f"substr(): negative length {count}")
    return text[first:first + count]


_SPLIT_MODES = ("notrim", "leading_notrim", "trailing_notrim")


@builtin("split")
def split(s: Any, sep: Any, mode: Any = None) -> list[str]:
    """split(s, sep) drops empty parts; split(s, sep, 'notrim') keeps them;
    'leading_notrim' / 'trailing_notrim' split at the first / last separator only."""
    text, pattern = _text("split", s), _text("split", sep)
    if not pattern:
        raise SqlRuntimeError("split(): empty separator")
    if mode is None:
        return [part for part in text.split(pattern) if part]
    how = _text("split", mode)
    if how == "notrim":
        return text.split(pattern)
    if how == "leading_notrim":
        return text.split(pattern, 1)
    if how == "trailing_notrim":
        return text.rsplit(pattern, 1)
    raise SqlRuntimeError(f"split(): mode must be one of {', '.join(_SPLIT_MODES)}, got {how!r}")


# -- arrays ------------------------------------------------------------------------------

@builtin("nth")
def nth(n: Any, items: Any) -> Any:
    """The n-th element (1-based) of a list."""
    index = _int("nth", n)
    if not isinstance(items, list):
        raise _bad("nth", "an array", items)
    if not 0 < index <= len(items):
        raise SqlRuntimeError(f"nth({index}): the array has {len(items)} elements")
    return items[index - 1]


def _list(fn: str, items: Any) -> list[Any]:
    if not isinstance(items, list):
        raise _bad(fn, "an array", items)
    return items


@builtin("length")
def length(items: Any) -> int:
    return len(_list("length", items))


@builtin("sublist")
def sublist(a: Any, b: Any, c: Any = None) -> list[Any]:
    """sublist(len, list): the first len elements; sublist(start, len, list): len
    elements from the start-th (1-based; start may be one past the end: [])."""
    if c is None:
        count, items = _int("sublist", a), _list("sublist", b)
        start = 1
    else:
        start, count, items = _int("sublist", a), _int("sublist", b), _list("sublist", c)
    if count < 0 or not 0 < start <= len(items) + 1:
        raise SqlRuntimeError(f"sublist(): start {start}, length {count} do not fit an "
                              f"array of {len(items)} elements")
    return items[start - 1:start - 1 + count]


@builtin("first")
def first(items: Any) -> Any:
    items = _list("first", items)
    if not items:
        raise SqlRuntimeError("first(): the array is empty")
    return items[0]


@builtin("last")
def last(items: Any) -> Any:
    items = _list("last", items)
    if not items:
        raise SqlRuntimeError("last(): the array is empty")
    return items[-1]


@builtin("contains")
def contains(item: Any, items: Any) -> bool:
    """Is `item` an element of the list (exactly equal, as Erlang's lists:member)?"""
    return any(type(x) is type(item) and x == item for x in _list("contains", items))


# -- hashes and encodings ----------------------------------------------------------------

@builtin("md5")
def md5(s: Any) -> str:
    return hashlib.md5(_binary("md5", s)).hexdigest()


@builtin("sha")
def sha(s: Any) -> str:
    """SHA-1, as lowercase hex."""
    return hashlib.sha1(_binary("sha", s)).hexdigest()


@builtin("sha256")
def sha256(s: Any) -> str:
    return hashlib.sha256(_binary("sha256", s)).hexdigest()


@builtin("base64_encode")
def base64_encode(s: Any) -> str:
    return base64.b64encode(_binary("base64_encode", s)).decode("ascii")


@builtin("base64_decode")
def base64_decode(s: Any) -> str | bytes:
    """The decoded data: a str when it is UTF-8 text, else bytes."""
    try:
        raw = base64.b64decode(_binary("base64_decode", s), validate=True)
    except binascii.Error as exc:
        raise SqlRuntimeError(f"base64_decode(): {exc}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


@builtin("json_encode")
def json_encode(value: Any) -> str:
    """Compact JSON text of a value (bytes are encoded as UTF-8 text)."""
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                          default=_json_default)
    except (TypeError, ValueError) as exc:
        raise SqlRuntimeError(f"json_encode(): {exc}") from None


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="replace")
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


@builtin("json_decode")
def json_decode(s: Any) -> Any:
    decoded = decode_json(_binary("json_decode", s))
    if decoded is _NOT_JSON:
        raise SqlRuntimeError(f"json_decode(): not JSON: {s!r}")
    return decoded


# -- conversions (added in later 3.2.x) --------------------------------------------------

@builtin("str")
def str_(value: Any) -> str:
    return to_str(value)


@builtin("str_utf8")
def str_utf8(value: Any) -> str:
    return to_str(value)


@builtin("bool")
def bool_(value: Any) -> bool:
    """true/false, 'true'/'false' and 1/0 as booleans; anything else is an error."""
    if isinstance(value, bool):
        return value
    if (value == 1 and is_number(value)) or value in ("true", b"true"):
        return True
    if (value == 0 and is_number(value)) or value in ("false", b"false"):
        return False
    raise _bad("bool", "true, false, 'true', 'false', 1 or 0", value)


def parse_number(text: str) -> int | float | None:
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


@builtin("int")
def int_(value: Any) -> int:
    """An integer from a number (floats rounded down), a numeric string or a boolean."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _bad("int", "a finite number", value)
        return math.floor(value)
    text = as_text(value)
    number = None if text is None else parse_number(text)
    if number is None:
        raise _bad("int", "a number or numeric string", value)
    return number if isinstance(number, int) else math.floor(number)


@builtin("float")
def float_(value: Any) -> float:
    """A float from a number or a numeric string."""
    if is_number(value):
        return float(value)
    text = as_text(value)
    number = None if text is None else parse_number(text)
    if number is None:
        raise _bad("float", "a number or numeric string", value)
    return float(number)


@builtin("map")
def map_(value: Any) -> dict[str, Any]:
    """An object from a JSON object string, a list of [key, value] pairs or an object."""
    if isinstance(value, dict):
        return value
    if isinstance(value, list):
        try:
            return {to_str(k): v for k, v in value}
        except (TypeError, ValueError):
            raise _bad("map", "a list of [key, value] pairs", value) from None
    decoded = decode_json(value) if as_text(value) is not None else _NOT_JSON
    if isinstance(decoded, dict):
        return decoded
    raise _bad("map", "a JSON object", value)


@builtin("is_null")
def is_null(value: Any) -> bool:
    return value is None


@builtin("is_not_null")
def is_not_null(value: Any) -> bool:
    return value is not None


@builtin("is_str")
def is_str(value: Any) -> bool:
    return isinstance(value, (str, bytes, bytearray))


@builtin("is_bool")
def is_bool(value: Any) -> bool:
    return isinstance(value, bool)


@builtin("is_int")
def is_int(value: Any) -> bool:
    return type(value) is int


@builtin("is_float")
def is_float(value: Any) -> bool:
    return type(value) is float


@builtin("is_num")
def is_num(value: Any) -> bool:
    return is_number(value)


@builtin("is_map")
def is_map(value: Any) -> bool:
    return isinstance(value, dict)


@builtin("is_array")
def is_array(value: Any) -> bool:
    return isinstance(value, list)


def _map_arg(fn: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    decoded = decode_json(value) if as_text(value) is not None else _NOT_JSON
    if isinstance(decoded, dict):
        return decoded
    raise _bad(fn, "an object", value)


@builtin("map_get")
def map_get(key: Any, obj: Any, default: Any = None) -> Any:
    """map_get('a.b', map[, default]): a (nested, dotted) key of an object."""
    keys: list[Key] = list(_text("map_get", key).split("."))
    value = nested_get(_map_arg("map_get", obj), keys)
    return default if value is None else value


@builtin("map_put")
def map_put(key: Any, value: Any, obj: Any) -> dict[str, Any]:
    """map_put('a.b', value, map): a copy of the object with the (nested) key set."""
    keys = _text("map_put", key).split(".")
    top = dict(_map_arg("map_put", obj))
    node = top
    for k in keys[:-1]:
        child = node.get(k)
        node[k] = child = dict(child) if isinstance(child, dict) else {}
        node = child
    node[keys[-1]] = value
    return top
