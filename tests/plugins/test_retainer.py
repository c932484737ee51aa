"""emqx_retainer against live nodes: active by default with EMQ X v3.2's config keys;
its limits (max_retained_messages refuses new topics but replaces held ones,
max_payload_size, expiry_interval) seen by real paho clients; unloading stops
storage and delivery, loading serves what was held again; storage_type disc
survives a restart, ram does not; `retained/count`, `retained/max` and
`messages/retained` follow (docs/feature-plugins.md, "Retainer")."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers.clients import Clients, PahoClient, Received, uid, wait_until
from helpers.plugin_api import (
    active,
    configure,
    metrics,
    plugin_call,
    plugin_config,
    stats,
)

from tests.conftest import API_SETTINGS

RETAINER = "emqx_retainer"
API = API_SETTINGS


@pytest.fixture
def node(make_node: Callable[..., Any]) -> Any:
    return make_node(API)


def retained_for(client: PahoClient, base: str) -> list[Received]:
    """The retained messages a new subscription to `<base>/#` gets: subscribe, then
    publish a marker the subscription also matches; whatever was retained arrives
    before the marker."""
    client.subscribe(f"{base}/#", 1)
    marker = f"{base}/{uid('marker')}"
    client.publish(marker, b"marker", 1)
    got: list[Received] = []
    while True:
        message = client.get(timeout=10)
        if message.topic == marker:
            client.unsubscribe(f"{base}/#")
            return got
        got.append(message)


def held(client: PahoClient, base: str) -> dict[str, bytes]:
    found = retained_for(client, base)
    assert all(m.retain for m in found), found
    return {m.topic: m.payload for m in found}


def test_active_by_default_with_emqx_config(node: Any, api: httpx.Client,
                                            clients: Clients) -> None:
    assert active(api, node, RETAINER)
    assert plugin_config(api, node, RETAINER) == {
        "retainer.storage_type": "disc", "retainer.max_retained_messages": "0",
        "retainer.max_payload_size": "1MB", "retainer.expiry_interval": "0"}
    base = uid("r")
    before = stats(api, node)["retained/count"]
    publisher = clients(node)
    publisher.publish(f"{base}/a", b"one", 1, retain=True)
    assert held(clients(node), base) == {f"{base}/a": b"one"}
    after = stats(api, node)
    assert after["retained/count"] == before + 1
    assert after["retained/max"] >= after["retained/count"]
    assert metrics(api, node)["messages/retained"] == after["retained/count"]
    publisher.publish(f"{base}/a", b"", 1, retain=True)  # cleared
    assert held(clients(node), base) == {}
    assert stats(api, node)["retained/count"] == before


def test_max_retained_messages_refuses_new_topics_only(
        node: Any, api: httpx.Client, clients: Clients) -> None:
    base = uid("r")
    count = stats(api, node)["retained/count"]  # the node's own $SYS ones
    configure(api, node, RETAINER, {"retainer.max_retained_messages": str(count + 2)})
    publisher, live = clients(node), clients(node)
    live.subscribe(f"{base}/#", 1)
    for topic, payload in (("a", b"a1"), ("b", b"b1"), ("c", b"c1")):
        publisher.publish(f"{base}/{topic}", payload, 1, retain=True)
    # The refused one is still routed to the subscribers there are.
    assert sorted(m.payload for m in live.get_many(3)) == [b"a1", b"b1", b"c1"]
    assert held(clients(node), base) == {f"{base}/a": b"a1", f"{base}/b": b"b1"}
    assert stats(api, node)["retained/count"] == count + 2
    publisher.publish(f"{base}/a", b"a2", 1, retain=True)  # full, but a held topic
    assert held(clients(node), base) == {f"{base}/a": b"a2", f"{base}/b": b"b1"}
    publisher.publish(f"{base}/b", b"", 1, retain=True)  # clearing frees a place
    publisher.publish(f"{base}/c", b"c2", 1, retain=True)
    assert held(clients(node), base) == {f"{base}/a": b"a2", f"{base}/c": b"c2"}
    assert stats(api, node)["retained/count"] == count + 2
    assert node.wait_log(r"retained message on \S+/c not stored: "
                         r"retainer.max_retained_messages")


def test_max_payload_size(node: Any, api: httpx.Client,
                          clients: Clients) -> None:
    configure(api, node, RETAINER, {"retainer.max_payload_size": "10"})
    base = uid("r")
    publisher, live = clients(node), clients(node)
    live.subscribe(f"{base}/#", 1)
    publisher.publish(f"{base}/big", b"x" * 11, 1, retain=True)
    publisher.publish(f"{base}/small", b"x" * 10, 1, retain=True)
    assert sorted(len(m.payload) for m in live.get_many(2)) == [10, 11]
    assert held(clients(node), base) == {f"{base}/small": b"x" * 10}
    configure(api, node, RETAINER, {"retainer.max_payload_size": "1KB"})
    publisher.publish(f"{base}/big", b"x" * 1024, 1, retain=True)
    assert set(held(clients(node), base)) == {f"{base}/small", f"{base}/big"}


def test_expiry_interval(node: Any, api: httpx.Client,
                         clients: Clients) -> None:
    configure(api, node, RETAINER, {"retainer.expiry_interval": "5s"})
    base = uid("r")
    count = stats(api, node)["retained/count"]
    publisher = clients(node)
    publisher.publish(f"{base}/a", b"soon gone", 1, retain=True)
    assert stats(api, node)["retained/count"] == count + 1
    # Dropped by the node's housekeeping, without anyone asking for it.
    wait_until(lambda: stats(api, node)["retained/count"] == count, timeout=30,
               interval=0.2, message="the retained message to expire")
    assert held(clients(node), base) == {}
    # 0 = forever again: a new message stays.
    configure(api, node, RETAINER, {"retainer.expiry_interval": "0"})
    publisher.publish(f"{base}/b", b"stays", 1, retain=True)
    assert held(clients(node), base) == {f"{base}/b": b"stays"}


def test_unload_stops_storage_and_delivery_and_load_restores(
        node: Any, api: httpx.Client, clients: Clients) -> None:
    base = uid("r")
    publisher, live = clients(node), clients(node)
    publisher.publish(f"{base}/kept", b"before", 1, retain=True)
    count = stats(api, node)["retained/count"]

    plugin_call(api, node, RETAINER, "unload")
    assert not active(api, node, RETAINER)
    assert held(clients(node), base) == {}  # nothing delivered while unloaded
    live.subscribe(f"{base}/#", 1)
    publisher.publish(f"{base}/new", b"while unloaded", 1, retain=True)
    routed = live.get(topic=f"{base}/new")
    assert routed.payload == b"while unloaded" and not routed.retain  # a normal publish
    publisher.publish(f"{base}/kept", b"", 1, retain=True)  # no clearing either
    assert held(clients(node), base) == {}
    assert stats(api, node)["retained/count"] == count  # what is held stays held

    plugin_call(api, node, RETAINER, "load")
    assert active(api, node, RETAINER)
    assert held(clients(node), base) == {f"{base}/kept": b"before"}
    assert stats(api, node)["retained/count"] == count
    assert metrics(api, node)["messages/retained"] == count


def test_disc_survives_a_restart_and_ram_does_not(make_node: Callable[..., Any],
                                                   tmp_path: Path,
                                                   clients: Clients
                                                   ) -> None:
    data = tmp_path / "node"
    base = uid("r")
    node = make_node(API, data_dir=data)
    clients(node).publish(f"{base}/disc", b"on disc", 1, retain=True)
    node.stop()

    node = make_node(API, data_dir=data)
    assert held(clients(node), base) == {f"{base}/disc": b"on disc"}
    with node.api() as api:
        configure(api, node, RETAINER, {"retainer.storage_type": "ram"})
        # Switching to ram keeps what is held for now, in memory only.
        assert held(clients(node), base) == {f"{base}/disc": b"on disc"}
        clients(node).publish(f"{base}/ram", b"in memory", 1, retain=True)
        assert set(held(clients(node), base)) == {f"{base}/disc", f"{base}/ram"}
    node.stop()

    node = make_node(API, data_dir=data)  # the ram config is remembered too
    assert held(clients(node), base) == {}
    with node.api() as api:
        assert plugin_config(api, node, RETAINER)["retainer.storage_type"] == "ram"
        configure(api, node, RETAINER, {"retainer.storage_type": "disc"})
    clients(node).publish(f"{base}/back", b"disc again", 1, retain=True)
    node.stop()

    node = make_node(API, data_dir=data)
    assert held(clients(node), base) == {f"{base}/back": b"disc again"}


def test_unloaded_stays_unloaded_after_restart_and_load_restores_from_the_store(
        make_node: Callable[..., Any], tmp_path: Path,
        clients: Clients) -> None:
    data = tmp_path / "node"
    base = uid("r")
    node = make_node(API, data_dir=data)
    clients(node).publish(f"{base}/a", b"stored", 1, retain=True)
    with node.api() as api:
        plugin_call(api, node, RETAINER, "unload")
    node.stop()

    node = make_node(API, data_dir=data)
    with node.api() as api:
        assert not active(api, node, RETAINER)
        assert held(clients(node), base) == {}
        plugin_call(api, node, RETAINER, "load")
        assert held(clients(node), base) == {f"{base}/a": b"stored"}


def test_mosquitto_clients_see_the_retained_message(node: Any, api: httpx.Client) -> None:
    """Debian's mosquitto_pub -r / mosquitto_sub, with and without the retainer."""
    topic = f"{uid('r')}/m"
    common = ["-h", node.host, "-p", str(node.port), "-t", topic]
    subprocess.run(["mosquitto_pub", *common, "-m", "hello", "-r", "-q", "1"], check=True,
                   timeout=10)

    def first_retained() -> str:
        # --retained-only: print retained messages, exit at the first live one (or -W).
        done = subprocess.run(["mosquitto_sub", *common, "-C", "1", "-W", "3",
                               "--retained-only"], capture_output=True, text=True, timeout=10)
        return done.stdout.strip()

    assert first_retained() == "hello"
    plugin_call(api, node, RETAINER, "unload")
    assert first_retained() == ""
