"""Each client's life in the node's log (logger ``starling.clients``), driven by
real MQTT clients: connected, refused (CONNACK code and why), disconnected (why),
kicked, taken over, malformed input; ``log.clients = off`` silences it."""

from __future__ import annotations

import socket
from typing import Any

import paho.mqtt.client as paho
import pytest
from helpers.api import ok
from helpers.clients import PahoClient, uid
from helpers.packets import RawClient, gen_connect

SETTINGS = {"management.bind": "127.0.0.1:0", "api.default_app_secret": "s",
            "plugins.loaded": "emqx_management,emqx_auth_username"}
PREFIX = r"\[INFO\] starling\.clients: "


@pytest.fixture
def node(make_node: Any) -> Any:
    started = make_node(SETTINGS)
    with started.api(auth=("admin", "s")) as api:
        ok(api.post("/auth_username", json={"username": "alice", "password": "right-pw"}))
    return started


def paho_client(node: Any, client_id: str, password: str = "right-pw",
                protocol: int = paho.MQTTv311, clean: bool = True) -> PahoClient:
    client = PahoClient(node.host, node.port, client_id, protocol=protocol,
                        clean_session=clean if protocol != paho.MQTTv5 else None,
                        keepalive=30)
    client.client.username_pw_set("alice", password)
    return client


def test_connected_and_disconnected(node: Any) -> None:
    cid = uid("life")
    client = paho_client(node, cid, clean=False)
    client.connect()
    port = client.client.socket().getsockname()[1]
    line = node.wait_log(rf"client '{cid}' connected")
    assert line.endswith(f"starling.clients: client '{cid}' connected: user 'alice', "
                         f"127.0.0.1:{port} via mqtt:tcp:default, MQTT 3.1.1, keepalive "
                         "30s, persistent session"), line
    client.disconnect()
    node.wait_log(rf"{PREFIX}client '{cid}' sent DISCONNECT: user 'alice', 127\.0\.0\.1:{port}")
    # a socket closed without DISCONNECT
    raw = RawClient(node.host, node.port)
    raw.connect(cid + "-raw")
    raw.close()
    node.wait_log(rf"{PREFIX}client '{cid}-raw' closed the connection: no user name")
    assert not any("right-pw" in line for line in node.log_lines)


def test_refusals_say_the_connack_code_and_why(node: Any) -> None:
    v3, v5 = uid("bad3"), uid("bad5")
    paho_client(node, v3, "wrong-pw").connect(expect_rc=None)
    node.wait_log(rf"{PREFIX}client '{v3}' refused: bad user name or password \(CONNACK 4\): "
                  r"user 'alice', 127\.0\.0\.1:\d+ via mqtt:tcp:default, MQTT 3\.1\.1")
    paho_client(node, v5, "wrong-pw", protocol=paho.MQTTv5).connect(expect_rc=None)
    node.wait_log(rf"{PREFIX}client '{v5}' refused: bad user name or password "
                  r"\(CONNACK 0x86\): .*MQTT 5\.0")
    banned = uid("banned")
    with node.api(auth=("admin", "s")) as api:
        ok(api.post("/banned/", json={"who": banned, "as": "client_id"}))
    paho_client(node, banned).connect(expect_rc=None)
    node.wait_log(rf"{PREFIX}client '{banned}' refused: banned \(CONNACK 5\)")
    assert not any("wrong-pw" in line for line in node.log_lines)


def test_kicked_taken_over_and_banned_while_connected(node: Any) -> None:
    cid = uid("kick")
    first = paho_client(node, cid)
    first.connect()
    with node.api(auth=("admin", "s")) as api:
        ok(api.delete(f"/connections/{cid}"))
    node.wait_log(rf"{PREFIX}client '{cid}' kicked \(management API or ctl\)")
    taken = uid("taken")
    old = RawClient(node.host, node.port)
    old.connect(taken)
    new = RawClient(node.host, node.port)
    new.connect(taken)
    node.wait_log(rf"{PREFIX}client '{taken}' taken over by a new connection with the same "
                  "client id")
    with node.api(auth=("admin", "s")) as api:
        ok(api.post("/banned/", json={"who": taken, "as": "client_id"}))
    node.wait_log(rf"{PREFIX}client '{taken}' disconnected: a ban now covers it")
    old.close()
    new.close()


def test_malformed_input_is_a_warning_with_the_reason(node: Any) -> None:
    cid = uid("garbage")
    raw = RawClient(node.host, node.port)
    raw.connect(cid)
    raw.send(b"\x00\x00")  # packet type 0 is reserved: not MQTT
    node.wait_log(rf"\[WARNING\] starling\.clients: client '{cid}' from 127\.0\.0\.1: "
                  r"malformed input, connection closed: invalid packet type 0")
    node.wait_log(rf"\[WARNING\] starling\.clients: client '{cid}' disconnected: it sent "
                  "malformed data")
    raw.close()
    # not even a CONNECT: the connection, by address
    with socket.create_connection((node.host, node.port)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
        sock.recv(16)
    node.wait_log(r"\[WARNING\] starling\.clients: a connection \(no CONNECT yet\) from "
                  r"127\.0\.0\.1: malformed input, connection closed: ")
    # an MQTT level the broker does not speak
    with socket.create_connection((node.host, node.port)) as sock:
        sock.sendall(gen_connect(uid("v6"), proto_level=6))
        sock.recv(16)
    node.wait_log(r"\[WARNING\] starling\.clients: .*connection closed: .*protocol (level|"
                  r"version)")


def test_log_clients_off_says_nothing_about_clients(make_node: Any) -> None:
    node = make_node({"log.clients": "off"})
    client = PahoClient(node.host, node.port, uid("quiet"))
    client.connect()
    client.disconnect()
    with socket.create_connection((node.host, node.port)) as sock:
        sock.sendall(b"not mqtt at all")
        sock.recv(16)
    probe = PahoClient(node.host, node.port, uid("probe"))  # the node is still serving
    probe.connect()
    probe.disconnect()
    node.stop()
    assert not any("starling.clients" in line for line in node.log_lines)
