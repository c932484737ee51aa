"""Every built-in SQL function of EMQ X v3.2 (facts §8.4), called through a rule's SQL the
way a user writes it, with EMQ X's argument order, types and edge cases."""

from __future__ import annotations

import base64
import hashlib
import math
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from starling.rules import FUNCTIONS, SqlError, SqlRuntimeError, parse_sql

EVENT: dict[str, Any] = {
    "id": "0005A7C9F0B1C2D3", "client_id": "c1", "username": "u1", "event": "message.publish",
    "payload": b'{"a": {"b": [1, 2, 3]}, "s": " Hi "}', "peername": "192.168.0.10:50001",
    "qos": 2, "timestamp": 1556263150688, "topic": "sensors/room1/temp",
    "node": "starling@127.0.0.1", "flags": {"retain": True, "dup": False},
    "headers": {"username": "hu", "proto_ver": 4},
    "topic_filters": [["t/a", {"qos": 1}], ["t/+/b", {"qos": 0}]],
}


def call(expr: str, columns: dict[str, Any] | None = None) -> Any:
    out = parse_sql(f'select {expr} as v from "t/#"').apply(EVENT if columns is None else columns)
    assert isinstance(out, dict)
    return out.get("v")  # a null value is left out of the output (EMQ X's undefined)


#: function name -> [(expression, expected value)]; every function must appear.
CASES: dict[str, list[tuple[str, Any]]] = {
    # message context
    "msgid": [("msgid()", "0005A7C9F0B1C2D3")],
    "qos": [("qos()", 2)],
    "flags": [("flags()", {"retain": True, "dup": False})],
    "flag": [("flag('retain')", True), ("flag('nope')", None)],
    "headers": [("headers()", {"username": "hu", "proto_ver": 4})],
    "header": [("header('proto_ver')", 4), ("header('nope')", None)],
    "topic": [("topic()", "sensors/room1/temp"), ("topic(1)", "sensors"),
              ("topic(3)", "temp")],
    "clientid": [("clientid()", "c1")],
    "clientip": [("clientip()", "192.168.0.10")],
    "peername": [("peername()", "192.168.0.10:50001")],
    "username": [("username()", "u1")],
    "payload": [("payload()", b'{"a": {"b": [1, 2, 3]}, "s": " Hi "}'),
                ("payload('a.b')", [1, 2, 3]), ("payload('a.b.2')", 2),
                ("payload('a.x')", None)],
    "timestamp": [("timestamp()", 1556263150688)],
    # topic helpers
    "contains_topic": [("contains_topic(topic_filters, 't/a')", True),
                       ("contains_topic(topic_filters, 't/x/b')", False),
                       ("contains_topic(topic_filters, 't/a', 1)", True),
                       ("contains_topic(topic_filters, 't/a', 0)", False)],
    "contains_topic_match": [("contains_topic_match(topic_filters, 't/#')", True),
                             ("contains_topic_match(topic_filters, 'u/#')", False),
                             ("contains_topic_match(topic_filters, 't/+/b', 0)", True),
                             ("contains_topic_match(topic_filters, 't/+/b', 1)", False)],
    # arithmetic
    "mod": [("mod(7, 3)", 1), ("mod(-7, 3)", -1), ("mod(7, -3)", 1)],
    "div": [("div(7, 2)", 3), ("div(-7, 2)", -3), ("div(7, -2)", -3)],
    # math
    "abs": [("abs(-3)", 3), ("abs(-2.5)", 2.5)],
    "acos": [("acos(1)", 0.0)],
    "acosh": [("acosh(1)", 0.0)],
    "asin": [("asin(0)", 0.0)],
    "asinh": [("asinh(0)", 0.0)],
    "atan": [("atan(0)", 0.0)],
    "atanh": [("atanh(0)", 0.0)],
    "ceil": [("ceil(1.2)", 2), ("ceil(-1.2)", -1), ("ceil(3)", 3)],
    "cos": [("cos(0)", 1.0)],
    "cosh": [("cosh(0)", 1.0)],
    "exp": [("exp(0)", 1.0)],
    "floor": [("floor(1.8)", 1), ("floor(-1.2)", -2)],
    "fmod": [("fmod(7.5, 2)", 1.5), ("fmod(-7.5, 2)", -1.5)],
    "log": [("log(1)", 0.0)],
    "log10": [("log10(1000)", 3.0)],
    "log2": [("log2(8)", 3.0)],
    "power": [("power(2, 10)", 1024.0), ("power(4, 0.5)", 2.0)],
    "round": [("round(2.5)", 3), ("round(-2.5)", -3), ("round(2.4)", 2), ("round(7)", 7)],
    "sin": [("sin(0)", 0.0)],
    "sinh": [("sinh(0)", 0.0)],
    "sqrt": [("sqrt(16)", 4.0)],
    "tan": [("tan(0)", 0.0)],
    "tanh": [("tanh(0)", 0.0)],
    # bits
    "bitnot": [("bitnot(0)", -1), ("bitnot(5)", -6)],
    "bitand": [("bitand(12, 10)", 8)],
    "bitor": [("bitor(12, 10)", 14)],
    "bitxor": [("bitxor(12, 10)", 6)],
    "bitsl": [("bitsl(1, 4)", 16), ("bitsl(16, -2)", 4)],
    "bitsr": [("bitsr(16, 2)", 4), ("bitsr(-16, 2)", -4), ("bitsr(1, -3)", 8)],
    # strings
    "lower": [("lower('AbC')", "abc"), ("lower('ÄÖ')", "äö")],
    "upper": [("upper('aBc')", "ABC")],
    "trim": [("trim(payload.s)", "Hi"), ("trim('\t x \n')", "x")],
    "ltrim": [("ltrim(payload.s)", "Hi ")],
    "rtrim": [("rtrim(payload.s)", " Hi")],
    "reverse": [("reverse('abc')", "cba"), ("reverse('')", "")],
    "strlen": [("strlen('héllo')", 5), ("strlen('')", 0)],
    "substr": [("substr('abcdef', 2)", "cdef"), ("substr('abcdef', 0, 3)", "abc"),
               ("substr('abcdef', 4, 10)", "ef"), ("substr('abc', 5)", "")],
    "split": [("split('a/b//c', '/')", ["a", "b", "c"]),
              ("split('/a/b/', '/', 'notrim')", ["", "a", "b", ""]),
              ("split('a/b/c', '/', 'leading_notrim')", ["a", "b/c"]),
              ("split('a/b/c', '/', 'trailing_notrim')", ["a/b", "c"])],
    # arrays
    "nth": [("nth(1, payload.a.b)", 1), ("nth(3, payload.a.b)", 3)],
    # emqx_rule_funcs_SUITE (v3.2): t_length, t_slice, t_first_last, t_contains
    "length": [("length(payload.a.b)", 3), ("length(json_decode('[]'))", 0)],
    "sublist": [("sublist(4, json_decode('[1,2,3,4]'))", [1, 2, 3, 4]),
                ("sublist(2, json_decode('[1,2,3,4]'))", [1, 2]),
                ("sublist(4, 1, json_decode('[1,2,3,4]'))", [4]),
                ("sublist(4, 2, json_decode('[1,2,3,4]'))", [4]),
                ("sublist(5, 2, json_decode('[1,2,3,4]'))", []),
                ("sublist(2, 2, json_decode('[1,2,3,4]'))", [2, 3]),
                ("sublist(1, 1, json_decode('[1,2,3,4]'))", [1])],
    "first": [("first(payload.a.b)", 1)],
    "last": [("last(payload.a.b)", 3)],
    "contains": [("contains(3, payload.a.b)", True), ("contains(4, payload.a.b)", False),
                 ("contains('a', json_decode('[\"\", \"ab\", 3, \"a\"]'))", True),
                 ("contains('c', json_decode('[\"\", \"ab\", 3, \"a\"]'))", False),
                 ("contains(json_decode('{\"a\": \"b\"}'), "
                  "json_decode('[{\"a\": 1}, {\"a\": \"b\"}]'))", True),
                 ("contains('1', payload.a.b)", False)],
    # hashes, encodings
    "md5": [("md5('abc')", hashlib.md5(b"abc").hexdigest())],
    "sha": [("sha('abc')", hashlib.sha1(b"abc").hexdigest())],
    "sha256": [("sha256('abc')", hashlib.sha256(b"abc").hexdigest())],
    "base64_encode": [("base64_encode('hello')", "aGVsbG8="),
                      ("base64_encode(payload)", base64.b64encode(EVENT["payload"]).decode())],
    "base64_decode": [("base64_decode('aGVsbG8=')", "hello"), ("base64_decode('/w==')", b"\xff")],
    "json_encode": [("json_encode(payload.a)", '{"b":[1,2,3]}'), ("json_encode('x')", '"x"'),
                    ("json_encode(1.5)", "1.5"), ("json_encode(null)", "null")],
    "json_decode": [("json_decode('{\"k\": [1, true, null]}')", {"k": [1, True, None]}),
                    ("map_get('s', json_decode(payload))", " Hi "), ("json_decode('3')", 3)],
    # conversions
    "str": [("str(12)", "12"), ("str(1.5)", "1.5"), ("str(true)", "true"),
            ("str('x')", "x"), ("str(payload.a)", '{"b":[1,2,3]}'), ("str(null)", "undefined")],
    "str_utf8": [("str_utf8(12)", "12"), ("str_utf8('é')", "é")],
    "bool": [("bool('true')", True), ("bool('false')", False), ("bool(1)", True),
             ("bool(0)", False), ("bool(true)", True)],
    "int": [("int('42')", 42), ("int(' 42 ')", 42), ("int('4.7')", 4), ("int(4.7)", 4),
            ("int(-4.2)", -5), ("int(true)", 1), ("int(false)", 0), ("int(7)", 7)],
    "float": [("float('1.5')", 1.5), ("float('2')", 2.0), ("float(3)", 3.0),
              ("float(2.5)", 2.5)],
    "map": [("map('{\"a\": 1}')", {"a": 1}), ("map(payload.a)", {"b": [1, 2, 3]}),
            ("map(json_decode('[[\"k\", 1]]'))", {"k": 1})],
    "is_null": [("is_null(payload.nope)", True), ("is_null(qos)", False),
                ("is_null(null)", True)],
    "is_not_null": [("is_not_null(payload.nope)", False), ("is_not_null(qos)", True)],
    # emqx_rule_funcs_SUITE (v3.2): t_is_str ... t_is_array
    "is_str": [("is_str('a')", True), ("is_str('')", True), ("is_str(payload)", True),
               ("is_str(1)", False), ("is_str(true)", False)],
    "is_bool": [("is_bool(true)", True), ("is_bool(false)", True), ("is_bool('a')", False),
                ("is_bool(2)", False)],
    "is_int": [("is_int(1)", True), ("is_int(-1)", True), ("is_int(1.1)", False),
               ("is_int('a')", False), ("is_int(true)", False)],
    "is_float": [("is_float(1.1)", True), ("is_float(2.0)", True), ("is_float(1)", False),
                 ("is_float('a')", False)],
    "is_num": [("is_num(1.1)", True), ("is_num(1)", True), ("is_num(-1.2)", True),
               ("is_num('a')", False), ("is_num(true)", False)],
    "is_map": [("is_map(payload.a)", True), ("is_map(json_decode('{}'))", True),
               ("is_map('a')", False), ("is_map(payload.a.b)", False)],
    "is_array": [("is_array(payload.a.b)", True), ("is_array(json_decode('[]'))", True),
                 ("is_array('')", False), ("is_array(payload.a)", False)],
    "map_get": [("map_get('a.b', json_decode(payload))", [1, 2, 3]),
                ("map_get('x', payload.a)", None), ("map_get('x', payload.a, 7)", 7),
                ("map_get('b', '{\"b\": 2}')", 2)],
    "map_put": [("map_put('c', 1, payload.a)", {"b": [1, 2, 3], "c": 1}),
                ("map_put('x.y', 2, payload.a)", {"b": [1, 2, 3], "x": {"y": 2}})],
}


def test_every_function_has_cases() -> None:
    assert set(CASES) == set(FUNCTIONS)


@pytest.mark.parametrize(("expr", "expected"),
                         [case for name in sorted(CASES) for case in CASES[name]],
                         ids=[expr for name in sorted(CASES) for expr, _ in CASES[name]])
def test_function(expr: str, expected: Any) -> None:
    value = call(expr)
    assert value == expected
    assert type(value) is type(expected)


#: calls that must fail at evaluation time (EMQ X: a guard fails, the rule counts a failure)
ERRORS = [
    "lower(1)", "upper(null)", "trim(qos)", "strlen(payload.a)", "reverse(1)",
    "substr('abc', -1)", "substr('abc', 0, -1)", "substr(1, 0)", "substr('abc', 'x')",
    "abs('x')", "sqrt(-1)", "log(0)", "acos(2)", "power(0, -1)", "exp(100000)",
    "ceil('1')", "floor(null)", "round(null)", "fmod(1, 0)",
    "bitand(1.5, 1)", "bitnot('1')", "bitsl(1, 100000)", "bitor(true, 1)",
    "mod(1.5, 1)", "div(1, 0)", "mod(7, 0)",
    "nth(0, payload.a.b)", "nth(4, payload.a.b)", "nth(1, 'abc')", "nth('1', payload.a.b)",
    "length('abc')", "sublist(6, 1, payload.a.b)", "sublist(-1, payload.a.b)",
    "sublist(0, 1, payload.a.b)", "sublist(1, 'abc')", "first(json_decode('[]'))",
    "last('abc')", "contains(1, 'abc')",
    "md5(1)", "base64_encode(1)", "base64_decode('***')", "json_decode('{bad')",
    "json_decode(1)", "bool('yes')", "bool(2)", "int('x')", "int(null)", "float('x')",
    "float(null)", "map('[1]')", "map(1)", "map_get(1, payload.a)", "map_get('a', 1)",
    "map_put('a', 1, 'x')", "split('a', '')", "split('a', '/', 'sideways')",
    "topic(4)", "topic(0)", "topic('x')", "flag(1)", "contains_topic(1, 't')",
    "contains_topic(topic_filters, 1)", "str(json_decode('[1]') = 1)",
]


@pytest.mark.parametrize("expr", ERRORS)
def test_bad_arguments_fail_at_evaluation(expr: str) -> None:
    rule = parse_sql(f'select {expr} as v from "t/#"')
    if expr == "str(json_decode('[1]') = 1)":  # a boolean is a fine argument to str()
        assert rule.apply(EVENT) == {"v": "false"}
        return
    with pytest.raises(SqlRuntimeError) as info:
        rule.apply(EVENT)
    assert str(info.value)


def test_function_names_are_case_insensitive() -> None:
    assert call("UPPER('a')") == "A"
    assert call("ClientId()") == "c1"


@pytest.mark.parametrize(("expr", "message"), [
    ("nosuch(1)", "unknown function nosuch()"),
    ("sha1('x')", "unknown function sha1()"),
    ("topic(1, 2)", "topic() takes 0..1 arguments, got 2"),
    ("clientid(1)", "clientid() takes 0 arguments, got 1"),
    ("md5()", "md5() takes 1 argument, got 0"),
    ("map_put('a', 1)", "map_put() takes 3 arguments, got 2"),
])
def test_unknown_function_or_arity_refused_at_parse(expr: str, message: str) -> None:
    with pytest.raises(SqlError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_sql(f'select {expr} from "t/#"')


# -- context functions with the other column spellings --------------------------------------

def test_clientid_from_clientid_column() -> None:
    assert call("clientid()", {"clientid": "v4-style"}) == "v4-style"


def test_username_falls_back_to_headers() -> None:
    assert call("username()", {"headers": {"username": "hu"}}) == "hu"


@pytest.mark.parametrize(("columns", "ip"), [
    ({"peername": "[::1]:1883"}, "::1"),
    ({"peername": "10.0.0.1:1"}, "10.0.0.1"),
    ({"peerhost": "10.0.0.2"}, "10.0.0.2"),
    ({}, None),
])
def test_clientip(columns: dict[str, Any], ip: str | None) -> None:
    assert call("clientip()", columns) == ip


def test_context_functions_on_events_without_the_columns() -> None:
    columns = {"event": "client.connected"}
    assert call("msgid()", columns) is None
    assert call("topic()", columns) is None
    assert call("topic(1)", columns) is None
    assert call("flags()", columns) == {}
    assert call("headers()", columns) == {}
    assert call("flag('retain')", columns) is None
    assert call("payload('a')", columns) is None


def test_timestamp_without_column_is_now_in_ms() -> None:
    before = int(time.time() * 1000)
    value = call("timestamp()", {})
    assert before <= value <= int(time.time() * 1000)


@pytest.mark.parametrize("filters", [
    ["t/a", "t/+/b"],
    [{"topic": "t/a", "qos": 1}, {"topic": "t/+/b", "qos": 0}],
    {"t/a": {"qos": 1}, "t/+/b": {"qos": 0}},
])
def test_topic_filter_shapes(filters: Any) -> None:
    columns = {"topic_filters": filters}
    assert call("contains_topic(topic_filters, 't/a')", columns) is True
    assert call("contains_topic_match(topic_filters, 't/#')", columns) is True
    assert call("contains_topic(topic_filters, 'x')", columns) is False


def test_functions_compose_and_run_in_where() -> None:
    rule = parse_sql('select upper(topic(2)) as room from "sensors/#" '
                     "where strlen(topic(2)) > 3 and md5(clientid()) = "
                     f"'{hashlib.md5(b'c1').hexdigest()}'")
    assert rule.apply(EVENT) == {"room": "ROOM1"}
    assert rule.apply({**EVENT, "client_id": "c2"}) is None


# -- properties ----------------------------------------------------------------------------

@given(st.floats(-1e6, 1e6))
def test_round_is_half_away_from_zero(x: float) -> None:
    expected = int(math.copysign(math.floor(abs(x) + 0.5), x))
    assert call(f"round({x!r})" if x >= 0 else f"round(-{-x!r})") == expected


@given(st.integers(-10**6, 10**6), st.integers(-10**3, 10**3).filter(bool))
def test_div_and_mod_match_erlang(a: int, b: int) -> None:
    q, r = call(f"div({a}, {b})"), call(f"mod({a}, {b})")
    assert q * b + r == a
    assert abs(r) < abs(b)
    assert r == 0 or (r > 0) == (a > 0)


@given(st.text(max_size=30), st.integers(0, 35), st.integers(0, 35))
def test_substr_is_a_slice(s: str, start: int, length: int) -> None:
    columns = {"s": s}
    assert call(f"substr(s, {start}, {length})", columns) == s[start:start + length]
    assert call(f"substr(s, {start})", columns) == s[start:]


@given(st.binary(max_size=40))
def test_base64_round_trip(data: bytes) -> None:
    value = call("base64_decode(base64_encode(d))", {"d": data})
    assert (value.encode() if isinstance(value, str) else value) == data


@given(st.recursive(st.none() | st.booleans() | st.integers(-10**9, 10**9) | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=3), inner, max_size=3),
                    max_leaves=8))
def test_json_round_trip(value: Any) -> None:
    assert call("json_decode(json_encode(v))", {"v": value}) == value
