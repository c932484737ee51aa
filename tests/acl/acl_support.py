"""Clients for the ACL suite: paho-mqtt (MQTT 3.1.1) with a chosen source
address and user name, and a raw MQTT 5.0 client for reason codes.

Independent of the `starling` package."""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
from helpers.clients import PahoClient, uid, wait_until
from helpers.packets import ConnectionClosed, Packet, read_packet

API_SETTINGS = {
    "management.bind": "127.0.0.1:0",
    "api.default_app_id": "admin",
    "api.default_app_secret": "test-secret",
}
#: The internal listener (zone internal: no ACL), where observers subscribe to "#".
INTERNAL = {"listeners.tcp.internal.bind": "127.0.0.1:0"}


class Client(PahoClient):
    """PahoClient with a user name and a source address (127.0.0.x on loopback)."""

    def __init__(self, node: Any, client_id: str | None = None, username: str | None = None,
                 source: str | None = None, listener: str = "mqtt:tcp:default") -> None:
        host, port = node.listeners[listener]
        super().__init__(host, port, client_id)
        self.source = source
        if username is not None:
            self.client.username_pw_set(username, "pw")

    def connect(self, timeout: float = 5.0, expect_rc: int | None = 0) -> tuple[int, bool]:
        if self.source is None:
            return super().connect(timeout, expect_rc)
        # as PahoClient.connect, from the given source address
        self._connected.clear()
        self._disconnected.clear()
        self.client.connect(self.host, self.port, keepalive=self.keepalive,
                            bind_address=self.source)
        if not self._loop_started:
            self.client.loop_start()
            self._loop_started = True
        deadline = time.monotonic() + timeout
        while not self._connected.is_set():
            if self._disconnected.is_set() and self.connack is not None:
                break
            assert time.monotonic() < deadline, f"{self.client_id}: no CONNACK"
            self._connected.wait(0.02)
        assert self.connack is not None
        if expect_rc is not None:
            assert self.connack[0] == expect_rc, f"CONNACK {self.connack}"
        return self.connack


@contextlib.contextmanager
def client(node: Any, **kwargs: Any) -> Iterator[Client]:
    c = Client(node, **kwargs)
    try:
        c.connect()
        yield c
    finally:
        c.close()


class Observer:
    """A client on the internal listener subscribed to "#": sees what got through."""

    def __init__(self, node: Any) -> None:
        self.client = Client(node, uid("observer"), listener="mqtt:tcp:internal")
        self.client.connect()
        assert self.client.subscribe("#", 1) == [1]

    def delivered(self, publisher: Client, topic: str, qos: int = 0) -> bool:
        """Publish to `topic` from `publisher`, then a marker that is allowed; the
        marker arriving first-and-alone means the message was dropped."""
        payload = uid("p").encode()
        publisher.publish(topic, payload, qos)
        marker = f"marker/{uid()}"
        publisher.publish(marker, b"", 1)
        seen = False
        while True:
            msg = self.client.get(5.0)
            if msg.payload == payload and msg.topic == topic:
                seen = True
            if msg.topic == marker:
                return seen

    def close(self) -> None:
        self.client.close()


def api(node: Any) -> httpx.Client:
    return node.api()


def metric(node: Any, name: str) -> int:
    with api(node) as http:
        body = http.get("/metrics/").json()
    return int(body["data"][0]["metrics"][name])


def wait_for(predicate: Callable[[], Any], message: str, timeout: float = 5.0) -> Any:
    return wait_until(predicate, timeout, 0.05, message)


# -- raw MQTT 5.0 -----------------------------------------------------------------------------

def _vbi(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: str) -> bytes:
    data = s.encode()
    return struct.pack("!H", len(data)) + data


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + _vbi(len(body)) + body


class Raw5:
    """Just enough MQTT 5.0 to read reason codes (§3.1, §3.3, §3.4, §3.5, §3.8, §3.9)."""

    def __init__(self, node: Any, client_id: str | None = None,
                 username: str | None = None, will_topic: str | None = None) -> None:
        host, port = node.listeners["mqtt:tcp:default"]
        self.sock = socket.create_connection((host, port), timeout=5)
        flags = 0x02  # clean start
        payload = _str(client_id or uid("v5"))
        if will_topic is not None:
            flags |= 0x04
            payload += b"\x00" + _str(will_topic) + _str("bye")  # no will properties
        if username is not None:
            flags |= 0x80
            payload += _str(username)
        self.send(_packet(0x10, _str("MQTT") + bytes((5, flags)) + struct.pack("!H", 60)
                          + b"\x00" + payload))
        connack = self.read()
        assert connack.type == 2, connack
        self.connack_code = connack.body[1]

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self, timeout: float = 5.0) -> Packet:
        return read_packet(self.sock, timeout)

    def subscribe(self, *filters: str, packet_id: int = 1) -> list[int]:
        body = struct.pack("!H", packet_id) + b"\x00"
        for f in filters:
            body += _str(f) + b"\x01"  # QoS 1
        self.send(_packet(0x82, body))
        suback = self.read()
        assert suback.type == 9, suback
        props_len = suback.body[2]
        return list(suback.body[3 + props_len:])

    def publish(self, topic: str, qos: int, packet_id: int = 1, payload: bytes = b"x") -> int:
        """Publish; the reason code of PUBACK (QoS 1) or PUBREC (QoS 2)."""
        body = _str(topic) + (struct.pack("!H", packet_id) if qos else b"") + b"\x00" + payload
        self.send(_packet(0x30 | (qos << 1), body))
        ack = self.read()
        assert ack.type == (4 if qos == 1 else 5), ack
        return ack.body[2] if len(ack.body) > 2 else 0

    def expect_disconnect(self) -> int:
        """The reason code of the server's DISCONNECT, which must be followed by EOF."""
        packet = self.read()
        assert packet.type == 14, packet
        try:
            self.read(2.0)
        except ConnectionClosed:
            return packet.body[0]
        raise AssertionError("the connection stayed open after DISCONNECT")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> Raw5:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

