"""Rules on live traffic: real paho clients publish to a node, rules created
through the REST API select, filter and republish, and a subscriber sees the
result; every event type fires its rule; republishing rules cannot loop."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from helpers.api import ok
from helpers.clients import PahoClient, uid, wait_until

Mqtt = Callable[..., PahoClient]


@pytest.fixture
def rule(api: httpx.Client) -> Iterator[Callable[..., dict[str, Any]]]:
    """`rule(rawsql, *actions, **fields)` creates a rule through the API (deleted after)."""
    made: list[str] = []

    def create(rawsql: str, *actions: dict[str, Any], **fields: Any) -> dict[str, Any]:
        created: dict[str, Any] = ok(api.post("/rules", json={
            "rawsql": rawsql, "actions": list(actions), **fields}))
        made.append(created["id"])
        return created

    yield create
    for rid in made:
        api.delete(f"/rules/{rid}")


def republish(topic: str, payload: str | None = None, qos: int | None = None,
              ) -> dict[str, Any]:
    params: dict[str, Any] = {"target_topic": topic}
    if payload is not None:
        params["payload_tmpl"] = payload
    if qos is not None:
        params["target_qos"] = qos
    return {"name": "built_in:republish_action", "params": params}


def metrics(api: httpx.Client, rid: str) -> dict[str, Any]:
    rule = ok(api.get(f"/rules/{rid}"))
    return {**rule["metrics"][0], "actions": [a["metrics"][0] for a in rule["actions"]]}


def watcher(mqtt: Mqtt, topic: str, qos: int = 0) -> PahoClient:
    client = mqtt(uid("watch"))
    client.subscribe(topic, qos)
    return client


# -- message.publish ---------------------------------------------------------------------

def test_where_on_json_payload_and_templated_republish(api: httpx.Client, mqtt: Mqtt,
                                                       rule: Callable[..., dict[str, Any]],
                                                       ) -> None:
    tok = uid("s")
    created = rule(f'SELECT payload.temp as t, clientid() as c FROM "sensor/{tok}/+" '
                   "WHERE t > 30",
                   republish(f"alert/{tok}/${{c}}", '{"client":"${c}","temp":${t}}'),
                   name="alerts", **{"for": "message.publish"})
    out = watcher(mqtt, f"alert/{tok}/#")
    pub = mqtt(uid("dev"))
    pub.publish(f"sensor/{tok}/1", json.dumps({"temp": 20}))
    pub.publish(f"sensor/{tok}/1", json.dumps({"temp": 35.5}))
    pub.publish(f"sensor/{tok}/1", b"not json")
    got = out.get()
    assert got.topic == f"alert/{tok}/{pub.client_id}"
    assert json.loads(got.payload) == {"client": pub.client_id, "temp": 35.5}
    m = wait_until(lambda: (m := metrics(api, created["id"]))["matched"] == 3 and m,
                   message="three events reached the rule")
    assert (m["passed"], m["nomatch"] + m["failed"]) == (1, 2)
    assert m["actions"] == [{"node": "starling@127.0.0.1", "success": 1, "failed": 0}]
    assert out.drain() == []


def test_republish_without_template_sends_the_selected_data_as_json(
        mqtt: Mqtt, rule: Callable[..., dict[str, Any]]) -> None:
    tok = uid("j")
    rule(f'select topic, payload, qos from "in/{tok}"', republish(f"out/{tok}"))
    out = watcher(mqtt, f"out/{tok}", qos=1)
    mqtt(uid("p")).publish(f"in/{tok}", "hello", qos=1)
    got = out.get()
    assert json.loads(got.payload) == {"topic": f"in/{tok}", "payload": "hello", "qos": 1}
    assert got.qos == 1  # target_qos -1 (the default): the original message's QoS


def test_select_star_and_v32_from_with_topic_match(mqtt: Mqtt,
                                                   rule: Callable[..., dict[str, Any]]) -> None:
    tok = uid("v")
    rule(f"SELECT * FROM \"message.publish\" WHERE topic =~ 'v32/{tok}/#' and qos = 0",
         republish(f"copy/{tok}", "${topic}|${payload}|${username}|${client_id}", qos=0))
    out = watcher(mqtt, f"copy/{tok}")
    pub = mqtt(uid("p"), username="alice")
    pub.publish(f"v32/{tok}/x", "one")
    pub.publish(f"v32/{tok}/x", "two", qos=1)  # qos 1: WHERE is false
    pub.publish(f"v32/{tok}/y", "three")
    assert [m.payload.decode() for m in out.get_many(2)] == [
        f"v32/{tok}/x|one|alice|{pub.client_id}", f"v32/{tok}/y|three|alice|{pub.client_id}"]


def test_disabled_rule_does_not_run(api: httpx.Client, mqtt: Mqtt,
                                    rule: Callable[..., dict[str, Any]]) -> None:
    tok = uid("d")
    rid = rule(f'select payload from "d/{tok}"', republish(f"o/{tok}", "${payload}"))["id"]
    out = watcher(mqtt, f"o/{tok}")
    pub = mqtt(uid("p"))
    pub.publish(f"d/{tok}", "1")
    assert out.get().payload == b"1"
    ok(api.put(f"/rules/{rid}", json={"enabled": False}))
    pub.publish(f"d/{tok}", "2", qos=1)  # PUBACK: the broker has handled it
    ok(api.put(f"/rules/{rid}", json={"enabled": True}))
    pub.publish(f"d/{tok}", "3")
    assert out.get().payload == b"3"  # "2" was never republished
    assert metrics(api, rid)["matched"] == 2


def test_rules_that_republish_to_each_other_do_not_loop(api: httpx.Client, mqtt: Mqtt,
                                                        rule: Callable[..., dict[str, Any]],
                                                        ) -> None:
    tok = uid("loop")
    a = rule(f'select payload from "loop/{tok}/a"', republish(f"loop/{tok}/b", "${payload}+b"))
    b = rule(f'select payload from "loop/{tok}/b"', republish(f"loop/{tok}/a", "${payload}+a"))
    self_loop = rule(f'select payload from "loop/{tok}/self"',
                     republish(f"loop/{tok}/self", "${payload}+s"))
    out = watcher(mqtt, f"loop/{tok}/#")
    pub = mqtt(uid("p"))
    pub.publish(f"loop/{tok}/a", "x")
    pub.publish(f"loop/{tok}/self", "y")
    got = sorted((m.topic, m.payload.decode()) for m in out.get_many(5))
    assert got == sorted([(f"loop/{tok}/a", "x"), (f"loop/{tok}/b", "x+b"),
                          (f"loop/{tok}/a", "x+b+a"), (f"loop/{tok}/self", "y"),
                          (f"loop/{tok}/self", "y+s")])
    pub.publish(f"loop/{tok}/end", "sentinel")
    assert out.get().payload == b"sentinel"
    assert out.drain() == []
    assert [metrics(api, r["id"])["matched"] for r in (a, b, self_loop)] == [1, 1, 1]


def test_failing_action_is_counted_not_fatal(api: httpx.Client, mqtt: Mqtt,
                                             rule: Callable[..., dict[str, Any]]) -> None:
    """A template that renders an invalid topic fails that action only; the next
    action of the rule and the message's own delivery go on."""
    tok = uid("f")
    rid = rule(f'select payload as p from "f/{tok}"', republish("bad/${p}"),
               republish(f"good/{tok}", "${p}"))["id"]
    out = watcher(mqtt, f"+/{tok}")
    mqtt(uid("p")).publish(f"f/{tok}", "#")  # "bad/#" is not a topic name
    assert sorted(m.topic for m in out.get_many(2)) == [f"f/{tok}", f"good/{tok}"]
    m = wait_until(lambda: (m := metrics(api, rid))["actions"][0]["failed"] == 1 and m,
                   message="the failure counted")
    assert [a["success"] for a in m["actions"]] == [0, 1]


# -- EMQ X v3.2.5+ SQL on live traffic: FOREACH, CASE, aliases read by later fields ------

def test_foreach_republishes_one_message_per_element(api: httpx.Client, mqtt: Mqtt,
                                                     rule: Callable[..., dict[str, Any]],
                                                     ) -> None:
    tok = uid("each")
    created = rule(f"FOREACH payload.sensors as s DO s.id as id, s.temp as t, clientid() as c "
                   f"INCASE s.temp > 30 FROM \"message.publish\" WHERE topic =~ 'fe/{tok}/+'",
                   republish(f"hot/{tok}/${{id}}", "${c}:${t}"))
    out = watcher(mqtt, f"hot/{tok}/#")
    pub = mqtt(uid("dev"))
    pub.publish(f"fe/{tok}/1", json.dumps({"sensors": [
        {"id": "a", "temp": 35}, {"id": "b", "temp": 20}, {"id": "c", "temp": 31.5}]}))
    pub.publish(f"fe/{tok}/1", json.dumps({"sensors": []}))  # WHERE holds, nothing kept
    pub.publish(f"fe/{tok}/1", json.dumps({"sensors": [{"id": "end", "temp": 99}]}))
    got = [(m.topic, m.payload.decode()) for m in out.get_many(3)]
    assert got == [(f"hot/{tok}/a", f"{pub.client_id}:35"),
                   (f"hot/{tok}/c", f"{pub.client_id}:31.5"),
                   (f"hot/{tok}/end", f"{pub.client_id}:99")]
    m = metrics(api, created["id"])
    assert (m["matched"], m["passed"], m["nomatch"], m["failed"]) == (3, 2, 1, 0)
    assert m["actions"][0]["success"] == 3


def test_foreach_without_do_sends_each_element_as_json(mqtt: Mqtt,
                                                       rule: Callable[..., dict[str, Any]],
                                                       ) -> None:
    tok = uid("el")
    rule(f'FOREACH json_decode(payload) FROM "arr/{tok}"', republish(f"one/{tok}"))
    out = watcher(mqtt, f"one/{tok}")
    mqtt(uid("p")).publish(f"arr/{tok}", '[{"k": 1}, 2, "three"]')
    assert [json.loads(m.payload) for m in out.get_many(3)] == [{"k": 1}, 2, "three"]


def test_case_in_select_and_where(mqtt: Mqtt, rule: Callable[..., dict[str, Any]]) -> None:
    tok = uid("case")
    rule("SELECT CASE WHEN payload.t > 30 THEN 'hot' WHEN payload.t < 10 THEN 'cold' "
         "ELSE 'mild' END as level, "
         "CASE payload.unit WHEN 'F' THEN (payload.t - 32) * 5 div 9 ELSE payload.t END as c "
         f"FROM \"case/{tok}\" WHERE CASE payload.kind WHEN 'test' THEN false ELSE true END",
         republish(f"lvl/{tok}", "${level} ${c}"))
    out = watcher(mqtt, f"lvl/{tok}")
    pub = mqtt(uid("p"))
    for body in ({"t": 35}, {"t": 95, "unit": "F"}, {"t": 5, "kind": "test"}, {"t": 5},
                 {"t": 20}):
        pub.publish(f"case/{tok}", json.dumps(body))
    assert [m.payload.decode() for m in out.get_many(4)] == [
        "hot 35", "hot 35", "cold 5", "mild 20"]


def test_where_reads_an_alias_of_an_alias(mqtt: Mqtt,
                                          rule: Callable[..., dict[str, Any]]) -> None:
    """EMQ X's "cascaded as": later fields and WHERE see the earlier aliases; a field
    whose value is undefined is left out of the selected data."""
    tok = uid("alias")
    rule("SELECT payload.cmd as cmd, cmd.info as info, cmd.nope as missing "
         f"FROM \"message.publish\" WHERE topic =~ 'cmd/{tok}' and info = 'tt'",
         republish(f"seen/{tok}"))
    out = watcher(mqtt, f"seen/{tok}")
    pub = mqtt(uid("p"))
    pub.publish(f"cmd/{tok}", '{"cmd": {"info": "no"}}')
    pub.publish(f"cmd/{tok}", '{"cmd": {"info": "tt"}}')
    assert json.loads(out.get().payload) == {"cmd": {"info": "tt"}, "info": "tt"}


# -- every event type --------------------------------------------------------------------

def test_client_connected_and_disconnected(mqtt: Mqtt,
                                           rule: Callable[..., dict[str, Any]]) -> None:
    tok = uid("c")
    cid = uid("ev")
    rule(f"SELECT clientid() as cid, proto_ver, keepalive, clean_start, connected_at "
         f"FROM \"client.connected\" WHERE client_id = '{cid}'",
         republish(f"ev/{tok}/connected",
                   "${cid} ${proto_ver} ${keepalive} ${clean_start} ${connected_at}"))
    rule(f"SELECT client_id, reason_code FROM \"client.disconnected\" WHERE client_id = '{cid}'",
         republish(f"ev/{tok}/disconnected", "${client_id} ${reason_code}"))
    out = watcher(mqtt, f"ev/{tok}/#")
    client = mqtt(cid, keepalive=33)
    got = out.get()
    assert got.topic == f"ev/{tok}/connected"
    name, proto, keepalive, clean, connected_at = got.payload.decode().split()
    assert (name, proto, keepalive, clean) == (cid, "4", "33", "true")
    assert int(connected_at) > 1_500_000_000_000  # epoch milliseconds
    client.disconnect()
    got = out.get()
    assert got.topic == f"ev/{tok}/disconnected"
    name, reason = got.payload.decode().split(" ", 1)
    assert name == cid and reason


def test_v31_for_names_the_hook(mqtt: Mqtt, rule: Callable[..., dict[str, Any]]) -> None:
    """v3.1: `for` picks the hook; the topic filter in FROM does not restrict client events."""
    tok = uid("h")
    cid = uid("ev")
    rule(f"select client_id, username from \"#\" where client_id = '{cid}'",
         republish(f"ev/{tok}", "${client_id}/${username}"), **{"for": "client.connected"})
    out = watcher(mqtt, f"ev/{tok}")
    mqtt(cid)
    assert out.get().payload.decode() == f"{cid}/undefined"


def test_subscribe_and_unsubscribe_events(mqtt: Mqtt,
                                          rule: Callable[..., dict[str, Any]]) -> None:
    tok = uid("s")
    cid = uid("ev")
    where = f"WHERE client_id = '{cid}'"
    for event in ("client.subscribe", "client.unsubscribe", "session.subscribed",
                  "session.unsubscribed"):
        rule(f'SELECT * FROM "{event}" {where}', republish(f"ev/{tok}/{event}",
                                                           "${event} ${topic} ${qos}"))
    out = watcher(mqtt, f"ev/{tok}/#")
    client = mqtt(cid)
    client.subscribe(f"x/{tok}/+", qos=1)
    got = {m.topic.rsplit("/", 1)[1]: m.payload.decode() for m in out.get_many(2)}
    assert got == {"client.subscribe": f"client.subscribe x/{tok}/+ 1",
                   "session.subscribed": f"session.subscribed x/{tok}/+ 1"}
    client.unsubscribe(f"x/{tok}/+")
    got = {m.topic.rsplit("/", 1)[1]: m.payload.decode() for m in out.get_many(2)}
    assert got == {"client.unsubscribe": f"client.unsubscribe x/{tok}/+ 0",
                   "session.unsubscribed": f"session.unsubscribed x/{tok}/+ 0"}


def test_message_deliver_acked_dropped(mqtt: Mqtt, rule: Callable[..., dict[str, Any]]) -> None:
    tok = uid("m")
    rule(f"SELECT client_id, payload FROM \"message.deliver\" WHERE topic = 'm/{tok}'",
         republish(f"ev/{tok}/deliver", "${client_id} ${payload}", qos=0))
    rule(f"SELECT client_id, payload FROM \"message.acked\" WHERE topic = 'm/{tok}'",
         republish(f"ev/{tok}/acked", "${client_id} ${payload}", qos=0))
    rule(f"SELECT client_id, payload FROM \"message.dropped\" WHERE topic = 'nobody/{tok}'",
         republish(f"ev/{tok}/dropped", "${client_id} ${payload}", qos=0))
    out = watcher(mqtt, f"ev/{tok}/#")
    receiver = mqtt(uid("recv"))
    receiver.subscribe(f"m/{tok}", qos=1)
    pub = mqtt(uid("pub"))
    pub.publish(f"m/{tok}", "hello", qos=1)
    assert receiver.get().payload == b"hello"
    pub.publish(f"nobody/{tok}", "lost")
    got = {m.topic.rsplit("/", 1)[1]: m.payload.decode() for m in out.get_many(3)}
    assert got == {"deliver": f"{receiver.client_id} hello",
                   "acked": f"{receiver.client_id} hello",
                   "dropped": f"{pub.client_id} lost"}
