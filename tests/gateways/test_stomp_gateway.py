"""emqx_stomp on a live node, driven by the real stomp.py (its library at
STOMP 1.0, 1.1 and 1.2, and its `stomp` command) and, on the MQTT side,
paho-mqtt: SEND and MESSAGE both ways at every QoS, wildcard destinations,
transactions, ACK/NACK redelivery, heart-beats, auth and ACL refusals, the
REST API's lists and kick, plugin unload, malformed frames from a raw socket."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import stomp
from helpers.api import listener_row, ok
from helpers.certs import CA
from helpers.clients import Clients, uid, wait_until
from helpers.gateways import HOST, gateway_node, stomp_connection
from helpers.http_receiver import HttpReceiver
from helpers.plugin_api import configure

from tests.conftest import Node

PLUGIN = "emqx_stomp"
LISTENER = "stomp:tcp:default"
STOMP_CONF = {"stomp.listener": "127.0.0.1:0", "stomp.idle_timeout": "2s"}


def start_node(tmp_path: Path, conf: dict[str, str] | None = None, **settings: str) -> Node:
    node: Node = gateway_node(tmp_path, PLUGIN, {**STOMP_CONF, **(conf or {})}, **settings)
    return node


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    node = start_node(tmp_path_factory.mktemp("stomp"))
    yield node
    node.stop()


@pytest.fixture
def api(node: Node) -> Iterator[httpx.Client]:
    with node.api() as client:
        yield client


@pytest.fixture
def connections() -> Iterator[list[Any]]:
    made: list[Any] = []
    yield made
    for conn in made:
        if conn.is_connected():
            conn.disconnect()


def stomp_port(node: Node) -> int:
    return node.listeners[LISTENER][1]


def connect(node: Node, made: list[Any], version: str = "1.2", login: str | None = "guest",
            passcode: str | None = "guest", **headers: str) -> tuple[Any, Any]:
    conn, frames = stomp_connection(stomp_port(node), version)
    made.append(conn)
    conn.connect(login, passcode, wait=True, headers=headers)
    return conn, frames


def metrics(api: httpx.Client) -> dict[str, int]:
    data: dict[str, int] = ok(api.get("/metrics/"))[0]["metrics"]
    return data


def subscribed(api: httpx.Client, client_id: str, topic: str) -> bool:
    return any(s["topic"] == topic for s in ok(api.get(f"/subscriptions/{client_id}")))


# -- SEND and MESSAGE, every version --------------------------------------------------------
@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
def test_send_reaches_mqtt_and_mqtt_reaches_stomp(node: Node, clients: Clients,
                                                  connections: list[Any], version: str) -> None:
    topic = f"st/{uid()}"
    mqtt = clients(node)
    mqtt.subscribe(topic, 2)
    conn, frames = connect(node, connections, version)
    conn.send(topic, "from stomp", headers={"x-note": "kept"})
    msg = mqtt.get()
    assert (msg.topic, msg.payload, msg.qos) == (topic, b"from stomp", 0)
    conn.subscribe(f"{topic}/in", id="s1", ack="auto")
    wait_until(lambda: mqtt_sees_route(node, f"{topic}/in"), message="subscription")
    mqtt.publish(f"{topic}/in", b"from mqtt", qos=1)
    frame = frames.message()
    assert frame.body == "from mqtt"
    assert frame.headers["destination"] == f"{topic}/in"
    assert frame.headers["subscription"] == "s1"


def mqtt_sees_route(node: Node, topic: str) -> bool:
    with node.api() as api:
        return any(r["topic"] == topic for r in ok(api.get("/routes/")))


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_send_with_each_qos(node: Node, clients: Clients, connections: list[Any],
                            qos: int) -> None:
    topic = f"st/{uid()}"
    mqtt = clients(node)
    mqtt.subscribe(topic, 2)
    conn, _ = connect(node, connections)
    conn.send(topic, f"q{qos}", headers={"qos": str(qos)})
    msg = mqtt.get()
    assert (msg.payload, msg.qos) == (f"q{qos}".encode(), qos)


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_mqtt_publish_at_each_qos_reaches_stomp(node: Node, clients: Clients,
                                                connections: list[Any], qos: int) -> None:
    topic = f"st/{uid()}"
    conn, frames = connect(node, connections)
    conn.subscribe(topic, id="1", ack="client-individual")
    wait_until(lambda: mqtt_sees_route(node, topic), message="subscription")
    clients(node).publish(topic, f"m{qos}".encode(), qos=qos)
    frame = frames.message()
    assert frame.body == f"m{qos}"
    conn.ack(frame.headers["ack"])


def test_extra_headers_travel_as_mqtt5_user_properties(node: Node,
                                                       connections: list[Any]) -> None:
    topic = f"st/{uid()}"
    conn, frames = connect(node, connections)
    conn.subscribe(topic, id="1")
    wait_until(lambda: mqtt_sees_route(node, topic), message="subscription")
    conn.send(topic, "with headers", content_type="application/json",
              headers={"x-trace": "abc-1"})
    frame = frames.message()
    assert frame.headers["x-trace"] == "abc-1"
    assert frame.headers["content-type"] == "application/json"


def test_body_with_nul_bytes(node: Node, clients: Clients, connections: list[Any]) -> None:
    topic = f"st/{uid()}"
    mqtt = clients(node)
    mqtt.subscribe(topic, 0)
    conn, frames = connect(node, connections)
    conn.subscribe(topic, id="1")
    wait_until(lambda: mqtt_sees_route(node, topic), message="subscription")
    conn.send(topic, b"a\x00b\x00c")
    assert mqtt.get().payload == b"a\x00b\x00c"
    assert frames.message().body == "a\x00b\x00c"


def test_wildcard_destinations_receive(node: Node, clients: Clients,
                                       connections: list[Any]) -> None:
    base = f"wild/{uid()}"
    conn, frames = connect(node, connections)
    conn.subscribe(f"{base}/+/temp", id="plus")
    conn.subscribe(f"{base}/#", id="hash")
    wait_until(lambda: mqtt_sees_route(node, f"{base}/#"), message="subscriptions")
    clients(node).publish(f"{base}/kitchen/temp", b"21", qos=1)
    first, second = frames.message(), frames.message()
    assert sorted((f.headers["subscription"], f.body) for f in (first, second)) == [
        ("hash", "21"), ("plus", "21")]
    clients(node).publish(f"{base}/kitchen/humidity", b"40")
    frame = frames.message()
    assert (frame.headers["subscription"], frame.body) == ("hash", "40")
    frames.no_message()


# -- transactions ---------------------------------------------------------------------------
def test_transaction_committed_and_aborted(node: Node, clients: Clients,
                                           connections: list[Any]) -> None:
    topic = f"tx/{uid()}"
    mqtt = clients(node)
    mqtt.subscribe(topic, 0)
    conn, _ = connect(node, connections)
    tx = conn.begin()
    conn.send(topic, "one", transaction=tx)
    conn.send(topic, "two", transaction=tx)
    time.sleep(0.3)
    assert mqtt.drain() == []  # nothing before COMMIT
    conn.commit(tx)
    assert [m.payload for m in mqtt.get_many(2)] == [b"one", b"two"]
    tx = conn.begin()
    conn.send(topic, "never", transaction=tx)
    conn.abort(tx)
    conn.send(topic, "after-abort")
    assert mqtt.get().payload == b"after-abort"


def test_unknown_transaction_is_an_error(node: Node, connections: list[Any]) -> None:
    conn, frames = connect(node, connections)
    conn.commit("no-such-tx")
    error = frames.error()
    assert "transaction no-such-tx not found" in error.headers["message"]
    assert frames.disconnected.wait(5)


# -- ACK / NACK ---------------------------------------------------------------------------
def test_nack_redelivers_and_ack_settles(node: Node, clients: Clients,
                                         connections: list[Any]) -> None:
    topic = f"ack/{uid()}"
    conn, frames = connect(node, connections)
    conn.subscribe(topic, id="s", ack="client-individual")
    wait_until(lambda: mqtt_sees_route(node, topic), message="subscription")
    clients(node).publish(topic, b"work", qos=1)
    first = frames.message()
    assert "redelivered" not in first.headers
    conn.nack(first.headers["ack"])
    again = frames.message()
    assert again.body == "work" and again.headers["redelivered"] == "true"
    assert again.headers["message-id"] != first.headers["message-id"]
    conn.ack(again.headers["ack"])
    frames.no_message()


def test_client_ack_mode_is_cumulative_and_unacked_are_held(
        node: Node, clients: Clients, connections: list[Any], api: httpx.Client) -> None:
    topic = f"ack/{uid()}"
    client_id = uid("stcum")
    conn, frames = connect(node, connections, **{"client-id": client_id})
    conn.subscribe(topic, id="s", ack="client")
    wait_until(lambda: subscribed(api, client_id, topic), message="subscription")
    pub = clients(node)
    for i in range(3):
        pub.publish(topic, f"m{i}".encode(), qos=1)
    received = [frames.message() for _ in range(3)]
    session = ok(api.get(f"/sessions/{client_id}"))[0]
    assert session["inflight_len"] == 3  # held by the session until acknowledged
    conn.ack(received[1].headers["ack"])  # the first two
    wait_until(lambda: ok(api.get(f"/sessions/{client_id}"))[0]["inflight_len"] == 1,
               message="cumulative ACK")
    conn.ack(received[2].headers["ack"])
    wait_until(lambda: ok(api.get(f"/sessions/{client_id}"))[0]["inflight_len"] == 0,
               message="last ACK")


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_ack_in_older_versions(node: Node, clients: Clients, connections: list[Any],
                               version: str) -> None:
    topic = f"ack/{uid()}"
    conn, frames = connect(node, connections, version)
    if version == "1.0":
        conn.subscribe(topic, id="s", ack="client")
    else:
        conn.subscribe(topic, id="s", ack="client-individual")
    wait_until(lambda: mqtt_sees_route(node, topic), message="subscription")
    clients(node).publish(topic, b"x", qos=1)
    frame = frames.message()
    if version == "1.0":
        conn.ack(frame.headers["message-id"])
    else:
        conn.nack(frame.headers["message-id"], "s")
        again = frames.message()
        assert again.headers["redelivered"] == "true"
        conn.ack(again.headers["message-id"], "s")
    frames.no_message()


# -- auth and ACL --------------------------------------------------------------------------
def test_default_user_and_wrong_passcode(node: Node, connections: list[Any]) -> None:
    connect(node, connections)  # guest / guest
    conn, frames = stomp_connection(stomp_port(node))
    connections.append(conn)
    with pytest.raises(stomp.exception.ConnectFailedException):
        conn.connect("guest", "wrong", wait=True)
    assert frames.error().headers["message"] == "bad login or passcode"


def test_logins_go_through_the_auth_chain(tmp_path: Path) -> None:
    node = start_node(tmp_path, {"stomp.allow_anonymous": "false"},
                      **{"mqtt.allow_anonymous": "false"})
    made: list[Any] = []
    try:
        with node.api() as api:
            ok(api.put(f"/nodes/{node.name}/plugins/emqx_auth_username/load"))
            ok(api.post("/auth_username", json={"username": "app", "password": "s3cret"}))
            conn, _ = connect(node, made, login="app", passcode="s3cret",
                              **{"client-id": "stomp-app"})
            [info] = ok(api.get("/connections/stomp-app"))
            assert info["username"] == "app" and info["proto_name"] == "STOMP"
            for login, passcode in (("app", "nope"), (None, None)):
                conn, frames = stomp_connection(stomp_port(node))
                made.append(conn)
                with pytest.raises(stomp.exception.ConnectFailedException):
                    conn.connect(login, passcode, wait=True)
                assert frames.error().headers["message"]
    finally:
        for conn in made:
            if conn.is_connected():
                conn.disconnect()
        node.stop()


def test_acl_refuses_send_and_subscribe(node: Node, clients: Clients,
                                        connections: list[Any]) -> None:
    watcher = clients(node)
    watcher.subscribe("forbidden/#", 0)
    conn, frames = connect(node, connections)
    conn.send("forbidden/x", "no", receipt="r1")
    error = frames.error()
    assert "not authorized to send" in error.headers["message"]
    assert error.headers["receipt-id"] == "r1"
    assert frames.disconnected.wait(5)
    assert watcher.drain() == []
    conn, frames = connect(node, connections)
    conn.subscribe("secret/x", id="1")
    assert "not authorized to subscribe" in frames.error().headers["message"]


# -- the REST API ---------------------------------------------------------------------------
def test_listed_and_kicked(node: Node, api: httpx.Client, connections: list[Any]) -> None:
    client_id = uid("stkick")
    conn, frames = connect(node, connections, **{"client-id": client_id})
    conn.subscribe("kick/+/x", id="k", ack="client")
    wait_until(lambda: subscribed(api, client_id, "kick/+/x"), message="subscription")
    [info] = ok(api.get(f"/connections/{client_id}"))
    assert (info["proto_name"], info["proto_ver"], info["ipaddress"]) == ("STOMP", 12, HOST)
    [sub] = ok(api.get(f"/subscriptions/{client_id}"))
    assert (sub["topic"], sub["qos"]) == ("kick/+/x", 1)
    assert ok(api.get(f"/sessions/{client_id}"))[0]["clean_start"] is True
    ok(api.delete(f"/connections/{client_id}"))
    assert frames.disconnected.wait(5)
    assert ok(api.get(f"/connections/{client_id}")) == []
    assert ok(api.get(f"/sessions/{client_id}")) == []


def test_generated_client_id_when_connect_names_none(node: Node, api: httpx.Client,
                                                     connections: list[Any]) -> None:
    conn, _frames = stomp_connection(stomp_port(node))
    connections.append(conn)
    got: list[Any] = []

    class Connected(stomp.ConnectionListener):  # type: ignore[misc]
        def on_connected(self, frame: Any) -> None:
            got.append(frame)
    conn.set_listener("connected", Connected())
    conn.connect("guest", "guest", wait=True)
    session = got[0].headers["session"]
    assert session.startswith("stomp-")
    assert ok(api.get(f"/connections/{session}"))[0]["proto_name"] == "STOMP"


def test_hooks_see_stomp_clients(node: Node, api: httpx.Client, clients: Clients,
                                 connections: list[Any]) -> None:
    watcher = clients(node)
    client_id = uid("stsys")
    watcher.subscribe(f"$SYS/brokers/+/clients/{client_id}/connected", 0)
    with HttpReceiver() as server:
        configure(api, node, "emqx_web_hook", {"web.hook.api.url": server.url + "/hook"})
        ok(api.put(f"/nodes/{node.name}/plugins/emqx_web_hook/load"))
        try:
            conn, _ = connect(node, connections, **{"client-id": client_id})
            conn.send(f"hook/{uid()}", "hi")
            conn.disconnect()

            def actions() -> set[str]:
                return {r.json()["action"] for r in server.requests
                        if client_id in (r.json().get("client_id"),
                                         r.json().get("from_client_id"))}
            wait_until(lambda: {"client_connected", "message_publish",
                                "client_disconnected"} <= actions(), message="web hooks")
        finally:
            ok(api.put(f"/nodes/{node.name}/plugins/emqx_web_hook/unload"))
    event = json.loads(watcher.get().payload)
    assert event["clientid"] == client_id and event["proto_name"] == "STOMP"


# -- heart-beats --------------------------------------------------------------------------
def test_heart_beats_both_ways(node: Node, connections: list[Any]) -> None:
    beats: list[float] = []

    class Beats(stomp.ConnectionListener):  # type: ignore[misc]
        def on_heartbeat(self) -> None:
            beats.append(time.monotonic())
    conn, _frames = stomp_connection(stomp_port(node), "1.2", heartbeats=(200, 200))
    connections.append(conn)
    conn.set_listener("beats", Beats())
    conn.connect("guest", "guest", wait=True)
    wait_until(lambda: len(beats) >= 3, timeout=10, message="three heart-beats")
    assert conn.is_connected()  # stomp.py's own beats keep us alive


def test_silent_client_is_closed_after_its_heart_beat(node: Node) -> None:
    with socket.create_connection((HOST, stomp_port(node)), timeout=10) as sock:
        sock.sendall(b"CONNECT\naccept-version:1.2\nhost:x\nlogin:guest\npasscode:guest\n"
                     b"heart-beat:200,0\n\n\x00")
        data = b""
        while b"\x00" not in data:
            data += sock.recv(1000)
        assert data.startswith(b"CONNECTED\n") and b"heart-beat:0,200" in data
        start = time.monotonic()
        while sock.recv(1000):
            pass  # closed by the gateway after two silent intervals
        assert time.monotonic() - start < 5


# -- malformed frames and unload ----------------------------------------------------------
@pytest.mark.parametrize("garbage", [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,  # a TLS ClientHello
    b"CONNECT\naccept-version:1.2\nbad header\n\n\x00",
    b"SEND\n" + b"h:v\n" * 20 + b"\n\x00",  # over stomp.frame.max_headers
])
def test_malformed_frames_get_an_error_and_are_counted(node: Node, api: httpx.Client,
                                                       clients: Clients,
                                                       connections: list[Any],
                                                       garbage: bytes) -> None:
    bystander, _frames = connect(node, connections)
    before = metrics(api)["gateway/stomp/malformed"]
    with socket.create_connection((HOST, stomp_port(node)), timeout=10) as sock:
        sock.sendall(garbage)
        data = b""
        while chunk := sock.recv(1000):
            data += chunk
    assert data.startswith(b"ERROR\n")
    assert metrics(api)["gateway/stomp/malformed"] == before + 1
    topic = f"by/{uid()}"
    mqtt = clients(node)
    mqtt.subscribe(topic, 0)
    bystander.send(topic, "unaffected")
    assert mqtt.get().payload == b"unaffected"


def test_body_over_the_limit_is_refused(tmp_path: Path) -> None:
    node = start_node(tmp_path, {"stomp.frame.max_body_length": "16"})
    made: list[Any] = []
    try:
        conn, frames = connect(node, made)
        conn.send("big", "x" * 17)
        assert "max_body_length" in frames.error().headers["message"]
    finally:
        node.stop()


def test_frames_before_connect_and_idle_sockets_are_closed(node: Node) -> None:
    with socket.create_connection((HOST, stomp_port(node)), timeout=10) as sock:
        sock.sendall(b"SEND\ndestination:a\n\nx\x00")
        data = b""
        while chunk := sock.recv(1000):
            data += chunk
        assert data.startswith(b"ERROR\n") and b"SEND before CONNECT" in data
    with socket.create_connection((HOST, stomp_port(node)), timeout=10) as sock:
        start = time.monotonic()
        assert sock.recv(1000) == b""  # stomp.idle_timeout is 2 s here
        assert 1.5 < time.monotonic() - start < 8


def test_unload_closes_the_listener(tmp_path: Path) -> None:
    node = start_node(tmp_path)
    made: list[Any] = []
    try:
        port = stomp_port(node)
        conn, frames = connect(node, made)
        with node.api() as api:
            # Listed with the node's own listeners while loaded, with its connection.
            row = listener_row(api, node.name, "stomp:tcp")
            assert row is not None and row["listen_on"] == f"{HOST}:{port}"
            assert row["current_conns"] == 1 and row["max_conns"] == 512
            ok(api.put(f"/nodes/{node.name}/plugins/{PLUGIN}/unload"))
            assert listener_row(api, node.name, "stomp:tcp") is None
            assert frames.disconnected.wait(5)
            with pytest.raises(OSError):
                socket.create_connection((HOST, port), timeout=2).close()
            assert ok(api.get("/connections/")) == []
            node.listeners.pop(LISTENER)
            ok(api.put(f"/nodes/{node.name}/plugins/{PLUGIN}/load"))
            wait_until(lambda: LISTENER in node.listeners, message="listener line")
            connect(node, made)
    finally:
        for conn in made:
            if conn.is_connected():
                conn.disconnect()
        node.stop()


def test_stomp_over_tls(tmp_path: Path, clients: Clients) -> None:
    ca = CA.create(tmp_path, "STOMP Test CA")
    server = ca.issue_server()
    node = start_node(tmp_path, {"stomp.listener.ssl": "on",
                                 "stomp.listener.ssl.certfile": str(server.cert),
                                 "stomp.listener.ssl.keyfile": str(server.key)})
    made: list[Any] = []
    try:
        port = node.listeners["stomp:ssl:default"][1]
        conn, _ = stomp_connection(port)
        made.append(conn)
        conn.set_ssl(for_hosts=[(HOST, port)], ca_certs=str(ca.cert))
        conn.connect("guest", "guest", wait=True)
        topic = f"tls/{uid()}"
        mqtt = clients(node)
        mqtt.subscribe(topic, 0)
        conn.send(topic, "over tls")
        assert mqtt.get().payload == b"over tls"
    finally:
        for conn in made:
            if conn.is_connected():
                conn.disconnect()
        node.stop()


# -- the stomp command ----------------------------------------------------------------------
def test_stomp_command_line_client(node: Node, clients: Clients, tmp_path: Path) -> None:
    topic = f"cli/{uid()}"
    mqtt = clients(node)
    mqtt.subscribe(topic, 0)
    commands = tmp_path / "commands.txt"
    commands.write_text(f"send {topic} hello from the stomp command\n")
    done = subprocess.run([sys.executable, "-m", "stomp", "-H", HOST, "-P",
                           str(stomp_port(node)), "-U", "guest", "-W", "guest", "-S", "1.2",
                           "-F", str(commands)], capture_output=True, text=True, timeout=30,
                          check=False)
    assert mqtt.get(timeout=10).payload == b"hello from the stomp command", done.stdout
    listener = subprocess.Popen([sys.executable, "-m", "stomp", "-H", HOST, "-P",
                                 str(stomp_port(node)), "-U", "guest", "-W", "guest",
                                 "-L", f"{topic}/in"], stdout=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: mqtt_sees_route(node, f"{topic}/in"), timeout=15,
                   message="the stomp command's subscription")
        mqtt.publish(f"{topic}/in", b"to the stomp command")
        assert listener.stdout is not None
        deadline = time.monotonic() + 10
        seen = ""
        while "to the stomp command" not in seen and time.monotonic() < deadline:
            seen += listener.stdout.readline()
        assert "to the stomp command" in seen
    finally:
        listener.kill()
        listener.wait(5)
        if listener.stdout is not None:
            listener.stdout.close()
