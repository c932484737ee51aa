"""/configs: the runtime-changeable settings (facts §5.8), changed on a live node
and observed with real MQTT clients, without a restart."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from helpers.api import err, ok
from helpers.clients import uid, wait_until
from helpers.nodes import restart
from helpers.packets import (
    CONNACK_REFUSED_NOT_AUTHORIZED,
    RawClient,
    gen_puback,
    gen_publish,
)

RUNTIME_KEYS = {
    "mqtt.max_packet_size", "mqtt.max_clientid_len", "mqtt.max_topic_levels",
    "mqtt.allow_anonymous", "mqtt.keepalive_multiplier", "mqtt.idle_timeout",
    "mqtt.retain_available", "session.expiry_interval", "session.max_inflight",
    "session.max_mqueue_len", "session.max_mqueue_bytes",
    "session.mqueue_store_qos0", "session.max_awaiting_rel",
    "session.await_rel_timeout", "session.retry_interval", "broker.sys_interval",
    "broker.sys_heartbeat", "broker.presence_qos",
}


def values(api: httpx.Client) -> dict[str, str]:
    return {item["key"]: item["value"] for item in ok(api.get("/configs/"))[0]["config"]}


def put(api: httpx.Client, key: str, value: Any, app: str = "emqx") -> httpx.Response:
    return api.put(f"/configs/{app}", json={"key": key, "value": value})


@contextlib.contextmanager
def changed(api: httpx.Client, key: str, value: Any) -> Iterator[None]:
    """Set a key for the block, then put the old value back (the node is shared)."""
    old = values(api)[key]
    ok(put(api, key, value))
    try:
        yield
    finally:
        ok(put(api, key, old))


def raw(node: Any) -> RawClient:
    return RawClient(node.host, node.port)


def read_publishes(client: RawClient, timeout: float = 0.6) -> list[Any]:
    """Every PUBLISH that arrives until `timeout` passes without one."""
    got = []
    while True:
        try:
            got.append(client.expect_publish(timeout))
        except AssertionError:
            return got


# -- reading -------------------------------------------------------------------------------

def test_cluster_and_node_forms(api_node: Any, api: httpx.Client) -> None:
    data = ok(api.get("/configs/"))
    assert len(data) == 1 and data[0]["node"] == api_node.name
    items = data[0]["config"]
    assert {i["key"] for i in items} == RUNTIME_KEYS
    for item in items:
        # EMQ X's own spelling of the field: datatpye
        assert set(item) == {"key", "value", "datatpye", "app"}
        assert item["app"] == "emqx"
        assert all(isinstance(v, str) for v in item.values())
    assert ok(api.get(f"/nodes/{api_node.name}/configs/")) == items
    assert ok(api.get(f"/nodes/{api_node.name}/configs")) == items


def test_values_and_datatypes(api: httpx.Client) -> None:
    items = {i["key"]: i for i in ok(api.get("/configs/"))[0]["config"]}
    assert items["session.max_inflight"] == {"key": "session.max_inflight", "value": "32",
                                             "datatpye": "integer", "app": "emqx"}
    assert items["mqtt.max_packet_size"]["value"] == "1MB"
    assert items["mqtt.max_packet_size"]["datatpye"] == "bytesize"
    assert items["session.expiry_interval"]["value"] == "2h"
    assert items["session.expiry_interval"]["datatpye"] == "duration"
    assert items["mqtt.allow_anonymous"]["value"] == "true"
    assert items["mqtt.allow_anonymous"]["datatpye"] == "flag"
    assert items["mqtt.keepalive_multiplier"]["datatpye"] == "float"


def test_unknown_node(api: httpx.Client) -> None:
    err(api.get("/nodes/other@host/configs/"), 404, 404)
    err(api.put("/nodes/other@host/configs/emqx",
                json={"key": "session.max_inflight", "value": "8"}), 404, 404)


# -- changing: what clients see ------------------------------------------------------------

def test_max_inflight_applies_at_once(api_node: Any, api: httpx.Client, mqtt: Any) -> None:
    """Lower session.max_inflight: a client connecting afterwards gets the new window,
    and so does a session that existed before; widening it again drains the queue."""
    topic = uid("inflight")
    before, after = uid("before"), uid("after")
    publisher = mqtt()
    with raw(api_node) as old, raw(api_node) as new:
        old.connect(before)
        old.subscribe(1, topic, 1)
        with changed(api, "session.max_inflight", "2"):
            assert values(api)["session.max_inflight"] == "2"
            new.connect(after)
            new.subscribe(1, topic, 1)
            for i in range(5):
                publisher.publish(topic, f"m{i}", qos=1)
            for client in (new, old):
                got = read_publishes(client)
                assert [p.payload for p in got] == [b"m0", b"m1"], "window of 2"
            sessions = {s["client_id"]: s for s in ok(api.get("/sessions/"))}
            assert sessions[after]["max_inflight"] == 2
            assert sessions[after]["inflight_len"] == 2
            assert sessions[after]["mqueue_len"] == 3
            # acknowledging one makes room for exactly one more
            first = read_publishes(new, 0.01)
            assert first == []
            new.send(gen_puback(1))
            assert [p.payload for p in read_publishes(new)] == [b"m2"]
            # a wider window takes the queued messages without any acknowledgement
            ok(put(api, "session.max_inflight", "10"))
            assert [p.payload for p in read_publishes(old)] == [b"m2", b"m3", b"m4"]
            assert [p.payload for p in read_publishes(new)] == [b"m3", b"m4"]
    assert values(api)["session.max_inflight"] == "32"


def test_lower_max_mqueue_len_trims_an_offline_session(api_node: Any, api: httpx.Client,
                                                       mqtt: Any) -> None:
    topic, client_id = uid("mqueue"), uid("offline")
    with raw(api_node) as c:
        c.connect(client_id, clean=False)
        c.subscribe(1, topic, 1)
        c.disconnect()
    publisher = mqtt()
    for i in range(5):
        publisher.publish(topic, f"q{i}", qos=1)

    def session() -> dict[str, Any]:
        return ok(api.get(f"/sessions/{client_id}"))[0]

    wait_until(lambda: session()["mqueue_len"] == 5, message="5 queued")
    try:
        with changed(api, "session.max_mqueue_len", "2"):
            s = session()
            assert (s["mqueue_len"], s["max_mqueue"], s["mqueue_dropped"]) == (2, 2, 3)
            with raw(api_node) as c:  # the newest two are what is left
                c.connect(client_id, clean=False, session_present=True)
                assert [p.payload for p in read_publishes(c)] == [b"q3", b"q4"]
    finally:
        api.delete(f"/sessions/persistent/{client_id}")


def test_max_packet_size_applies_to_new_connections(api_node: Any, api: httpx.Client) -> None:
    big = b"x" * 300
    with raw(api_node) as existing:
        existing.connect(uid("big-old"))
        with changed(api, "mqtt.max_packet_size", "100"):
            assert values(api)["mqtt.max_packet_size"] == "100"
            with raw(api_node) as fresh:
                fresh.connect(uid("big-new"))
                fresh.send(gen_publish(uid("t"), qos=1, payload=big, mid=1))
                fresh.expect_closed()
            # a connection made before the change keeps the limit it started with
            existing.send(gen_publish(uid("t"), qos=1, payload=big, mid=7))
            existing.expect_packet(gen_puback(7))
    with raw(api_node) as after:
        after.connect(uid("big-after"))
        after.send(gen_publish(uid("t"), qos=1, payload=big, mid=2))
        after.expect_packet(gen_puback(2))


def test_allow_anonymous_applies_to_the_next_connect(api_node: Any, api: httpx.Client,
                                                     mqtt: Any) -> None:
    connected = mqtt()
    with changed(api, "mqtt.allow_anonymous", "false"):
        assert values(api)["mqtt.allow_anonymous"] == "false"
        with raw(api_node) as c:
            c.connect(uid("anon"), expect_rc=CONNACK_REFUSED_NOT_AUTHORIZED)
        assert connected.is_connected()  # who is in stays in
    with raw(api_node) as c:
        c.connect(uid("anon"))


def test_sys_interval_restarts_the_sys_timers(api_node: Any, api: httpx.Client,
                                              mqtt: Any) -> None:
    """Default 1m; set to 1s, $SYS stats arrive every second at once."""
    watcher = mqtt()
    topic = f"$SYS/brokers/{api_node.name}/stats/connections/count"
    watcher.subscribe(topic, 0)
    with changed(api, "broker.sys_interval", "1s"):
        assert values(api)["broker.sys_interval"] == "1s"
        watcher.drain()
        watcher.get(timeout=3, topic=topic)
        watcher.get(timeout=3, topic=topic)


def test_json_numbers_and_booleans_are_accepted(api: httpx.Client) -> None:
    with changed(api, "session.max_inflight", 16):
        assert values(api)["session.max_inflight"] == "16"
    with changed(api, "mqtt.retain_available", False):
        assert values(api)["mqtt.retain_available"] == "false"
    with changed(api, "session.expiry_interval", "90s"):
        assert values(api)["session.expiry_interval"] == "90s"
    with changed(api, "session.await_rel_timeout", "0.5"):
        assert values(api)["session.await_rel_timeout"] == "500ms"


def test_node_form_update(api_node: Any, api: httpx.Client) -> None:
    path = f"/nodes/{api_node.name}/configs/emqx"
    try:
        ok(api.put(path, json={"key": "mqtt.max_topic_levels", "value": "4"}))
        assert values(api)["mqtt.max_topic_levels"] == "4"
    finally:
        ok(api.put(path, json={"key": "mqtt.max_topic_levels", "value": "0"}))


def test_query_string_parameters_work_too(api: httpx.Client) -> None:
    try:
        ok(api.put("/configs/emqx", params={"key": "broker.presence_qos", "value": "0"}))
        assert values(api)["broker.presence_qos"] == "0"
    finally:
        ok(put(api, "broker.presence_qos", "1"))


# -- refusals ------------------------------------------------------------------------------

@pytest.mark.parametrize(("key", "value"), [
    ("session.max_inflight", "many"),
    ("session.max_inflight", "1.5"),
    ("session.max_inflight", "-1"),
    ("session.max_inflight", "65536"),
    ("session.max_mqueue_len", "-3"),
    ("session.expiry_interval", "forever"),
    ("session.expiry_interval", "-1s"),
    ("mqtt.max_packet_size", "0"),
    ("mqtt.max_packet_size", "1TB"),
    ("mqtt.allow_anonymous", "perhaps"),
    ("mqtt.keepalive_multiplier", "0"),
    ("mqtt.keepalive_multiplier", "nan"),
    ("broker.presence_qos", "3"),
    ("session.max_inflight", ["1"]),
    ("session.max_inflight", {"v": 1}),
])
def test_bad_values_are_108_and_change_nothing(api: httpx.Client, key: str,
                                               value: Any) -> None:
    before = values(api)
    err(put(api, key, value), 400, 108)
    assert values(api) == before


@pytest.mark.parametrize("key", ["session.max_inflght", "zone.external.max_inflight", "x"])
def test_unknown_key_is_102(api: httpx.Client, key: str) -> None:
    assert key in err(put(api, key, "1"), 400, 102)["message"]


@pytest.mark.parametrize("key", ["node.name", "management.bind", "listeners.tcp.default.bind",
                                 "store.backend"])
def test_startup_only_key_is_102_and_says_so(api: httpx.Client, key: str) -> None:
    assert "restart" in err(put(api, key, "x"), 400, 102)["message"]


def test_unknown_app_is_404(api: httpx.Client) -> None:
    err(put(api, "session.max_inflight", "8", app="emqx_retainer"), 404, 102)


@pytest.mark.parametrize("body", [{}, {"key": "session.max_inflight"}, {"value": "8"},
                                  {"key": "", "value": "8"}, {"key": "session.max_inflight",
                                                              "value": ""}])
def test_missing_parameters_are_107(api: httpx.Client, body: dict[str, str]) -> None:
    err(api.put("/configs/emqx", json=body), 400, 107)


def test_key_must_be_a_string(api: httpx.Client) -> None:
    err(api.put("/configs/emqx", json={"key": 5, "value": "8"}), 400, 108)


# -- not persisted -------------------------------------------------------------------------

def test_a_runtime_change_lasts_until_restart(make_node: Any) -> None:
    """As in EMQ X: PUT /configs is not written back; the configuration wins at start."""
    node = make_node({"management.bind": "127.0.0.1:0", "api.default_app_secret": "s",
                      "session.max_inflight": "20"})
    with node.api(auth=("admin", "s")) as client:
        ok(put(client, "session.max_inflight", "3"))
        assert values(client)["session.max_inflight"] == "3"
    restart(node)
    with node.api(auth=("admin", "s")) as client:
        assert values(client)["session.max_inflight"] == "20"


def test_window_never_exceeds_an_mqtt5_receive_maximum(api_node: Any, api: httpx.Client,
                                                       mqtt: Any) -> None:
    """Raising session.max_inflight at runtime keeps an MQTT 5.0 client's Receive
    Maximum: the server must not have more unacknowledged QoS 1/2 PUBLISHes out."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    client_id, topic = uid("v5"), uid("rmax")
    received: list[bytes] = []
    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                         client_id=client_id, protocol=paho.MQTTv5, manual_ack=True)
    client.on_message = lambda _c, _u, msg: received.append(bytes(msg.payload))
    props = Properties(PacketTypes.CONNECT)
    props.ReceiveMaximum = 2
    client.connect(api_node.host, api_node.port, properties=props, clean_start=True)
    client.loop_start()
    try:
        wait_until(client.is_connected, message="v5 connect")
        client.subscribe(topic, 1)
        wait_until(lambda: ok(api.get(f"/subscriptions/{client_id}")), message="subscribed")
        with changed(api, "session.max_inflight", "10"):
            publisher = mqtt()
            for i in range(5):
                publisher.publish(topic, f"m{i}", qos=1)
            wait_until(lambda: len(received) == 2, message="2 messages")
            session = ok(api.get(f"/sessions/{client_id}"))[0]
            assert session["max_inflight"] == 2
            assert (session["inflight_len"], session["mqueue_len"]) == (2, 3)
    finally:
        client.disconnect()
        client.loop_stop()
