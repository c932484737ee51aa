"""Client identity and faults in a cluster: one connection per client id across
the nodes (takeover, the session moving with its subscriptions and messages),
unique node names, kill -9 of a node, NATS stopped and started again.

The tests of this module run in order on one cluster and change it (a node is
killed and restarted, NATS goes away and comes back)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from helpers.clients import Clients, PahoClient, uid, wait_until
from helpers.cluster import Cluster, cluster_settings, settle
from helpers.nats_server import NatsServer
from helpers.packets import RawClient, gen_puback, parse_publish

pytestmark = pytest.mark.needs_server

#: A Stopped node is forgotten after this (the kill -9 test waits for it).
AUTOCLEAN = "4s"


@pytest.fixture(scope="module")
def cluster(spawn_node: Any, nats_server: NatsServer,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    made = Cluster(spawn_node, tmp_path_factory.mktemp("faults"), nats_server,
                   **{"cluster.autoclean": AUTOCLEAN})
    yield made
    made.stop()


def metric(node: Any, name: str) -> int:
    with node.api() as api:
        return int(api.get(f"/nodes/{node.name}/metrics/").json()["data"][name])


def alarms(node: Any) -> list[str]:
    with node.api() as api:
        return [a["id"] for a in api.get(f"/alarms/present/{node.name}").json()["data"]]


def node_list(node: Any) -> dict[str, str]:
    """GET /nodes of `node`: name -> node_status."""
    with node.api() as api:
        return {n["name"]: n["node_status"] for n in api.get("/nodes/").json()["data"]}


def route_nodes(node: Any, topic: str) -> set[str]:
    """GET /routes/<topic> of `node`: the nodes with a route for that filter."""
    with node.api() as api:
        found = api.get(f"/routes/{quote(topic, safe='')}").json()["data"]
    return {r["node"] for r in found}


def connack(node: Any, client_id: str) -> int:
    client = PahoClient(node.host, node.port, client_id)
    try:
        return client.connect(expect_rc=None)[0]
    finally:
        client.close()


def test_connecting_on_another_node_takes_the_client_over(cluster: Any,
                                                          clients: Clients) -> None:
    n1, n2, _ = cluster.nodes
    client_id = uid("dev")
    first = clients(n1, client_id)
    second = clients(n2, client_id)
    first.wait_disconnected(10)  # kicked off n1
    assert second.is_connected()
    third = clients(n1, client_id)  # and back
    second.wait_disconnected(10)
    assert third.is_connected()


def test_a_persistent_session_moves_with_subscriptions_and_queued_messages(
        cluster: Any, clients: Clients) -> None:
    n1, n2, n3 = cluster.nodes
    client_id, topic = uid("p"), uid("q") + "/t"
    device = clients(n1, client_id, clean_session=False)
    device.subscribe(topic, 1)
    pub = clients(n3)
    settle(pub, device, topic)
    device.disconnect()
    device.close()
    for i in range(5):  # queued on n1 for the offline session
        pub.publish(topic, f"queued-{i}".encode(), 1)
    time.sleep(0.5)
    moved = clients(n2, client_id, connect=False, clean_session=False)
    assert moved.connect()[1] is True  # session present: it came from n1
    got = [m.payload for m in moved.get_many(5, timeout=10)]
    assert got == [f"queued-{i}".encode() for i in range(5)]
    # its subscription lives on n2 now: messages published anywhere still reach it
    settle(pub, moved, topic)
    pub.publish(topic, b"after-move", 1)
    assert moved.get(5).payload == b"after-move"
    assert not moved.drain()


def test_unacknowledged_messages_move_with_a_taken_over_session(cluster: Any,
                                                               clients: Clients) -> None:
    n1, n2, n3 = cluster.nodes
    client_id, topic = uid("inflight"), uid("q") + "/t"
    pub = clients(n3)
    first = RawClient(n1.host, n1.port)
    try:
        first.connect(client_id, clean=False)
        first.subscribe(1, topic, 1)
        probe = clients(n2)
        probe.subscribe(topic, 1)
        settle(pub, probe, topic)  # n3 knows the routes of n1 (same topic) by now
        pub.publish(topic, b"unacked", 1)
        got = parse_publish(first.read(5))
        while got.payload == b"probe":  # a (QoS 0) probe may still be on its way
            got = parse_publish(first.read(5))
        assert got.payload == b"unacked" and not got.dup  # in flight, never acknowledged
        second = RawClient(n2.host, n2.port)
        try:
            second.connect(client_id, clean=False, session_present=True)  # took it over
            first.expect_closed(5)
            again = parse_publish(second.read(5))
            assert (again.payload, again.dup, again.qos) == (b"unacked", True, 1)
            second.send(gen_puback(again.mid or 0))
            second.expect_nothing(0.5)
        finally:
            second.close()
    finally:
        first.close()


def test_a_clean_start_elsewhere_discards_the_old_session(cluster: Any,
                                                          clients: Clients) -> None:
    n1, n2, _ = cluster.nodes
    client_id, topic = uid("c"), uid("q") + "/t"
    device = clients(n1, client_id, clean_session=False)
    device.subscribe(topic, 1)
    device.disconnect()
    fresh = clients(n2, client_id, connect=False, clean_session=True)
    assert fresh.connect()[1] is False
    back = clients(n1, client_id, connect=False, clean_session=False)
    assert back.connect()[1] is False  # n1's copy went away too


def test_a_second_node_with_a_taken_name_is_refused(cluster: Any, tmp_path: Any) -> None:
    n1 = cluster.nodes[0]
    args = [sys.executable, "-m", "starling", "start", "--data-dir", str(tmp_path / "twin"),
            "--node-name", n1.name, "--set", "listeners.tcp.default.bind=127.0.0.1:0",
            "--set", "listeners.tcp.internal.bind=off", "--set", "listeners.ws.default.bind=off",
            "--set", "management.bind=off", "--set", "dashboard.bind=off"]
    for key, value in cluster_settings(cluster.nats, cluster.name).items():
        args += ["--set", f"{key}={value}"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"node.name '{n1.name}' is already used by a running node of cluster " \
           f"'{cluster.name}'" in done.stderr
    assert "Traceback" not in done.stderr


def test_kill_9_of_a_node(cluster: Any, clients: Clients) -> None:
    """kill -9 of n3: the others list it Stopped and drop its routes within a few
    seconds, its clients reconnect elsewhere, nothing else is disturbed; after
    cluster.autoclean it is forgotten; started again it rejoins."""
    n1, n2, n3 = cluster.nodes
    topic = uid("k") + "/t"
    on_n3 = clients(n3, uid("victim"), clean_session=False)
    on_n3.subscribe(topic, 1)
    survivor = clients(n2)
    survivor.subscribe(topic, 1)
    bystander = clients(n1)  # a local client of n1, connected throughout
    bystander.subscribe(topic, 1)
    pub = clients(n1)
    settle(pub, [on_n3, survivor, bystander], topic)
    assert route_nodes(n1, topic) == {n1.name, n2.name, n3.name}
    forwarded = metric(n1, "messages/forward")
    pub.publish(topic, b"x", 1)
    survivor.get(5)
    bystander.get(5)
    wait_until(lambda: metric(n1, "messages/forward") == forwarded + 2, 5, 0.1,
               "two forwards (n2 and n3)")
    on_n3_id = on_n3.client_id
    n3.kill()
    # within a few seconds the others list n3 as Stopped and forget its routes: a
    # message for the topic goes to n2 only
    for node in (n1, n2):
        wait_until(lambda node=node: node_list(node).get(n3.name) == "Stopped", 10, 0.1,
                   f"n3 Stopped on {node.name}")

    def forwards_of_one_message() -> int:
        before = metric(n1, "messages/forward")
        pub.publish(topic, b"y", 1)  # counted before the PUBACK
        assert survivor.get(5).payload == b"y"
        assert bystander.get(5).payload == b"y"
        return metric(n1, "messages/forward") - before

    wait_until(lambda: forwards_of_one_message() == 1, 10, 0.2,
               "n1 forwarding to n2 only (n3's routes dropped)")
    assert route_nodes(n1, topic) == route_nodes(n2, topic) == {n1.name, n2.name}
    # n3's client reconnects to another node (its session was on n3: gone with it)
    again = clients(n1, on_n3_id, connect=False, clean_session=False)
    assert again.connect()[1] is False
    assert not survivor.drain() and not bystander.drain()
    assert bystander.is_connected() and survivor.is_connected()
    # after cluster.autoclean n3 is no longer listed anywhere
    for node in (n1, n2):
        wait_until(lambda node=node: n3.name not in node_list(node), 15, 0.2,
                   f"n3 forgotten by {node.name} (autoclean {AUTOCLEAN})")
    # n3 comes back under its name and rejoins
    n3.start()
    cluster.wait_joined()
    sub = clients(n3)
    sub.subscribe(topic, 1)
    settle(pub, sub, topic)


def test_a_frozen_nats_never_holds_up_local_delivery(cluster: Any, clients: Clients) -> None:
    """NATS stops answering without closing its connections (SIGSTOP): messages for
    other nodes pile up to cluster.forward_buffer and then are dropped and counted;
    local subscribers get everything, at once."""
    n1, n2, _ = cluster.nodes
    topic = uid("f") + "/t"
    local_sub = clients(n1)
    local_sub.subscribe(topic, 0)
    far_sub = clients(n2)
    far_sub.subscribe(topic, 0)
    pub = clients(n1)
    settle(pub, [local_sub, far_sub], topic)
    dropped = metric(n1, "messages/forward/dropped")
    payload = b"x" * 60_000
    cluster.nats.pause()
    try:
        started = time.monotonic()
        for _ in range(400):  # 24 MB for n2: more than the 16 MB forward buffer
            pub.publish(topic, payload, 0)
        got = local_sub.get_many(400, timeout=30)
        assert len(got) == 400 and time.monotonic() - started < 30
        wait_until(lambda: metric(n1, "messages/forward/dropped") > dropped, 10, 0.2,
                   "drops counted")
    finally:
        cluster.nats.resume()
    # NATS answers again: the link recovers (or reconnects) and forwarding resumes
    far_sub.drain()
    settle(pub, far_sub, topic, timeout=30)


def test_nats_stopped_and_started_again(cluster: Any, clients: Clients) -> None:
    """NATS goes away: every node raises an alarm and serves its own clients (a
    ban, a subscription, connections made meanwhile); NATS back: the alarm clears
    and the node rejoins: routes, the shared tables, one connection per client id."""
    n1, n2, _ = cluster.nodes
    topic, later_topic = uid("n") + "/t", uid("n") + "/later"
    banned, twice = uid("banned"), uid("twice")
    local_sub = clients(n1)
    local_sub.subscribe(topic, 1)
    far_sub = clients(n2)
    far_sub.subscribe(topic, 1)
    pub = clients(n1)
    settle(pub, [local_sub, far_sub], topic)
    cluster.nats.stop()
    try:
        for node in (n1, n2):
            wait_until(lambda node=node: "cluster_nats_down" in alarms(node), 10, 0.1,
                       f"the NATS alarm on {node.name}")
        # local clients are served as before
        pub.publish(topic, b"local-only", 1)
        assert local_sub.get(5).payload == b"local-only"
        newcomer = clients(n2, uid("during"))  # a new connection while NATS is away
        assert newcomer.is_connected()
        newcomer.subscribe(later_topic, 1)  # a route n1 learns once NATS is back
        with n1.api() as api:  # a ban made while cut off: written to the cluster later
            made = api.post("/banned/", json={"who": banned, "as": "client_id"})
            assert made.status_code == 200 and made.json()["code"] == 0, made.text
        assert connack(n1, banned) != 0
        # one client id accepted by two nodes that cannot see each other
        first, second = clients(n1, twice), clients(n2, twice)
        assert first.is_connected() and second.is_connected()
    finally:
        cluster.nats.start()
    for node in (n1, n2):
        wait_until(lambda node=node: "cluster_nats_down" not in alarms(node), 20, 0.2,
                   f"the alarm cleared on {node.name}")
    far_sub.drain()
    local_sub.drain()
    settle(pub, [local_sub, far_sub], topic, timeout=20)
    pub.publish(topic, b"together-again", 1)
    assert far_sub.get(5).payload == b"together-again"
    settle(pub, newcomer, later_topic, timeout=20)  # n2's route made while away
    wait_until(lambda: connack(n2, banned) != 0, 10, 0.2, "the ban in force on n2")
    wait_until(lambda: [first.is_connected(), second.is_connected()].count(True) == 1,
               10, 0.1, "one of the two connections of one client id closed")
