"""emqx_sn on a live node, driven by the real `mqtt-sn-12` client (its
`mqtt_sn_pub` / `mqtt_sn_sub` commands and its library) and, on the MQTT
side, paho-mqtt: publish both ways at every QoS, predefined and short topics,
sleeping clients, the will, auth and ACL refusals, the REST API's lists and
kick, plugin unload, malformed datagrams and floods from a raw socket."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers.api import listener_row, ok
from helpers.clients import Clients, uid, wait_until
from helpers.gateways import HOST, SnLibClient, SnSub, gateway_node, sn_pub
from helpers.http_receiver import HttpReceiver
from helpers.plugin_api import configure
from mqttsn12 import packets as sn
from mqttsn12.MqttSnConstants import MqttSnConstants as C

from tests.conftest import Node

PLUGIN = "emqx_sn"
LISTENER = "mqttsn:udp:default"
HELLO, NICE = "/predefined/topic/name/hello", "/predefined/topic/name/nice"
SN_CONF = {
    "mqtt.sn.port": "127.0.0.1:0",
    "mqtt.sn.advertise_duration": "0",
    "mqtt.sn.advertise_address": "off",
    "mqtt.sn.enable_qos3": "on",
    "mqtt.sn.predefined.topic.0": "reserved",
    "mqtt.sn.predefined.topic.1": HELLO,
    "mqtt.sn.predefined.topic.2": NICE,
}


def start_node(tmp_path: Path, conf: dict[str, str] | None = None, **settings: str) -> Node:
    node: Node = gateway_node(tmp_path, PLUGIN, {**SN_CONF, **(conf or {})}, **settings)
    return node


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    node = start_node(tmp_path_factory.mktemp("sn"))
    yield node
    node.stop()


@pytest.fixture
def api(node: Node) -> Iterator[httpx.Client]:
    with node.api() as client:
        yield client


def sn_port(node: Node) -> int:
    return node.listeners[LISTENER][1]


def metrics(api: httpx.Client) -> dict[str, int]:
    data: dict[str, int] = ok(api.get("/metrics/"))[0]["metrics"]
    return data


def subscribed(api: httpx.Client, client_id: str, topic: str) -> bool:
    return any(s["topic"] == topic for s in ok(api.get(f"/subscriptions/{client_id}")))


def sn_id(prefix: str) -> str:
    """A unique client id within MQTT-SN's 23 characters."""
    return uid(prefix)[:23]


def raw_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(5)
    return sock


# -- the listener --------------------------------------------------------------------------
def test_listener_is_bound_on_load_and_logged(node: Node, api: httpx.Client) -> None:
    host, port = node.listeners[LISTENER]
    assert host == HOST and port > 0
    plugins = {p["name"]: p for p in ok(api.get(f"/nodes/{node.name}/plugins/"))}
    assert plugins[PLUGIN]["active"] and plugins[PLUGIN]["type"] == "protocol"
    with raw_socket() as sock:  # SEARCHGW is answered without a connection
        sock.sendto(b"\x03\x01\x00", (HOST, port))
        assert sock.recv(100) == b"\x03\x02\x01"  # GWINFO, gateway id 1


def test_advertise_is_sent_every_period(node: Node, api: httpx.Client) -> None:
    with raw_socket() as listener:
        listener.bind((HOST, 0))
        port = listener.getsockname()[1]
        node.listeners.pop(LISTENER)
        configure(api, node, PLUGIN, {"mqtt.sn.advertise_address": f"{HOST}:{port}",
                                      "mqtt.sn.advertise_duration": "1s"})
        try:
            wait_until(lambda: LISTENER in node.listeners, message="the gateway bound again")
            advertise = sn.AdvertisePacket()
            advertise.decode(listener.recv(100))
            # ADVERTISE, gateway id 1, Duration in seconds (spec §5.4.1).
            assert (advertise.type, advertise.gwID, advertise.duration) == (C.TYPE_ADVERTISE,
                                                                              1, 1)
            first = time.monotonic()
            listener.recv(100)
            assert 0.5 < time.monotonic() - first < 3
        finally:
            node.listeners.pop(LISTENER, None)
            configure(api, node, PLUGIN, {"mqtt.sn.advertise_address": "off",
                                          "mqtt.sn.advertise_duration": "0"})
            wait_until(lambda: LISTENER in node.listeners, message="the gateway bound again")


# -- MQTT-SN to MQTT -----------------------------------------------------------------------
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_publish_at_each_qos_reaches_mqtt(node: Node, clients: Clients, qos: int) -> None:
    topic = f"sn/{uid()}/up"
    sub = clients(node)
    sub.subscribe(topic, 2)
    done = sn_pub(sn_port(node), "-t", topic, "-m", f"qos{qos}", "-q", str(qos))
    assert done.returncode == 0, done.stderr
    msg = sub.get()
    assert (msg.topic, msg.payload, msg.qos) == (topic, f"qos{qos}".encode(), qos)


def test_qos_minus_one_without_a_connection(node: Node, clients: Clients) -> None:
    sub = clients(node)
    sub.subscribe(HELLO, 1)
    sub.subscribe("ab", 1)
    port = sn_port(node)
    assert sn_pub(port, "-q", "-1", "-T", "1", "-m", "predefined").returncode == 0
    assert sn_pub(port, "-q", "-1", "-t", "ab", "-m", "short").returncode == 0
    got = {(m.topic, m.payload, m.qos) for m in sub.get_many(2)}
    assert got == {(HELLO, b"predefined", 0), ("ab", b"short", 0)}


def test_predefined_and_short_topics_both_ways(node: Node, clients: Clients,
                                               api: httpx.Client) -> None:
    mqtt = clients(node)
    mqtt.subscribe(NICE, 1)
    assert sn_pub(sn_port(node), "-T", "2", "-q", "1", "-m", "to-nice").returncode == 0
    assert mqtt.get().payload == b"to-nice"
    client_id = sn_id("snsub")
    sub = SnSub(sn_port(node), "-T", "1", "-q", "1", "-i", client_id, "-1")
    try:
        wait_until(lambda: subscribed(api, client_id, HELLO), message="SUBSCRIBE by id")
        mqtt.publish(HELLO, b"from-mqtt", qos=1)
        assert sub.get() == "from-mqtt"
        assert sub.wait() == 0
    finally:
        sub.stop()
    short_id = sn_id("snshort")
    sub = SnSub(sn_port(node), "-t", "zz", "-i", short_id, "-1")
    try:
        wait_until(lambda: subscribed(api, short_id, "zz"), message="SUBSCRIBE short name")
        mqtt.publish("zz", b"short-down")
        assert sub.get() == "short-down"
    finally:
        sub.stop()


# -- MQTT to MQTT-SN -----------------------------------------------------------------------
def test_mqtt_publish_reaches_mqtt_sn_subscribers_with_wildcards(
        node: Node, clients: Clients, api: httpx.Client) -> None:
    base = f"down/{uid()}"
    client_id = sn_id("snsub")
    sub = SnSub(sn_port(node), "-t", f"{base}/+", "-q", "1", "-i", client_id)
    try:
        wait_until(lambda: subscribed(api, client_id, f"{base}/+"), message="SUBSCRIBE")
        pub = clients(node)
        # Each topic is REGISTERed to the client before its first PUBLISH.
        pub.publish(f"{base}/a", b"q0", qos=0)
        pub.publish(f"{base}/b", b"q1", qos=1)
        pub.publish(f"{base}/a", b"q2", qos=2)
        assert [sub.get(), sub.get(), sub.get()] == ["q0", "q1", "q2"]
    finally:
        sub.stop()


def test_qos2_delivery_to_an_mqtt_sn_client(node: Node, clients: Clients,
                                            api: httpx.Client) -> None:
    # mqtt-sn-12's poller acknowledges QoS 1 only: the QoS 2 exchange is driven
    # with its packet classes over its own socket.
    topic = f"q2/{uid()}"
    client = SnLibClient(sn_port(node), sn_id("snq2")).connect()
    try:
        client.client.send_subscribe(topic, 2, client.listener)
        clients(node).publish(topic, b"exactly-once", qos=2)
        publish = sn.PublishPacket()
        publish.decode(client.client.wait_for(True, C.TYPE_PUBLISH))
        assert publish.get_qos() == 2 and publish.get_data() == b"exactly-once"
        pubrec = sn.PubRecPacket()
        pubrec.set_message_id(publish.get_message_id())
        client.client.send_packet(pubrec.encode())
        pubrel = sn.PubRelPacket()
        pubrel.decode(client.client.wait_for(True, C.TYPE_PUBREL))
        assert pubrel.get_message_id() == publish.get_message_id()
        pubcomp = sn.PubCompPacket()
        pubcomp.set_message_id(publish.get_message_id())
        client.client.send_packet(pubcomp.encode())
        session = ok(api.get(f"/sessions/{client.client_id}"))[0]
        wait_until(lambda: ok(api.get(f"/sessions/{client.client_id}"))[0]["inflight_len"] == 0,
                   message="the delivery completed")
        assert session["client_id"] == client.client_id
    finally:
        client.close()


def test_retained_message_arrives_after_suback(node: Node, clients: Clients) -> None:
    topic = f"retained/{uid()}"
    clients(node).publish(topic, b"kept", qos=1, retain=True)
    client = SnLibClient(sn_port(node), sn_id("snret")).connect()
    try:
        # send_subscribe waits for SUBACK and drops anything else meanwhile: the
        # retained message must come after it.
        client.client.send_subscribe(topic, 1, client.listener)
        client.start_polling()
        message = client.get()
        assert message.get_payload() == b"kept" and message.get_retain()
    finally:
        client.close()
        clients(node).publish(topic, b"", retain=True)


def test_persistent_session_keeps_messages_across_connections(
        node: Node, clients: Clients) -> None:
    topic = f"persist/{uid()}"
    client_id = sn_id("snkeep")
    first = SnLibClient(sn_port(node), client_id, clean_session=False).connect()
    try:
        first.client.send_subscribe(topic, 1, first.listener)
        first.client.send_disconnect()
    finally:
        first.close()
    clients(node).publish(topic, b"while-away", qos=1)
    again = SnLibClient(sn_port(node), client_id, clean_session=False).connect()
    try:
        # Topic ids are per connection: the topic is REGISTERed again first.
        publish = sn.PublishPacket()
        publish.decode(again.client.wait_for(True, C.TYPE_PUBLISH))
        assert publish.get_data() == b"while-away"
        assert again.client.topic_map[publish.get_topic_id()] == topic
    finally:
        again.close()


# -- sleeping clients ---------------------------------------------------------------------
def test_sleeping_client_gets_buffered_messages_on_wake_up(
        node: Node, clients: Clients, api: httpx.Client) -> None:
    # mqtt-sn-12 1.0.9's poller never sends PUBACK (it compares the QoS with the
    # flag's bit value), so the messages are acknowledged here with its own
    # packet classes and socket.
    topic = f"sleep/{uid()}"
    client = SnLibClient(sn_port(node), sn_id("sleepy"), keepalive=60).connect()
    lib = client.client
    try:
        lib.send_subscribe(topic, 1, client.listener)
        lib.send_disconnect(120)  # asleep for up to 120 s
        pub = clients(node)
        for i in range(3):
            pub.publish(topic, f"while-asleep-{i}".encode(), qos=1)
        # Still a connected client of the broker, its messages held for it.
        conn = ok(api.get(f"/connections/{client.client_id}"))[0]
        assert conn["client_id"] == client.client_id
        wait_until(lambda: ok(api.get(f"/sessions/{client.client_id}"))[0]["mqueue_len"] == 3,
                   message="three buffered messages")
        assert receive(lib, 0.3) is None  # nothing while asleep
        wake = sn.PingReqPacket()
        wake.client_id = client.client_id
        lib.send_packet(wake.encode())
        publishes = []
        for _ in range(3):
            publish = sn.PublishPacket()
            publish.decode(lib.wait_for(True, C.TYPE_PUBLISH))  # REGISTER answered on the way
            publishes.append(publish)
        assert [p.get_data() for p in publishes] == [
            b"while-asleep-0", b"while-asleep-1", b"while-asleep-2"]
        assert receive(lib, 0.3) is None  # no PINGRESP while they are unacknowledged
        for publish in publishes:
            lib.send_puback(publish, C.ACCEPTED)
        pingresp = receive(lib, 5)
        assert pingresp is not None and pingresp[1] == C.TYPE_PINGRESP
        wait_until(lambda: ok(api.get(f"/sessions/{client.client_id}"))[0]["inflight_len"] == 0,
                   message="acknowledged")
        # Asleep again: the next message waits for the next wake-up.
        pub.publish(topic, b"next-nap", qos=1)
        assert receive(lib, 0.3) is None
        lib.send_packet(wake.encode())
        publish = sn.PublishPacket()
        publish.decode(lib.wait_for(True, C.TYPE_PUBLISH))
        assert publish.get_data() == b"next-nap"
    finally:
        client.close()


def receive(lib: Any, timeout: float) -> bytes | None:
    """The next datagram the client's socket gets within `timeout`, else None."""
    lib.datagram_socket.settimeout(timeout)
    try:
        data: bytes = lib.datagram_socket.recv(65535)
    except TimeoutError:
        return None
    return data


# -- the will -----------------------------------------------------------------------------
def test_will_is_published_when_the_client_goes_silent(node: Node, clients: Clients,
                                                       api: httpx.Client) -> None:
    will_topic = f"will/{uid()}"
    watcher = clients(node)
    watcher.subscribe(will_topic, 1)
    client_id = sn_id("snwill")
    sub = SnSub(sn_port(node), "-t", f"x/{uid()}", "-i", client_id, "-k", "1",
                "--will-topic", will_topic, "--will-payload", "gone", "--will-qos", "1")
    try:
        wait_until(lambda: ok(api.get("/connections/" + client_id)), message="connected")
    finally:
        sub.stop()  # killed: no DISCONNECT, no more PINGREQ
    msg = watcher.get(timeout=10)
    assert (msg.payload, msg.qos) == (b"gone", 1)
    wait_until(lambda: not ok(api.get("/connections/" + client_id)), message="gone")


def test_no_will_after_disconnect(node: Node, clients: Clients) -> None:
    will_topic = f"will/{uid()}"
    watcher = clients(node)
    watcher.subscribe(will_topic, 1)
    done = sn_pub(sn_port(node), "-t", f"x/{uid()}", "-m", "m", "--will-topic", will_topic,
                  "--will-payload", "gone")
    assert done.returncode == 0, done.stderr
    time.sleep(0.5)
    assert watcher.drain() == []


# -- the REST API sees and kicks MQTT-SN clients ---------------------------------------------
def test_listed_by_the_api_and_kicked(node: Node, clients: Clients, api: httpx.Client) -> None:
    will_topic = f"kick/{uid()}"
    watcher = clients(node)
    watcher.subscribe(will_topic, 0)
    client = SnLibClient(sn_port(node), sn_id("snapi"))
    client.client.set_will_topic(will_topic)
    client.client.set_will_message("kicked")
    client.connect()
    try:
        client.client.send_subscribe("api/+/x", 1, client.listener)
        [conn] = ok(api.get(f"/connections/{client.client_id}"))
        assert (conn["proto_name"], conn["proto_ver"], conn["keepalive"]) == ("MQTT-SN", 12, 30)
        assert conn["ipaddress"] == HOST
        [session] = ok(api.get(f"/sessions/{client.client_id}"))
        assert session["clean_start"] is True
        [sub] = ok(api.get(f"/subscriptions/{client.client_id}"))
        assert (sub["topic"], sub["qos"]) == ("api/+/x", 1)
        ok(api.delete(f"/connections/{client.client_id}"))
        # The client hears DISCONNECT; the broker forgets it; the will goes out.
        assert client.client.wait_for(True, C.TYPE_DISCONNECT) is not None
        assert ok(api.get(f"/connections/{client.client_id}")) == []
        assert watcher.get().payload == b"kicked"
    finally:
        client.close()


def test_hooks_see_mqtt_sn_clients(node: Node, api: httpx.Client, clients: Clients) -> None:
    with HttpReceiver() as server:
        configure(api, node, "emqx_web_hook", {"web.hook.api.url": server.url + "/hook"})
        ok(api.put(f"/nodes/{node.name}/plugins/emqx_web_hook/load"))
        try:
            client_id = sn_id("snhook")
            topic = f"hook/{uid()}"
            assert sn_pub(sn_port(node), "-i", client_id, "-t", topic, "-m", "hi",
                          "-q", "1").returncode == 0

            def actions() -> set[str]:
                return {r.json()["action"] for r in server.requests
                        if client_id in (r.json().get("client_id"),
                                         r.json().get("from_client_id"))}
            wait_until(lambda: {"client_connected", "message_publish",
                                "client_disconnected"} <= actions(), message="web hooks")
        finally:
            ok(api.put(f"/nodes/{node.name}/plugins/emqx_web_hook/unload"))


def test_presence_event_names_the_protocol(node: Node, clients: Clients) -> None:
    watcher = clients(node)
    client_id = sn_id("snsys")
    watcher.subscribe(f"$SYS/brokers/+/clients/{client_id}/connected", 0)
    assert sn_pub(sn_port(node), "-i", client_id, "-t", "p", "-m", "x").returncode == 0
    event = json.loads(watcher.get().payload)
    assert event["clientid"] == client_id and event["proto_name"] == "MQTT-SN"


# -- ACL ----------------------------------------------------------------------------------
def test_acl_refuses_publish_and_subscribe(node: Node, clients: Clients) -> None:
    watcher = clients(node)
    watcher.subscribe("forbidden/#", 1)
    denied = sn_pub(sn_port(node), "-t", "forbidden/x", "-m", "no", "-q", "1")
    assert denied.returncode != 0
    assert "PUBLISH error: Rejected: not supported" in denied.stdout + denied.stderr
    assert watcher.drain() == []
    sub = SnSub(sn_port(node), "-t", "secret/x", "-i", sn_id("snacl"))
    try:
        assert sub.wait() != 0  # the client gives up on a refused SUBSCRIBE
        assert sub.proc.stderr is not None
        assert "SUBSCRIBE error: Rejected: not supported" in sub.proc.stderr.read()
    finally:
        sub.stop()


# -- malformed datagrams and floods -------------------------------------------------------
def test_malformed_datagrams_are_dropped_and_counted(node: Node, api: httpx.Client,
                                                     clients: Clients) -> None:
    before = metrics(api)["gateway/mqttsn/malformed"]
    garbage = [b"", b"\x00", b"\x05\x0c", b"\xff" * 40, b"\x02\x03", b"\x01\x00\x09\x04",
               b"\x05\xfe\x01\x02\x03", b"\x08\x04\x04\x01\x00\x1e\xff\xfe"]
    with raw_socket() as sock:
        for datagram in garbage:
            sock.sendto(datagram, (HOST, sn_port(node)))
    topic = f"after/{uid()}"
    sub = clients(node)
    sub.subscribe(topic, 1)
    assert sn_pub(sn_port(node), "-t", topic, "-m", "still-here", "-q", "1").returncode == 0
    assert sub.get().payload == b"still-here"
    # The empty datagram may not be delivered by the kernel as a datagram at all.
    assert metrics(api)["gateway/mqttsn/malformed"] - before >= len(garbage) - 1


def test_a_flood_from_one_peer_is_bounded(tmp_path: Path) -> None:
    node = start_node(tmp_path, {"mqtt.sn.peer_rate_limit": "50"})
    made = Clients()
    try:
        watcher = made(node)
        watcher.subscribe("flood/#", 0)
        port = sn_port(node)
        flooder = SnLibClient(port, sn_id("flooder")).connect()
        topic_id = flooder.client.send_register("flood/x")
        publish = sn.PublishPacket()
        publish.set_flags(C.TOPIC_TYPE_NORMAL)
        publish.set_topic_id(topic_id)
        publish.set_message_id(0)
        publish.set_data(b"f")
        datagram = publish.encode()
        start = time.monotonic()
        for _ in range(3000):
            flooder.client.datagram_socket.sendto(datagram, (HOST, port))
        elapsed = time.monotonic() - start
        # Another client is served meanwhile.
        assert sn_pub(port, "-t", "flood/other", "-m", "served", "-q", "1").returncode == 0
        time.sleep(1.0)
        got = watcher.drain()
        flood = [m for m in got if m.topic == "flood/x"]
        assert any(m.topic == "flood/other" for m in got)
        # At most the bucket (50) plus 50 a second of the flood got through.
        assert 0 < len(flood) <= 50 + 50 * (elapsed + 1)
        with node.api() as api:
            # The rest was refused by the bucket, or lost in the kernel's socket buffer.
            limited = metrics(api)["gateway/mqttsn/rate_limited"]
            assert limited > 0 and len(flood) + limited <= 3000
        flooder.close()
    finally:
        made.close()
        node.stop()


# -- auth ---------------------------------------------------------------------------------
def test_credentials_from_config_go_through_the_auth_chain(tmp_path: Path) -> None:
    node = start_node(tmp_path, {
        "mqtt.sn.username": "sn-all", "mqtt.sn.password": "wrong",
        "mqtt.sn.client.lab.clientid": "lab-device", "mqtt.sn.client.lab.username": "sn-lab",
        "mqtt.sn.client.lab.password": "lab-secret"},
        **{"mqtt.allow_anonymous": "false"})
    try:
        with node.api() as api:
            ok(api.put(f"/nodes/{node.name}/plugins/emqx_auth_username/load"))
            for user, password in (("sn-all", "right"), ("sn-lab", "lab-secret")):
                ok(api.post("/auth_username", json={"username": user, "password": password}))
            refused = sn_pub(sn_port(node), "-i", "any-device", "-t", "a", "-m", "x")
            assert refused.returncode != 0
            assert "CONNECT error: Rejected: not supported" in refused.stdout + refused.stderr
            # The per-client credentials are right.
            lab = SnLibClient(sn_port(node), "lab-device").connect()
            [conn] = ok(api.get("/connections/lab-device"))
            assert conn["username"] == "sn-lab"
            lab.close()
            # Fix the shared password: the plugin reloads with the new config.
            node.listeners.pop(LISTENER)
            configure(api, node, PLUGIN, {"mqtt.sn.password": "right"})
            wait_until(lambda: LISTENER in node.listeners, message="the gateway bound again")
            assert sn_pub(sn_port(node), "-i", "any-device", "-t", "a", "-m", "x").returncode == 0
    finally:
        node.stop()


def test_banned_client_is_refused(node: Node, api: httpx.Client) -> None:
    client_id = sn_id("snban")
    ok(api.post("/banned/", json={"who": client_id, "as": "client_id", "reason": "test"}))
    try:
        refused = sn_pub(sn_port(node), "-i", client_id, "-t", "a", "-m", "x")
        assert refused.returncode != 0
        assert "CONNECT error" in refused.stdout + refused.stderr
    finally:
        api.delete(f"/banned/client_id/{client_id}")


def test_client_id_with_a_control_character_is_refused(node: Node) -> None:
    """As for MQTT (docs/behaviour.md, "Control characters"): the client id is
    logged and shown, so one holding a terminal escape is refused at CONNECT."""
    refused = sn_pub(sn_port(node), "-i", "sn\x1b[31mred", "-t", "a", "-m", "x")
    assert refused.returncode != 0
    assert "CONNECT error" in refused.stdout + refused.stderr


def test_client_id_with_a_control_character_allowed_by_setting(tmp_path: Path) -> None:
    node = start_node(tmp_path, **{"mqtt.allow_control_characters": "true"})
    try:
        accepted = sn_pub(sn_port(node), "-i", "sn\x1b[31mred", "-t", "a", "-m", "x")
        assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    finally:
        node.stop()


# -- unload -------------------------------------------------------------------------------
def test_unload_closes_the_listener_and_load_opens_it_again(tmp_path: Path) -> None:
    node = start_node(tmp_path)
    try:
        port = node.listeners[LISTENER][1]
        with node.api() as api:
            client = SnLibClient(port, sn_id("snunload")).connect()
            # Listed with the node's own listeners while loaded, with its client.
            row = listener_row(api, node.name, "mqttsn:udp")
            assert row is not None and row["listen_on"] == f"{HOST}:{port}"
            assert row["current_conns"] == 1
            ok(api.put(f"/nodes/{node.name}/plugins/{PLUGIN}/unload"))
            assert listener_row(api, node.name, "mqttsn:udp") is None
            # Its clients are told, and gone from the broker.
            assert client.client.wait_for(True, C.TYPE_DISCONNECT) is not None
            client.close()
            assert ok(api.get("/connections/")) == []
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.bind((HOST, port))  # the port is free again
            node.listeners.pop(LISTENER)
            ok(api.put(f"/nodes/{node.name}/plugins/{PLUGIN}/load"))
            wait_until(lambda: LISTENER in node.listeners, message="listener line")
            assert sn_pub(node.listeners[LISTENER][1], "-t", "back", "-m", "x").returncode == 0
    finally:
        node.stop()


def test_bad_config_is_refused_naming_the_key(node: Node, api: httpx.Client) -> None:
    resp = api.put(f"/nodes/{node.name}/plugin_configs/{PLUGIN}",
                   json={"mqtt.sn.port": "not-a-port"})
    assert resp.status_code != 200 or resp.json()["code"] != 0
    assert "mqtt.sn.port" in resp.text
