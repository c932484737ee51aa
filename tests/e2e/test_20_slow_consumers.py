"""Slow and stuck consumers (docs/reliability.md): a subscriber that stops reading,
over TCP and over WebSocket, while a publisher pushes 64 KiB messages to its topic.

What must hold: the node's memory stays bounded by `session.max_mqueue_bytes`
(here 1 MB, with no limit on the number of messages, so only the byte limit
bounds it: without it the stuck session would keep every message, 128 MB); the
drops are counted; a bystander subscriber on the same topic gets every message,
in order; the probe pair of an unrelated topic keeps getting its messages
through while a publisher floods the node with small packets (not starved); and
a publisher whose socket holds more than its read budget yields the event loop
to another after each read (the order the node handled two bursts in).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import itertools
import os
import signal
import socket
import struct
import termios
import threading
from collections.abc import Callable
from typing import Any

import pytest
from helpers.api import ok
from helpers.clients import Clients, PahoClient, uid, wait_until
from helpers.nodes import ON_MOSQUITTO, rss_kib
from helpers.packets import (
    RawClient,
    gen_connect,
    gen_publish,
    gen_subscribe,
)

pytestmark = pytest.mark.skipif(ON_MOSQUITTO, reason="Starling's own limits and metrics")

PAYLOAD = 64 * 1024
MESSAGES = 2000  # 128 MB past the stuck subscriber
#: The publisher waits for the bystander every WINDOW messages.  A window (512 KiB)
#: fits the bystander's queue (1 MB): its socket may still be paused when the next
#: window arrives (the write-ready event not handled yet), and the window then waits
#: in the queue, all of it.
WINDOW = 8
#: RSS the node may gain while MESSAGES flow past a stuck subscriber (the queue's
#: 1 MB, socket buffers of 256 KiB a connection, allocator slack).
RSS_GROWTH_LIMIT_KIB = 48 * 1024

SETTINGS = {
    "session.max_mqueue_bytes": "1MB",
    "session.max_mqueue_len": "0",
    "listeners.ws.default.bind": "127.0.0.1:0",
    "management.bind": "127.0.0.1:0",
    "api.default_app_id": "admin",
    "api.default_app_secret": "test-secret",
}


@pytest.fixture
def slow_node(make_node: Callable[..., Any]) -> Any:
    return make_node(SETTINGS)


def metrics(node: Any) -> dict[str, int]:
    with node.api() as api:
        data = ok(api.get("/metrics"))
    return dict(data[0]["metrics"])


# -- stuck clients: subscribe, then never read again -------------------------------------

def stuck_tcp(node: Any, client_id: str, topic: str, qos: int) -> RawClient:
    client = RawClient(node.host, node.port, rcvbuf=4096)
    client.connect(client_id)
    client.subscribe(1, topic, qos)
    return client


class StuckWebSocket:
    """A WebSocket client on a raw socket (a library client would keep reading in
    the background): the upgrade, CONNECT and SUBSCRIBE in masked binary frames,
    their answers read, then nothing is read again."""

    def __init__(self, node: Any, client_id: str, topic: str, qos: int) -> None:
        host, port = node.listeners["mqtt:ws:default"]
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(10)
        self.sock.connect((host, port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET /mqtt HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n".encode())
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.sock.recv(1)
            assert chunk, "closed during the upgrade"
            response += chunk
        assert response.startswith(b"HTTP/1.1 101"), response
        self._send(gen_connect(client_id))
        assert self._frame()[:2] == b"\x20\x02"  # CONNACK
        self._send(gen_subscribe(1, topic, qos))
        assert self._frame()[0] == 0x90  # SUBACK

    def _send(self, data: bytes) -> None:
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        assert len(data) < 126
        self.sock.sendall(bytes([0x82, 0x80 | len(data)]) + mask + masked)

    def _recv(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            assert chunk, "closed"
            data += chunk
        return data

    def _frame(self) -> bytes:
        head = self._recv(2)
        size = head[1] & 0x7F
        if size == 126:
            size = struct.unpack("!H", self._recv(2))[0]
        return self._recv(size)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


# -- the flow -----------------------------------------------------------------------------

def push_past(node: Any, bystander: PahoClient, topic: str, qos: int) -> int:
    """MESSAGES of PAYLOAD bytes to `topic`, WINDOW at a time: the next window goes
    once the bystander has the last one, so the bystander is never the slow one.
    Returns how many the bystander got, each checked to be the next in order."""
    body = b"x" * (PAYLOAD - 8)
    expected = 0
    with RawClient(node.host, node.port, timeout=30) as publisher:
        publisher.connect(uid("pub"))
        for start in range(0, MESSAGES, WINDOW):
            batch = b"".join(
                gen_publish(topic, qos, struct.pack("!Q", n) + body,
                            mid=(n % 65535) + 1 if qos else None)
                for n in range(start, min(start + WINDOW, MESSAGES)))
            publisher.send(batch)
            if qos:
                for _ in range(min(WINDOW, MESSAGES - start)):
                    publisher.expect_type(4, timeout=30)  # PUBACK: the stuck one holds nobody
            for received in bystander.get_many(min(WINDOW, MESSAGES - start), timeout=30):
                assert struct.unpack("!Q", received.payload[:8])[0] == expected
                expected += 1
    return expected


STUCK: dict[str, Callable[[Any, str, str, int], Any]] = {
    "tcp": stuck_tcp,
    "ws": StuckWebSocket,
}


@pytest.mark.timeout(240)
@pytest.mark.parametrize(("transport", "qos"), [("tcp", 0), ("tcp", 1), ("ws", 0)])
def test_stuck_subscriber_memory_is_bounded(slow_node: Any, clients: Clients, transport: str,
                                            qos: int) -> None:
    topic = uid("stuck")
    stuck_id = uid(f"stuck-{transport}")
    bystander = clients(slow_node, uid("bystander"))
    bystander.subscribe(topic, qos)
    stuck = STUCK[transport](slow_node, stuck_id, topic, qos)
    try:
        dropped_before = metrics(slow_node)["delivery/dropped/queue_full"]
        rss_before = rss_kib(slow_node)
        got = push_past(slow_node, bystander, topic, qos)
        growth = rss_kib(slow_node) - rss_before

        assert growth < RSS_GROWTH_LIMIT_KIB, f"RSS grew {growth} KiB"
        # The bystander got every message, in order.
        assert got == MESSAGES
        # What the stuck one could not take was dropped, and counted.
        dropped = metrics(slow_node)["delivery/dropped/queue_full"] - dropped_before
        assert dropped > MESSAGES // 2, dropped
        with slow_node.api() as api:
            session = ok(api.get(f"/sessions/{stuck_id}"))[0]
            assert session["mqueue_dropped"] > MESSAGES // 2, session
            # Still connected: a stuck client is bounded, not thrown out.
            assert ok(api.get(f"/connections/{stuck_id}"))
    finally:
        stuck.close()


@pytest.mark.timeout(120)
def test_probe_is_not_starved_by_a_flood(slow_node: Any, clients: Clients) -> None:
    """A publisher floods the node with small QoS 0 packets (many per read) to a
    reading subscriber and a stuck one; meanwhile a QoS 1 probe pair on another
    topic gets every one of its messages while the flood is still going on."""
    flood_topic, probe_topic = uid("flood"), uid("probe")
    sink = clients(slow_node, uid("sink"))
    sink.subscribe(flood_topic, 0)
    stuck = stuck_tcp(slow_node, uid("stuck"), flood_topic, 0)
    probe_sub = clients(slow_node, uid("probe-sub"))
    probe_sub.subscribe(probe_topic, 1)
    probe_pub = clients(slow_node, uid("probe-pub"))
    flooding = threading.Event()
    stop = threading.Event()
    sent = [0]

    def flood() -> None:
        packet = gen_publish(flood_topic, 0, b"f" * 40)
        chunk = packet * 2000  # ~100 KB: thousands of packets per read
        with RawClient(slow_node.host, slow_node.port, timeout=30) as publisher:
            publisher.connect(uid("flooder"))
            flooding.set()
            while not stop.is_set():
                publisher.send(chunk)
                sent[0] += 2000

    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    try:
        assert flooding.wait(10)
        wait_until(lambda: sent[0] > 20000, timeout=30, message="the flood to start")
        flood_before = sent[0]
        for n in range(50):
            probe_pub.publish(probe_topic, f"probe {n}", qos=1)
            got = probe_sub.get(timeout=20)
            assert got.payload == f"probe {n}".encode()
        # The flood went on while the probe ran (the node kept reading it too).
        assert thread.is_alive() and not stop.is_set()
        assert sent[0] > flood_before, "the flood made no progress while the probe ran"
    finally:
        stop.set()
        thread.join(30)
        stuck.close()


# -- the read budget: a busy connection yields the loop to the others ----------------------

BURST_MESSAGES = 40
BURST_PAYLOAD = 8 * 1024  # 8 packets in a 64 KiB budget: the byte budget acts, not the count
#: Sent first by each publisher, to a topic nobody reads: the node's socket buffer for
#: it grows (TCP autotuning) until it holds a whole burst while the node is stopped.
WARM_UP = 48 * 1024 * 1024


def interleaving(node: Any) -> list[str]:
    """Two publishers each have a burst of BURST_MESSAGES (~330 KB: more than one
    read of a socket, 256 KiB, takes) waiting in the node's sockets, put there
    while the node was stopped (SIGSTOP), then the node goes on (SIGCONT).
    Returns who sent each message a subscriber of both topics got ("a"/"b"),
    in the order the node handled them."""
    topics = {name: uid(f"burst-{name}") for name in "ab"}
    sub = RawClient(node.host, node.port, timeout=30)
    sub.connect(uid("sub"))
    for mid, topic in enumerate(topics.values(), 1):
        sub.subscribe(mid, topic, 0)
    publishers = {}
    warm = gen_publish(uid("nobody"), 0, b"w" * 65000) * 16
    for name in topics:
        publisher = publishers[name] = RawClient(node.host, node.port, timeout=60)
        publisher.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
        publisher.connect(uid(name))
        for _ in range(WARM_UP // len(warm)):
            publisher.send(warm)
        publisher.ping(timeout=60)  # the node read all of it
    assert node.proc is not None
    os.kill(node.proc.pid, signal.SIGSTOP)
    try:
        for name, topic in topics.items():
            publishers[name].send(b"".join(
                gen_publish(topic, 0, b"%s%04d" % (name.encode(), n) + b"x" * BURST_PAYLOAD)
                for n in range(BURST_MESSAGES)))
        for publisher in publishers.values():
            wait_until(lambda p=publisher: unacked(p.sock) == 0, timeout=10,
                       message="the burst to be all in the node's socket buffer")
    finally:
        os.kill(node.proc.pid, signal.SIGCONT)
    got: list[bytes] = []
    try:
        while len(got) < 2 * BURST_MESSAGES:
            got.append(sub.expect_publish(timeout=30).payload[:5])
    finally:
        for client in (sub, *publishers.values()):
            client.close()
    for name in "ab":  # every message, each burst in its order
        assert [g for g in got if g[:1] == name.encode()] == \
            [b"%s%04d" % (name.encode(), n) for n in range(BURST_MESSAGES)]
    return [g[:1].decode() for g in got]


def unacked(sock: socket.socket) -> int:
    """Bytes the kernel still holds for the peer (not in its buffer yet): TIOCOUTQ."""
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]


def runs(order: list[str]) -> int:
    """How many times the sender changes along `order`, plus one."""
    return 1 + sum(1 for x, y in itertools.pairwise(order) if x != y)


@pytest.mark.parametrize("transport", ["lean", "loop"])
def test_busy_connection_yields_to_others(make_node: Callable[..., Any], transport: str) -> None:
    """Past the listener's read budget (64 KiB by default) a publisher is not read
    again until the loop's next turn, where the other publisher is served first:
    the two bursts are handled interleaved, a read of each in turn, not one whole
    burst and then the other (libuv reads the same socket up to 32 times in a row;
    the lean transport reads each socket at most once a turn)."""
    order = interleaving(make_node({"listeners.tcp.default.transport": transport}))
    assert runs(order) >= 3, "".join(order)


def test_read_budget_is_a_listener_setting(make_node: Callable[..., Any]) -> None:
    """On the loop's transports (uvloop), with a budget larger than the bursts
    (64 MB; the 64-packet count is more than a burst too), each burst is read whole
    before the other: the interleaving above is the budget's doing there."""
    order = interleaving(make_node({"listeners.tcp.default.read_budget": "64MB",
                                    "listeners.tcp.default.transport": "loop"}))
    assert runs(order) == 2, "".join(order)
