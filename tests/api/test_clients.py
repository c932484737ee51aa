"""The API's live views with real MQTT clients (paho-mqtt 2.x) connected:
connections, sessions, subscriptions, routes, HTTP publish/subscribe, and the
node views (brokers, nodes, listeners, stats, metrics)."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import paho.mqtt.client as paho
import pytest
from emqx_seed import (
    BROKER_FIELDS,
    CONNECTION_FIELDS,
    LISTENER_FIELDS,
    NODE_FIELDS,
    ROUTE_FIELDS,
    SEED_METRICS,
    SEED_STATS,
    SESSION_FIELDS,
    SUBSCRIPTION_FIELDS,
)
from helpers.api import err, ok
from helpers.clients import MQTTv31, MQTTv311, PahoClient, uid, wait_until
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.subscribeoptions import SubscribeOptions

DATETIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")
UPTIME = re.compile(r"^(\d+ days,)?(\d+ hours, )?(\d+ minutes, )?\d+ seconds$")
DOCS = Path(__file__).resolve().parents[2] / "docs"


def enc(value: str) -> str:
    return quote(value, safe="")


def local_epoch(text: str) -> float:
    assert DATETIME.match(text), text
    return time.mktime(time.strptime(text, "%Y-%m-%d %H:%M:%S"))


def one(items: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    found = [i for i in items if all(i.get(k) == v for k, v in match.items())]
    assert len(found) == 1, (match, items)
    return found[0]


def connection(api: Any, client_id: str) -> dict[str, Any]:
    found = ok(api.get(f"/connections/{enc(client_id)}"))
    assert len(found) == 1, found
    return found[0]


def session(api: Any, client_id: str) -> dict[str, Any]:
    found = ok(api.get(f"/sessions/{enc(client_id)}"))
    assert len(found) == 1, found
    return found[0]


def metrics(api: Any) -> dict[str, int]:
    return ok(api.get("/metrics/"))[0]["metrics"]


def stats(api: Any) -> dict[str, Any]:
    return ok(api.get("/stats/"))[0]


def tcp_listener(api: Any, api_node: Any) -> dict[str, Any]:
    listeners = ok(api.get(f"/nodes/{api_node.name}/listeners"))
    return one(listeners, listen_on=f"{api_node.host}:{api_node.port}")


class ManualAckClient:
    """A raw paho client that never acknowledges QoS 1/2 (manual_ack, no ack sent)."""

    def __init__(self, node: Any, client_id: str, clean_session: bool = True) -> None:
        self.client_id = client_id
        self.client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id=client_id, clean_session=clean_session,
                                  protocol=paho.MQTTv311, manual_ack=True)
        self.client.reconnect_delay_set(60, 60)
        self.received: list[bytes] = []
        self._connected = threading.Event()
        self._suback = threading.Event()
        self.client.on_connect = lambda *a: self._connected.set()
        self.client.on_subscribe = lambda *a: self._suback.set()
        self.client.on_message = lambda c, u, msg: self.received.append(bytes(msg.payload))
        self.client.connect(node.host, node.port, keepalive=60)
        self.client.loop_start()
        assert self._connected.wait(5), "no CONNACK"

    def subscribe(self, topic: str, qos: int) -> None:
        self._suback.clear()
        self.client.subscribe(topic, qos)
        assert self._suback.wait(5), "no SUBACK"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def manual_ack(api_node: Any) -> Iterator[Any]:
    made: list[ManualAckClient] = []

    def factory(client_id: str, clean_session: bool = True) -> ManualAckClient:
        client = ManualAckClient(api_node, client_id, clean_session)
        made.append(client)
        return client

    yield factory
    for client in made:
        client.close()
    with api_node.api() as api:
        for client in made:
            wait_until(lambda c=client: ok(api.get(f"/connections/{c.client_id}")) == [],
                       message="connection gone")


# -- connections ------------------------------------------------------------------------

def test_connection_fields_and_values(api_node: Any, api: Any, mqtt: Any) -> None:
    before = time.time()
    client = mqtt(client_id=uid("fields"), keepalive=42)
    local_host, local_port = client.client.socket().getsockname()[:2]
    conn = connection(api, client.client_id)
    assert set(conn) >= CONNECTION_FIELDS, CONNECTION_FIELDS - set(conn)
    assert conn["client_id"] == client.client_id
    assert conn["node"] == api_node.name
    assert conn["ipaddress"] == local_host
    assert conn["port"] == local_port
    assert conn["username"] == "undefined"
    assert conn["proto_name"] == "MQTT" and conn["proto_ver"] == 4
    assert conn["clean_start"] is True
    assert conn["keepalive"] == 42
    assert conn["zone"] == "external"
    assert conn["peercert"] == "nossl"
    assert conn["is_bridge"] is False
    assert conn["conn_mod"] == "emqx_connection"
    assert before - 1 <= local_epoch(conn["connected_at"]) <= time.time() + 1
    for name in ("recv_cnt", "recv_msg", "recv_oct", "recv_pkt", "send_cnt", "send_msg",
                 "send_oct", "send_pend", "send_pkt", "heap_size", "reductions",
                 "mailbox_len"):
        assert isinstance(conn[name], int) and conn[name] >= 0, (name, conn[name])
    assert conn["recv_pkt"] >= 1 and conn["send_pkt"] >= 1  # CONNECT, CONNACK
    assert conn["recv_oct"] > 0 and conn["send_oct"] > 0


def test_connection_mqtt31_persistent_and_username(api: Any, mqtt: Any) -> None:
    username = uid("name")
    client = mqtt(client_id=uid("v31"), protocol=MQTTv31, clean_session=False,
                  username=username)
    conn = connection(api, client.client_id)
    assert conn["proto_ver"] == 3 and conn["proto_name"] == "MQIsdp"
    assert conn["clean_start"] is False
    assert conn["username"] == username
    assert session(api, client.client_id)["username"] == username


def test_connection_lists_lookups_and_node_forms(api_node: Any, api: Any, mqtt: Any) -> None:
    username = uid("u")
    a = mqtt(client_id=uid("list"), username=username)
    b = mqtt(client_id=uid("list"), username=username)
    node = api_node.name
    for path in ("/connections/", f"/nodes/{node}/connections/"):
        body = api.get(path).json()
        assert body["code"] == 0
        ids = [c["client_id"] for c in body["data"]]
        assert a.client_id in ids and b.client_id in ids
        assert body["meta"]["count"] == len(body["data"])
    for path in (f"/connections/{a.client_id}", f"/nodes/{node}/connections/{a.client_id}"):
        assert [c["client_id"] for c in ok(api.get(path))] == [a.client_id]
    for path in (f"/connection/username/{username}",
                 f"/nodes/{node}/connection/username/{username}"):
        found = ok(api.get(path))
        assert sorted(c["client_id"] for c in found) == sorted([a.client_id, b.client_id])
        assert all(c["username"] == username for c in found)
    assert ok(api.get("/connections/" + uid("nobody"))) == []
    assert ok(api.get(f"/nodes/{node}/connections/" + uid("nobody"))) == []
    assert ok(api.get("/connection/username/" + uid("nobody"))) == []
    err(api.get("/nodes/other@host/connections/" + a.client_id), 404, 404)


def test_counters_move_with_traffic(api: Any, mqtt: Any) -> None:
    topic = uid("count") + "/t"
    subscriber = mqtt()
    subscriber.subscribe(topic, 1)
    publisher = mqtt()
    pub_before = connection(api, publisher.client_id)
    sub_before = connection(api, subscriber.client_id)
    m_before = metrics(api)
    for i in range(5):
        publisher.publish(topic, f"m{i}", qos=1)
    assert len(subscriber.get_many(5)) == 5

    def moved() -> dict[str, Any] | None:
        pub = connection(api, publisher.client_id)
        sub = connection(api, subscriber.client_id)
        done = pub["recv_msg"] - pub_before["recv_msg"] == 5 and \
            sub["send_msg"] - sub_before["send_msg"] == 5
        return {"pub": pub, "sub": sub} if done else None

    now = wait_until(moved, message="recv_msg/send_msg to move by 5")
    pub, sub = now["pub"], now["sub"]
    assert pub["recv_pkt"] - pub_before["recv_pkt"] == 5  # PUBLISH in
    assert pub["send_pkt"] - pub_before["send_pkt"] == 5  # PUBACK out
    assert pub["recv_oct"] > pub_before["recv_oct"]
    assert sub["send_oct"] > sub_before["send_oct"]
    m_after = metrics(api)
    assert m_after["messages/qos1/received"] - m_before["messages/qos1/received"] == 5
    assert m_after["messages/received"] - m_before["messages/received"] == 5
    assert m_after["packets/publish/received"] - m_before["packets/publish/received"] == 5
    assert m_after["packets/puback/sent"] - m_before["packets/puback/sent"] == 5
    assert m_after["messages/qos1/sent"] - m_before["messages/qos1/sent"] == 5
    assert m_after["bytes/received"] > m_before["bytes/received"]


def test_http_publish_is_not_a_received_mqtt_message(api: Any, mqtt: Any) -> None:
    topic = uid("httppub")
    subscriber = mqtt()
    subscriber.subscribe(topic, 1)
    before = metrics(api)
    ok(api.post("/mqtt/publish", json={"topic": topic, "payload": "x", "qos": 1}))
    subscriber.get()
    after = metrics(api)
    assert after["messages/received"] == before["messages/received"]
    assert after["messages/qos1/received"] == before["messages/qos1/received"]
    assert after["messages/qos1/sent"] - before["messages/qos1/sent"] == 1


def test_kickout(api_node: Any, api: Any, mqtt: Any) -> None:
    will_topic = uid("will") + "/gone"
    watcher = mqtt()
    watcher.subscribe(will_topic, 1)
    victim = mqtt(client_id=uid("kick"), clean_session=False, connect=False)
    victim.will_set(will_topic, b"bye", qos=1)
    victim.connect()
    victim.subscribe(uid("kept") + "/t", 1)
    before = tcp_listener(api, api_node)["shutdown_count"] or {}
    assert api.delete(f"/connections/{victim.client_id}").json() == {"code": 0}
    victim.wait_disconnected()
    will = watcher.get(topic=will_topic)
    assert will.payload == b"bye"
    wait_until(lambda: ok(api.get(f"/connections/{victim.client_id}")) == [],
               message="connection gone")

    def kicked() -> bool:
        after = tcp_listener(api, api_node)["shutdown_count"]
        return isinstance(after, dict) and after.get("kicked", 0) == before.get("kicked", 0) + 1

    wait_until(kicked, message="shutdown_count.kicked + 1")
    # the persistent session stays, offline, with its subscription
    kept = session(api, victim.client_id)
    assert kept["clean_start"] is False and kept["subscriptions_count"] == 1
    assert victim.client_id in [s["client_id"] for s in ok(api.get("/sessions/"))]
    # kicking again: it is not online any more
    err(api.delete(f"/connections/{victim.client_id}"), 404, 112)
    ok(api.delete(f"/sessions/persistent/{victim.client_id}"))


def test_kickout_clean_session_ends_it(api: Any, mqtt: Any) -> None:
    victim = mqtt(client_id=uid("kickclean"))
    ok(api.delete(f"/connections/{victim.client_id}"))
    victim.wait_disconnected()
    wait_until(lambda: ok(api.get(f"/sessions/{victim.client_id}")) == [],
               message="clean session discarded")


def test_kickout_unknown_client(api: Any) -> None:
    body = err(api.delete("/connections/" + uid("nobody")), 404, 112)
    assert body["message"] == "not_found"


# -- sessions ---------------------------------------------------------------------------

def test_session_fields(api_node: Any, api: Any, mqtt: Any) -> None:
    before = time.time()
    clean = mqtt(client_id=uid("sclean"))
    persistent = mqtt(client_id=uid("spers"), clean_session=False)
    s = session(api, clean.client_id)
    assert set(s) >= SESSION_FIELDS, SESSION_FIELDS - set(s)
    assert s["client_id"] == clean.client_id and s["node"] == api_node.name
    assert s["clean_start"] is True and s["expiry_interval"] == 0
    assert s["binding"] == "local" and s["username"] == "undefined"
    assert s["max_inflight"] == 32 and s["max_mqueue"] == 1000
    assert s["max_awaiting_rel"] == 100 and s["max_subscriptions"] == 0
    for name in ("inflight_len", "mqueue_len", "mqueue_dropped", "awaiting_rel_len",
                 "deliver_msg", "enqueue_msg", "subscriptions_count"):
        assert s[name] == 0, (name, s)
    assert before - 1 <= local_epoch(s["created_at"]) <= time.time() + 1
    p = session(api, persistent.client_id)
    assert p["clean_start"] is False and p["expiry_interval"] == 7200
    clean.subscribe(uid("s") + "/a", 0)
    clean.subscribe(uid("s") + "/b", 1)
    assert session(api, clean.client_id)["subscriptions_count"] == 2


def test_session_lists_and_node_forms(api_node: Any, api: Any, mqtt: Any) -> None:
    client = mqtt(client_id=uid("slist"))
    node = api_node.name
    for path in ("/sessions/", f"/nodes/{node}/sessions/"):
        body = api.get(path).json()
        assert body["code"] == 0 and body["meta"]["count"] == len(body["data"])
        assert client.client_id in [s["client_id"] for s in body["data"]]
    for path in (f"/sessions/{client.client_id}", f"/nodes/{node}/sessions/{client.client_id}"):
        assert [s["client_id"] for s in ok(api.get(path))] == [client.client_id]
    assert ok(api.get("/sessions/" + uid("nobody"))) == []
    assert ok(api.get(f"/nodes/{node}/sessions/" + uid("nobody"))) == []


def test_offline_persistent_session_is_listed_and_queues(api: Any, mqtt: Any) -> None:
    topic = uid("offq") + "/t"
    client = mqtt(client_id=uid("off"), clean_session=False)
    client.subscribe(topic, 1)
    client.disconnect()
    wait_until(lambda: ok(api.get(f"/connections/{client.client_id}")) == [],
               message="connection gone")
    assert client.client_id in [s["client_id"] for s in ok(api.get("/sessions/"))]
    for i in range(3):
        ok(api.post("/mqtt/publish", json={"topic": topic, "payload": f"q{i}", "qos": 1}))
    s = session(api, client.client_id)
    assert s["mqueue_len"] == 3 and s["inflight_len"] == 0 and s["enqueue_msg"] >= 3
    again = mqtt(client_id=client.client_id, clean_session=False)
    assert again.connack == (0, True)
    assert sorted(m.payload for m in again.get_many(3)) == [b"q0", b"q1", b"q2"]
    wait_until(lambda: session(api, client.client_id)["mqueue_len"] == 0,
               message="queue drained")
    again.disconnect()
    wait_until(lambda: ok(api.get(f"/connections/{client.client_id}")) == [],
               message="connection gone")
    ok(api.delete(f"/sessions/persistent/{client.client_id}"))


def test_inflight_and_mqueue_move_when_acks_stop(api: Any, manual_ack: Any) -> None:
    topic = uid("noack") + "/t"
    client = manual_ack(uid("noack"))
    client.subscribe(topic, 1)
    for i in range(40):
        ok(api.post("/mqtt/publish", json={"topic": topic, "payload": f"n{i}", "qos": 1}))
    wait_until(lambda: len(client.received) >= 32, message="32 messages in flight")
    s = session(api, client.client_id)
    assert s["inflight_len"] == 32, s
    assert s["mqueue_len"] == 8, s
    assert s["deliver_msg"] >= 32
    assert len(client.received) == 32


def test_clean_persistent_session(api_node: Any, api: Any, mqtt: Any) -> None:
    client = mqtt(client_id=uid("clean"), clean_session=False)
    body = err(api.delete(f"/sessions/persistent/{client.client_id}"), 409, 102)
    assert body["message"] == "running_session"
    client.disconnect()
    wait_until(lambda: ok(api.get(f"/connections/{client.client_id}")) == [],
               message="connection gone")
    assert api.delete(f"/sessions/persistent/{client.client_id}").json() == {"code": 0}
    assert ok(api.get(f"/sessions/{client.client_id}")) == []
    assert client.client_id not in [s["client_id"] for s in ok(api.get("/sessions/"))]
    err(api.delete(f"/sessions/persistent/{client.client_id}"), 404, 102)
    # the node form
    other = mqtt(client_id=uid("clean"), clean_session=False)
    other.disconnect()
    wait_until(lambda: ok(api.get(f"/connections/{other.client_id}")) == [],
               message="connection gone")
    ok(api.delete(f"/nodes/{api_node.name}/sessions/persistent/{other.client_id}"))
    assert ok(api.get(f"/sessions/{other.client_id}")) == []
    err(api.delete("/sessions/persistent/" + uid("nobody")), 404, 102)


# -- subscriptions and routes -----------------------------------------------------------

def test_subscriptions_and_routes(api_node: Any, api: Any, mqtt: Any) -> None:
    prefix = uid("sub")
    client = mqtt()
    client.subscribe(f"{prefix}/exact", 1)
    client.subscribe(f"{prefix}/+/wild", 2)
    node = api_node.name
    expected = [{"node": node, "client_id": client.client_id, "topic": f"{prefix}/exact",
                 "qos": 1},
                {"node": node, "client_id": client.client_id, "topic": f"{prefix}/+/wild",
                 "qos": 2}]
    key = lambda s: s["topic"]  # noqa: E731
    for path in (f"/subscriptions/{client.client_id}",
                 f"/nodes/{node}/subscriptions/{client.client_id}"):
        found = ok(api.get(path))
        assert all(set(s) == SUBSCRIPTION_FIELDS for s in found)
        assert sorted(found, key=key) == sorted(expected, key=key)
    for path in ("/subscriptions/", f"/nodes/{node}/subscriptions/"):
        listed = ok(api.get(path))
        assert all(s in listed for s in expected)
    routes = ok(api.get("/routes/"))
    assert all(set(r) == ROUTE_FIELDS for r in routes)
    for topic in (f"{prefix}/exact", f"{prefix}/+/wild"):
        assert {"topic": topic, "node": node} in routes
        assert ok(api.get(f"/routes/{enc(topic)}")) == [{"topic": topic, "node": node}]
    # a second subscriber to the same filter: still one route
    other = mqtt()
    other.subscribe(f"{prefix}/exact", 0)
    assert len([r for r in ok(api.get("/routes/")) if r["topic"] == f"{prefix}/exact"]) == 1
    client.unsubscribe(f"{prefix}/+/wild")
    wait_until(lambda: ok(api.get(f"/routes/{enc(prefix + '/+/wild')}")) == [],
               message="route gone after unsubscribe")
    assert [s["topic"] for s in ok(api.get(f"/subscriptions/{client.client_id}"))] == [
        f"{prefix}/exact"]
    assert ok(api.get("/subscriptions/" + uid("nobody"))) == []


# -- HTTP publish ---------------------------------------------------------------------

def test_publish(api: Any, mqtt: Any) -> None:
    topic = uid("pub") + "/t"
    subscriber = mqtt()
    subscriber.subscribe(topic, 2)
    assert api.post("/mqtt/publish", json={"topic": topic, "payload": "hello", "qos": 1,
                                           "retain": False}).json() == {"code": 0}
    msg = subscriber.get()
    assert (msg.topic, msg.payload, msg.qos, msg.retain) == (topic, b"hello", 1, False)
    # defaults: payload "", qos 0; query-string parameters work too (strings)
    ok(api.post("/mqtt/publish", json={"topic": topic}))
    msg = subscriber.get()
    assert (msg.payload, msg.qos) == (b"", 0)
    ok(api.post("/mqtt/publish", params={"topic": topic, "payload": "q", "qos": "2"}))
    msg = subscriber.get()
    assert (msg.payload, msg.qos) == (b"q", 2)
    # with no subscriber at all it is still accepted
    ok(api.post("/mqtt/publish", json={"topic": uid("nobody-listens")}))


def test_publish_to_comma_separated_topics(api: Any, mqtt: Any) -> None:
    prefix = uid("multi")
    subscriber = mqtt()
    subscriber.subscribe(f"{prefix}/#", 0)
    ok(api.post("/mqtt/publish", json={"topics": f"{prefix}/a,{prefix}/b, {prefix}/c",
                                       "payload": "x"}))
    assert sorted(m.topic for m in subscriber.get_many(3)) == [
        f"{prefix}/a", f"{prefix}/b", f"{prefix}/c"]
    # invalid topics in the list are left out; `topic` wins over `topics`
    ok(api.post("/mqtt/publish", json={"topics": f"{prefix}/#,{prefix}/d"}))
    assert subscriber.get().topic == f"{prefix}/d"
    ok(api.post("/mqtt/publish", json={"topic": f"{prefix}/e", "topics": f"{prefix}/f"}))
    assert subscriber.get().topic == f"{prefix}/e"
    time.sleep(0.2)
    assert subscriber.drain() == []


def test_publish_retained(api: Any, mqtt: Any) -> None:
    topic = uid("retain") + "/t"
    ok(api.post("/mqtt/publish", json={"topic": topic, "payload": "kept", "qos": 1,
                                       "retain": True}))
    later = mqtt()
    later.subscribe(topic, 1)
    msg = later.get()
    assert (msg.payload, msg.retain) == (b"kept", True)
    ok(api.post("/mqtt/publish", json={"topic": topic, "payload": "", "retain": True}))
    last = mqtt()
    last.subscribe(topic, 1)
    time.sleep(0.2)
    assert last.drain() == []


def test_publish_client_id_is_the_sender(api_node: Any, api: Any) -> None:
    """The sender is observable with MQTT 5.0 No Local: a subscriber with no_local does
    not get messages published in its own name."""
    topic = uid("nolocal") + "/t"
    client_id = uid("self")
    got: list[bytes] = []
    ready = threading.Event()
    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                         client_id=client_id, protocol=paho.MQTTv5)
    client.on_message = lambda c, u, msg: got.append(bytes(msg.payload))
    client.on_subscribe = lambda *a: ready.set()
    client.connect(api_node.host, api_node.port)
    client.loop_start()
    try:
        client.subscribe(topic, options=SubscribeOptions(qos=1, noLocal=True))
        assert ready.wait(5)
        ok(api.post("/mqtt/publish", json={"topic": topic, "payload": "mine",
                                           "client_id": client_id}))
        ok(api.post("/mqtt/publish", json={"topic": topic, "payload": "theirs",
                                           "client_id": uid("other")}))
        wait_until(lambda: got, message="message from another sender")
        time.sleep(0.1)
        assert got == [b"theirs"]
    finally:
        client.disconnect()
        client.loop_stop()
    wait_until(lambda: ok(api.get(f"/connections/{client_id}")) == [],
               message="connection gone")


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"topic": "a/#"}, 400, 115),
    ({"topic": "a/+/b"}, 400, 115),
    ({"topic": ""}, 400, 115),
    ({"topics": "#,+"}, 400, 115),
    ({"topics": ","}, 400, 115),
    ({"payload": "no topic"}, 400, 107),
    ({"topic": "t/q", "qos": 3}, 400, 108),
    ({"topic": "t/q", "qos": -1}, 400, 108),
    ({"topic": "t/q", "qos": "one"}, 400, 108),
    ({"topic": "t/q", "qos": True}, 400, 108),
    ({"topic": "t/q", "retain": "sometimes"}, 400, 108),
    ({"topic": "t/q", "payload": {"a": 1}}, 400, 108),
    ({"topic": 5}, 400, 108),
])
def test_publish_errors(api: Any, body: dict[str, Any], status: int, code: int) -> None:
    err(api.post("/mqtt/publish", json=body), status, code)


def test_publish_obeys_the_mqtt_limits(make_node: Any) -> None:
    """mqtt.max_packet_size and mqtt.max_topic_levels hold for HTTP publishes as for
    MQTT ones: a message an MQTT client could not send is refused, not delivered."""
    node = make_node({"management.bind": "127.0.0.1:0", "api.default_app_secret": "s",
                      "mqtt.max_packet_size": "100", "mqtt.max_topic_levels": "3"})
    subscriber = PahoClient(node.host, node.port, uid("limits"))
    subscriber.connect()
    try:
        subscriber.subscribe("#", 1)
        with node.api(auth=("admin", "s")) as api:
            # 2 + 3 (topic "a/b") + 2 (packet id) + 90 = 97 bytes, plus a 2-byte header: 99
            ok(api.post("/mqtt/publish", json={"topic": "a/b", "payload": "x" * 90,
                                               "qos": 1}))
            assert subscriber.get().payload == b"x" * 90
            body = err(api.post("/mqtt/publish", json={"topic": "a/b", "payload": "x" * 92,
                                                       "qos": 1}), 413, 108)
            assert body["message"] == ("message too large: its PUBLISH would be 101 bytes, "
                                       "over mqtt.max_packet_size (100)")
            err(api.post("/mqtt/publish", json={"topic": "a/b/c/d", "payload": "deep"}),
                400, 115)
            batch = ok(api.post("/mqtt/publish_batch", json=[
                {"topic": "a/b", "payload": "y" * 200}, {"topic": "a/b", "payload": "ok"}]))
            assert [r["code"] for r in batch] == [108, 0]
            assert subscriber.get().payload == b"ok"
            time.sleep(0.2)
            assert subscriber.drain() == []
    finally:
        subscriber.close()


# -- HTTP subscribe / unsubscribe --------------------------------------------------------

def test_subscribe_online_session(api: Any, mqtt: Any) -> None:
    topic = uid("hsub") + "/t"
    client = mqtt()
    ok(api.post("/mqtt/subscribe", json={"client_id": client.client_id, "topic": topic,
                                         "qos": 1}))
    assert ok(api.get(f"/subscriptions/{client.client_id}")) == [
        {"node": "starling@127.0.0.1", "client_id": client.client_id, "topic": topic, "qos": 1}]
    publisher = mqtt()
    publisher.publish(topic, "via-http-sub", qos=1)
    msg = client.get()
    assert (msg.topic, msg.payload, msg.qos) == (topic, b"via-http-sub", 1)
    # unsubscribe: no more messages
    ok(api.post("/mqtt/unsubscribe", json={"client_id": client.client_id, "topic": topic}))
    assert ok(api.get(f"/subscriptions/{client.client_id}")) == []
    publisher.publish(topic, "after", qos=1)
    time.sleep(0.2)
    assert client.drain() == []


def test_subscribe_several_topics_and_retained(api: Any, mqtt: Any) -> None:
    prefix = uid("hsubs")
    ok(api.post("/mqtt/publish", json={"topic": f"{prefix}/r", "payload": "old",
                                       "retain": True}))
    client = mqtt()
    ok(api.post("/mqtt/subscribe", json={"client_id": client.client_id,
                                         "topics": f"{prefix}/a,{prefix}/r", "qos": 0}))
    msg = client.get()
    assert (msg.topic, msg.payload, msg.retain) == (f"{prefix}/r", b"old", True)
    assert sorted(s["topic"] for s in ok(api.get(f"/subscriptions/{client.client_id}"))) == [
        f"{prefix}/a", f"{prefix}/r"]
    ok(api.post("/mqtt/publish", json={"topic": f"{prefix}/r", "payload": "",
                                       "retain": True}))


def test_subscribe_offline_persistent_session(api: Any, mqtt: Any) -> None:
    topic = uid("hoff") + "/t"
    client = mqtt(client_id=uid("hoff"), clean_session=False)
    client.disconnect()
    wait_until(lambda: ok(api.get(f"/connections/{client.client_id}")) == [],
               message="connection gone")
    ok(api.post("/mqtt/subscribe", json={"client_id": client.client_id, "topic": topic,
                                         "qos": 1}))
    ok(api.post("/mqtt/publish", json={"topic": topic, "payload": "queued", "qos": 1}))
    assert session(api, client.client_id)["mqueue_len"] == 1
    again = mqtt(client_id=client.client_id, clean_session=False)
    msg = again.get()
    assert (msg.topic, msg.payload, msg.qos) == (topic, b"queued", 1)
    ok(api.post("/mqtt/unsubscribe", json={"client_id": client.client_id, "topic": topic}))
    assert ok(api.get(f"/subscriptions/{client.client_id}")) == []
    again.disconnect()
    wait_until(lambda: ok(api.get(f"/connections/{client.client_id}")) == [],
               message="connection gone")
    ok(api.delete(f"/sessions/persistent/{client.client_id}"))


@pytest.mark.parametrize(("path", "body", "status", "code"), [
    ("/mqtt/subscribe", {"client_id": "NOBODY", "topic": "t/x"}, 404, 112),
    ("/mqtt/unsubscribe", {"client_id": "NOBODY", "topic": "t/x"}, 404, 112),
    ("/mqtt/subscribe", {"client_id": "NOBODY", "topic": "a/#/b"}, 400, 115),
    ("/mqtt/unsubscribe", {"client_id": "NOBODY", "topic": "a/#/b"}, 400, 115),
    ("/mqtt/subscribe", {"topic": "t/x"}, 400, 107),
    ("/mqtt/unsubscribe", {"client_id": "NOBODY"}, 400, 107),
    ("/mqtt/subscribe", {"client_id": "NOBODY", "topic": "t/x", "qos": 5}, 400, 108),
    ("/mqtt/subscribe", {"client_id": "NOBODY"}, 400, 107),
])
def test_subscribe_errors(api: Any, path: str, body: dict[str, Any], status: int,
                          code: int) -> None:
    body = {k: (uid("nobody") if v == "NOBODY" else v) for k, v in body.items()}
    resp = err(api.post(path, json=body), status, code)
    if code == 112:
        assert resp["message"] == "session_not_found"


def test_subscribe_shared_filter_joins_the_group(api: Any, mqtt: Any) -> None:
    """`$share/<group>/<filter>` over HTTP is the subscription an MQTT SUBSCRIBE would
    make: the two members share the messages, each delivered once, on the real topic."""
    topic = uid("sh") + "/t"
    first, second = mqtt(), mqtt()
    for client in (first, second):
        ok(api.post("/mqtt/subscribe", json={"client_id": client.client_id,
                                             "topic": f"$share/g/{topic}", "qos": 1}))
        assert ok(api.get(f"/subscriptions/{client.client_id}")) == [
            {"node": "starling@127.0.0.1", "client_id": client.client_id,
             "topic": f"$share/g/{topic}", "qos": 1}]
    publisher = mqtt()
    for i in range(10):
        publisher.publish(topic, f"m{i}", 1)
    wait_until(lambda: first.messages.qsize() + second.messages.qsize() >= 10,
               message="10 messages shared")
    time.sleep(0.2)
    got = first.drain() + second.drain()
    assert sorted(m.payload for m in got) == sorted(f"m{i}".encode() for i in range(10))
    assert {m.topic for m in got} == {topic}
    ok(api.post("/mqtt/unsubscribe", json={"client_id": first.client_id,
                                           "topic": f"$share/g/{topic}"}))
    assert ok(api.get(f"/subscriptions/{first.client_id}")) == []


def test_batch_forms(api: Any, mqtt: Any) -> None:
    prefix = uid("batch")
    client = mqtt()
    nobody = uid("nobody")
    result = ok(api.post("/mqtt/subscribe_batch", json=[
        {"client_id": client.client_id, "topic": f"{prefix}/a", "qos": 1},
        {"client_id": client.client_id, "topics": f"{prefix}/b,{prefix}/c"},
        {"client_id": nobody, "topic": f"{prefix}/a"},
        {"client_id": client.client_id, "topic": "bad/#/filter"},
    ]))
    assert [r["code"] for r in result] == [0, 0, 112, 115]
    assert result[0]["client_id"] == client.client_id and result[0]["topic"] == f"{prefix}/a"
    assert result[1]["topics"] == f"{prefix}/b,{prefix}/c"
    assert sorted(s["topic"] for s in ok(api.get(f"/subscriptions/{client.client_id}"))) == [
        f"{prefix}/a", f"{prefix}/b", f"{prefix}/c"]
    result = ok(api.post("/mqtt/publish_batch", json=[
        {"topic": f"{prefix}/a", "payload": "1", "qos": 1},
        {"topics": f"{prefix}/b,{prefix}/c", "payload": "2"},
        {"topic": f"{prefix}/#", "payload": "bad"},
        {"topic": f"{prefix}/a", "qos": 7},
    ]))
    assert [r["code"] for r in result] == [0, 0, 115, 108]
    assert sorted((m.topic, m.payload) for m in client.get_many(3)) == [
        (f"{prefix}/a", b"1"), (f"{prefix}/b", b"2"), (f"{prefix}/c", b"2")]
    result = ok(api.post("/mqtt/unsubscribe_batch", json=[
        {"client_id": client.client_id, "topic": f"{prefix}/a"},
        {"client_id": nobody, "topic": f"{prefix}/b"},
    ]))
    assert [r["code"] for r in result] == [0, 112]
    assert sorted(s["topic"] for s in ok(api.get(f"/subscriptions/{client.client_id}"))) == [
        f"{prefix}/b", f"{prefix}/c"]
    err(api.post("/mqtt/publish_batch", json={"topic": "t"}), 400, 108)
    err(api.post("/mqtt/subscribe_batch", json=[1, 2]), 400, 108)
    assert ok(api.post("/mqtt/unsubscribe_batch", json=[])) == []


# -- brokers and nodes -------------------------------------------------------------------

def test_brokers(api_node: Any, api: Any) -> None:
    brokers = ok(api.get("/brokers/"))
    assert len(brokers) == 1
    b = brokers[0]
    assert set(b) == BROKER_FIELDS | {"node"}
    assert b["node"] == api_node.name and b["node_status"] == "Running"
    assert abs(local_epoch(b["datetime"]) - time.time()) < 5
    assert UPTIME.match(b["uptime"]), b["uptime"]
    assert b["sysdescr"] and b["version"] and b["otp_release"]
    one_node = ok(api.get(f"/brokers/{api_node.name}"))
    assert set(one_node) == BROKER_FIELDS
    assert one_node["version"] == b["version"]
    err(api.get("/brokers/other@host"), 404, 404)


def test_nodes(api_node: Any, api: Any, mqtt: Any) -> None:
    nodes = ok(api.get("/nodes/"))
    assert len(nodes) == 1
    n = nodes[0]
    assert set(n) == NODE_FIELDS | {"node"}
    assert n["node"] == n["name"] == api_node.name and n["node_status"] == "Running"
    for load in ("load1", "load5", "load15"):
        assert re.match(r"^\d+\.\d\d$", n[load]), n[load]
    for mem in ("memory_total", "memory_used"):  # the list form: "76.45M"
        assert re.match(r"^\d+(\.\d+)?[KMGTP]?$", n[mem]), n[mem]
    assert UPTIME.match(n["uptime"])
    node = ok(api.get(f"/nodes/{api_node.name}"))
    assert set(node) == NODE_FIELDS
    assert isinstance(node["memory_total"], int) and isinstance(node["memory_used"], int)
    assert 0 < node["memory_used"] < node["memory_total"]
    assert node["max_fds"] > 0 and node["process_available"] > 0
    assert 0 < node["process_used"] <= node["process_available"]
    count = ok(api.get(f"/nodes/{api_node.name}"))["connections"]
    mqtt()
    wait_until(lambda: ok(api.get(f"/nodes/{api_node.name}"))["connections"] == count + 1,
               message="connections + 1")
    err(api.get("/nodes/other@host"), 404, 404)


# -- listeners ---------------------------------------------------------------------------

def test_listeners(api_node: Any, api: Any, mqtt: Any) -> None:
    cluster = ok(api.get("/listeners/"))
    assert len(cluster) == 1 and cluster[0]["node"] == api_node.name
    listeners = cluster[0]["listeners"]
    assert all(set(x) == LISTENER_FIELDS for x in listeners)
    tcp = one(listeners, protocol="mqtt:tcp")
    assert tcp["listen_on"] == f"{api_node.host}:{api_node.port}"
    assert tcp["max_conns"] > 0 and tcp["acceptors"] > 0
    host, port = api_node.listeners["http:management"]
    http = one(listeners, protocol="http:management")
    assert http["listen_on"] == f"{host}:{port}"
    assert http["current_conns"] >= 1  # this very request
    assert http["shutdown_count"] == []
    node_form = ok(api.get(f"/nodes/{api_node.name}/listeners"))
    assert [x["protocol"] for x in node_form] == [x["protocol"] for x in listeners]
    err(api.get("/nodes/other@host/listeners"), 404, 404)


def test_listener_current_conns_moves(api_node: Any, api: Any, mqtt: Any) -> None:
    time.sleep(0.1)
    before = tcp_listener(api, api_node)["current_conns"]
    a = mqtt()
    b = mqtt()
    wait_until(lambda: tcp_listener(api, api_node)["current_conns"] == before + 2,
               message="current_conns + 2")
    a.disconnect()
    b.disconnect()
    wait_until(lambda: tcp_listener(api, api_node)["current_conns"] == before,
               message="current_conns back")


def test_listener_closed_reason_is_counted(api_node: Any, api: Any, mqtt: Any) -> None:
    def count(reason: str) -> int:
        shutdown = tcp_listener(api, api_node)["shutdown_count"]
        return shutdown.get(reason, 0) if isinstance(shutdown, dict) else 0

    normal = count("normal")
    mqtt().disconnect()  # DISCONNECT
    wait_until(lambda: count("normal") == normal + 1, message="shutdown_count.normal + 1")
    closed = count("closed")
    sock = socket.create_connection((api_node.host, api_node.port))
    sock.sendall(bytes([0x10, 0x0D, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 60, 0, 1]) + b"x")
    sock.recv(4)  # CONNACK
    sock.close()  # no DISCONNECT
    wait_until(lambda: count("closed") == closed + 1, message="shutdown_count.closed + 1")


# -- stats and metrics -----------------------------------------------------------------------

def test_stats(api_node: Any, api: Any, mqtt: Any) -> None:
    cluster = stats(api)
    assert cluster["node"] == api_node.name
    assert set(cluster) >= SEED_STATS, SEED_STATS - set(cluster)
    assert all(isinstance(v, int) for k, v in cluster.items() if k != "node")
    node_form = ok(api.get(f"/nodes/{api_node.name}/stats/"))
    assert set(node_form) == set(cluster) - {"node"}
    before = stats(api)
    client = mqtt(client_id=uid("stat"), clean_session=False)
    client.subscribe(uid("stat") + "/t", 0)
    after = stats(api)
    assert after["connections/count"] == before["connections/count"] + 1
    assert after["connections/max"] >= after["connections/count"]
    assert after["sessions/count"] == before["sessions/count"] + 1
    assert after["sessions/persistent/count"] == before["sessions/persistent/count"] + 1
    assert after["subscriptions/count"] == before["subscriptions/count"] + 1
    assert after["routes/count"] == before["routes/count"] + 1
    assert after["topics/count"] == after["routes/count"]
    for name in SEED_STATS:
        if name.endswith("/count"):
            assert after[name.replace("/count", "/max")] >= after[name], name
    ok(api.post("/mqtt/publish", json={"topic": uid("statr"), "payload": "r", "retain": True}))
    assert stats(api)["retained/count"] == after["retained/count"] + 1
    client.disconnect()
    wait_until(lambda: stats(api)["connections/count"] == before["connections/count"],
               message="connections/count back")
    ok(api.delete(f"/sessions/persistent/{client.client_id}"))
    assert stats(api)["sessions/count"] == before["sessions/count"]
    err(api.get("/nodes/other@host/stats/"), 404, 404)


def documented_extra_metrics() -> set[str]:
    """Metric names in docs/metrics.md's table of metrics beyond the seed."""
    text = (DOCS / "metrics.md").read_text()
    section = text.split("Beyond the seed", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z0-9_/]+)`", section, re.MULTILINE))


def test_metrics_key_set(api_node: Any, api: Any) -> None:
    cluster = ok(api.get("/metrics/"))
    assert len(cluster) == 1 and cluster[0]["node"] == api_node.name
    names = set(cluster[0]["metrics"])
    assert names >= SEED_METRICS, SEED_METRICS - names
    extras = names - SEED_METRICS
    undocumented = extras - documented_extra_metrics()
    assert not undocumented, f"metrics beyond the seed not in docs/metrics.md: {undocumented}"
    assert all(isinstance(v, int) and v >= 0 for v in cluster[0]["metrics"].values())
    node_form = ok(api.get(f"/nodes/{api_node.name}/metrics/"))
    assert set(node_form) == names
    err(api.get("/nodes/other@host/metrics/"), 404, 404)


def test_metrics_move(api: Any, mqtt: Any) -> None:
    before = metrics(api)
    topic = uid("met") + "/t"
    client = mqtt()
    client.subscribe(topic, 0)
    client.publish(topic, "x", qos=0)
    client.get()
    client.publish(uid("nosub"), "dropped", qos=0)
    client.unsubscribe(topic)
    client.disconnect()

    def moved() -> dict[str, int] | None:
        after = metrics(api)
        return after if after["packets/disconnect/received"] > \
            before["packets/disconnect/received"] else None

    after = wait_until(moved, message="DISCONNECT counted")
    delta = {k: after[k] - before[k] for k in before}
    assert delta["packets/connect"] == 1 and delta["packets/connack"] == 1
    assert delta["packets/subscribe"] == 1 and delta["packets/suback"] == 1
    assert delta["packets/unsubscribe"] == 1 and delta["packets/unsuback"] == 1
    assert delta["messages/qos0/received"] == 2 and delta["messages/qos0/sent"] == 1
    assert delta["messages/dropped"] == 1
    assert delta["packets/disconnect/received"] == 1
    assert delta["packets/received"] >= 6 and delta["packets/sent"] >= 4


def test_seed_field_sets_are_exact_for_connections_and_sessions(api: Any, mqtt: Any) -> None:
    client = mqtt()
    assert set(connection(api, client.client_id)) == CONNECTION_FIELDS
    assert set(session(api, client.client_id)) == SESSION_FIELDS


def test_proto_versions_side_by_side(api: Any, mqtt: Any) -> None:
    v31 = mqtt(protocol=MQTTv31)
    v311 = mqtt(protocol=MQTTv311)
    assert connection(api, v31.client_id)["proto_ver"] == 3
    assert connection(api, v311.client_id)["proto_ver"] == 4


def test_limits_are_reported_and_enforced(make_node: Any) -> None:
    node = make_node({"management.bind": "127.0.0.1:0", "api.default_app_secret": "s",
                      "session.max_mqueue_len": "2", "session.max_inflight": "4",
                      "listeners.tcp.default.max_connections": "2"})
    clients: list[PahoClient] = []
    try:
        with node.api(auth=("admin", "s")) as api:
            tcp = one(ok(api.get(f"/nodes/{node.name}/listeners")), protocol="mqtt:tcp")
            assert tcp["max_conns"] == 2
            topic = uid("lim") + "/t"
            sub = PahoClient(node.host, node.port, client_id=uid("lim"), clean_session=False)
            clients.append(sub)
            sub.connect()
            sub.subscribe(topic, 1)
            s = session(api, sub.client_id)
            assert (s["max_mqueue"], s["max_inflight"]) == (2, 4)
            sub.disconnect()
            wait_until(lambda: ok(api.get(f"/connections/{sub.client_id}")) == [],
                       message="connection gone")
            dropped = metrics(api)["messages/dropped"]
            for i in range(5):
                ok(api.post("/mqtt/publish", json={"topic": topic, "payload": f"{i}",
                                                   "qos": 1}))
            s = session(api, sub.client_id)
            assert (s["mqueue_len"], s["mqueue_dropped"]) == (2, 3), s
            assert metrics(api)["messages/dropped"] - dropped == 3
            # max_conns: the third connection is closed at once
            for _ in range(2):
                clients.append(PahoClient(node.host, node.port))
                clients[-1].connect()
            wait_until(lambda: one(ok(api.get("/listeners/"))[0]["listeners"],
                                   protocol="mqtt:tcp")["current_conns"] == 2,
                       message="2 connections")
            sock = socket.create_connection((node.host, node.port))
            sock.settimeout(5)
            sock.sendall(bytes([0x10, 0x0D, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 60, 0, 1])
                         + b"z")
            with contextlib.suppress(ConnectionResetError):
                assert sock.recv(4) == b""  # closed without CONNACK
            sock.close()
            assert one(ok(api.get("/listeners/"))[0]["listeners"],
                       protocol="mqtt:tcp")["current_conns"] == 2
            assert stats(api)["connections/count"] == 2
    finally:
        for client in clients:
            client.close()
