"""Messages across the nodes of a cluster, with real clients on different nodes:
QoS 0/1/2, wildcards, per-publisher order, retained, shared groups, wills."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections import Counter
from typing import Any

import pytest
from helpers.clients import Clients, uid, wait_until
from helpers.cluster import cluster_settings, settle

pytestmark = pytest.mark.needs_server


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_a_message_reaches_subscribers_on_other_nodes(cluster: Any, clients: Clients,
                                                      qos: int) -> None:
    n1, n2, n3 = cluster.nodes
    topic = uid("x") + "/a"
    sub2, sub3 = clients(n2), clients(n3)
    sub2.subscribe(topic, qos)
    sub3.subscribe(topic.split("/")[0] + "/+", qos)
    pub = clients(n1)
    settle(pub, [sub2, sub3], topic)
    for i in range(20):
        pub.publish(topic, f"m{i}".encode(), qos)
    for sub in (sub2, sub3):
        got = sub.get_many(20)
        assert [m.payload for m in got] == [f"m{i}".encode() for i in range(20)]  # in order
        assert {m.qos for m in got} == {qos}
        assert not sub.drain()


def test_each_subscriber_gets_the_qos_of_its_subscription(cluster: Any,
                                                          clients: Clients) -> None:
    """A QoS 2 message published on n1 reaches subscribers of other nodes at the QoS
    they subscribed with (0, 1, 2), and a QoS 0 message is not upgraded."""
    n1, n2, n3 = cluster.nodes
    topic = uid("q") + "/t"
    subs = {0: clients(n2), 1: clients(n3), 2: clients(n2)}
    for qos, sub in subs.items():
        sub.subscribe(topic, qos)
    pub = clients(n1)
    settle(pub, list(subs.values()), topic)
    pub.publish(topic, b"two", 2)
    pub.publish(topic, b"zero", 0)
    for qos, sub in subs.items():
        got = sub.get_many(2)  # paho hands a QoS 2 message over at PUBREL: any order
        assert sorted((m.payload, m.qos) for m in got) == [(b"two", qos), (b"zero", 0)]
        assert not sub.drain()


def test_only_matching_nodes_receive_and_each_subscriber_once(cluster: Any,
                                                              clients: Clients) -> None:
    n1, n2, n3 = cluster.nodes
    base = uid("w")
    local = clients(n1)
    local.subscribe(f"{base}/#")
    far = clients(n2)
    far.subscribe(f"{base}/+/x")
    far.subscribe(f"{base}/#")  # two filters, one copy
    other = clients(n3)
    other.subscribe(f"{base}/none")
    pub = clients(n1)
    settle(pub, far, f"{base}/p/x")
    local.drain()
    pub.publish(f"{base}/p/x", b"hello", 1)
    assert local.get().payload == b"hello"
    assert far.get().payload == b"hello"
    assert not far.drain() and not other.drain()


def test_mosquitto_clients_across_nodes(cluster: Any) -> None:
    n1, n2, _ = cluster.nodes
    topic = uid("mq") + "/t"
    sub = subprocess.Popen(["mosquitto_sub", "-h", n2.host, "-p", str(n2.port), "-t", topic,
                            "-q", "1", "-C", "1", "-W", "15"], stdout=subprocess.PIPE, text=True)
    try:
        # publish until the route has reached n1 and the one message arrives
        deadline = time.monotonic() + 15
        while sub.poll() is None and time.monotonic() < deadline:
            subprocess.run(["mosquitto_pub", "-h", n1.host, "-p", str(n1.port), "-t", topic,
                            "-m", "from-n1", "-q", "1"], check=True, timeout=10)
            time.sleep(0.2)
        out, _ = sub.communicate(timeout=5)
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()
    assert out.strip() == "from-n1"


def test_retained_message_reaches_a_later_subscriber_on_another_node(
        cluster: Any, clients: Clients) -> None:
    n1, n2, n3 = cluster.nodes
    topic = uid("r") + "/state"
    clients(n1).publish(topic, b"on", 1, retain=True)

    def retained_on(node: Any) -> bytes | None:
        sub = clients(node)
        sub.subscribe(topic, 1)
        try:
            message = sub.get(0.5)
        except AssertionError:
            return None
        finally:
            sub.close()
        assert message.retain
        return message.payload

    wait_until(lambda: retained_on(n2) == b"on", 5, 0.1, "the retained message on n2")
    wait_until(lambda: retained_on(n3) == b"on", 5, 0.1, "the retained message on n3")
    clients(n3).publish(topic, b"", 1, retain=True)  # cleared on n3: gone everywhere
    wait_until(lambda: retained_on(n1) is None, 5, 0.1, "the retained message gone on n1")


@pytest.mark.parametrize("share", ["$share/g1/", "$queue/"])
def test_a_shared_group_across_nodes_gets_each_message_once(cluster: Any, clients: Clients,
                                                             share: str) -> None:
    n1, n2, n3 = cluster.nodes
    topic = uid("s") + "/job"
    members = [clients(n) for n in (n1, n2, n2, n3)]
    for member in members:
        member.subscribe(share + topic, 1)
    watcher = clients(n3)
    watcher.subscribe(topic, 1)
    pub = clients(n1)
    settle(pub, watcher, topic)
    time.sleep(1.0)  # every node has every member by now (the watcher's route arrived)
    for member in members:
        member.drain()
    for i in range(200):
        pub.publish(topic, f"{i}".encode(), 1)
    watcher.get_many(200, timeout=20)
    got: Counter[bytes] = Counter()
    per_member = []
    for member in members:
        received = []
        while True:
            try:
                received.append(member.get(1.0).payload)
            except AssertionError:
                break
        per_member.append(len(received))
        got.update(received)
    assert got == Counter(f"{i}".encode() for i in range(200)), per_member
    assert sum(1 for n in per_member if n) >= 3  # spread over the nodes


def test_a_will_is_delivered_on_other_nodes(cluster: Any, clients: Clients) -> None:
    n1, n2, _ = cluster.nodes
    topic = uid("will") + "/gone"
    watcher = clients(n2)
    watcher.subscribe(topic, 1)
    probe = clients(n1)
    settle(probe, watcher, topic)
    dying = clients(n1, connect=False)
    dying.will_set(topic, b"bye", 1)
    dying.connect()
    dying.client._sock.close()  # the connection just drops: the will goes out
    message = watcher.get(10)
    assert message.payload == b"bye"


def test_sys_topics_of_every_node_reach_a_subscriber_on_any_node(cluster: Any,
                                                                 clients: Clients) -> None:
    n1, n2, n3 = cluster.nodes
    watcher = clients(n1)
    watcher.subscribe("$SYS/brokers/+/uptime", 0)
    seen: set[str] = set()

    def every_node() -> bool:
        with contextlib.suppress(AssertionError):
            seen.add(watcher.get(0.5).topic.split("/")[2])
        return seen == {n1.name, n2.name, n3.name}

    wait_until(every_node, 15, 0.0, "uptime of every node ($SYS/brokers/<node>/uptime)")


def test_a_cluster_of_another_name_on_the_same_nats_never_mixes(
        cluster: Any, clients: Clients, spawn_node: Any, tmp_path: Any) -> None:
    """cluster.name: a node of another cluster on the same NATS server, even under a
    name a node of this cluster has, sees only itself and exchanges no message."""
    n1 = cluster.nodes[0]
    other = spawn_node(tmp_path / "other", cluster_settings(cluster.nats, uid("other")),
                       n1.name)
    try:
        with other.api() as api:
            assert [n["name"] for n in api.get("/nodes/").json()["data"]] == [n1.name]
        with n1.api() as api:
            assert len(api.get("/nodes/").json()["data"]) == len(cluster.nodes)
        topic = uid("iso") + "/t"
        ours, theirs = clients(cluster.nodes[1]), clients(other)
        ours.subscribe(topic, 1)
        theirs.subscribe(topic, 1)
        pub = clients(n1)
        settle(pub, ours, topic)
        pub.publish(topic, b"ours", 1)
        clients(other).publish(topic, b"theirs", 1)
        assert theirs.get(5).payload == b"theirs"  # its own node's subscriber
        assert ours.get(5).payload == b"ours"
        time.sleep(0.5)
        assert not ours.drain() and not theirs.drain()
    finally:
        other.stop()
