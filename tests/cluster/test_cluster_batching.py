"""Messages cross nodes in batches (one NATS message per destination node per loop
turn, docs/cluster.md): what batching must keep, with real clients.  Bursts from
mosquitto_pub (many messages per read, so many per turn) at QoS 0, 1 and 2 reach
paho subscribers on two other nodes: every publisher's messages in order, each at
the QoS of the subscription, a shared group's members across nodes getting each
message once, and fewer NATS messages than messages forwarded."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from helpers.clients import Clients, PahoClient, uid
from helpers.cluster import settle
from helpers.nats_server import NatsServer
from helpers.servers import free_port

pytestmark = pytest.mark.needs_server

#: Messages per publisher, by the QoS it publishes at.
BURST = {0: 1000, 1: 300, 2: 200}


@pytest.fixture(scope="module")
def nats_server() -> Iterator[NatsServer]:
    """The module's nats-server (conftest's `cluster` runs on it), with its
    monitoring port (its message counts)."""
    port = free_port()
    server = NatsServer(None, "-m", str(port)).start()
    server.monitoring = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
    yield server
    server.close()


def nats_messages_in(server: NatsServer) -> int:
    """Messages the NATS server has received from its clients (the nodes)."""
    with urllib.request.urlopen(server.monitoring + "/varz", timeout=5) as resp:  # type: ignore[attr-defined]
        return int(json.load(resp)["in_msgs"])


def burst(node: Any, topic: str, qos: int, count: int, tag: str) -> subprocess.Popen[str]:
    """mosquitto_pub publishing `count` lines of stdin as fast as it can."""
    proc = subprocess.Popen(
        ["mosquitto_pub", "-h", node.host, "-p", str(node.port), "-i", uid("burst"),
         "-t", topic, "-q", str(qos), "-l"], stdin=subprocess.PIPE, text=True)
    assert proc.stdin is not None
    proc.stdin.write("".join(f"{tag}-{i}\n" for i in range(count)))
    proc.stdin.close()
    return proc


def test_bursts_cross_in_order_at_each_subscriptions_qos(cluster: Any, clients: Clients,
                                                         nats_server: NatsServer) -> None:
    n1, n2, n3 = cluster.nodes
    base = uid("burst")
    subs: dict[int, PahoClient] = {0: clients(n2), 1: clients(n3), 2: clients(n2)}
    for qos, sub in subs.items():
        sub.subscribe(f"{base}/#", qos)
    members = [clients(n2), clients(n3)]
    for member in members:
        member.subscribe(f"$share/g/{base}/#", 1)
    settle(clients(n1), [*subs.values()], f"{base}/probe")
    for member in members:
        member.drain()
    total = sum(BURST.values())
    before = nats_messages_in(nats_server)
    pubs = [burst(n1, f"{base}/q{qos}", qos, count, f"q{qos}") for qos, count in BURST.items()]
    try:
        for pub in pubs:
            assert pub.wait(60) == 0
    finally:
        for pub in pubs:
            if pub.poll() is None:
                pub.kill()
                pub.wait()
    for sub_qos, sub in subs.items():
        got = sub.get_many(total, timeout=60)
        for pub_qos, count in BURST.items():
            mine = [m for m in got if m.topic == f"{base}/q{pub_qos}"]
            # every message, in the publisher's order, at min(publish, subscription) QoS
            assert [m.payload.decode() for m in mine] == [f"q{pub_qos}-{i}"
                                                          for i in range(count)]
            assert {m.qos for m in mine} == {min(pub_qos, sub_qos)}
        assert not sub.drain()
    shared: Counter[bytes] = Counter()
    per_member = []
    for member in members:
        received = [m.payload for m in member.drain()]
        while True:
            try:
                received.append(member.get(1.0).payload)
            except AssertionError:
                break
        per_member.append(len(received))
        shared.update(received)
    # the group got each message once, across both nodes (both served some)
    assert shared == Counter(f"q{q}-{i}".encode() for q, n in BURST.items() for i in range(n))
    assert all(per_member), per_member
    # each message went to n2 and n3 (plain routes and the group): batched, far
    # fewer NATS messages than forwards (the rest of the count is the nodes' own
    # traffic: heartbeats, route changes, client-id claims)
    forwards = 2 * total
    assert nats_messages_in(nats_server) - before < forwards / 2
