"""The rule engine's REST routes against a live node: the seed's Rule Engine
examples sent verbatim, the CRUD of rules and resources, and the refusals
(facts §8.7), each an EMQ X envelope with a useful message."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from helpers.api import err, ok
from helpers.clients import PahoClient, uid, wait_until
from helpers.http_receiver import HttpReceiver
from helpers.servers import free_port

#: The seed's "Create Rule" parameter example, verbatim.
SEED_RULE = {
    "name": "test-rule",
    "for": "message.publish",
    "rawsql": "select * from \"t/a\"",
    "actions": [{
        "name": "built_in:inspect_action",
        "params": {
            "a": 1
        }
    }],
    "description": "test-rule"
}
#: The seed's "Create Resource" parameter example, verbatim.
SEED_RESOURCE = {
    "name": "test-resource",
    "type": "built_in",
    "config": {
        "a": 1
    },
    "description": "test-resource"
}
SEED_RESOURCE_OBJECT = {
    "attrs": "undefined",
    "config": {"a": 1},
    "description": "test-resource",
    "id": "built_in:test-resource",
    "name": "test-resource",
    "type": "built_in",
}
SEED_INSPECT = {
    "app": "emqx_rule_engine",
    "description": "Inspect the details of action params for debug purpose",
    "for": "$any",
    "name": "built_in:inspect_action",
    "params": {},
    "type": "built_in",
}
SEED_REPUBLISH_TARGET = {
    "description": "Repubilsh the message to which topic",
    "format": "topic",
    "required": True,
    "title": "To Which Topic",
    "type": "string",
}
SEED_EVENT_ACTION_PARAMS = {
    "$resource": {
        "description": "Bind a resource to this action",
        "required": True,
        "title": "Resource ID",
        "type": "string",
    },
    "template": {
        "description": "The payload template to be filled with variables before sending "
                       "messages",
        "required": False,
        "schema": {},
        "title": "Payload Template",
        "type": "object",
    },
}
#: Facts §8.3: the columns /rule_events lists per event.
EVENT_COLUMNS = {
    "message.publish": ["client_id", "username", "event", "id", "payload", "peername", "qos",
                        "timestamp", "topic", "node"],
    "message.deliver": ["client_id", "username", "event", "auth_result", "mountpoint", "id",
                        "payload", "peername", "topic", "qos", "timestamp", "node"],
    "message.acked": ["client_id", "username", "event", "id", "payload", "peername", "topic",
                      "qos", "timestamp", "node"],
    "message.dropped": ["client_id", "username", "event", "id", "payload", "peername", "qos",
                        "timestamp", "topic", "node"],
    "client.connected": ["client_id", "username", "event", "auth_result", "clean_start",
                         "connack", "connected_at", "is_bridge", "keepalive", "mountpoint",
                         "peername", "proto_ver", "timestamp", "node"],
    "client.disconnected": ["client_id", "username", "event", "auth_result", "mountpoint",
                            "peername", "reason_code", "timestamp", "node"],
    "client.subscribe": ["client_id", "username", "event", "auth_result", "mountpoint",
                         "peername", "topic_filters", "topic", "qos", "timestamp", "node"],
    "client.unsubscribe": ["client_id", "username", "event", "auth_result", "mountpoint",
                           "peername", "topic_filters", "topic", "qos", "timestamp", "node"],
    "session.subscribed": ["client_id", "username", "event", "topic", "qos", "nl", "rap", "rc",
                           "rh", "timestamp", "node"],
    "session.unsubscribed": ["client_id", "username", "event", "topic", "qos", "nl", "rap",
                             "rc", "rh", "timestamp", "node"],
}


@pytest.fixture
def cleanup(api: httpx.Client) -> Iterator[Callable[[str, str], str]]:
    """`cleanup("rules", id)` deletes the rule (or resource) after the test."""
    made: list[tuple[str, str]] = []

    def add(kind: str, ident: str) -> str:
        made.append((kind, ident))
        return ident

    yield add
    for kind, ident in reversed(made):
        api.delete(f"/{kind}/{ident}")


def seed_rule_fields(rule: dict[str, Any]) -> dict[str, Any]:
    """The seed's rule object fields (Starling adds `metrics`)."""
    return {k: v for k, v in rule.items() if k != "metrics"} | {
        "actions": [{"name": a["name"], "params": a["params"]} for a in rule["actions"]]}


# -- the seed's examples, verbatim -----------------------------------------------------------

def test_seed_create_query_list_delete_rule(api_node: Any, api: httpx.Client,
                                            mqtt: Callable[..., PahoClient]) -> None:
    rule = ok(api.post("/rules", json=SEED_RULE))
    assert re.fullmatch(r"test-rule:\d{19}", rule["id"]), rule["id"]
    assert seed_rule_fields(rule) == {
        "actions": [{"name": "built_in:inspect_action", "params": {"a": 1}}],
        "description": "test-rule",
        "enabled": True,
        "for": "message.publish",
        "id": rule["id"],
        "name": "test-rule",
        "rawsql": "select * from \"t/a\"",
    }
    rid = rule["id"]
    publisher = mqtt(uid("seed"))
    publisher.publish("t/b", "not for the rule")
    publisher.publish("t/a", "seed payload")
    line = api_node.wait_log(rf"\[inspect\] rule {rid}")  # the inspect action ran
    assert '"payload":"seed payload"' in line and '"a":1' in line
    assert not [x for x in api_node.log_lines if "not for the rule" in x]
    wait_until(lambda: ok(api.get(f"/rules/{rid}"))["metrics"][0]["matched"] == 1,
               message="the rule matched t/a")
    assert seed_rule_fields(ok(api.get(f"/rules/{rid}"))) == seed_rule_fields(rule)
    assert rid in [r["id"] for r in ok(api.get("/rules"))]
    assert api.delete(f"/rules/{rid}").json() == {"code": 0}
    err(api.get(f"/rules/{rid}"), 404, 404, "Not Found")
    assert rid not in [r["id"] for r in ok(api.get("/rules"))]
    assert api.delete(f"/rules/{rid}").json() == {"code": 0}  # unknown: also 0


def test_seed_resource_examples(api: httpx.Client, cleanup: Callable[[str, str], str]) -> None:
    created = ok(api.post("/resources", json=SEED_RESOURCE))
    cleanup("resources", created["id"])
    assert created == SEED_RESOURCE_OBJECT
    assert SEED_RESOURCE_OBJECT in ok(api.get("/resources"))
    shown = ok(api.get("/resources/built_in:test-resource"))
    assert {k: v for k, v in shown.items() if k != "status"} == SEED_RESOURCE_OBJECT
    assert shown["status"] == [{"node": "starling@127.0.0.1", "is_alive": True}]
    assert ok(api.get("/resource_types/built_in/resources")) == [SEED_RESOURCE_OBJECT]
    assert ok(api.get("/resource_status/built_in:test-resource")) == {"is_alive": True}
    assert api.delete("/resources/built_in:test-resource").json() == {"code": 0}
    err(api.get("/resources/built_in:test-resource"), 404, 404, "Not Found")
    assert ok(api.get("/resource_types/built_in/resources")) == []


def test_seed_actions(api: httpx.Client) -> None:
    actions = {a["name"]: a for a in ok(api.get("/actions"))}
    assert set(actions) == {"built_in:inspect_action", "built_in:republish_action",
                            "web_hook:event_action", "web_hook:publish_action"}
    assert actions["built_in:inspect_action"] == SEED_INSPECT
    republish = actions["built_in:republish_action"]
    assert {k: republish[k] for k in ("app", "description", "for", "type")} == {
        "app": "emqx_rule_engine", "description": "Republish a MQTT message to a another topic",
        "for": "message.publish", "type": "built_in"}
    assert republish["params"]["target_topic"] == SEED_REPUBLISH_TARGET
    assert actions["web_hook:event_action"] == {
        "app": "emqx_web_hook", "description": "Forward Events to Web Server", "for": "$events",
        "name": "web_hook:event_action", "params": SEED_EVENT_ACTION_PARAMS, "type": "web_hook"}
    assert actions["web_hook:publish_action"] == {
        "app": "emqx_web_hook", "description": "Forward Messages to Web Server",
        "for": "message.publish", "name": "web_hook:publish_action",
        "params": {"$resource": SEED_EVENT_ACTION_PARAMS["$resource"]}, "type": "web_hook"}
    # GET 'api/v3/actions?for=client.connected': the seed shows only the inspect action
    assert ok(api.get("/actions", params={"for": "client.connected"})) == [SEED_INSPECT]
    assert ok(api.get("/actions/built_in:inspect_action")) == SEED_INSPECT
    publish = {a["name"] for a in ok(api.get("/actions", params={"for": "message.publish"}))}
    assert publish == {"built_in:inspect_action", "built_in:republish_action",
                       "web_hook:publish_action"}
    err(api.get("/actions/no_such_action"), 404, 404, "Not Found")
    err(api.get("/actions", params={"for": "client.nothing"}), 400, 400,
        "Event client.nothing Not Found")


def test_seed_resource_types(api: httpx.Client) -> None:
    assert ok(api.get("/resource_types/built_in")) == {
        "description": "The built in resource type for debug purpose",
        "name": "built_in", "params": {}, "provider": "emqx_rule_engine"}
    types = {t["name"]: t for t in ok(api.get("/resource_types"))}
    assert set(types) == {"built_in", "web_hook"}
    web = types["web_hook"]
    assert web["provider"] == "emqx_web_hook"
    assert web["params"]["url"]["required"] is True
    assert web["params"]["method"]["enum"] == ["POST", "PUT", "GET", "DELETE"]
    by_type = ok(api.get("/resource_types/built_in/actions"))
    assert [a["name"] for a in by_type] == ["built_in:inspect_action",
                                            "built_in:republish_action"]
    assert by_type[0] == SEED_INSPECT
    assert [a["name"] for a in ok(api.get("/resource_types/web_hook/actions"))] == [
        "web_hook:event_action", "web_hook:publish_action"]
    err(api.get("/resource_types/nope"), 404, 404, "Not Found")
    err(api.get("/resource_types/nope/resources"), 404, 400, "Resource Type nope Not Found")


# -- rules ---------------------------------------------------------------------------------

def test_rule_events_lists_every_event_with_its_columns(api: httpx.Client) -> None:
    events = ok(api.get("/rule_events"))
    assert {e["event"]: e["columns"] for e in events} == EVENT_COLUMNS
    for event in events:
        assert event["sql_example"] == f'SELECT * FROM "{event["event"]}"'
        assert set(event["title"]) == {"en", "zh"} and event["title"]["en"]
        assert isinstance(event["test_columns"], dict)


def test_v32_forms_accepted(api: httpx.Client, cleanup: Callable[[str, str], str]) -> None:
    """No name, no `for`: the id is rule:<8 hex>, the events come from FROM, and the
    v3.2 action names work."""
    rule = ok(api.post("/rules", json={
        "rawsql": "SELECT clientid() as cid FROM \"client.connected\", \"client.disconnected\"",
        "actions": [{"name": "inspect", "params": {}}, {"name": "do_nothing"}]}))
    cleanup("rules", rule["id"])
    assert re.fullmatch(r"rule:[0-9a-f]{8}", rule["id"])
    assert rule["for"] == ["client.connected", "client.disconnected"]
    assert [a["name"] for a in rule["actions"]] == ["inspect", "do_nothing"]


def test_update_enable_disable(api: httpx.Client, cleanup: Callable[[str, str], str]) -> None:
    rid = cleanup("rules", ok(api.post("/rules", json=SEED_RULE))["id"])
    off = ok(api.put(f"/rules/{rid}", json={"enabled": False}))
    assert off["enabled"] is False and off["rawsql"] == SEED_RULE["rawsql"]
    assert ok(api.get(f"/rules/{rid}"))["enabled"] is False
    changed = ok(api.put(f"/rules/{rid}", json={"rawsql": "select topic from \"t/#\"",
                                                 "description": "new", "enabled": True}))
    assert (changed["id"], changed["rawsql"], changed["description"], changed["enabled"]) == (
        rid, "select topic from \"t/#\"", "new", True)
    err(api.put(f"/rules/{rid}", json={"rawsql": "select from"}), 400, 400)
    assert ok(api.get(f"/rules/{rid}"))["rawsql"] == "select topic from \"t/#\""  # unchanged
    err(api.put("/rules/no-such-rule:1", json={"enabled": False}), 404, 404, "Not Found")
    err(api.put(f"/rules/{rid}", json={"enabled": "yes"}), 400, 400)


def test_bad_sql_is_refused_with_its_position(api: httpx.Client) -> None:
    body = err(api.post("/rules", json={"rawsql": "select * frm \"t/a\"", "actions": []}),
               400, 400)
    assert body["message"].startswith("Bad Arguments: ")
    assert "line 1, column 10" in body["message"], body
    body = err(api.post("/rules", json={"rawsql": "select * from \"t/a\" where (a = 1",
                                        "actions": []}), 400, 400)
    assert "column" in body["message"]
    err(api.post("/rules", json={"actions": []}), 400, 400, "Bad Arguments: missing 'rawsql'")
    assert ok(api.get("/rules")) == [] or all(
        r["rawsql"] != "select * frm \"t/a\"" for r in ok(api.get("/rules")))


@pytest.mark.parametrize(("body", "message"), [
    ({"rawsql": "select * from \"t/a\"", "actions": [{"name": "built_in:nope", "params": {}}]},
     "Action built_in:nope Not Found"),
    ({"rawsql": "select * from \"t/a\"", "for": "client.nothing", "actions": []},
     "Event client.nothing Not Found"),
    ({"rawsql": "select * from \"t/a\"",
      "actions": [{"name": "web_hook:publish_action", "params": {"$resource": "web_hook:x"}}]},
     "Resource web_hook:x Not Found"),
    ({"rawsql": "select * from \"t/a\"",
      "actions": [{"name": "built_in:republish_action", "params": {}}]},
     "Bad Arguments: params of built_in:republish_action: missing required param "
     "'target_topic'"),
    ({"rawsql": "select * from \"t/a\"",
      "actions": [{"name": "built_in:republish_action", "params": {"target_topic": "a/#"}}]},
     "Bad Arguments: target_topic 'a/#' is not a valid topic name"),
    ({"rawsql": "SELECT * FROM \"message.publish\" WHERE nosuchcolumn = 1", "actions": []},
     "Unknown Column: nosuchcolumn"),
    ({"rawsql": "select * from \"t/a\"", "actions": {"name": "x"}},
     "Bad Arguments: 'actions' must be a list of {name, params}"),
])
def test_bad_rules_are_refused(api: httpx.Client, body: dict[str, Any], message: str) -> None:
    before = len(ok(api.get("/rules")))
    err(api.post("/rules", json=body), 400, 400, message)
    assert len(ok(api.get("/rules"))) == before


def test_sql_dry_run(api: httpx.Client) -> None:
    sql = "SELECT payload.x as x FROM \"message.publish\" WHERE topic =~ 't/#' and x > 1"
    assert ok(api.post("/rules", json={"rawsql": sql, "test": True,
                                       "ctx": {"topic": "t/1", "payload": "{\"x\": 2}"}})) == {
        "x": 2}
    err(api.post("/rules", json={"rawsql": sql, "test": True,
                                 "ctx": {"topic": "t/1", "payload": "{\"x\": 0}"}}),
        404, 404, "SQL Not Match")
    assert all(r["rawsql"] != sql for r in ok(api.get("/rules")))  # nothing created
    # as the v3.2 dashboard sends it: `test` in the query string, merged with the body
    assert ok(api.post("/rules?test=true", json={
        "rawsql": sql, "ctx": {"topic": "t/1", "payload": "{\"x\": 3}"}})) == {"x": 3}
    err(api.post("/rules?test=maybe", json={"rawsql": sql}), 400, 108)
    assert all(r["rawsql"] != sql for r in ok(api.get("/rules")))


# -- query-string parameters (minirest) ----------------------------------------------------
# minirest gives a POST/PUT handler the query-string pairs and the body's as one list,
# so `POST /rules?test=true` is an SQL test: the EMQ X v3.2 dashboard's test button.

def test_sql_test_through_the_query_string(api: httpx.Client) -> None:
    sql = "SELECT payload.x as x FROM \"message.publish\" WHERE x > 1"
    before = ok(api.get("/rules"))
    ctx = {"topic": "t/1", "payload": "{\"x\": 2}"}
    assert ok(api.post("/rules?test=true", json={"rawsql": sql, "ctx": ctx})) == {"x": 2}
    err(api.post("/rules", params={"test": "true"},
                 json={"rawsql": sql, "ctx": {"payload": "{\"x\": 0}"}}),
        404, 404, "SQL Not Match")
    # the body wins over the query string where both carry a key
    assert ok(api.post("/rules?test=false&rawsql=nonsense",
                       json={"rawsql": sql, "ctx": ctx, "test": True})) == {"x": 2}
    err(api.post("/rules?test=true", json={"rawsql": "select", "ctx": ctx}), 400, 400)
    assert ok(api.get("/rules")) == before  # nothing created


def test_query_string_parameters_reach_a_created_rule(
        api: httpx.Client, cleanup: Callable[[str, str], str]) -> None:
    rule = ok(api.post("/rules?description=from%20the%20query&enabled=false",
                       json={"rawsql": 'select * from "t/#"', "description": "body"}))
    cleanup("rules", rule["id"])
    assert (rule["description"], rule["enabled"]) == ("body", False)
    updated = ok(api.put(f"/rules/{rule['id']}?enabled=true&description=q"))
    assert (updated["description"], updated["enabled"]) == ("q", True)


def test_resource_test_creates_nothing(api: httpx.Client) -> None:
    before = ok(api.get("/resources"))
    assert api.post("/resources?test=true", json={"type": "built_in"}).json() == {"code": 0}
    with HttpReceiver() as receiver:
        assert api.post("/resources", json={
            "type": "web_hook", "test": True,
            "config": {"url": receiver.url + "/hook"}}).json() == {"code": 0}
    err(api.post("/resources?test=true", json={
        "type": "web_hook", "config": {"url": f"http://127.0.0.1:{free_port()}/hook"}}),
        400, 500, "Test Creating Resource Failed")
    err(api.post("/resources?test=true&type=nope", json={}), 400, 400,
        "Resource Type nope Not Found")
    err(api.post("/resources?test=true", json={"type": "web_hook", "config": {}}), 400, 400,
        "Bad Arguments: config: missing required param 'url'")
    assert ok(api.get("/resources")) == before
    assert not any(a["id"].startswith("resource_down/")
                   for a in ok(api.get("/alarms/present"))[0]["alarms"])


# -- resources -----------------------------------------------------------------------------

def test_resource_refusals(api: httpx.Client, cleanup: Callable[[str, str], str]) -> None:
    err(api.post("/resources", json={"name": "r", "type": "nope"}), 400, 400,
        "Resource Type nope Not Found")
    err(api.post("/resources", json={"name": "r", "type": "web_hook", "config": {}}), 400, 400,
        "Bad Arguments: config: missing required param 'url'")
    err(api.post("/resources", json={"name": "r", "type": "web_hook",
                                     "config": {"url": "ftp://x/"}}), 400, 400)
    err(api.post("/resources", json={"name": "r", "type": "web_hook",
                                     "config": {"url": "http://127.0.0.1/", "method": "PATCH"}}),
        400, 400)
    err(api.get("/resource_status/web_hook:nope"), 404, 400, "Resource web_hook:nope Not Found")
    err(api.post("/resources/web_hook:nope"), 404, 400, "Resource web_hook:nope Not Found")
    assert api.delete("/resources/web_hook:nope").json() == {"code": 0}
    name = uid("res")
    cleanup("resources", ok(api.post("/resources", json={"name": name, "type": "built_in"}))["id"])
    err(api.post("/resources", json={"name": name, "type": "built_in"}), 409, 400,
        f"Resource built_in:{name} Already Exists")


def test_resource_in_use_is_not_deleted(api: httpx.Client,
                                        cleanup: Callable[[str, str], str]) -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"
    rid = cleanup("resources", ok(api.post("/resources", json={
        "name": uid("wh"), "type": "web_hook", "config": {"url": url}}))["id"])
    rule = ok(api.post("/rules", json={
        "rawsql": "select * from \"t/in-use\"",
        "actions": [{"name": "web_hook:publish_action", "params": {"$resource": rid}}]}))
    body = err(api.delete(f"/resources/{rid}"), 409, 400)
    assert rule["id"] in body["message"]
    ok(api.delete(f"/rules/{rule['id']}"))
    assert api.delete(f"/resources/{rid}").json() == {"code": 0}


def test_routes_answer_404_while_the_plugin_is_unloaded(api_node: Any,
                                                        api: httpx.Client) -> None:
    path = f"/nodes/{api_node.name}/plugins/emqx_rule_engine"
    ok(api.put(f"{path}/unload"))
    try:
        err(api.get("/rules"), 404, 404)
        err(api.get("/rule_events"), 404, 404)
    finally:
        ok(api.put(f"{path}/load"))
    assert isinstance(ok(api.get("/rules")), list)


def test_plugin_config_keys(api_node: Any, api: httpx.Client,
                            cleanup: Callable[[str, str], str]) -> None:
    """The keys are listed with their defaults; a change reloads the plugin and the
    rules are still there; a bad value is refused and nothing changes."""
    path = f"/nodes/{api_node.name}/plugin_configs/emqx_rule_engine"
    assert {i["key"]: i["value"] for i in ok(api.get(path))} == {
        "rule_engine.ignore_sys_message": "on", "rule_engine.max_pending": "100000",
        "rule_engine.resource_check_interval": "10s"}
    rid = cleanup("rules", ok(api.post("/rules", json=SEED_RULE))["id"])
    err(api.put(path, json={"rule_engine.max_pending": "0"}), 400, 108)
    try:
        ok(api.put(path, json={"rule_engine.max_pending": "500"}))
        assert ok(api.get(f"/rules/{rid}"))["enabled"] is True
    finally:
        ok(api.put(path, json={"rule_engine.max_pending": "100000"}))
