"""Rule SQL: the grammar (seed and facts examples verbatim, bad statements refused with a
position), FROM sources, WHERE semantics and type coercions, SELECT output shapes, JSON
payload access."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from starling.mqtt import is_valid_topic_filter, matches
from starling.rules import EVENTS, RuleSql, SqlError, SqlRuntimeError, parse_sql


def publish(payload: Any = b"", topic: str = "t/a", **extra: Any) -> dict[str, Any]:
    """message.publish columns as the engine hands them over (facts §8.3)."""
    columns: dict[str, Any] = {
        "id": "0005A7C9F0B1C2D3", "client_id": "c1", "username": "u1",
        "event": "message.publish", "payload": payload, "peername": "127.0.0.1:50001",
        "qos": 1, "timestamp": 1556263150688, "topic": topic, "node": "starling@127.0.0.1",
        "retain": 0,
    }
    columns.update(extra)
    return columns


def select(sql: str, columns: dict[str, Any]) -> dict[str, Any] | None:
    return parse_sql(sql).apply(columns)


# -- the examples of the seed and the facts, verbatim ----------------------------------

def test_seed_example_select_star_from_topic() -> None:
    rule = parse_sql('select * from "t/a"')
    assert rule.sources == ["t/a"]
    assert rule.topic_filters == ["t/a"]
    assert rule.events() == {"message.publish"}
    assert rule.matches_topic("t/a")
    assert not rule.matches_topic("t/b")
    columns = publish(b"hello")
    assert rule.apply(columns) == columns


def test_facts_v32_example() -> None:
    rule = parse_sql("SELECT payload.msg as msg, clientid() as cid FROM \"message.publish\" "
                     "WHERE topic =~ 't/#' and msg = 'hello'")
    assert rule.events() == {"message.publish"}
    assert rule.topic_filters == []
    assert rule.matches_topic("anything/at/all")
    assert rule.apply(publish(b'{"msg": "hello"}', topic="t/1")) == {"msg": "hello", "cid": "c1"}
    assert rule.apply(publish(b'{"msg": "bye"}', topic="t/1")) is None
    assert rule.apply(publish(b'{"msg": "hello"}', topic="x/1")) is None


# -- FROM --------------------------------------------------------------------------------

def test_several_topic_filters() -> None:
    rule = parse_sql("SELECT topic FROM \"a/+\", 'b/#'")
    assert rule.sources == ["a/+", "b/#"]
    assert rule.matches_topic("a/x") and rule.matches_topic("b/x/y")
    assert not rule.matches_topic("c")
    assert rule.events() == {"message.publish"}


@pytest.mark.parametrize("event", sorted(EVENTS))
def test_every_v32_event_name(event: str) -> None:
    rule = parse_sql(f'SELECT * FROM "{event}"')
    assert rule.events() == {event}
    assert rule.event_names == [event]
    assert rule.topic_filters == []


def test_events_and_topic_filters_mixed() -> None:
    rule = parse_sql('SELECT * FROM "client.connected", "t/#"')
    assert rule.events() == {"client.connected", "message.publish"}
    assert rule.topic_filters == ["t/#"]


@pytest.mark.parametrize(("sql", "reason", "column"), [
    ('SELECT * FROM "$events/client_connected"', "EMQ X v4 event topic", 15),
    ('SELECT * FROM "a/#/b"', "neither an event", 15),
    ('SELECT * FROM ""', "empty FROM entry", 15),
    ('SELECT * FROM "t/a", "a+"', "neither an event", 22),
])
def test_bad_from_entries(sql: str, reason: str, column: int) -> None:
    with pytest.raises(SqlError) as info:
        parse_sql(sql)
    assert reason in str(info.value)
    assert (info.value.line, info.value.column) == (1, column)


# -- syntax errors say what and where ---------------------------------------------------

@pytest.mark.parametrize(("sql", "fragment", "line", "column"), [
    ('select * frm "t"', "unexpected 'frm'", 1, 10),
    ('selec * from "t"', "unexpected 'selec'", 1, 1),
    ('select a,\nfrom "t"', "unexpected 'from'", 2, 1),
    ('select a from "t" where', "unexpected end of statement", 1, 24),
    ('select a from "t" where a = ', "unexpected end of statement", 1, 29),
    ('select a from "t" where a == 1', "unexpected '='", 1, 28),
    ('select a from t', "unexpected 't'", 1, 15),
    ('select a from "t" where $x', "unexpected character '$'", 1, 25),
    ('select a from "t" where a like \'x%\'', "LIKE is not supported", 1, 27),
    ('FOREACH * FROM "t/#"', "FOREACH takes expressions", 1, 9),
    ('select case when a then 1 from "t"', "expected one of ELSE, END, WHEN", 1, 27),
    ('select case a then 1 end from "t"', "unexpected 'then'", 1, 15),
    ('select a from "t" where a is null', "IS [NOT] NULL", 1, 27),
    ('select a from "t"; select b from "u"', "unexpected 'select'", 1, 20),
    ('select foo(1) from "t"', "unknown function foo()", 1, 8),
    ('select lower(a, b) from "t"', "lower() takes 1 argument, got 2", 1, 8),
    ('select substr(a) from "t"', "substr() takes 2..3 arguments, got 1", 1, 8),
    ('select a from "t" where topic =~ \'a/#/b\'', "valid topic filter", 1, 34),
])
def test_syntax_errors_name_the_position(sql: str, fragment: str, line: int,
                                         column: int) -> None:
    with pytest.raises(SqlError) as info:
        parse_sql(sql)
    message = str(info.value)
    assert fragment in message
    assert (info.value.line, info.value.column) == (line, column)
    assert f"line {line}, column {column}" in message


def test_expected_tokens_are_listed() -> None:
    with pytest.raises(SqlError, match=r"expected .*FROM"):
        parse_sql('select a b from "t"')


@pytest.mark.parametrize("sql", ["", "   ", "select"])
def test_empty_or_truncated(sql: str) -> None:
    with pytest.raises(SqlError):
        parse_sql(sql)


def test_keywords_are_case_insensitive_and_comments_ignored() -> None:
    rule = parse_sql('SeLeCt a As b -- a comment\n FrOm "t" WhErE a > 1 AnD NoT a = 5;')
    assert rule.apply({"a": 2}) == {"b": 2}
    assert rule.apply({"a": 5}) is None


def test_names_that_start_with_keywords_are_names() -> None:
    rule = parse_sql('select selected, fromage, order_id, notes from "t" where android = 1')
    assert rule.apply({"selected": 1, "fromage": 2, "order_id": 3, "notes": 4,
                       "android": 1}) == {"selected": 1, "fromage": 2, "order_id": 3, "notes": 4}


# -- SELECT shapes -----------------------------------------------------------------------

def test_select_star_returns_all_columns_as_given() -> None:
    columns = publish(b"raw")
    out = select('select * from "t/#"', columns)
    assert out == columns
    assert out is not columns  # a copy: actions may not change the event


def test_select_star_with_more_fields() -> None:
    out = select('select *, upper(username) as user from "t/#"', publish())
    assert out is not None
    assert out["user"] == "U1" and out["topic"] == "t/a"


def test_plain_columns_keep_their_names() -> None:
    assert select('select clientid, qos, topic from "t/#"',
                  {"clientid": "c", "qos": 0, "topic": "t/a"}) == {
        "clientid": "c", "qos": 0, "topic": "t/a"}


def test_missing_column_is_left_out() -> None:
    """EMQ X does not put an undefined value into the output (emqx_rule_maps:nested_put)."""
    assert select('select nope, qos from "t/#"', publish()) == {"qos": 1}
    assert select('select nope as n, payload.x as x from "t/#"', publish(b"{}")) == {}
    assert select('select payload.x as d.x, qos as d.q from "t/#"', publish(b"{}")) == {
        "d": {"q": 1}}


def test_nested_field_without_alias_nests_in_the_output() -> None:
    out = select('select payload.a.b, payload.c from "t/#"', publish(b'{"a":{"b":1},"c":2}'))
    assert out == {"payload": {"a": {"b": 1}, "c": 2}}


def test_dotted_alias_builds_nested_output() -> None:
    out = select('select payload.t as data.temp, clientid() as data.who from "t/#"',
                 publish(b'{"t": 21.5}'))
    assert out == {"data": {"temp": 21.5, "who": "c1"}}


def test_quoted_alias_is_one_key() -> None:
    assert select("select qos as 'the.qos' from \"t/#\"", publish()) == {"the.qos": 1}


def test_unaliased_expression_is_keyed_by_its_text() -> None:
    out = select('select clientid(), qos + 1, \'k\' from "t/#"', publish())
    assert out == {"clientid()": "c1", "qos + 1": 2, "'k'": "k"}


def test_timestamp_reserved_word_is_the_column() -> None:
    assert select('select TIMESTAMP from "t/#"', publish()) == {"timestamp": 1556263150688}


def test_selected_fields_are_described() -> None:
    rule = parse_sql('select *, payload.x as y, qos from "t/#"')
    assert rule.select_all
    assert [(f.keys, f.expression) for f in rule.fields] == [
        (("y",), "payload.x"), (("qos",), "qos")]


# -- JSON payload access -----------------------------------------------------------------

@pytest.mark.parametrize("payload", [b'{"a": {"b": [1, 2]}}', '{"a": {"b": [1, 2]}}',
                                     {"a": {"b": [1, 2]}}])
def test_payload_as_bytes_str_or_decoded(payload: Any) -> None:
    assert select('select payload.a.b as b from "t/#"', publish(payload)) == {"b": [1, 2]}


def test_array_elements_by_1_based_index() -> None:
    out = select('select payload.a[2] as second, payload.a[-1] as last, payload.a[3] as none, '
                 'payload.b[1].c as c from "t/#"', publish(b'{"a": [10, 20], "b": [{"c": 1}]}'))
    assert out == {"second": 20, "last": 20, "c": 1}


def test_unaliased_index_is_keyed_by_its_text() -> None:
    assert select('select payload.a[1] from "t/#"', publish(b'{"a": [5]}')) == {
        "payload.a[1]": 5}


@pytest.mark.parametrize("index", ["0", "1.5", "1e2"])
def test_bad_array_index(index: str) -> None:
    with pytest.raises(SqlError, match="array index must be a non-zero integer"):
        parse_sql(f'select payload.a[{index}] from "t/#"')


@pytest.mark.parametrize("payload", [b"not json", b"\xff\xfe", b"", b"[1,2]", b"42",
                                     b'"str"', b"{bad"])
def test_non_object_payload_makes_nested_access_null(payload: bytes) -> None:
    out = select('select payload.x as x, payload from "t/#"', publish(payload))
    assert out == {"payload": payload}


def test_payload_is_decoded_once_per_event() -> None:
    class CountingBytes(bytes):
        decoded = 0

        def decode(self, *args: Any, **kwargs: Any) -> str:
            CountingBytes.decoded += 1
            return super().decode(*args, **kwargs)

    rule = parse_sql('select payload.a, payload.b as b, payload(\'c\') as c from "t/#" '
                     'where payload.a > 0')
    out = rule.apply(publish(CountingBytes(b'{"a": 1, "b": 2, "c": 3}')))
    assert out == {"payload": {"a": 1}, "b": 2, "c": 3}
    assert CountingBytes.decoded == 1


def test_payload_not_decoded_when_no_nested_access() -> None:
    class Exploding(bytes):
        def decode(self, *args: Any, **kwargs: Any) -> str:
            raise AssertionError("decoded")

    assert select('select topic from "t/#" where qos = 1',
                  publish(Exploding(b'{"a":1}'))) == {"topic": "t/a"}


def test_nested_access_on_dict_columns() -> None:
    columns = {"headers": {"username": "bob", "peername": "1.2.3.4:5"}, "flags": {"retain": True}}
    assert select('select headers.username as u, flags.retain as r from "t/#"', columns) == {
        "u": "bob", "r": True}


def test_where_on_json_payload_fields() -> None:
    rule = parse_sql('select payload.temp as t from "sensors/#" '
                     "where payload.temp > 30 and payload.unit = 'C'")
    assert rule.apply(publish(b'{"temp": 31, "unit": "C"}')) == {"t": 31}
    assert rule.apply(publish(b'{"temp": 29, "unit": "C"}')) is None
    assert rule.apply(publish(b'{"temp": 31, "unit": "F"}')) is None
    assert rule.apply(publish(b"garbage")) is None


# -- WHERE -------------------------------------------------------------------------------

@pytest.mark.parametrize(("where", "passes"), [
    ("a = 1", True), ("a != 1", False), ("a <> 2", True), ("a > 0", True), ("a < 1", False),
    ("a >= 1", True), ("a <= 0", False),
    ("a = 1 and b = 'x'", True), ("a = 2 and b = 'x'", False),
    ("a = 2 or b = 'x'", True), ("a = 2 or b = 'y'", False),
    ("not a = 2", True), ("not (a = 1 or b = 'y')", False),
    ("a = 1 or a = 2 and b = 'y'", True),  # and binds tighter than or
    ("(a = 1 or a = 2) and b = 'y'", False),
    ("a in (1, 2, 3)", True), ("a in (2, 3)", False), ("a not in (2, 3)", True),
    ("b in ('x', 'y')", True), ("a in (b, 1)", True),
    ("topic =~ 't/#'", True), ("topic =~ 't/+'", True), ("topic =~ 'u/#'", False),
    ("topic =~ '+/a'", True), ("topic =~ '#'", True),
    ("a + 1 = 2", True), ("a * 10 / 4 = 2.5", True), ("-a = -1", True),
    ("c", True), ("d", False), ("not missing", True),
    ("missing = null", True), ("a = null", False),
    ("true", True), ("false", False),
])
def test_where_operators(where: str, passes: bool) -> None:
    rule = parse_sql(f'select a from "t/#" where {where}')
    columns = {"a": 1, "b": "x", "topic": "t/a", "c": True, "d": False}
    assert (rule.apply(columns) is not None) is passes


def test_where_may_use_select_aliases() -> None:
    rule = parse_sql('select payload.n * 2 as twice from "t/#" where twice > 10')
    assert rule.apply(publish(b'{"n": 6}')) == {"twice": 12}
    assert rule.apply(publish(b'{"n": 5}')) is None


def test_alias_shadows_the_column_in_where() -> None:
    rule = parse_sql('select upper(topic) as topic from "t/#" where topic = \'T/A\'')
    assert rule.apply(publish()) == {"topic": "T/A"}


def test_dotted_alias_prefix_in_where() -> None:
    rule = parse_sql('select payload.d as data from "t/#" where data.x = 1')
    assert rule.apply(publish(b'{"d": {"x": 1}}')) == {"data": {"x": 1}}
    assert rule.apply(publish(b'{"d": {"x": 2}}')) is None


def test_where_without_select_of_its_column() -> None:
    assert select('select qos from "t/#" where username = \'u1\'', publish()) == {"qos": 1}


def test_topic_match_does_not_let_wildcards_reach_dollar_topics() -> None:
    rule = parse_sql("select topic from \"message.publish\" where topic =~ '#'")
    assert rule.apply(publish(topic="$SYS/brokers")) is None
    rule = parse_sql("select topic from \"message.publish\" where topic =~ '$SYS/#'")
    assert rule.apply(publish(topic="$SYS/brokers")) is not None


def test_topic_match_with_a_computed_filter() -> None:
    rule = parse_sql('select topic from "message.publish" where topic =~ payload.f')
    assert rule.apply(publish(b'{"f": "t/+"}')) is not None
    assert rule.apply(publish(b'{"f": "u/+"}')) is None
    assert rule.apply(publish(b'{"f": "bad/#/filter"}')) is None
    assert rule.apply(publish(b"{}")) is None


# -- coercions ---------------------------------------------------------------------------

@pytest.mark.parametrize(("where", "passes"), [
    ("n = '10'", True), ("'10' = n", True), ("n > '9'", True), ("n = '10.0'", True),
    ("s = 10", True), ("s > 9", True), ("s < 9.5", False),
    ("n = 'ten'", False), ("n > 'ten'", False),  # not a number: neither equal nor ordered
    ("f = 1", True), ("f = '1'", True), ("n = 10.0", True),
    ("flag = 'true'", True), ("'false' = off", True), ("flag = 1", False),
    ("missing > 0", False), ("missing < 0", False), ("missing = 0", False),
    ("obj = obj", True), ("s > 'a'", False), ("word > 'a'", True),
    ("raw = 'bytes'", True),
])
def test_comparison_coercions(where: str, passes: bool) -> None:
    rule = parse_sql(f'select n from "t/#" where {where}')
    columns = {"n": 10, "s": "10", "f": 1.0, "flag": True, "off": False, "obj": {"a": 1},
               "word": "b", "raw": b"bytes"}
    assert (rule.apply(columns) is not None) is passes


# -- arithmetic and literals -------------------------------------------------------------

@pytest.mark.parametrize(("expr", "value"), [
    ("1 + 2 * 3", 7), ("(1 + 2) * 3", 9), ("7 / 2", 3.5), ("6 / 3", 2.0), ("7 div 2", 3),
    ("-7 div 2", -3), ("7 mod 3", 1), ("-7 mod 3", -1), ("mod(7, 3)", 1), ("10 - 2 - 3", 5),
    ("2 * -3", -6), ("+4", 4), ("1.5e2", 150.0), ("0.5", 0.5), (".5", 0.5),
    ("'a' + 'b'", "ab"), ("'n=' + 1", "n=1"), ("1 + 'x'", "1x"), ("'v' + 1.5", "v1.5"),
    ("'it''s'", "it's"), ('"say \\"hi\\""', 'say "hi"'), ("'a\\nb'", "a\nb"),
    ("true", True), ("FALSE", False), ("null", None), ("1 = 1", True),
    ("lower('ABC') + upper('def')", "abcDEF"),
])
def test_expressions(expr: str, value: Any) -> None:
    out = select(f'select {expr} as v from "t/#"', {})
    assert out == ({"v": value} if value is not None else {})
    assert type(out.get("v")) is type(value)


@pytest.mark.parametrize(("expr", "fragment"), [
    ("1 / 0", "division by zero"), ("7 div 0", "division by zero"),
    ("mod(1, 0)", "division by zero"),
    ("'a' - 1", "bad operands for -"), ("missing + 1", "bad operands for +"),
    ("1.5 div 1", "div"), ("-'a'", "unary -"), ("lower(1)", "lower(): expected a string"),
    ("payload * 2", "bad operands for *"),
])
def test_evaluation_errors_raise_runtime_error(expr: str, fragment: str) -> None:
    rule = parse_sql(f'select {expr} as v from "t/#"')
    with pytest.raises(SqlRuntimeError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        rule.apply(publish(b"x"))


def test_runtime_error_in_where_is_raised_too() -> None:
    rule = parse_sql('select a from "t/#" where a / b > 1')
    with pytest.raises(SqlRuntimeError):
        rule.apply({"a": 1, "b": 0})


# -- column checks for the engine ----------------------------------------------------------

def test_referenced_columns_and_unknown_column_check() -> None:
    rule = parse_sql('select payload.x as x, clientid() as c from "message.publish" '
                     "where x > 1 and topic =~ 't/#' and qos = 1")
    assert rule.referenced_columns == {"payload", "topic", "qos"}
    rule.check_columns(["payload", "topic", "qos", "id"])
    with pytest.raises(SqlError, match="Unknown Column: qos"):
        rule.check_columns(["payload", "topic"])
    assert rule.unknown_columns(["payload"]) == ["qos", "topic"]


# -- aliases seen by later fields (EMQ X's cascaded AS), CASE, FOREACH --------------------
# EMQ X's own cases run against a node through the SQL test API (tests/api/
# test_rules_emqx_cases.py); these cover what they do not.

def test_later_fields_and_where_see_earlier_aliases() -> None:
    rule = parse_sql('select payload.cmd as cmd, cmd.info as meta.info, meta.info + 1 as n '
                     'from "t/#" where meta.info = 1 and n = 2')
    assert rule.apply(publish(b'{"cmd": {"info": 1}}')) == {
        "cmd": {"info": 1}, "meta": {"info": 1}, "n": 2}
    assert rule.apply(publish(b'{"cmd": {"info": 5}}')) is None
    assert rule.referenced_columns == {"payload"}


def test_an_alias_is_seen_only_after_it_is_defined() -> None:
    rule = parse_sql('select qos as before, 7 as qos, qos as after from "t/#"')
    assert rule.apply(publish()) == {"before": 1, "qos": 7, "after": 7}


def test_a_whole_name_sees_the_dotted_aliases_put_under_it() -> None:
    out = select('select 1 as headers.a, headers as h from "t/#"', publish(headers={"b": 2}))
    assert out == {"headers": {"a": 1}, "h": {"b": 2, "a": 1}}


def test_an_alias_holding_json_text_is_walked_into() -> None:
    assert select('select payload as p, p.a[2] as x from "t/#"',
                  publish(b'{"a": [1, 2]}')) == {"p": b'{"a": [1, 2]}', "x": 2}


def test_keywords_are_keys_after_a_dot() -> None:
    out = select('select payload.end as e, payload.from.case as c from "t/#"',
                 publish(b'{"end": 1, "from": {"case": 2}}'))
    assert out == {"e": 1, "c": 2}


@pytest.mark.parametrize(("where", "passes"), [
    ("case when qos = 1 then true else false end", True),
    ("case when qos = 2 then true end", False),
    ("(case qos when 1 then 'one' end) = 'one'", True),
    ("case qos when '1' then true else false end", False),  # exact match, no coercion
    ("case qos when 1.0 then true else false end", False),
])
def test_case_in_where(where: str, passes: bool) -> None:
    assert (select(f'select qos from "t/#" where {where}', publish()) is not None) is passes


def test_nested_case_and_case_of_computed_values() -> None:
    rule = parse_sql("select case when payload.x > 0 then case payload.x when 1 then 'one' "
                     "else 'many' end else 'none' end as v from \"t/#\"")
    assert [rule.apply(publish(p)) for p in (b'{"x": 1}', b'{"x": 3}', b'{"x": 0}')] == [
        {"v": "one"}, {"v": "many"}, {"v": "none"}]


def test_foreach_sees_columns_and_its_aliases_and_keeps_non_object_elements() -> None:
    rule = parse_sql('foreach payload.l as e do e as v, e + qos as w, clientid() as c '
                     'incase e > 1 from "t/#" where e = e')
    assert rule.foreach
    assert rule.apply(publish(b'{"l": [1, 2, 3]}')) == [
        {"v": 2, "w": 3, "c": "c1"}, {"v": 3, "w": 4, "c": "c1"}]
    without_do = parse_sql('foreach payload.l from "t/#"')
    assert without_do.apply(publish(b'{"l": [1, null, {"a": 1}]}')) == [1, None, {"a": 1}]
    assert without_do.apply(publish(b'{"l": {"a": 1}}')) == []


def test_foreach_do_star_has_columns_aliases_and_the_element() -> None:
    out = parse_sql('foreach payload as p, p.l do * from "t/#"').apply(
        publish(b'{"l": ["x"]}'))
    assert isinstance(out, list) and len(out) == 1
    assert out[0]["item"] == "x" and out[0]["p"] == b'{"l": ["x"]}' and out[0]["qos"] == 1


@pytest.mark.parametrize(("sql", "fragment"), [
    ('foreach payload.l as a.b from "t"', "needs a plain name"),
    ('foreach * from "t"', "not *"),
    ('foreach payload.l do from "t"', "unexpected 'from'"),
    ('select case end from "t"', "unexpected 'end'"),
])
def test_bad_foreach_and_case(sql: str, fragment: str) -> None:
    with pytest.raises(SqlError, match=fragment):
        parse_sql(sql)


# -- properties --------------------------------------------------------------------------

_names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True).filter(
    lambda n: n not in {"select", "from", "where", "as", "and", "or", "not", "in", "true",
                        "false", "null", "div", "mod", "case", "when", "then", "else",
                        "end", "foreach", "do", "incase"})
_json_scalars = st.one_of(st.integers(-10**6, 10**6), st.text(max_size=10), st.booleans(),
                          st.none(), st.floats(allow_nan=False, allow_infinity=False))


@given(st.dictionaries(_names, _json_scalars, min_size=1, max_size=5))
def test_selecting_every_column_by_name_is_select_star(columns: dict[str, Any]) -> None:
    names = ", ".join(columns)
    everything = select('select * from "t/#"', columns)
    assert isinstance(everything, dict)
    assert select(f'select {names} from "t/#"', columns) == {
        k: v for k, v in everything.items() if v is not None}


@given(st.dictionaries(_names, _json_scalars, max_size=4), _names)
def test_payload_field_lookup_matches_json(obj: dict[str, Any], key: str) -> None:
    out = select(f'select payload.{key} as v from "t/#"', publish(json.dumps(obj).encode()))
    assert out == ({"v": obj[key]} if obj.get(key) is not None else {})


@given(st.integers(-10**9, 10**9), st.integers(-10**9, 10**9))
def test_integer_comparisons_agree_with_python(a: int, b: int) -> None:
    rule = parse_sql('select a from "t/#" where a < b')
    assert (rule.apply({"a": a, "b": b}) is not None) is (a < b)
    rule = parse_sql('select a from "t/#" where a = b')
    assert (rule.apply({"a": str(a), "b": b}) is not None) is (a == b)


@given(st.text(max_size=40))
def test_parser_never_crashes_on_garbage(text: str) -> None:
    try:
        rule = parse_sql(text)
    except SqlError as exc:
        assert str(exc)
    else:
        assert isinstance(rule, RuleSql)


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20))
def test_string_literals_round_trip(text: str) -> None:
    quoted = "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"
    assert select(f'select {quoted} as v from "t/#"', {}) == {"v": text}


def test_absurdly_nested_statement_is_refused_not_crashing() -> None:
    with pytest.raises(SqlError, match="nested too deeply"):
        parse_sql('select a from "t" where ' + "not " * 3000 + "a")


def test_long_but_reasonable_conditions_work() -> None:
    rule = parse_sql('select a from "t" where ' + " and ".join(["a = 1"] * 100))
    assert rule.apply({"a": 1}) == {"a": 1}


_levels = st.lists(st.sampled_from(["a", "b", "", "$SYS"]), min_size=1, max_size=4)


@given(_levels, _levels.map(lambda ls: [("+" if x == "b" else x) for x in ls]), st.booleans())
def test_topic_match_operator_is_mqtt_matching(topic: list[str], flt: list[str],
                                               hash_tail: bool) -> None:
    name, topic_filter = "/".join(topic), "/".join(flt) + ("/#" if hash_tail else "")
    if not is_valid_topic_filter(topic_filter):
        return
    rule = parse_sql(f"select topic from \"message.publish\" where topic =~ '{topic_filter}'")
    assert (rule.apply({"topic": name}) is not None) is matches(topic_filter, name)
    computed = parse_sql('select topic from "message.publish" where topic =~ f')
    assert (computed.apply({"topic": name, "f": topic_filter}) is not None) is matches(
        topic_filter, name)
