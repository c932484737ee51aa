"""The rule engine's parts in process, with a real `Broker` and the real SQL:
`${var}` templates, params schemas, the columns each event gives, the bounded
queue, and hooks attached only while an enabled rule needs them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from starling.broker import Broker, HookPoint, Message
from starling.mqtt import SubscriptionOptions
from starling.plugins import PluginStore
from starling.rules.engine import RuleEngine
from starling.rules.errors import RuleError
from starling.rules.events import EVENTS, ColumnBuilder
from starling.rules.schema import check, param
from starling.rules.template import render, render_value

# -- templates -----------------------------------------------------------------------------

DATA = {"a": 1, "s": "text", "m": {"x": {"y": 2}}, "l": [10, 20], "b": True,
        "payload": '{"temp": 21.5, "tags": ["x"]}', "raw": b"\xff", "none": None}


@pytest.mark.parametrize(("template", "expected"), [
    ("plain", "plain"),
    ("${a}/${s}", "1/text"),
    ("${m.x.y}", "2"),
    ("${m}", '{"x":{"y":2}}'),
    ("${l}", "[10,20]"),
    ("${l.2}", "20"),  # 1-based, as the SQL's nth()
    ("${b}", "true"),
    ("${payload.temp}", "21.5"),  # into a JSON text
    ("${payload.tags}", '["x"]'),
    ("${nope}", "undefined"),
    ("${none}", "undefined"),
    ("${m.nope.y}", "undefined"),
    ("${raw}", "\ufffd"),
    ("${ a }", "1"),
    ("$a ${", "$a ${"),
])
def test_render(template: str, expected: str) -> None:
    assert render(template, DATA) == expected


def test_render_value_keeps_types_of_whole_placeholders() -> None:
    template = {"n": "${a}", "t": "n=${a}", "deep": [{"y": "${m.x.y}"}], "k": 3, "u": "${zz}"}
    assert render_value(template, DATA) == {"n": 1, "t": "n=1", "deep": [{"y": 2}], "k": 3,
                                            "u": "undefined"}


# -- params schemas ------------------------------------------------------------------------

SCHEMA = {"url": param("string", "URL", "", required=True),
          "headers": param("object", "H", ""),
          "method": param("string", "M", "", enum=["POST", "PUT"]),
          "n": param("number", "N", "")}


def test_schema_check() -> None:
    assert check(SCHEMA, {"url": "u", "extra": 1}, "config") == {"url": "u", "extra": 1}
    for bad, why in [({}, "missing required param 'url'"),
                     ({"url": 1}, "param 'url' must be of type string"),
                     ({"url": "u", "headers": []}, "'headers' must be of type object"),
                     ({"url": "u", "method": "GET"}, "'method' must be one of POST, PUT"),
                     ({"url": "u", "n": True}, "'n' must be of type number"),
                     ([], "config must be an object")]:
        with pytest.raises(RuleError) as info:
            check(SCHEMA, bad, "config")
        assert why in info.value.message and info.value.code == 400


# -- columns -------------------------------------------------------------------------------

def test_message_columns_are_the_listed_ones_plus_flags() -> None:
    broker = Broker()
    message = Message("t/1", b'{"x":1}', 1, True, "pub", "alice", "10.0.0.1")
    columns = ColumnBuilder(broker, "n@h").build("message.publish", (message,), 0.0)
    assert set(EVENTS["message.publish"].columns) <= set(columns)
    assert set(columns) - set(EVENTS["message.publish"].columns) == {"retain", "flags",
                                                                      "headers"}
    assert columns["id"] == format(message.id, "x")
    assert (columns["client_id"], columns["username"], columns["payload"], columns["qos"],
            columns["retain"], columns["event"], columns["node"]) == (
        "pub", "alice", '{"x":1}', 1, 1, "message.publish", "n@h")
    assert columns["peername"] == "10.0.0.1"  # the publisher is gone: its host only
    assert columns["timestamp"] == int(message.timestamp * 1000)
    binary = Message("t/1", b"\xff\x00", 0, False, "", None, None)
    columns = ColumnBuilder(broker, "n@h").build("message.dropped", (binary, "no_subscribers"),
                                                 0.0)
    assert (columns["payload"], columns["username"], columns["peername"]) == (
        b"\xff\x00", "undefined", "undefined")


def test_session_columns() -> None:
    builder = ColumnBuilder(Broker(), "n@h")
    opts = SubscriptionOptions(qos=2, no_local=True, retain_as_published=False,
                               retain_handling=1)
    columns = builder.build("session.subscribed", ("c1", "a/+", opts), 12.5)
    assert columns == {"client_id": "c1", "username": "undefined", "event":
                       "session.subscribed", "topic": "a/+", "qos": 2, "nl": 1, "rap": 0,
                       "rc": 2, "rh": 1, "timestamp": 12500, "node": "n@h"}
    assert list(columns) == list(EVENTS["session.subscribed"].columns)


# -- the engine ----------------------------------------------------------------------------

def engine(broker: Broker, **kwargs: Any) -> RuleEngine:
    store = PluginStore()
    return RuleEngine(broker, "n@h", store.table("rules"), store.table("resources"), **kwargs)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_hooks_only_while_an_enabled_rule_needs_them() -> None:
    async def scenario() -> None:
        broker = Broker()
        eng = engine(broker)
        await eng.start()
        assert not broker.hooks.has(HookPoint.MESSAGE_PUBLISH)
        rule = eng.create_rule({"rawsql": 'select * from "client.connected"'})
        assert broker.hooks.has(HookPoint.CLIENT_CONNECTED)
        assert not broker.hooks.has(HookPoint.MESSAGE_PUBLISH)
        eng.update_rule(rule.id, {"enabled": False})
        assert not broker.hooks.has(HookPoint.CLIENT_CONNECTED)
        eng.update_rule(rule.id, {"enabled": True, "rawsql": 'select * from "t/#"'})
        assert broker.hooks.has(HookPoint.MESSAGE_PUBLISH)
        assert not broker.hooks.has(HookPoint.CLIENT_CONNECTED)
        assert eng.rules[rule.id].for_ == "message.publish"
        await eng.stop()
        assert not broker.hooks.has(HookPoint.MESSAGE_PUBLISH)
    run(scenario())


def test_the_queue_is_bounded_and_drops_are_counted() -> None:
    async def scenario() -> None:
        broker = Broker()
        eng = engine(broker, max_pending=3)
        await eng.start()
        rule = eng.create_rule({"rawsql": 'select payload from "q/#" where payload = \'x\''})
        for _ in range(5):  # the drain cannot run before we yield to the loop
            broker.publish(Message("q/1", b"x"))
        broker.publish(Message("other", b"x"))  # no rule for it: not even queued
        assert eng.stats() == {"pending": 3, "dropped": 2}
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert eng.stats() == {"pending": 0, "dropped": 2}
        assert (rule.metrics.matched, rule.metrics.passed) == (3, 3)
        await eng.stop()
    run(scenario())


def test_sys_messages_are_ignored_unless_configured() -> None:
    async def scenario(ignore: bool) -> int:
        broker = Broker()
        eng = engine(broker, ignore_sys_message=ignore)
        await eng.start()
        rule = eng.create_rule({"rawsql": 'SELECT * FROM "message.publish"'})
        broker.publish(Message("$SYS/brokers/x/uptime", b"1", sys=True))
        await asyncio.sleep(0)
        await eng.stop()
        return rule.metrics.matched
    assert run(scenario(True)) == 0
    assert run(scenario(False)) == 1


def test_sql_errors_at_runtime_are_counted() -> None:
    async def scenario() -> None:
        broker = Broker()
        eng = engine(broker)
        await eng.start()
        rule = eng.create_rule({"rawsql": 'select payload.x * 2 as y from "e/#"'})
        broker.publish(Message("e/1", b'{"x": "not a number"}'))
        broker.publish(Message("e/1", b'{"x": 1}'))
        await asyncio.sleep(0)
        assert (rule.metrics.matched, rule.metrics.failed, rule.metrics.passed) == (2, 1, 1)
        await eng.stop()
    run(scenario())


def test_stored_rows_come_back_and_bad_ones_are_skipped() -> None:
    async def scenario() -> None:
        store = PluginStore()
        rules, resources = store.table("rules"), store.table("resources")
        first = RuleEngine(Broker(), "n@h", rules, resources)
        await first.start()
        await first.create_resource({"name": "r", "type": "built_in", "config": {"k": 1}})
        kept = first.create_rule({"name": "keep", "rawsql": 'select * from "a"',
                                  "enabled": False})
        await first.stop()
        rules.put("broken:1", {"id": "broken:1", "rawsql": "select nothing", "created_at": 1})
        second = RuleEngine(Broker(), "n@h", rules, resources)
        await second.start()
        assert list(second.rules) == [kept.id]
        assert second.rules[kept.id].enabled is False
        assert second.resources["built_in:r"].config == {"k": 1}
        await second.stop()
    run(scenario())


def published_under(broker: Broker, prefix: str) -> list[tuple[str, bytes]]:
    """(topic, payload) of each message published to a topic under `prefix`, as it goes."""
    seen: list[tuple[str, bytes]] = []
    broker.hooks.add(HookPoint.MESSAGE_PUBLISH,
                     lambda m: seen.append((m.topic, m.payload))
                     if m.topic.startswith(prefix) else None)
    return seen


def test_rules_of_one_event_run_together_but_fail_alone() -> None:
    """The rules a topic reaches run as one compiled group: each still has its own
    outcome, and a change of rules takes effect on the next message."""
    async def scenario() -> None:
        broker = Broker()
        eng = engine(broker)
        await eng.start()
        seen = published_under(broker, "out/")
        failing = eng.create_rule({"rawsql": 'select payload.x * 2 as y from "g/#"'})
        picky = eng.create_rule({"rawsql": 'select payload.x as x from "g/#" '
                                           'where payload.x > 5'})
        other = eng.create_rule({"rawsql": 'select * from "h/#"'})
        good = eng.create_rule({
            "rawsql": 'select payload.x as x, clientid() as c from "g/#"',
            "actions": [{"name": "built_in:republish_action",
                         "params": {"target_topic": "out/${c}", "payload_tmpl": "${x}"}},
                        {"name": "built_in:republish_action",  # fails: bad topic
                         "params": {"target_topic": "out/${x}/#", "payload_tmpl": "-"}}]})
        broker.publish(Message("g/1", b'{"x": "a"}', sender="pub"))
        broker.publish(Message("g/1", b'{"x": 9}', sender="pub"))
        await asyncio.sleep(0)
        assert seen == [("out/pub", b"a"), ("out/pub", b"9")]
        m = {r.id: eng.rules[r.id].metrics for r in (failing, picky, other, good)}
        assert (m[failing.id].failed, m[failing.id].passed) == (1, 1)
        assert (m[picky.id].nomatch, m[picky.id].passed) == (1, 1)
        assert m[other.id].matched == 0
        assert (m[good.id].passed, m[good.id].failed) == (2, 0)
        first, second = eng.rules[good.id].actions
        assert (first.success, first.failed, second.success, second.failed) == (2, 0, 0, 2)
        eng.update_rule(picky.id, {"rawsql": 'select payload.x as x from "g/#" '
                                             'where payload.x > 50'})
        eng.delete_rule(failing.id)
        broker.publish(Message("g/2", b'{"x": 9}', sender="pub"))
        await asyncio.sleep(0)
        assert (m[picky.id].nomatch, m[picky.id].passed) == (2, 1)
        assert m[failing.id].matched == 2
        assert seen[-1] == ("out/pub", b"9") and len(seen) == 3
        await eng.stop()
    run(scenario())


def test_foreach_rule_in_a_group_runs_its_actions_per_element() -> None:
    """A FOREACH rule fused with a SELECT rule: its actions run once per element kept,
    and a message whose list keeps nothing counts as no match."""
    async def scenario() -> None:
        broker = Broker()
        eng = engine(broker)
        await eng.start()
        seen = published_under(broker, "out/")
        each = eng.create_rule({
            "rawsql": 'FOREACH payload.s DO item.n as n INCASE item.n > 1 FROM "g/#"',
            "actions": [{"name": "built_in:republish_action",
                         "params": {"target_topic": "out/each", "payload_tmpl": "${n}"}}]})
        plain = eng.create_rule({
            "rawsql": 'SELECT payload.s as s FROM "g/#"',
            "actions": [{"name": "built_in:republish_action",
                         "params": {"target_topic": "out/all"}}]})
        broker.publish(Message("g/1", b'{"s": [{"n": 1}, {"n": 2}, {"n": 3}]}', sender="p"))
        broker.publish(Message("g/1", b'{"s": [{"n": 0}]}', sender="p"))
        broker.publish(Message("g/1", b'{"s": "not a list"}', sender="p"))
        await asyncio.sleep(0)
        assert [p for t, p in seen if t == "out/each"] == [b"2", b"3"]
        assert len([p for t, p in seen if t == "out/all"]) == 3
        m = eng.rules[each.id].metrics
        assert (m.passed, m.nomatch, m.failed) == (1, 2, 0)
        assert eng.rules[each.id].actions[0].success == 2
        assert eng.rules[plain.id].metrics.passed == 3
        await eng.stop()
    run(scenario())
