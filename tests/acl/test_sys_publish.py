"""Clients cannot forge `$SYS` (issue #25, `mqtt.allow_sys_publish`): under the default
ACL file, which lets local clients publish anything, a PUBLISH to `$SYS/#` is
refused (PUBACK/PUBREC 0x87 for MQTT 5.0; acknowledged and dropped for 3.1.1), a
retained one replaces nothing, a will there refuses the CONNECT; the internal
listener and the broker itself still publish there; `allow_sys_publish = true`
is EMQ X v3.  Real paho clients and raw MQTT 5.0 against a running node."""

from __future__ import annotations

from typing import Any

from acl_support import API_SETTINGS, INTERNAL, Client, Raw5, metric
from helpers.api import ok
from helpers.clients import uid
from helpers.packets import RawClient, Will, gen_connack, gen_connect

NODE = "starling@127.0.0.1"
VERSION = f"$SYS/brokers/{NODE}/version"


def sys_node(make_node: Any, **settings: str) -> Any:
    """A node with the default ACL file (local clients may publish anything) and
    the internal listener."""
    return make_node({**API_SETTINGS, **INTERNAL, **settings})


def retained_version(node: Any) -> bytes:
    """The retained $SYS version, as a monitor reads it."""
    monitor = Client(node, uid("monitor"))
    try:
        monitor.connect()
        assert monitor.subscribe(VERSION, 0) == [0]
        return monitor.get(timeout=5).payload
    finally:
        monitor.close()


def test_clients_cannot_publish_to_sys(make_node: Any) -> None:
    node = sys_node(make_node)
    genuine = retained_version(node)
    watcher = Client(node, uid("watch"), listener="mqtt:tcp:internal")  # no ACL: sees all
    forger = Client(node, uid("forger"))
    try:
        watcher.connect()
        assert watcher.subscribe("$SYS/brokers/+/clients/#", 1) == [1]
        assert watcher.subscribe("$SYS/forged", 1) == [1]
        assert watcher.subscribe("marker/#", 1) == [1]
        forger.connect()
        forger.publish(VERSION, b"6.6.6", qos=1, retain=True)  # PUBACK, as 3.1.1 can say
        forger.publish(f"$SYS/brokers/{NODE}/clients/admin/connected", b"{}", qos=1)
        forger.publish("$SYS/forged", b"x", qos=0)
        forger.publish("marker/done", b"", qos=1)
        seen = []
        while not seen or seen[-1] != "marker/done":
            seen.append(watcher.get(timeout=5).topic)
        # only the forger's own, genuine presence event came before the marker
        assert [t for t in seen if "forger" not in t] == ["marker/done"], seen
        assert forger.is_connected()
        assert retained_version(node) == genuine  # nothing replaced
        assert metric(node, "packets/publish/sys_denied") == 3
        assert metric(node, "packets/publish/auth_error") == 3

        with Raw5(node) as v5:
            assert v5.publish("$SYS/forged", 1, packet_id=1) == 0x87  # PUBACK Not authorized
            assert v5.publish("$SYS/forged", 2, packet_id=2) == 0x87  # PUBREC Not authorized
            assert v5.publish("$SYS", 1, packet_id=3) == 0x87
            assert v5.publish("$SYSTEM/x", 1, packet_id=4) in (0, 0x10)  # not $SYS/#
        # The internal listener (zone internal) may, as the broker itself does.
        insider = Client(node, uid("insider"), listener="mqtt:tcp:internal")
        try:
            insider.connect()
            insider.publish("$SYS/forged", b"from inside", qos=1)
            assert watcher.get(timeout=5, topic="$SYS/forged").payload == b"from inside"
        finally:
            insider.close()
    finally:
        forger.close()
        watcher.close()


def test_a_will_on_sys_refuses_the_connect(make_node: Any) -> None:
    node = sys_node(make_node)
    with RawClient(*node.listeners["mqtt:tcp:default"]) as raw:
        raw.send(gen_connect(uid("will"), will=Will(f"$SYS/brokers/{NODE}/alarms/alert",
                                                    b"{}")))
        raw.expect_packet(gen_connack(5))  # not authorized, as a will the ACL denies
    with Raw5(node, will_topic="$SYS/x") as v5:
        assert v5.connack_code == 0x87
    assert metric(node, "packets/publish/sys_denied") == 2


def test_http_publish_by_an_api_app_may(make_node: Any) -> None:
    """An API app is the operator: HTTP publish to $SYS goes through (docs/api.md)."""
    node = sys_node(make_node)
    watcher = Client(node, uid("watch"), listener="mqtt:tcp:internal")
    try:
        watcher.connect()
        assert watcher.subscribe("$SYS/ops/#", 1) == [1]
        with node.api() as http:
            ok(http.post("/mqtt/publish", json={"topic": "$SYS/ops/note", "payload": "hi",
                                                "qos": 1}))
        assert watcher.get(timeout=5).payload == b"hi"
    finally:
        watcher.close()


def test_allow_sys_publish_is_emqx_behaviour(make_node: Any) -> None:
    node = sys_node(make_node, **{"mqtt.allow_sys_publish": "true"})
    forger = Client(node, uid("forger"))
    try:
        forger.connect()
        forger.publish(VERSION, b"6.6.6", qos=1, retain=True)
    finally:
        forger.close()
    assert retained_version(node) == b"6.6.6"
    with Raw5(node) as v5:
        assert v5.publish("$SYS/forged", 1, packet_id=1) == 0x10  # no matching subscribers
    assert metric(node, "packets/publish/sys_denied") == 0
