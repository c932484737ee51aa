"""A toy protocol gateway: a plugin whose clients speak lines of text over TCP and
are ordinary broker clients through `starling.broker.Client` (the client seam,
docs/architecture.md "Writing a gateway client").

Tests install this file into the nodes they start (`install_toy_gateway`); the
plugin logs ``toy gateway on <host>:<port>`` when it listens.  One line per
request, words separated by single spaces, the payload last (it may hold spaces):

    CONNECT <client id> <user name|-> <password|-> [<will topic> <will payload>]
                                   -> CONNACK <reason code> <session present 0|1>
    PUB <qos> <topic> <payload>    -> PUBACK <reason code>
    SUB <qos> <filter>             -> SUBACK <granted qos or reason code>
    UNSUB <filter>                 -> UNSUBACK <1 if it existed, else 0>
    ACK <packet id>                   the client has a QoS 1 delivery
    DISCONNECT                        goodbye (no will)

and from the gateway: ``MSG <packet id> <qos> <retain 0|1> <topic> <payload>``, and
``KICKED <reason>`` before it closes a kicked or taken-over client.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from starling.broker import CLOSED, Broker, Client, Message
from starling.mqtt import Will
from starling.plugins import Plugin, PluginInfo

log = logging.getLogger("toy_gateway")

#: The plugin's name and the module name it is installed under.
NAME = "toy_gateway"


class ToyClient(Client):
    """One toy connection: its outlet writes lines to the socket."""

    __slots__ = ("_peer", "writer")
    protocol = "toy"

    def __init__(self, broker: Broker, writer: asyncio.StreamWriter) -> None:
        super().__init__(broker, zone="external")
        self.writer = writer
        host, port = writer.get_extra_info("peername")[:2]
        self._peer = (host, port)
        self.protocol_level = 1  # the toy protocol's version

    @property
    def peername(self) -> tuple[str, int]:
        return self._peer

    @property
    def listener(self) -> str:
        return "toy:tcp:default"

    @property
    def proto_name(self) -> str:
        return "TOY"

    def line(self, text: str) -> None:
        if not self.writer.is_closing():
            self.writer.write(text.encode() + b"\n")

    # -- the outlet -------------------------------------------------------------------
    def send_publish(self, message: Message, qos: int, retain: bool, packet_id: int,
                     dup: bool, via: str | None = None) -> bool:
        self.line(f"MSG {packet_id} {qos} {int(retain)} {message.topic} "
                  f"{message.payload.decode('utf-8', 'replace')}")
        self.send_pkt += 1
        self.send_msg += 1
        return True

    def send_pubrel(self, packet_id: int, wait: bool = False) -> None:
        self.line(f"PUBREL {packet_id}")

    def kick(self, reason: str = "kicked") -> None:
        self.line(f"KICKED {reason}")
        super().kick(reason)

    def takeover(self) -> None:
        self.line("KICKED takeovered")
        super().takeover()

    def _close_transport(self) -> None:
        self.writer.close()


class ToyGateway(Plugin):
    async def load(self) -> None:
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        host, port = self.server.sockets[0].getsockname()[:2]
        log.warning("toy gateway on %s:%d", host, port)

    async def unload(self) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = ToyClient(self.context.broker, writer)
        try:
            while client.state != CLOSED:
                raw = await reader.readline()
                if not raw:
                    break
                await self.request(client, raw.decode().rstrip("\n"))
        finally:
            client.close("closed")  # the connection was lost: the will goes out

    async def request(self, client: ToyClient, line: str) -> None:
        command, _, rest = line.partition(" ")
        if command == "CONNECT":
            words = rest.split(" ", 4)
            client_id, username, password = words[:3]
            will = Will(words[3], words[4].encode()) if len(words) == 5 else None
            code, present = await client.connect(
                client_id, username=None if username == "-" else username,
                password=None if password == "-" else password.encode(), will=will)
            client.line(f"CONNACK {int(code)} {int(present)}")
            if code:
                client.writer.close()
        elif command == "PUB":
            qos, topic, payload = rest.split(" ", 2)
            client.recv_pkt += 1
            client.line(f"PUBACK {int(await client.publish(topic, payload.encode(), int(qos)))}")
        elif command == "SUB":
            qos, topic_filter = rest.split(" ", 1)
            client.line(f"SUBACK {await client.subscribe(topic_filter, int(qos))}")
        elif command == "UNSUB":
            client.line(f"UNSUBACK {int(client.unsubscribe(rest))}")
        elif command == "ACK":
            client.puback(int(rest))
        elif command == "DISCONNECT":
            client.disconnect()


def register(registry: Any) -> None:
    registry.add(PluginInfo(NAME, "A toy protocol gateway (tests)"))
    registry.implement(NAME, ToyGateway, ())


def install_toy_gateway(root: Path, monkeypatch: Any) -> None:
    """Make nodes started afterwards able to load plugin `toy_gateway` (this file)."""
    from tests.helpers.plugins import install_plugin

    install_plugin(root, monkeypatch, NAME, Path(__file__).read_text())
