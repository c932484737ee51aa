"""Client identity and faults in a cluster: one connection per client id across
the nodes (takeover, the session moving with its subscriptions and messages),
unique node names, kill -9 of a node, NATS stopped and started again.

The tests of this module run in order on one cluster and change it (a node is
killed and restarted, NATS goes away and comes back)."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import pytest
from helpers.clients import Clients, uid, wait_until
from helpers.cluster import cluster_settings, settle
from helpers.packets import RawClient, gen_puback, parse_publish

pytestmark = pytest.mark.needs_server


def metric(node: Any, name: str) -> int:
    with node.api() as api:
        return int(api.get(f"/nodes/{node.name}/metrics/").json()["data"][name])


def alarms(node: Any) -> list[str]:
    with node.api() as api:
        return [a["id"] for a in api.get(f"/alarms/present/{node.name}").json()["data"]]


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
    n1, n2, n3 = cluster.nodes
    topic = uid("k") + "/t"
    on_n3 = clients(n3, uid("victim"), clean_session=False)
    on_n3.subscribe(topic, 1)
    survivor = clients(n2)
    survivor.subscribe(topic, 1)
    pub = clients(n1)
    settle(pub, [on_n3, survivor], topic)
    forwarded = metric(n1, "messages/forward")
    pub.publish(topic, b"x", 1)
    survivor.get(5)
    wait_until(lambda: metric(n1, "messages/forward") == forwarded + 2, 5, 0.1,
               "two forwards (n2 and n3)")
    on_n3_id = on_n3.client_id
    n3.kill()
    # within a few seconds n1 forgets n3's routes: only n2 gets a copy now
    time.sleep(2.5)
    forwarded = metric(n1, "messages/forward")
    pub.publish(topic, b"y", 1)
    assert survivor.get(5).payload == b"y"
    time.sleep(0.3)
    assert metric(n1, "messages/forward") == forwarded + 1
    # n3's client reconnects to another node (its session was on n3: gone with it)
    again = clients(n1, on_n3_id, connect=False, clean_session=False)
    assert again.connect()[1] is False
    assert not survivor.drain()
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
    n1, n2, _ = cluster.nodes
    topic = uid("n") + "/t"
    local_sub = clients(n1)
    local_sub.subscribe(topic, 1)
    far_sub = clients(n2)
    far_sub.subscribe(topic, 1)
    pub = clients(n1)
    settle(pub, [local_sub, far_sub], topic)
    cluster.nats.stop()
    try:
        wait_until(lambda: "cluster_nats_down" in alarms(n1), 10, 0.1, "the NATS alarm")
        # local clients are served as before
        pub.publish(topic, b"local-only", 1)
        assert local_sub.get(5).payload == b"local-only"
        newcomer = clients(n2, uid("during"))  # a new connection while NATS is away
        assert newcomer.is_connected()
    finally:
        cluster.nats.start()
    wait_until(lambda: "cluster_nats_down" not in alarms(n1), 20, 0.2, "the alarm cleared")
    far_sub.drain()
    local_sub.drain()
    settle(pub, [local_sub, far_sub], topic, timeout=20)
    pub.publish(topic, b"together-again", 1)
    assert far_sub.get(5).payload == b"together-again"
