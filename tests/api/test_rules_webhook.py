"""web_hook resources and actions against a real local HTTP server: bodies,
headers and templates as received, the `resource_down/<id>` alarm raised and
cleared, and a slow endpoint that never holds up message delivery."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from helpers.api import err, ok
from helpers.clients import PahoClient, uid, wait_until
from helpers.http_receiver import HttpReceiver
from helpers.servers import free_port

Mqtt = Callable[..., PahoClient]


@pytest.fixture
def hook_server() -> Iterator[HttpReceiver]:
    with HttpReceiver() as server:
        yield server


@pytest.fixture
def made(api: httpx.Client) -> Iterator[list[tuple[str, str]]]:
    """Rules and resources to delete after the test: append ("rules"|"resources", id)."""
    items: list[tuple[str, str]] = []
    yield items
    for kind, ident in sorted(items, key=lambda i: i[0] != "rules"):  # rules first
        api.delete(f"/{kind}/{ident}")


def resource(api: httpx.Client, made: list[tuple[str, str]], url: str,
             **config: Any) -> str:
    rid: str = ok(api.post("/resources", json={
        "name": uid("wh"), "type": "web_hook", "config": {"url": url, **config},
        "description": "test hook"}))["id"]
    made.append(("resources", rid))
    return rid


def create_rule(api: httpx.Client, made: list[tuple[str, str]], rawsql: str,
                *actions: dict[str, Any]) -> str:
    rid: str = ok(api.post("/rules", json={"rawsql": rawsql, "actions": list(actions)}))["id"]
    made.append(("rules", rid))
    return rid


def alarm_ids(api: httpx.Client, kind: str = "present") -> set[str]:
    return {a["id"] for entry in ok(api.get(f"/alarms/{kind}")) for a in entry["alarms"]}


def action_metrics(api: httpx.Client, rid: str) -> list[dict[str, Any]]:
    return [a["metrics"][0] for a in ok(api.get(f"/rules/{rid}"))["actions"]]


def test_publish_action_posts_the_selected_data(api: httpx.Client, mqtt: Mqtt,
                                                hook_server: HttpReceiver,
                                                made: list[tuple[str, str]]) -> None:
    res = resource(api, made, hook_server.url + "/hook", headers={"X-Token": "abc"}, method="PUT")
    assert ok(api.get(f"/resource_status/{res}")) == {"is_alive": True}
    tok = uid("wh")
    rid = create_rule(api, made, f'select payload.x as x, topic from "wh/{tok}/#"',
                      {"name": "web_hook:publish_action", "params": {"$resource": res}})
    mqtt(uid("p")).publish(f"wh/{tok}/1", json.dumps({"x": [1, 2]}))
    req = hook_server.take()
    assert (req.method, req.path) == ("PUT", "/hook")
    assert req.headers["x-token"] == "abc"
    assert req.headers["content-type"] == "application/json"
    assert req.json() == {"x": [1, 2], "topic": f"wh/{tok}/1"}
    wait_until(lambda: action_metrics(api, rid)[0]["success"] == 1, message="success counted")


def test_event_action_fills_its_template(api: httpx.Client, mqtt: Mqtt,
                                         hook_server: HttpReceiver,
                                         made: list[tuple[str, str]]) -> None:
    res = resource(api, made, hook_server.url + "/hook")
    cid = uid("ev")
    create_rule(api, made, f"SELECT * FROM \"client.connected\" WHERE client_id = '{cid}'",
                {"name": "web_hook:event_action", "params": {"$resource": res, "template": {
                    "who": "${client_id}", "ka": "${keepalive}", "fixed": 1,
                    "text": "client ${client_id} is in", "nested": ["${event}"]}}},
                {"name": "web_hook:event_action", "params": {"$resource": res}})
    mqtt(cid, keepalive=42, username="bob")
    bodies = sorted((hook_server.take().json() for _ in range(2)), key=len)
    assert bodies == [
        {"event": "client.connected", "client_id": cid, "username": "bob"},  # default
        {"who": cid, "ka": 42, "fixed": 1, "text": f"client {cid} is in",
         "nested": ["client.connected"]},
    ]


def test_resource_down_raises_an_alarm_cleared_when_back(api: httpx.Client,
                                                         made: list[tuple[str, str]]) -> None:
    port = free_port()
    res = resource(api, made, f"http://127.0.0.1:{port}/hook")  # nothing listens yet
    alarm = f"resource_down/{res}"
    assert ok(api.get(f"/resource_status/{res}")) == {"is_alive": False}
    assert alarm in alarm_ids(api)
    server = HttpReceiver(port=port).start()
    try:
        assert api.post(f"/resources/{res}").json() == {"code": 0}  # start_resource
        assert ok(api.get(f"/resource_status/{res}")) == {"is_alive": True}
        assert alarm not in alarm_ids(api)
        assert alarm in alarm_ids(api, "history")
    finally:
        server.stop()
    err(api.post(f"/resources/{res}"), 400, 400, f"Start Resource {res} Failed")
    assert ok(api.get(f"/resources/{res}"))["status"][0]["is_alive"] is False
    assert alarm in alarm_ids(api)
    ok(api.delete(f"/resources/{res}"))
    made.clear()
    assert alarm not in alarm_ids(api)  # a deleted resource leaves no alarm behind


def test_failed_requests_mark_the_resource_down(api: httpx.Client, mqtt: Mqtt,
                                                made: list[tuple[str, str]]) -> None:
    server = HttpReceiver().start()
    res = resource(api, made, server.url + "/hook")
    tok = uid("down")
    rid = create_rule(api, made, f'select payload from "down/{tok}"',
                      {"name": "web_hook:publish_action", "params": {"$resource": res}})
    pub = mqtt(uid("p"))
    pub.publish(f"down/{tok}", "1")
    assert server.take().json() == {"payload": "1"}
    server.stop()
    pub.publish(f"down/{tok}", "2")
    wait_until(lambda: action_metrics(api, rid)[0]["failed"] == 1, timeout=20,
               message="the failed request counted")
    assert action_metrics(api, rid)[0]["success"] == 1
    assert ok(api.get(f"/resource_status/{res}")) == {"is_alive": False}
    assert f"resource_down/{res}" in alarm_ids(api)


def test_slow_endpoint_never_holds_up_delivery(api: httpx.Client, mqtt: Mqtt,
                                               hook_server: HttpReceiver,
                                               made: list[tuple[str, str]]) -> None:
    """The endpoint answers nothing until the test lets it; meanwhile every message
    and every republished copy is delivered."""
    hook_server.gate.clear()
    res = resource(api, made, hook_server.url + "/hook")
    tok = uid("slow")
    rid = create_rule(api, made, f'select payload from "slow/{tok}"',
                      {"name": "web_hook:publish_action", "params": {"$resource": res}},
                      {"name": "built_in:republish_action",
                       "params": {"target_topic": f"copy/{tok}", "payload_tmpl": "${payload}"}})
    out = mqtt(uid("watch"))
    out.subscribe(f"+/{tok}")
    pub = mqtt(uid("p"))
    count = 50
    for i in range(count):
        pub.publish(f"slow/{tok}", str(i))
    got = out.get_many(2 * count, timeout=20)
    assert not hook_server.gate.is_set()  # the endpoint has answered nothing so far
    assert sorted(m.payload.decode() for m in got if m.topic == f"copy/{tok}") == sorted(
        str(i) for i in range(count))
    assert action_metrics(api, rid)[0]["success"] == 0
    hook_server.gate.set()
    wait_until(lambda: action_metrics(api, rid)[0]["success"] == count, timeout=30,
               message="every request answered")
    bodies = {request.json()["payload"] for request in hook_server.untaken()}
    assert bodies == {str(i) for i in range(count)}
