"""emqx_delayed_publish against live nodes: ``$delayed/<seconds>/<topic>`` reaches
subscribers of the topic after the delay and not before, with its QoS, retain flag
and MQTT 5.0 properties; pending messages survive a clean restart and a kill -9
after the PUBACK; `messages/delayed` and `delayed/count` move; forms EMQ X does
not accept go on as they are; unloading stops the interception and keeps what is
pending for the next load (docs/feature-plugins.md, "Delayed publish")."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers.clients import Clients, uid, wait_until
from helpers.plugin_api import active, configure, metrics, plugin_call, stats
from paho.mqtt import client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.conftest import API_SETTINGS

DELAYED = "emqx_delayed_publish"
API = API_SETTINGS
LOADED = {**API, "plugins.loaded": "emqx_management,emqx_retainer,emqx_delayed_publish"}


@pytest.fixture
def node(make_node: Callable[..., Any]) -> Any:
    return make_node(LOADED)


def pending(api: httpx.Client, node: Any) -> int:
    return stats(api, node)["delayed/count"]


def test_not_loaded_by_default(make_node: Callable[..., Any]) -> None:
    node = make_node(API)
    with node.api() as api:
        assert not active(api, node, DELAYED)
        assert "delayed/count" not in stats(api, node)
        plugin_call(api, node, DELAYED, "load")
        assert active(api, node, DELAYED)
        assert stats(api, node)["delayed/count"] == 0


def test_published_after_the_delay_and_not_before(
        node: Any, api: httpx.Client, clients: Clients) -> None:
    topic = f"{uid('d')}/x"
    subscriber, publisher = clients(node), clients(node)
    subscriber.subscribe(topic, 2)
    before = metrics(api, node)["messages/delayed"]
    sent_at = time.monotonic()
    publisher.publish(f"$delayed/3/{topic}", b"later", 2)
    assert pending(api, node) == 1
    assert metrics(api, node)["messages/delayed"] == before + 1
    message = subscriber.get(timeout=30)
    arrived_after = time.monotonic() - sent_at
    assert arrived_after >= 2.9, f"published {arrived_after:.2f}s after, not 3s"
    assert (message.topic, message.payload, message.qos) == (topic, b"later", 2)
    wait_until(lambda: pending(api, node) == 0, message="nothing pending")
    assert stats(api, node)["delayed/max"] >= 1


def test_retain_flag_and_properties_are_kept(node: Any, api: httpx.Client,
                                              clients: Clients) -> None:
    """A 5.0 publisher's User Property and Content Type reach a 5.0 subscriber; the
    retain flag makes the retainer keep it when it is published."""
    base = uid("d")
    received: list[Any] = []
    got = threading.Event()

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        received.append(msg)
        got.set()

    subscribed = threading.Event()
    sub = paho.Client(CallbackAPIVersion.VERSION2, client_id=uid("s"), protocol=paho.MQTTv5)
    sub.on_message = on_message
    sub.on_subscribe = lambda *args: subscribed.set()
    sub.connect(node.host, node.port)
    sub.loop_start()
    pub = paho.Client(CallbackAPIVersion.VERSION2, client_id=uid("p"), protocol=paho.MQTTv5)
    pub.connect(node.host, node.port)
    pub.loop_start()
    try:
        sub.subscribe(f"{base}/v5", 1)
        assert subscribed.wait(5)
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = [("k", "v")]
        props.ContentType = "text/plain"
        pub.publish(f"$delayed/1/{base}/v5", b"props", 1, retain=True,
                    properties=props).wait_for_publish(5)
        assert got.wait(30)
        msg = received[0]
        assert (msg.topic, msg.payload, msg.qos) == (f"{base}/v5", b"props", 1)
        assert msg.properties.UserProperty == [("k", "v")]
        assert msg.properties.ContentType == "text/plain"
    finally:
        for client in (sub, pub):
            client.disconnect()
            client.loop_stop()
    late = clients(node)
    late.subscribe(f"{base}/#", 1)
    retained = late.get(timeout=10)
    assert (retained.topic, retained.payload, retained.retain) == (f"{base}/v5", b"props",
                                                                   True)


def test_many_pending_at_once(node: Any, api: httpx.Client,
                              clients: Clients) -> None:
    base = uid("d")
    subscriber, publisher = clients(node), clients(node)
    subscriber.subscribe(f"{base}/#", 1)
    for i in range(50):
        publisher.publish(f"$delayed/{1 + i % 3}/{base}/{i}", str(i).encode(), 1)
    got = subscriber.get_many(50, timeout=30)
    assert sorted(int(m.payload) for m in got) == list(range(50))
    wait_until(lambda: pending(api, node) == 0, message="nothing pending")


def offline_subscriber(clients: Clients, node: Any, topic: str) -> str:
    """A persistent session subscribed to `topic`, left offline: what is published
    while it is away (before or after a restart) waits for it."""
    client_id = uid("sub")
    subscriber = clients(node, client_id, clean_session=False)
    subscriber.subscribe(topic, 1)
    subscriber.disconnect()
    return client_id


def test_survives_a_clean_restart(make_node: Callable[..., Any], tmp_path: Path,
                                  clients: Clients) -> None:
    data = tmp_path / "node"
    topic = f"{uid('d')}/restart"
    node = make_node(LOADED, data_dir=data)
    client_id = offline_subscriber(clients, node, topic)
    clients(node).publish(f"$delayed/4/{topic}", b"after restart", 1)
    node.stop()
    node = make_node(LOADED, data_dir=data)
    subscriber = clients(node, client_id, clean_session=False)
    assert subscriber.get(timeout=30).payload == b"after restart"
    with node.api() as api:
        wait_until(lambda: pending(api, node) == 0, message="nothing pending")


def test_survives_kill_9_after_the_puback(make_node: Callable[..., Any], tmp_path: Path,
                                          clients: Clients) -> None:
    """Durable mode (the default): the PUBACK waits for the store's commit."""
    data = tmp_path / "node"
    topic = f"{uid('d')}/crash"
    node = make_node(LOADED, data_dir=data)
    client_id = offline_subscriber(clients, node, topic)
    clients(node).publish(f"$delayed/3/{topic}", b"after a crash", 1)  # PUBACK received
    node.kill()
    node = make_node(LOADED, data_dir=data)
    subscriber = clients(node, client_id, clean_session=False)
    assert subscriber.get(timeout=30).payload == b"after a crash"


def test_past_due_while_the_node_was_down_is_published_at_start(
        make_node: Callable[..., Any], tmp_path: Path,
        clients: Clients) -> None:
    data = tmp_path / "node"
    topic = f"{uid('d')}/late"
    node = make_node(LOADED, data_dir=data)
    clients(node).publish(f"$delayed/1/{topic}", b"late", 1, retain=True)
    node.stop()
    time.sleep(1.5)  # past due while the node is down
    node = make_node(LOADED, data_dir=data)
    subscriber = clients(node)
    subscriber.subscribe(topic, 1)  # published at start: here as the retained message
    message = subscriber.get(timeout=30)
    assert (message.payload, message.retain) == (b"late", True)


def test_unload_stops_interception_and_keeps_what_is_pending(
        node: Any, api: httpx.Client, clients: Clients) -> None:
    base = uid("d")
    subscriber, publisher = clients(node), clients(node)
    subscriber.subscribe(f"{base}/#", 1)
    subscriber.subscribe("$delayed/#", 1)
    publisher.publish(f"$delayed/2/{base}/pending", b"pending", 1)
    plugin_call(api, node, DELAYED, "unload")
    assert not active(api, node, DELAYED)
    assert "delayed/count" not in stats(api, node)
    # Not intercepted now: published at once, on the literal topic.
    publisher.publish(f"$delayed/1/{base}/literal", b"as is", 1)
    message = subscriber.get(timeout=10)
    assert (message.topic, message.payload) == (f"$delayed/1/{base}/literal", b"as is")
    # The pending one waits for the next load, however long it takes.
    time.sleep(3)
    assert subscriber.drain() == []
    plugin_call(api, node, DELAYED, "load")
    message = subscriber.get(timeout=10)
    assert (message.topic, message.payload) == (f"{base}/pending", b"pending")
    wait_until(lambda: pending(api, node) == 0, message="nothing pending")


def test_forms_emqx_does_not_accept_go_on_as_they_are(
        node: Any, api: httpx.Client, clients: Clients) -> None:
    base = uid("d")
    subscriber, publisher = clients(node), clients(node)
    subscriber.subscribe(f"$delayed/+/{base}", 1)
    subscriber.subscribe(f"$delayed/{base}", 1)
    before = metrics(api, node)["messages/delayed"]
    for topic in (f"$delayed/abc/{base}", f"$delayed/{base}",
                  f"$delayed/{int(time.time()) + 4294967 + 1000}/{base}"):
        publisher.publish(topic, b"as is", 1)
        message = subscriber.get(timeout=10)
        assert (message.topic, message.payload) == (topic, b"as is")
    assert metrics(api, node)["messages/delayed"] == before
    assert pending(api, node) == 0
    assert node.wait_log(r"delayed_publish: \$delayed/abc/\S+: not \$delayed/<seconds>/")


def test_long_delays_and_unix_times(node: Any, api: httpx.Client,
                                    clients: Clients) -> None:
    """Below 4294967 a number is seconds; at or above it a Unix time, at most
    4294967 s ahead (a past one is published at once)."""
    base = uid("d")
    subscriber, publisher = clients(node), clients(node)
    subscriber.subscribe(f"{base}/#", 1)
    publisher.publish(f"$delayed/4294966/{base}/far", b"far", 1)
    publisher.publish(f"$delayed/{int(time.time()) + 3600}/{base}/at", b"at", 1)
    assert pending(api, node) == 2
    publisher.publish(f"$delayed/4294967/{base}/past", b"1970", 1)
    assert subscriber.get(timeout=10).topic == f"{base}/past"


def test_empty_topic_is_dropped(node: Any, api: httpx.Client,
                                clients: Clients) -> None:
    before = metrics(api, node)
    clients(node).publish("$delayed/1/", b"nowhere", 1)
    after = metrics(api, node)
    assert after["messages/dropped"] == before["messages/dropped"] + 1
    assert after["messages/delayed"] == before["messages/delayed"]
    assert pending(api, node) == 0


def test_acl_of_the_real_topic(make_node: Callable[..., Any], tmp_path: Path,
                               clients: Clients) -> None:
    """A client that may not publish to a topic cannot reach it by delaying."""
    acl = tmp_path / "acl.conf"
    acl.write_text('{deny, all, publish, ["secret/#"]}.\n{allow, all}.\n')
    node = make_node({**LOADED, "acl_file": str(acl)})
    subscriber, publisher = clients(node), clients(node)
    subscriber.subscribe("secret/#", 1)
    subscriber.subscribe("open/#", 1)
    publisher.publish("$delayed/0/secret/x", b"no", 1)
    publisher.publish("$delayed/0/open/x", b"yes", 1)
    message = subscriber.get(timeout=10)
    assert (message.topic, message.payload) == ("open/x", b"yes")
    with node.api() as api:
        wait_until(lambda: pending(api, node) == 0, message="nothing pending")
    assert subscriber.drain() == []


def test_max_delayed_messages(node: Any, api: httpx.Client,
                              clients: Clients) -> None:
    configure(api, node, DELAYED, {"delayed.max_delayed_messages": "1"})
    base = uid("d")
    publisher = clients(node)
    before = metrics(api, node)
    publisher.publish(f"$delayed/60/{base}/one", b"1", 1)
    publisher.publish(f"$delayed/60/{base}/two", b"2", 1)
    after = metrics(api, node)
    assert pending(api, node) == 1
    assert after["messages/delayed"] == before["messages/delayed"] + 1
    assert after["messages/dropped"] == before["messages/dropped"] + 1
    assert node.wait_log(r"delayed_publish: \S+/two: delayed.max_delayed_messages \(1\) "
                         r"reached: dropped")
