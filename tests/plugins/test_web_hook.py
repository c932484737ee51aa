"""emqx_web_hook on a live node: real MQTT clients cause events, a real local
HTTP server receives them; a server that hangs shows that nothing waits for it."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from helpers.api import err, ok
from helpers.clients import Clients, uid, wait_until
from helpers.http_receiver import HangingServer, HttpReceiver, Request
from helpers.plugin_api import configure
from helpers.servers import free_port

from tests.conftest import API_SETTINGS

PLUGIN = "emqx_web_hook"
ALARM = "webhook_down/emqx_web_hook"
API = API_SETTINGS
EVENTS = ("client.connected", "client.disconnected", "client.subscribe",
          "client.unsubscribe", "session.subscribed", "session.unsubscribed",
          "message.publish", "message.delivered", "message.acked")
NO_RULES = {f"web.hook.rule.{event}.1": "" for event in EVENTS}


@pytest.fixture
def node(make_node: Callable[..., Any]) -> Any:
    return make_node(API)




def load(api: httpx.Client, node: Any) -> None:
    ok(api.put(f"/nodes/{node.name}/plugins/{PLUGIN}/load"))


def unload(api: httpx.Client, node: Any) -> None:
    ok(api.put(f"/nodes/{node.name}/plugins/{PLUGIN}/unload"))


def metrics(api: httpx.Client) -> dict[str, int]:
    data: dict[str, int] = ok(api.get("/metrics/"))[0]["metrics"]
    return data


def present_alarms(api: httpx.Client) -> dict[str, str]:
    return {a["id"]: a["desc"] for a in ok(api.get("/alarms/present"))[0]["alarms"]}


def history_alarms(api: httpx.Client) -> set[str]:
    return {a["id"] for a in ok(api.get("/alarms/history"))[0]["alarms"]}


def by_action(requests: list[Request], client_ids: set[str]) -> dict[str, list[dict[str, Any]]]:
    """The JSON bodies about these clients, by `action`."""
    out: dict[str, list[dict[str, Any]]] = {}
    for request in requests:
        body = request.json()
        if body.get("client_id") in client_ids or body.get("from_client_id") in client_ids:
            out.setdefault(body["action"], []).append(body)
    return out


def test_every_event_arrives_with_emqx_field_names(node: Any, api: httpx.Client,
                                                   clients: Clients) -> None:
    with HttpReceiver() as server:
        configure(api, node, PLUGIN, {"web.hook.api.url": server.url + "/events"})
        load(api, node)
        before = int(time.time())
        sub = clients(node, uid("sub"), username="alice", keepalive=30)
        pub = clients(node, uid("pub"), username="bob")
        sub.subscribe("wh/+", 1)
        pub.publish("wh/a", b"hello", qos=1)
        assert sub.get().payload == b"hello"  # paho acks it: message.acked
        sub.unsubscribe("wh/+")
        sub.disconnect()
        after = int(time.time()) + 1
        ids = {sub.client_id, pub.client_id}
        wanted = {"client_connected", "client_disconnected", "client_subscribe",
                  "client_unsubscribe", "session_subscribed", "session_unsubscribed",
                  "message_publish", "message_delivered", "message_acked"}
        seen = server.wait_for(lambda reqs: set(by_action(reqs, ids)) >= wanted)
        for request in seen:
            assert request.method == "POST" and request.path == "/events"
            assert request.headers["content-type"] == "application/json"
        events = by_action(seen, ids)

        connected = {b["client_id"]: b for b in events["client_connected"]}
        body = connected[sub.client_id]
        assert set(body) == {"action", "client_id", "username", "ipaddress", "keepalive",
                             "proto_ver", "connected_at", "conn_ack"}
        assert body["username"] == "alice"
        assert body["ipaddress"] == "127.0.0.1"
        assert body["keepalive"] == 30
        assert body["proto_ver"] == 4
        assert before <= body["connected_at"] <= after
        assert body["conn_ack"] == 0
        assert connected[pub.client_id]["username"] == "bob"

        [body] = events["client_disconnected"]
        assert body == {"action": "client_disconnected", "client_id": sub.client_id,
                        "username": "alice", "reason": "normal"}

        opts = {"qos": 1, "nl": 0, "rap": 0, "rh": 0}
        assert events["client_subscribe"] == [{
            "action": "client_subscribe", "client_id": sub.client_id, "username": "alice",
            "topic": "wh/+", "opts": opts}]
        assert events["session_subscribed"] == [{
            "action": "session_subscribed", "client_id": sub.client_id, "username": "alice",
            "topic": "wh/+", "opts": opts}]
        assert events["client_unsubscribe"] == [{
            "action": "client_unsubscribe", "client_id": sub.client_id, "username": "alice",
            "topic": "wh/+"}]
        assert events["session_unsubscribed"] == [{
            "action": "session_unsubscribed", "client_id": sub.client_id, "username": "alice",
            "topic": "wh/+"}]

        message = {"from_client_id": pub.client_id, "from_username": "bob", "topic": "wh/a",
                   "qos": 1, "retain": False, "payload": "hello"}
        [body] = events["message_publish"]
        assert before <= body.pop("ts") <= after
        assert body == {"action": "message_publish", **message}
        [body] = events["message_delivered"]
        assert before <= body.pop("ts") <= after
        assert body == {"action": "message_delivered", "client_id": sub.client_id,
                        "username": "alice", **message}
        [body] = events["message_acked"]
        assert before <= body.pop("ts") <= after
        assert body == {"action": "message_acked", "client_id": sub.client_id,
                        "username": "alice", **message}

        counts = metrics(api)
        assert counts["web_hook/message_publish"] >= 1
        assert counts["web_hook/client_connected"] >= 2
        assert counts["web_hook/dropped"] == 0
        wait_until(lambda: metrics(api)["web_hook/sent"] >= len(seen), timeout=10,
                   message="every answered request counted as sent")
        unload(api, node)


def test_topic_filters_encoding_headers_and_unload(node: Any, api: httpx.Client,
                                                   clients: Clients) -> None:
    prefix = uid("keep")
    with HttpReceiver() as server:
        configure(api, node, PLUGIN, {
            **NO_RULES, "web.hook.api.url": server.url, "web.hook.pool_size": "1",
            "web.hook.encode_payload": "base64", "web.hook.headers.authorization": "Bearer t0k",
            "web.hook.rule.message.publish.1":
                json.dumps({"action": "on_message_publish", "topic": f"{prefix}/#"})})
        load(api, node)
        pub = clients(node)
        pub.publish(f"{prefix}/a", b"\x00\xffbin", qos=1)
        pub.publish("elsewhere/a", b"no", qos=1)
        pub.publish(f"{prefix}/b", b"two", qos=1)
        seen = server.wait_for(lambda reqs: len(reqs) >= 2)
        assert [r.json()["topic"] for r in seen] == [f"{prefix}/a", f"{prefix}/b"]
        assert base64.b64decode(seen[0].json()["payload"]) == b"\x00\xffbin"
        assert seen[0].headers["authorization"] == "Bearer t0k"
        # no connected/disconnected events: those rules are off
        assert {r.json()["action"] for r in seen} == {"message_publish"}
        assert metrics(api)["web_hook/message_publish"] == 2

        unload(api, node)
        pub.publish(f"{prefix}/unloaded", b"x", qos=1)
        load(api, node)
        pub.publish(f"{prefix}/reloaded", b"x", qos=1)
        # one sender, so bodies go out in order: the unloaded one would come first
        seen = server.wait_for(lambda reqs: len(reqs) >= 3)
        time.sleep(0.2)
        assert [r.json()["topic"] for r in server.requests][2:] == [f"{prefix}/reloaded"]
        unload(api, node)


def test_a_hanging_web_server_never_holds_up_clients(node: Any, api: httpx.Client,
                                                     clients: Clients) -> None:
    """emqx-web-hook#207 / emqx/emqx#5121: a web server that accepts and never
    answers must not slow down connects or message delivery."""
    with HangingServer() as hanging:
        configure(api, node, PLUGIN, {"web.hook.api.url": hanging.url, "web.hook.timeout": "1s",
                              "web.hook.max_retries": "0", "web.hook.pool_size": "2",
                              "web.hook.queue_size": "10"})
        load(api, node)
        sub = clients(node)
        pub = clients(node)
        sub.subscribe("hang/#", 1)
        for i in range(100):
            pub.publish(f"hang/{i}", str(i).encode(), qos=1)
        got = sub.get_many(100)  # default 5 s deadline for all of them
        assert sorted(int(m.payload) for m in got) == list(range(100))
        for _ in range(5):
            clients(node)  # connects complete (5 s CONNACK deadline each)
        wait_until(lambda: hanging.accepted >= 1, timeout=10, message="the hook's request")
        counts = metrics(api)
        assert counts["web_hook/dropped"] > 0, counts
        assert counts["web_hook/message_publish"] >= 100
        desc = wait_until(lambda: present_alarms(api).get(ALARM), timeout=20,
                          message="the web hook alarm")
        assert "timeout" in desc
        unload(api, node)
        # unloading stops the senders and clears the alarm
        assert ALARM not in present_alarms(api)


def test_alarm_while_down_cleared_when_the_server_is_back(
        node: Any, api: httpx.Client, clients: Clients) -> None:
    port = free_port()
    configure(api, node, PLUGIN, {**NO_RULES, "web.hook.api.url": f"http://127.0.0.1:{port}/hook",
                          "web.hook.max_retries": "1",
                          "web.hook.rule.client.connected.1": '{"action": "on_client_connected"}'})
    load(api, node)
    clients(node)
    desc = wait_until(lambda: present_alarms(api).get(ALARM), timeout=20,
                      message="the web hook alarm")
    assert str(port) in desc
    counts = metrics(api)
    assert counts["web_hook/failed"] == 1 and counts["web_hook/retried"] == 1
    assert ALARM not in history_alarms(api)
    with HttpReceiver(port=port) as server:
        late = clients(node)
        server.wait_for(lambda reqs: any(r.json()["client_id"] == late.client_id for r in reqs))
        wait_until(lambda: ALARM not in present_alarms(api), timeout=10,
                   message="the alarm cleared")
        assert ALARM in history_alarms(api)
    unload(api, node)


@pytest.mark.parametrize(("key", "value"), [
    ("web.hook.api.url", "ftp://example.com/"),
    ("web.hook.encode_payload", "base32"),
    ("web.hook.rule.message.publish.1", "{not json"),
    ("web.hook.rule.message.publish.1", '{"topic": "a/#"}'),
    ("web.hook.rule.message.publish.1", '{"action": "on_message_publish", "topic": "a/#/b"}'),
    ("web.hook.pool_size", "0"),
    ("web.hook.timeout", "soon"),
])
def test_bad_config_is_refused(node: Any, api: httpx.Client, key: str, value: str) -> None:
    err(api.put(f"/nodes/{node.name}/plugin_configs/{PLUGIN}", json={key: value}), 400, 108)


def test_rules_for_unknown_events_or_with_the_wrong_action_are_refused(
        node: Any, api: httpx.Client) -> None:
    path = f"/nodes/{node.name}/plugin_configs/{PLUGIN}"
    body = err(api.put(path, json={"web.hook.rule.client.exploded.1": '{"action": "x"}'}),
               400, 102)
    assert "client.exploded" in body["message"]
    body = err(api.put(path, json={
        "web.hook.rule.client.connected.2": '{"action": "on_message_publish"}'}), 400, 108)
    assert "on_client_connected" in body["message"]
    # v3.1's name for the delivered callback is still understood
    ok(api.put(path, json={"web.hook.rule.message.delivered.2":
                           '{"action": "on_message_deliver", "topic": "x/#"}'}))


def test_an_emqx_conf_file_and_boot_time_loading(make_node: Callable[..., Any],
                                                 tmp_path: Any, clients: Clients) -> None:
    """EMQ X's etc/plugins/emqx_web_hook.conf, read at start, with the plugin in
    plugins.loaded: events flow from the first client on."""
    with HttpReceiver() as server:
        etc = tmp_path / "etc"
        etc.mkdir()
        (etc / "emqx_web_hook.conf").write_text(
            f"web.hook.api.url = {server.url}/from-conf\n"
            "## Value: base64 | base62\n"
            "web.hook.encode_payload = base62\n"
            'web.hook.rule.client.connected.1 = {"action": "on_client_connected"}\n'
            'web.hook.rule.message.publish.1 = {"action": "on_message_publish", '
            '"topic": "conf/#"}\n')
        node = make_node({**API, "plugins.etc_dir": str(etc),
                          "plugins.loaded": "emqx_management,emqx_web_hook"})
        clients(node, uid("conf")).publish("conf/x", b"\x01\x00", qos=1)
        seen = server.wait_for(lambda reqs: {"client_connected", "message_publish"}
                               <= {r.json()["action"] for r in reqs})
        assert {r.path for r in seen} == {"/from-conf"}
        [publish] = [r.json() for r in seen if r.json()["action"] == "message_publish"]
        assert publish["payload"] == "48"  # bytes 01 00 = 256 = 4 * 62 + 8
