"""MQTT over WebSocket (and WSS): the same connection shell with frames around it.

`websockets`' sans-I/O server protocol does the HTTP upgrade and the framing,
so this stays an `asyncio.Protocol` like the TCP shell and writes stay
synchronous.  MQTT packets may be split across WebSocket frames or several
may share one frame: the decoder sees a byte stream either way.  Only the
listener's path (default ``/mqtt``) is served; the sub-protocols ``mqtt`` and
``mqttv3.1`` are offered (a client that offers none is accepted too, as
browsers' MQTT libraries of EMQ X v3's time did).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from websockets.datastructures import Headers
from websockets.exceptions import InvalidState
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

from starling.mqtt import ProtocolError

from .connection import LINGER, MQTTConnection

if TYPE_CHECKING:
    from .connection import ListenerSide

log = logging.getLogger(__name__)

SUBPROTOCOLS = [Subprotocol("mqtt"), Subprotocol("mqttv3.1")]


def _select_subprotocol(protocol: ServerProtocol,
                        offered: Sequence[Subprotocol]) -> Subprotocol | None:
    for name in offered:
        if name in SUBPROTOCOLS:
            return name
    return None


class WSConnection(MQTTConnection):
    __slots__ = ("cert_clientid", "cert_username", "handshake_done", "peercert", "ws")

    def __init__(self, listener: ListenerSide) -> None:
        super().__init__(listener)
        self.ws = ServerProtocol(select_subprotocol=_select_subprotocol,
                                 max_size=listener.broker.zone_options(listener.zone)
                                 .max_packet_size + 16)
        self.handshake_done = False
        self.peercert = self.cert_username = self.cert_clientid = None

    def set_certificate(self, subject: str, username: str | None,
                        client_id: str | None) -> None:
        self.peercert, self.cert_username, self.cert_clientid = subject, username, client_id

    def data_received(self, data: bytes) -> None:
        size = len(data)
        self.recv_oct += size
        self.recv_cnt += 1
        self.listener_ref.counters["bytes/received"] += size
        channel = self.channel
        if channel is not None and channel.limiter is not None:
            channel.limiter.received(size)
        ws = self.ws
        ws.receive_data(data)
        for event in ws.events_received():
            if isinstance(event, Request):
                self._handshake(event)
            elif not isinstance(event, Frame):
                continue
            elif event.opcode in (Opcode.BINARY, Opcode.CONT):
                if event.data:
                    self.feed(bytes(event.data))
            elif event.opcode == Opcode.TEXT and self.channel is not None:
                self.channel.handle_error(ProtocolError("text frame: MQTT must be binary"))
        self._pump()

    def _handshake(self, request: Request) -> None:
        path = self.listener_ref.config.path
        if request.path.split("?", 1)[0] != path:
            response: Response = self.ws.reject(404, "Not Found\n")
        else:
            response = self.ws.accept(request)
            header = self.listener_ref.config.proxy_address_header
            if header:
                self._take_forwarded(request.headers, header)
        self.ws.send_response(response)
        self.handshake_done = response.status_code == 101

    def _take_forwarded(self, headers: Headers, header: str) -> None:
        """Behind a trusted proxy: the client's address from its header."""
        value = headers.get(header)
        if value:
            first = value.split(",")[0].strip()
            if first:
                self.peerhost = first

    def _pump(self) -> None:
        transport = self.transport
        if transport is None:
            return
        for chunk in self.ws.data_to_send():
            if chunk:
                transport.write(chunk)
            else:  # the protocol asks to close the TCP connection
                transport.close()
                return
        if self.ws.close_expected() and not transport.is_closing():
            transport.close()

    def send_bytes(self, data: bytes) -> None:
        if not self.handshake_done:
            return
        self.ws.send_binary(data)
        self._pump()

    def close(self, linger: float = LINGER) -> None:
        """Flush, send a WebSocket close frame, close (the WebSocket closing
        handshake stands in for lingering)."""
        self.flush()
        if self.handshake_done and self.transport is not None:
            with contextlib.suppress(InvalidState):  # already closing
                self.ws.send_close(1000)
            self._pump()
        if self.transport is not None:
            self.transport.close()
