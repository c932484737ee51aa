"""A client that does not speak MQTT is an ordinary broker client through the client
seam (`starling.broker.Client`, docs/architecture.md "Writing a gateway client").

The toy gateway (tests/helpers/toy_gateway.py) is a plugin loaded into a real node:
its clients speak lines of text over TCP.  A real socket drives one, a real paho
client is on the MQTT side, and the REST API sees both: authentication by an auth
plugin, the banned table, publish both ways (QoS 0 and 1, retained), the ACL, the
connection list, presence on $SYS, kick with the will, takeover.
"""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

import pytest
from helpers.clients import Clients, uid, wait_until
from helpers.toy_gateway import install_toy_gateway

from tests.conftest import API_SETTINGS

NODE = "starling@127.0.0.1"
DENIED = "toy-denied"
ACL = f"""
{{deny, {{client, "{DENIED}"}}, publish, ["forbidden/#"]}}.
{{deny, {{client, "{DENIED}"}}, subscribe, ["secret/#"]}}.
{{allow, all}}.
"""
SUCCESS, NO_MATCHING_SUBSCRIBERS = 0, 0x10
BAD_PASSWORD, NOT_AUTHORIZED, BANNED = 0x86, 0x87, 0x8A


class ToySocket:
    """A client of the toy protocol: one line out, the next line in."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.lines = self.sock.makefile("rb")

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\n")

    def read(self) -> str:
        return self.lines.readline().decode().rstrip("\n")

    def ask(self, line: str) -> str:
        self.send(line)
        return self.read()

    def connect(self, client_id: str, username: str = "-", password: str = "-",
                will: str = "") -> list[int]:
        answer = self.ask(f"CONNECT {client_id} {username} {password} {will}".rstrip())
        word, code, present = answer.split()
        assert word == "CONNACK", answer
        return [int(code), int(present)]

    def closed(self) -> bool:
        return self.lines.readline() == b""

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def toy_node(make_node: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    install_toy_gateway(tmp_path / "site", monkeypatch)
    (tmp_path / "acl.conf").write_text(ACL)
    node = make_node({**API_SETTINGS, "acl_file": str(tmp_path / "acl.conf"),
                      "plugins.loaded": "emqx_management,emqx_retainer,emqx_auth_username,toy_gateway"})
    node.toy_port = int(re.search(r":(\d+)$", node.wait_log(r"toy gateway on \S+:\d+")
                                  ).group(1))
    return node


@pytest.fixture
def toys(toy_node: Any) -> Any:
    made: list[ToySocket] = []

    def factory() -> ToySocket:
        made.append(ToySocket(toy_node.toy_port))
        return made[-1]
    yield factory
    for toy in made:
        toy.close()


def connection(api: Any, client_id: str) -> list[dict[str, Any]]:
    return api.get(f"/connections/{client_id}").json()["data"]


def test_a_gateway_client_is_an_ordinary_broker_client(toy_node: Any, toys: Any,
                                                       clients: Clients) -> None:
    mqtt = clients(toy_node, uid("paho"))
    toy_id = uid("toy")
    mqtt.subscribe([("toy/#", 1), (f"$SYS/brokers/+/clients/{toy_id}/+", 0),
                    ("will/" + toy_id, 0)])
    toy = toys()
    assert toy.connect(toy_id, will=f"will/{toy_id} gone") == [SUCCESS, 0]
    # Presence on $SYS, from `client.connected`, names the gateway's protocol.
    presence = json.loads(mqtt.get(topic=f"$SYS/brokers/{NODE}/clients/{toy_id}/connected")
                          .payload)
    assert (presence["clientid"], presence["proto_name"], presence["proto_ver"]) == (
        toy_id, "TOY", 1)

    # Listed by the REST API like any connection.
    with toy_node.api() as api:
        [row] = connection(api, toy_id)
        assert (row["proto_name"], row["proto_ver"], row["ipaddress"]) == ("TOY", 1, "127.0.0.1")
        assert row["port"] == toy.sock.getsockname()[1]
        assert {c["client_id"] for c in api.get("/connections").json()["data"]} >= {
            toy_id, mqtt.client_id}

    # Toy → MQTT: QoS 0 and 1; retained messages reach later subscribers.
    assert toy.ask("PUB 0 toy/zero hello there") == f"PUBACK {SUCCESS}"
    got = mqtt.get(topic="toy/zero")
    assert (got.payload, got.qos) == (b"hello there", 0)
    assert toy.ask("PUB 1 toy/one one") == f"PUBACK {SUCCESS}"
    assert mqtt.get(topic="toy/one").qos == 1
    assert toy.ask("PUB 0 nobody/listens x") == f"PUBACK {NO_MATCHING_SUBSCRIBERS}"
    mqtt.publish("retained/" + toy_id, b"kept", qos=1, retain=True)

    # MQTT → toy: a subscription gets the retained message, then live ones; QoS 1
    # deliveries carry a packet id the toy acknowledges.
    assert toy.ask(f"SUB 1 retained/{toy_id}") == "SUBACK 1"
    assert toy.read() == f"MSG 1 1 1 retained/{toy_id} kept"
    toy.send("ACK 1")
    assert toy.ask("SUB 1 to/toy") == "SUBACK 1"
    mqtt.publish("to/toy", b"for you", qos=1)
    assert toy.read() == "MSG 2 1 0 to/toy for you"
    toy.send("ACK 2")
    mqtt.publish("to/toy", b"cheap", qos=0)
    assert toy.read() == "MSG 0 0 0 to/toy cheap"
    assert toy.ask("UNSUB to/toy") == "UNSUBACK 1"
    assert toy.ask("UNSUB to/toy") == "UNSUBACK 0"
    with toy_node.api() as api:
        subs = api.get(f"/subscriptions/{toy_id}").json()["data"]
        assert [s["topic"] for s in subs] == [f"retained/{toy_id}"]
        sessions = api.get(f"/sessions/{toy_id}").json()["data"]
        assert sessions[0]["inflight_len"] == 0  # both QoS 1 deliveries acknowledged

        # Kicked through the API: the toy is told and closed, its will published.
        assert api.delete(f"/connections/{toy_id}").json()["code"] == 0
        assert toy.read() == "KICKED kicked"
        assert toy.closed()
        assert mqtt.get(topic="will/" + toy_id).payload == b"gone"
        disconnected = json.loads(mqtt.get(
            topic=f"$SYS/brokers/{NODE}/clients/{toy_id}/disconnected").payload)
        assert disconnected["reason"] == "kicked"
        wait_until(lambda: connection(api, toy_id) == [], message="the toy gone")


def test_gateway_clients_are_authenticated_banned_and_checked(toy_node: Any, toys: Any,
                                                              clients: Clients) -> None:
    with toy_node.api() as api:
        assert api.post("/auth_username", json={"username": "toy-user", "password": "pw"}
                        ).json()["code"] == 0
        # The auth plugin's async `client.authenticate` chain decides.
        assert toys().connect(uid("toy"), "toy-user", "wrong") == [BAD_PASSWORD, 0]
        assert toys().connect(uid("toy"), "toy-user", "pw") == [SUCCESS, 0]
        # The banned table.
        banned = uid("toy")
        assert api.post("/banned", json={"who": banned, "as": "client_id"}
                        ).json()["code"] == 0
        refused = toys()
        assert refused.connect(banned) == [BANNED, 0]
        assert refused.closed()
        assert connection(api, banned) == []

    # The ACL: denied publishes reach nobody, denied subscriptions are refused.
    mqtt = clients(toy_node, uid("paho"))
    mqtt.subscribe("forbidden/#", 1)
    toy = toys()
    assert toy.connect(DENIED) == [SUCCESS, 0]
    assert toy.ask("PUB 1 forbidden/x no") == f"PUBACK {NOT_AUTHORIZED}"
    assert toy.ask(f"SUB 0 secret/{uid('s')}") == f"SUBACK {NOT_AUTHORIZED}"
    assert toy.ask("SUB 0 fine/#") == "SUBACK 0"
    mqtt.publish("forbidden/y", b"marker", qos=1)
    got = mqtt.get()  # nothing from the toy before it
    assert (got.topic, got.payload) == ("forbidden/y", b"marker")


def test_a_second_connection_takes_the_client_id_over(toy_node: Any, toys: Any,
                                                      clients: Clients) -> None:
    toy_id = uid("toy")
    first = toys()
    assert first.connect(toy_id) == [SUCCESS, 0]
    assert first.ask("SUB 1 over/there") == "SUBACK 1"
    # An MQTT client of the same id takes over; with a clean session the old one goes.
    mqtt = clients(toy_node, toy_id)
    assert first.read() == "KICKED takeovered"
    assert first.closed()
    with toy_node.api() as api:
        [row] = connection(api, toy_id)
        assert row["proto_name"] == "MQTT"
        assert api.get(f"/subscriptions/{toy_id}").json()["data"] == []
    mqtt.disconnect()
    # And back: a toy connection takes the id from an MQTT client.
    other = clients(toy_node, toy_id)
    second = toys()
    assert second.connect(toy_id) == [SUCCESS, 0]
    other.wait_disconnected()
    with toy_node.api() as api:
        assert connection(api, toy_id)[0]["proto_name"] == "TOY"
    second.send("DISCONNECT")
    assert second.closed()
