"""EMQ X's own rule-engine test cases, as data, through the SQL test API of a live node.

The cases are those of emqx-rule-engine's v3.2 suites (the 3.2 branch, FROM
"message.publish"): emqx_rule_engine_SUITE's t_sqlselect_0, t_sqlparse_foreach_1..8 and
t_sqlparse_case_when_1..3, what emqx_rule_sqlparser_SUITE's statements select, and the
emqx_rule_funcs_SUITE cases of the map, array and type-check functions.  Each runs as
EMQ X's dashboard sends it, ``POST /rules?test=true``, and with ``"test": true`` in the
body.

An expected value matches as EMQ X's ``?assertMatch`` does: an object matches when
every key it names matches (others may be present), a list element by element.  With
`EXACT` the answer must be equal: EMQ X leaves an undefined field out of the output
(emqx_rule_maps:nested_put), which a partial match cannot show.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from helpers.api import err, ok

#: The answer of a statement whose WHERE does not hold: 404 ``SQL Not Match``.
NOMATCH = "nomatch"
#: Matches any integer (EMQ X checks ``is_integer(Ts)``).
ANY_INT = object()
EXACT = True


def case(name: str, sql: str, payload: Any, expected: Any, *, exact: bool = False,
         topic: str = "t/a") -> Any:
    ctx = {"payload": payload if isinstance(payload, str) else json.dumps(payload),
           "topic": topic}
    return pytest.param(sql, ctx, expected, exact, id=name)


def pub(select: str, where: str = "") -> str:
    """A statement over message.publish, as the 3.2 suites write them."""
    return f'{select} from "message.publish"' + (f" where {where}" if where else "")


T = "topic =~ 't/#'"
CMD = {"cmd": {"info": "tt"}}
SENSORS_CMD = {"sensors": [{"cmd": "1"}, {"cmd": "2"}]}
SENSORS_INT = {"sensors": [{"cmd": 1}, {"cmd": 2}, {"cmd": 3}]}
FOREACH_4 = pub("foreach payload.sensors as s do s.cmd as msg_type, s.name as name "
                "incase is_not_null(s.cmd)", T)
FOREACH_5 = pub("foreach payload.sensors as s do s.cmd as msg_type, s.name as name", T)
CASCADE = ("foreach json_decode(payload) as p, p.sensors as s, s.collection as c, "
           "c.info as info do info.cmd as msg_type, info.name as name")
PAYLOAD_7 = {"sensors": {"page": 2, "collection": {"info": [{"name": "cmd1", "cmd": "1"},
                                                           {"cmd": "2"}]}}}
PAYLOAD_8 = {"sensors": {"page": 2, "collection": {"info": ["haha", {"name": "cmd1",
                                                                    "cmd": "1"}]}}}
CASE_1 = pub("select case when payload.x < 0 then 0 when payload.x > 7 then 7 "
             "else payload.x end as y", T)
CASE_2 = pub("select case payload.x when 1 then 2 when 2 then 3 else 4 end as y", T)
CASE_3 = pub("select case when payload.x < 0 then 0 when payload.x > 7 then 7 end as y", T)

ENGINE_SUITE = [
    # t_sqlselect_0: SELECT with and without AS, aliases read by later fields and WHERE
    case("sqlselect_0/star", pub("select *", f"{T} and payload.cmd.info = 'tt'"), CMD,
         {"payload": json.dumps(CMD), "event": "message.publish"}),
    case("sqlselect_0/alias_in_where",
         pub("select payload.cmd as cmd, event", f"{T} and cmd.info = 'tt'"), CMD,
         {"cmd": {"info": "tt"}, "event": "message.publish"}, exact=EXACT),
    case("sqlselect_0/alias_of_alias",
         pub("select payload.cmd as cmd, cmd.info as info, event",
             f"{T} and cmd.info = 'tt' and info = 'tt'"), CMD,
         {"cmd": {"info": "tt"}, "info": "tt", "event": "message.publish"}, exact=EXACT),
    case("sqlselect_0/cascaded_as",
         pub("select payload.cmd as cmd, cmd.info as meta.info, event",
             f"{T} and cmd.info = 'tt' and meta.info = 'tt'"), CMD,
         {"cmd": {"info": "tt"}, "meta": {"info": "tt"}, "event": "message.publish"},
         exact=EXACT),
    # t_sqlparse_foreach_1: FOREACH with and without AS; no DO: the elements themselves
    case("foreach_1/as", pub("foreach payload.sensors as s", T), {"sensors": [1, 2]}, [1, 2]),
    case("foreach_1/item", pub("foreach payload.sensors", T), {"sensors": [1, 2]}, [1, 2]),
    case("foreach_1/objects", pub("foreach payload.sensors", T),
         {"sensors": [{"cmd": "1"}, {"cmd": "2", "name": "ct"}]},
         [{"cmd": "1"}, {"cmd": "2", "name": "ct"}], exact=EXACT),
    # t_sqlparse_foreach_2: FOREACH ... DO
    case("foreach_2/do_as", pub("foreach payload.sensors as s do s.cmd as msg_type", T),
         SENSORS_CMD, [{"msg_type": "1"}, {"msg_type": "2"}], exact=EXACT),
    case("foreach_2/do_item", pub("foreach payload.sensors do item.cmd as msg_type", T),
         SENSORS_CMD, [{"msg_type": "1"}, {"msg_type": "2"}], exact=EXACT),
    case("foreach_2/item_as_item", pub("foreach payload.sensors do item as item", T),
         {"sensors": [1, 2]}, [{"item": 1}, {"item": 2}], exact=EXACT),
    # t_sqlparse_foreach_3: FOREACH ... INCASE
    case("foreach_3/incase_as", pub("foreach payload.sensors as s incase s.cmd != 1", T),
         SENSORS_INT, [{"cmd": 2}, {"cmd": 3}], exact=EXACT),
    case("foreach_3/incase_item", pub("foreach payload.sensors incase item.cmd != 1", T),
         SENSORS_INT, [{"cmd": 2}, {"cmd": 3}], exact=EXACT),
    # t_sqlparse_foreach_4: FOREACH ... DO ... INCASE
    case("foreach_4/all_kept", FOREACH_4, SENSORS_CMD,
         [{"msg_type": "1"}, {"msg_type": "2"}], exact=EXACT),
    case("foreach_4/one_filtered", FOREACH_4,
         {"sensors": [{"cmd": "1", "name": "n1"}, {"cmd": "2"}, {"name": "n3"}]},
         [{"msg_type": "1", "name": "n1"}, {"msg_type": "2"}], exact=EXACT),
    case("foreach_4/none_kept", FOREACH_4, {"sensors": [1, 2]}, [], exact=EXACT),
    # t_sqlparse_foreach_5: FOREACH over an empty list or a non-list
    case("foreach_5/not_a_list", FOREACH_5, {"sensors": 1}, [], exact=EXACT),
    case("foreach_5/empty_list", FOREACH_5, {"sensors": []}, [], exact=EXACT),
    case("foreach_5/not_a_list_no_do", pub("foreach payload.sensors", T), {"sensors": 1}, [],
         exact=EXACT),
    # t_sqlparse_foreach_6: DO with * (the columns, with the element's field)
    case("foreach_6/do_star", pub("foreach json_decode(payload) do item.id as zid, *", T),
         [{"id": 5}, {"id": 15}],
         [{"event": "message.publish", "timestamp": ANY_INT, "zid": 5},
          {"event": "message.publish", "timestamp": ANY_INT, "zid": 15}]),
    # t_sqlparse_foreach_7: cascaded AS in FOREACH, read by WHERE, INCASE and DO
    case("foreach_7/cascaded", pub(CASCADE + " incase is_not_null(info.cmd)",
                                   f"{T} and s.page = '2'"), PAYLOAD_7,
         [{"name": "cmd1", "msg_type": "1"}, {"msg_type": "2"}], exact=EXACT),
    case("foreach_7/where_false", pub(CASCADE + " incase is_not_null(info.cmd)",
                                      f"{T} and s.page = '3'"), PAYLOAD_7, NOMATCH),
    # t_sqlparse_foreach_8: functions in INCASE and in the FOREACH list
    case("foreach_8/incase_is_map", pub(CASCADE + " incase is_map(info)", "s.page = '2'"),
         PAYLOAD_8, [{"name": "cmd1", "msg_type": "1"}], exact=EXACT),
    case("foreach_8/sublist",
         pub("foreach json_decode(payload) as p, p.sensors as s, s.collection as c, "
             "sublist(2,1,c.info) as info do info.cmd as msg_type, info.name as name",
             "s.page = '2'"), PAYLOAD_8, [{"name": "cmd1", "msg_type": "1"}], exact=EXACT),
    # t_sqlparse_case_when_1: CASE WHEN ... ELSE
    *[case(f"case_when_1/x={x}", CASE_1, {"x": x}, {"y": y}, exact=EXACT)
      for x, y in [(1, 1), (0, 0), (-1, 0), (7, 7), (8, 7)]],
    # t_sqlparse_case_when_2: CASE x WHEN v (the switch form)
    *[case(f"case_when_2/x={x}", CASE_2, {"x": x}, {"y": y}, exact=EXACT)
      for x, y in [(1, 2), (2, 3), (4, 4), (7, 4), (8, 4)]],
    # t_sqlparse_case_when_3: no ELSE, no branch taken: y is undefined, left out
    *[case(f"case_when_3/x={x}", CASE_3, {"x": x}, out, exact=EXACT)
      for x, out in [(1, {}), (5, {}), (0, {}), (-1, {"y": 0}), (7, {}), (8, {"y": 7})]],
]

SQLPARSER_SUITE = [
    # t_sqlparse: WHERE with a topic and two payload fields; no WHERE; a dotted alias
    case("sqlparse/where", pub("select *", "topic = 'topic/#' and payload.x > 10 and "
                               "payload.y <= 20"), {"x": 11, "y": 20},
         {"topic": "topic/#"}, topic="topic/#"),
    case("sqlparse/where_false", pub("select *", "topic = 'topic/#' and payload.x > 10 and "
                                     "payload.y <= 20"), {"x": 10, "y": 20}, NOMATCH,
         topic="topic/#"),
    case("sqlparse/no_where", pub("select *"), {}, {"event": "message.publish"}),
    case("sqlparse/trim_alias", pub("select payload.x as payload.y", "topic='topic'"),
         {"x": 1}, {"payload": {"y": 1}}, exact=EXACT, topic="topic"),
    # t_sqlparse_where_in
    case("sqlparse_where_in/in",
         pub("select payload.a, payload.b, payload.c as c", "c in (1, 2, 3)"),
         {"a": 1, "b": 2, "c": 3}, {"payload": {"a": 1, "b": 2}, "c": 3}, exact=EXACT),
    case("sqlparse_where_in/not_in",
         pub("select payload.a, payload.b, payload.c as c", "c in (1, 2, 3)"),
         {"a": 1, "b": 2, "c": 4}, NOMATCH),
    # t_sqlparse_where_not
    case("sqlparse_where_not/holds",
         pub("select sqrt(payload.x) as a, payload.y as b", "(not b) and a > 0"),
         {"x": 4, "y": False}, {"a": 2.0, "b": False}, exact=EXACT),
    case("sqlparse_where_not/fails",
         pub("select sqrt(payload.x) as a, payload.y as b", "(not b) and a > 0"),
         {"x": 4, "y": True}, NOMATCH),
    # t_sqlparse_op
    case("sqlparse_op", pub("select payload.x + payload.y as c, payload.x div payload.y as a"),
         {"x": 7, "y": 2}, {"c": 9, "a": 3}, exact=EXACT),
]


def func(name: str, expr: str, payload: Any, value: Any) -> Any:
    """`select <expr> as r`: {"r": value}, or {} when EMQ X's value is undefined."""
    return case(name, pub(f"select {expr} as r"), payload,
                {} if value is None else {"r": value}, exact=EXACT)


FUNCS_SUITE = [
    # t_map_get: an undefined result leaves the field out
    func("map_get/found", "map_get('a', payload.m)", {"m": {"a": 1}}, 1),
    func("map_get/undefined", "map_get('a', payload.m)", {"m": {}}, None),
    func("map_get/nested", "map_get('a.b', payload.m)", {"m": {"a": {"b": 1}}}, 1),
    func("map_get/nested_undefined", "map_get('a.c', payload.m)", {"m": {"a": {"b": 1}}},
         None),
    # t_map_put
    func("map_put/new", "map_put('a', 1, payload.m)", {"m": {}}, {"a": 1}),
    func("map_put/replace", "map_put('a', 2, payload.m)", {"m": {"a": 1}}, {"a": 2}),
    func("map_put/nested", "map_put('a.b', 1, payload.m)", {"m": {}}, {"a": {"b": 1}}),
    func("map_put/nested_merge", "map_put('a.c', 1, payload.m)", {"m": {"a": {"b": 1}}},
         {"a": {"b": 1, "c": 1}}),
    # t_nth, t_length, t_slice, t_first_last, t_contains
    func("nth/2", "nth(2, payload.l)", {"l": [1, 2, 3, 4]}, 2),
    func("nth/4", "nth(4, payload.l)", {"l": [1, 2, 3, 4]}, 4),
    func("length/4", "length(payload.l)", {"l": [1, 2, 3, 4]}, 4),
    func("length/0", "length(payload.l)", {"l": []}, 0),
    *[func(f"sublist/{args}", f"sublist({args}, payload.l)", {"l": [1, 2, 3, 4]}, out)
      for args, out in [("4", [1, 2, 3, 4]), ("2", [1, 2]), ("4, 1", [4]), ("4, 2", [4]),
                        ("5, 2", []), ("2, 2", [2, 3]), ("1, 1", [1])]],
    func("first", "first(payload.l)", {"l": [1, 2, 3, 4]}, 1),
    func("last", "last(payload.l)", {"l": [1, 2, 3, 4]}, 4),
    *[func(f"contains/{i}", "contains(payload.e, payload.l)", {"e": e, "l": items}, out)
      for i, (e, items, out) in enumerate([
          (1, [1, 2, 3, 4], True), (3, [1, 2, 3, 4], True),
          ("a", ["", "ab", 3, "a"], True), ({"a": "b"}, [{"a": 1}, {"a": "b"}], True),
          ({"a": "b"}, [{"a": 1}], False), (3, [1, 2], False),
          ("c", ["", "ab", 3, "a"], False)])],
    # t_is_null, t_is_not_null, t_is_str ... t_is_array
    func("is_null/undefined", "is_null(payload.v)", {}, True),
    func("is_null/string", "is_null(payload.v)", {"v": "a"}, False),
    func("is_null/empty", "is_null(payload.v)", {"v": ""}, False),
    func("is_not_null/undefined", "is_not_null(payload.v)", {}, False),
    *[func(f"{fn}/{i}", f"{fn}(payload.v)", {"v": v}, out)
      for fn, cases in [
          ("is_str", [("a", True), ("", True), (1, False)]),
          ("is_bool", [(True, True), (False, True), ("a", False), (2, False)]),
          ("is_int", [(1, True), (-1, True), (1.1, False), ("a", False)]),
          ("is_float", [(1.1, True), (-1.2, True), (1, False), ("a", False)]),
          ("is_num", [(1.1, True), (1, True), ("a", False)]),
          ("is_map", [({}, True), ({"a": 1}, True), ("a", False)]),
          ("is_array", [([], True), ([1, 2], True), ("", False)])]
      for i, (v, out) in enumerate(cases)],
]


def matches(expected: Any, actual: Any) -> bool:
    """EMQ X's ?assertMatch: named keys only, lists element by element."""
    if expected is ANY_INT:
        return type(actual) is int
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            k in actual and matches(v, actual[k]) for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(actual, list) and len(actual) == len(expected) and all(
            matches(e, a) for e, a in zip(expected, actual, strict=True))
    return type(actual) is type(expected) and bool(actual == expected)


@pytest.fixture(params=["query", "body"])
def sql_test(request: pytest.FixtureRequest, api: httpx.Client) -> Any:
    """Send an SQL test as the dashboard does (``?test=true``) or with ``"test": true``."""
    def send(sql: str, ctx: dict[str, Any]) -> httpx.Response:
        if request.param == "query":
            return api.post("/rules?test=true", json={"rawsql": sql, "ctx": ctx})
        return api.post("/rules", json={"rawsql": sql, "ctx": ctx, "test": True})
    return send


@pytest.mark.parametrize(("sql", "ctx", "expected", "exact"),
                         ENGINE_SUITE + SQLPARSER_SUITE + FUNCS_SUITE)
def test_emqx_case(sql_test: Any, sql: str, ctx: dict[str, Any], expected: Any,
                   exact: bool) -> None:
    resp = sql_test(sql, ctx)
    if expected == NOMATCH:
        err(resp, 404, 404, "SQL Not Match")
        return
    data = ok(resp)
    assert matches(expected, data), data
    if exact:
        assert data == expected


def test_emqx_parse_error(sql_test: Any, api: httpx.Client) -> None:
    """t_sqlparse_error: ``select *`` alone is refused, and nothing is created."""
    before = ok(api.get("/rules"))
    body = err(sql_test("select *", {}), 400, 400)
    assert body["message"].startswith("Bad Arguments: syntax error")
    assert ok(api.get("/rules")) == before
