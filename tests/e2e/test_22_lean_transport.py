"""Plain TCP over both transports a listener can use (`listeners.tcp.*.transport`):
`lean` (one epoll per listener, a small transport per socket,
starling/transport/lean.py; the default when the hot path runs compiled) and `loop`
(the event loop's own, uvloop's), with real clients, the same expectations for both:

- paho-mqtt publish/subscribe at QoS 0, 1 and 2, every message once and in order;
  mosquitto_pub / mosquitto_sub;
- a message larger than the socket takes at once (partial writes, then the rest
  when the socket is writable);
- a subscriber that stops reading: the node stops writing to it (the transport's
  pause_writing) and queues in its session instead of its socket buffer; once
  it reads again, it gets every message in order (resume_writing);
- a peer that resets (RST): its will is published, the connection is gone;
- a peer that half-closes after a PUBLISH: the PUBACK still reaches it, the
  message is delivered, then the node closes;
- keepalive timeout, a kick through the API, `max_connections`.
"""

from __future__ import annotations

import socket
import struct
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from helpers.api import ok
from helpers.clients import Clients, uid, wait_until
from helpers.packets import (
    PUBLISH,
    RawClient,
    Will,
    gen_connect,
    gen_puback,
    gen_publish,
    parse_publish,
)

pytestmark = pytest.mark.usefixtures("require_starling")

TRANSPORTS = ["lean", "loop"]
API = {
    "management.bind": "127.0.0.1:0",
    "api.default_app_id": "admin",
    "api.default_app_secret": "test-secret",
}


def start(make_node: Callable[..., Any], transport: str, **settings: str) -> Any:
    return make_node({**API, "listeners.tcp.default.transport": transport, **settings})


def connections(node: Any) -> list[dict[str, Any]]:
    with node.api() as api:
        return list(ok(api.get("/connections")))


@pytest.mark.parametrize("qos", [0, 1, 2])
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_paho_publish_subscribe(make_node: Any, clients: Clients, transport: str,
                                qos: int) -> None:
    node = start(make_node, transport)
    topic = uid("lean/t")
    sub = clients(node, uid("sub"))
    sub.subscribe(topic, qos)
    pub = clients(node, uid("pub"))
    for i in range(200):
        pub.publish(topic, f"m{i}".encode(), qos=qos)
    got = sub.get_many(200, timeout=20)
    assert [m.payload for m in got] == [f"m{i}".encode() for i in range(200)]
    assert {m.qos for m in got} == {qos}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_mosquitto_clients(make_node: Any, transport: str) -> None:
    node = start(make_node, transport)
    topic, sub_id = uid("lean/mosq"), uid("mosqsub")
    sub = subprocess.Popen(
        ["mosquitto_sub", "-h", node.host, "-p", str(node.port), "-i", sub_id,
         "-t", topic, "-q", "2", "-C", "3", "-W", "20"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with node.api() as api:
            wait_until(lambda: ok(api.get(f"/subscriptions/{sub_id}")), timeout=10,
                       message="mosquitto_sub subscribed")
        for qos in (0, 1, 2):
            sent = subprocess.run(
                ["mosquitto_pub", "-h", node.host, "-p", str(node.port), "-t", topic,
                 "-q", str(qos), "-m", f"at qos {qos}"],
                capture_output=True, text=True, timeout=20)
            assert sent.returncode == 0, sent.stderr
        out, err = sub.communicate(timeout=20)
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.communicate()
    assert sub.returncode == 0, err
    assert out.splitlines() == ["at qos 0", "at qos 1", "at qos 2"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_large_message(make_node: Any, clients: Clients, transport: str) -> None:
    node = start(make_node, transport, **{"mqtt.max_packet_size": "16MB"})
    topic = uid("lean/big")
    sub = clients(node, uid("sub"))
    sub.subscribe(topic, 1)
    body = bytes(range(256)) * (12 * 1024 * 1024 // 256)  # 12 MiB
    clients(node, uid("pub")).publish(topic, body, qos=1)
    assert sub.get(timeout=30).payload == body


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_slow_reader_is_paused_then_drained_in_order(make_node: Any, transport: str) -> None:
    """64 messages of 64 KiB (4 MiB) to a subscriber that does not read: the node's
    write buffer for it stays bounded (it pauses; the session queues the rest);
    once it reads, every message arrives, in order."""
    node = start(make_node, transport, **{"session.max_mqueue_len": "0",
                                          "session.max_mqueue_bytes": "0"})
    topic, sub_id = uid("lean/slow"), uid("slow")
    reader = RawClient(node.host, node.port, timeout=30, rcvbuf=4096)
    count, size = 64, 64 * 1024
    try:
        reader.connect(sub_id)
        reader.subscribe(1, topic, 1)
        with RawClient(node.host, node.port, timeout=30) as publisher:
            publisher.connect(uid("pub"))
            for i in range(count):
                publisher.send(gen_publish(topic, qos=1, mid=i + 1,
                                           payload=struct.pack(">I", i) + bytes(size - 4)))
                publisher.expect_packet(gen_puback(i + 1))

        with node.api() as api:
            session = ok(api.get(f"/sessions/{sub_id}"))[0]
            conn = ok(api.get(f"/connections/{sub_id}"))[0]
        assert session["mqueue_len"] > 0, session  # held back in the session...
        assert conn["send_pend"] < 1024 * 1024, conn  # ...not in the socket's buffer

        seen = []
        for _ in range(count):
            publish = reader.expect_publish(timeout=30)
            seen.append(struct.unpack(">I", publish.payload[:4])[0])
            reader.send(gen_puback(publish.mid))
        assert seen == list(range(count))
    finally:
        reader.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_reset_by_peer_publishes_the_will(make_node: Any, clients: Clients,
                                          transport: str) -> None:
    node = start(make_node, transport)
    will_topic, victim = uid("lean/will"), uid("victim")
    watcher = clients(node, uid("watch"))
    watcher.subscribe(will_topic, 1)
    raw = RawClient(node.host, node.port)
    raw.send(gen_connect(victim, will=Will(will_topic, b"reset", qos=1)))
    raw.read()  # CONNACK
    raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    raw.close()  # RST
    assert watcher.get(timeout=5).payload == b"reset"
    wait_until(lambda: all(c["client_id"] != victim for c in connections(node)),
               message="the reset connection is gone")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_half_close_after_publish(make_node: Any, clients: Clients, transport: str) -> None:
    node = start(make_node, transport)
    topic = uid("lean/half")
    sub = clients(node, uid("sub"))
    sub.subscribe(topic, 1)
    raw = RawClient(node.host, node.port)
    try:
        raw.connect(uid("half"))
        raw.send(gen_publish(topic, qos=1, mid=7, payload=b"then EOF"))
        raw.sock.shutdown(socket.SHUT_WR)
        raw.expect_packet(gen_puback(7))
        raw.expect_closed()
    finally:
        raw.close()
    assert sub.get(timeout=5).payload == b"then EOF"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_keepalive_timeout(make_node: Any, clients: Clients, transport: str) -> None:
    node = start(make_node, transport)
    will_topic = uid("lean/ka")
    watcher = clients(node, uid("watch"))
    watcher.subscribe(will_topic, 1)
    with RawClient(node.host, node.port) as raw:
        raw.send(gen_connect(uid("ka"), keepalive=1, will=Will(will_topic, b"silent", qos=1)))
        raw.read()  # CONNACK
        raw.expect_closed(timeout=5)
    assert watcher.get(timeout=5).payload == b"silent"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_kick(make_node: Any, clients: Clients, transport: str) -> None:
    node = start(make_node, transport)
    victim = clients(node, uid("kicked"))
    with node.api() as api:
        ok(api.delete(f"/connections/{victim.client_id}"))
    victim.wait_disconnected(timeout=5)
    wait_until(lambda: all(c["client_id"] != victim.client_id for c in connections(node)))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_max_connections(make_node: Any, transport: str) -> None:
    node = start(make_node, transport, **{"listeners.tcp.default.max_connections": "1"})
    with RawClient(node.host, node.port) as first, RawClient(node.host, node.port) as second:
        first.connect(uid("first"))
        second.send(gen_connect(uid("second")))
        second.expect_closed()
        first.ping()
    with node.api() as api:
        row = next(r for r in ok(api.get("/listeners"))[0]["listeners"]
                   if r["listen_on"] == f"{node.host}:{node.port}")
    assert row["shutdown_count"].get("max_conns") == 1, row


def test_publish_on_lean_reaches_a_loop_listener(make_node: Any, clients: Clients) -> None:
    """Two listeners, one of each transport, in one node: messages cross between them."""
    node = make_node({**API, "listeners.tcp.old.bind": "127.0.0.1:0",
                      "listeners.tcp.old.transport": "loop"})
    host, port = node.listeners["mqtt:tcp:old"]
    topic = uid("lean/cross")
    with RawClient(host, port) as sub:
        sub.connect(uid("onloop"))
        sub.subscribe(1, topic, 0)
        clients(node, uid("onlean")).publish(topic, b"across", qos=1)
        got = sub.expect_type(PUBLISH)
        assert parse_publish(got).payload == b"across"
