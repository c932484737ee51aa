"""Zones: a listener's zone gives its clients their own MQTT settings
(`zone.<name>.<field>` over the node-wide values) and per-client rate limits."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.conftest import API_SETTINGS
from tests.helpers.clients import PahoClient, uid
from tests.helpers.packets import RawClient, gen_publish

INTERNAL = {"listeners.tcp.internal.bind": "127.0.0.1:0"}


def port_of(node: Any, listener: str) -> tuple[str, int]:
    return node.listeners[listener]


def paho(node: Any, listener: str, **kwargs: Any) -> PahoClient:
    host, port = port_of(node, listener)
    return PahoClient(host, port, **kwargs)


def test_allow_anonymous_per_zone(make_node) -> None:
    node = make_node({**INTERNAL, "mqtt.allow_anonymous": "false",
                      "zone.internal.allow_anonymous": "true"})
    inside, outside = paho(node, "mqtt:tcp:internal"), paho(node, "mqtt:tcp:default")
    try:
        assert inside.connect()[0] == 0
        assert outside.connect(expect_rc=None)[0] in (5, 135)
    finally:
        inside.close()
        outside.close()


def test_max_packet_size_per_zone(make_node) -> None:
    node = make_node({**INTERNAL, "zone.internal.max_packet_size": "100"})
    big = gen_publish("zone/big", payload=b"x" * 200)
    with RawClient(*port_of(node, "mqtt:tcp:default")) as outside:
        outside.connect(uid("out"))
        outside.send(big)
        outside.ping()  # still connected
    with RawClient(*port_of(node, "mqtt:tcp:internal")) as inside:
        inside.connect(uid("in"))
        inside.send(big)
        with pytest.raises(AssertionError, match="connection closed"):
            inside.ping()


def test_session_limits_per_zone(make_node) -> None:
    node = make_node({**API_SETTINGS, **INTERNAL, "zone.internal.max_inflight": "3",
                      "zone.internal.max_mqueue_len": "7"})
    inside = paho(node, "mqtt:tcp:internal", clean_session=False)
    outside = paho(node, "mqtt:tcp:default", clean_session=False)
    try:
        inside.connect()
        outside.connect()
        with node.api() as api:
            sessions = {s["client_id"]: s for s in api.get("/sessions/").json()["data"]}
        assert sessions[inside.client_id]["max_inflight"] == 3
        assert sessions[inside.client_id]["max_mqueue"] == 7
        assert sessions[outside.client_id]["max_inflight"] == 32
        assert sessions[outside.client_id]["max_mqueue"] == 1000
    finally:
        inside.close()
        outside.close()


def test_enable_ban_off_lets_banned_clients_of_the_zone_in(make_node) -> None:
    node = make_node({**API_SETTINGS, **INTERNAL, "zone.internal.enable_ban": "false"})
    client_id = uid("banned")
    with node.api() as api:
        body = api.post("/banned/", json={"who": client_id, "as": "client_id",
                                          "until": int(time.time()) + 3600}).json()
        assert body["code"] == 0, body
    outside = paho(node, "mqtt:tcp:default", client_id=client_id)
    inside = paho(node, "mqtt:tcp:internal", client_id=client_id)
    try:
        assert outside.connect(expect_rc=None)[0] in (5, 135, 138)
        assert inside.connect()[0] == 0
    finally:
        outside.close()
        inside.close()


def test_unknown_zone_field_is_a_config_error(make_node) -> None:
    with pytest.raises(RuntimeError, match=r"zone\.internal\.max_nonsense"):
        make_node({"zone.internal.max_nonsense": "1"})


def send_bursts(pub: RawClient, topic: str, payload: bytes = b"", pause: float = 0.0) -> None:
    """Six writes of ten QoS 0 publishes each, numbered 0..59 after `payload`."""
    for burst in range(6):
        pub.send(b"".join(gen_publish(topic, payload=payload + b"%d" % (burst * 10 + i))
                          for i in range(10)))
        time.sleep(pause)


@pytest.mark.parametrize("limit, payload", [
    ({"zone.internal.publish_limit": "10,1s"}, b"x"),
    ({"zone.internal.rate_limit.conn_bytes_in": "2KB,1s"}, b"x" * 200),
])
def test_rate_limits_slow_a_client_down_without_losing_anything(make_node, limit, payload) -> None:
    """Six bursts of ten publishes, far over the budget: every message arrives, and
    the client is held back (the last arrives seconds after the first, not at once)."""
    node = make_node({**INTERNAL, **limit})
    topic = uid("limited")
    sub = paho(node, "mqtt:tcp:default")
    try:
        sub.connect()
        sub.subscribe(topic)
        with RawClient(*port_of(node, "mqtt:tcp:internal")) as pub:
            pub.connect(uid("pub"))
            started = time.monotonic()
            send_bursts(pub, topic, payload, pause=0.05)
            got = sub.get_many(60, timeout=30)
            elapsed = time.monotonic() - started
        assert sorted(int(m.payload[len(payload):]) for m in got) == list(range(60))
        assert elapsed > 2.0, f"60 messages at 10/s (burst 10) took only {elapsed:.2f}s"
    finally:
        sub.close()


def test_unlimited_zone_is_not_slowed(make_node) -> None:
    node = make_node({**INTERNAL, "zone.internal.publish_limit": "10,1s"})
    topic = uid("free")
    sub = paho(node, "mqtt:tcp:default")
    try:
        sub.connect()
        sub.subscribe(topic)
        with RawClient(*port_of(node, "mqtt:tcp:default")) as pub:
            pub.connect(uid("pub"))
            send_bursts(pub, topic)
            assert len(sub.get_many(60, timeout=30)) == 60
            pub.ping(timeout=2)
    finally:
        sub.close()
