"""Traces (EMQ X's ``emqx_ctl trace``): every packet of one client, or every
message published on some topics, written with timestamps to a file.

Nothing is paid while no trace runs: no hook is registered and no connection
checks anything.  Tracing a client swaps the class of its connection object
for a subclass whose `feed` and `write` also describe the packets (same slots,
so the object stays the same object; it is swapped back when the trace
stops).  Tracing topics registers a `message.publish` callback only while
such a trace exists.

Files are written under the trace directory (``<data_dir>/trace``), named by
the operator (a plain file name: the API cannot write elsewhere), mode 0600.
Each is bounded: at `max_size` bytes its trace stops, with a last line
saying so.  Passwords in CONNECT packets are never written.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from starling.broker import Broker, ClientInfo, HookPoint, Message
from starling.mqtt import Decoder, MQTTError, PacketType, matches, packet_fields

from .connection import MQTTConnection

log = logging.getLogger(__name__)

CLIENT = "client"
TOPIC = "topic"
KINDS = (CLIENT, TOPIC)
#: Payload bytes shown per message (the rest is counted, not written).
PAYLOAD_SHOWN = 256
_FILE_NAME = re.compile(r"^[\w][\w.-]{0,127}$")


class TraceError(Exception):
    """A trace that cannot be started or stopped; `status` is the HTTP status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass
class Trace:
    kind: str  #: "client" or "topic"
    name: str  #: the client id, or the topic filter
    path: Path
    max_size: int
    started_at: float = field(default_factory=lambda: datetime.datetime.now().timestamp())
    size: int = 0
    _file: IO[str] | None = None

    def open(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._file = os.fdopen(fd, "w", buffering=1, encoding="utf-8", errors="replace")

    def write(self, text: str) -> bool:
        """Write one line; False once the file is full (the trace must stop)."""
        file = self._file
        if file is None:
            return False
        line = f"{datetime.datetime.now().isoformat(timespec='milliseconds')} {text}\n"
        if self.size + len(line) > self.max_size:
            file.write(f"{line[:24]}trace stopped: the file reached its limit of "
                       f"{self.max_size} bytes (trace.max_file_size)\n")
            self.close()
            return False
        file.write(line)
        self.size += len(line)
        return True

    def close(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            file.close()

    @property
    def running(self) -> bool:
        return self._file is not None

    def view(self) -> dict[str, Any]:
        return {"type": self.kind, "name": self.name, "file": str(self.path),
                "size": self.size, "max_size": self.max_size,
                "started_at": datetime.datetime.fromtimestamp(self.started_at).strftime(
                    "%Y-%m-%d %H:%M:%S")}


# -- describing packets ----------------------------------------------------------------------

def _payload(data: bytes) -> str:
    shown = repr(data[:PAYLOAD_SHOWN])
    return shown if len(data) <= PAYLOAD_SHOWN else f"{shown}... ({len(data)} bytes)"


def describe(packet: Any) -> str:
    """One received packet, as ``PUBLISH(topic='a', qos=1, ...)``; never a password."""
    name = packet.type.name
    parts = []
    for field_name in packet_fields(packet):
        value = getattr(packet, field_name)
        if field_name == "password":
            value = None if value is None else "******"
        elif field_name == "payload":
            value = _payload(value)
            parts.append(f"payload={value}")
            continue
        elif field_name == "properties" and not value:
            continue
        parts.append(f"{field_name}={value!r}")
    return f"{name}({', '.join(parts)})"


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """A Variable Byte Integer at `pos` and the position after it; (-1, pos) when the
    bytes end first."""
    value = shift = 0
    while pos < len(data):
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos
    return -1, pos


class SentPackets:
    """Splits the bytes written to a client into packets and names them (the
    server's packets are not what the decoder reads, and only a summary is needed)."""

    def __init__(self, protocol_level: int) -> None:
        self.protocol_level = protocol_level
        self._buffer = b""

    def feed(self, data: bytes) -> list[str]:
        buf = self._buffer + data
        out = []
        pos = 0
        while len(buf) - pos >= 2:
            length, start = _varint(buf, pos + 1)
            end = start + length
            if length < 0 or end > len(buf):
                break
            out.append(self._name(buf[pos], buf[start:end]))
            pos = end
        self._buffer = buf[pos:]
        return out

    def _name(self, first: int, body: bytes) -> str:
        try:
            kind = PacketType(first >> 4)
        except ValueError:
            return f"packet type {first >> 4} ({len(body)} bytes)"
        if kind == PacketType.PUBLISH:
            qos = (first >> 1) & 3
            size = int.from_bytes(body[:2], "big")
            topic = body[2:2 + size].decode("utf-8", "replace")
            pos = 2 + size
            packet_id = None
            if qos:
                packet_id = int.from_bytes(body[pos:pos + 2], "big")
                pos += 2
            if self.protocol_level == 5:
                plen, pos = _varint(body, pos)
                pos += max(plen, 0)
            return (f"PUBLISH(topic={topic!r}, qos={qos}, retain={bool(first & 1)}, "
                    f"dup={bool(first & 8)}, packet_id={packet_id}, "
                    f"payload={_payload(body[pos:])})")
        if kind == PacketType.CONNACK and len(body) >= 2:
            return f"CONNACK(session_present={bool(body[0] & 1)}, reason_code={body[1]})"
        if kind in (PacketType.PUBACK, PacketType.PUBREC, PacketType.PUBREL,
                    PacketType.PUBCOMP, PacketType.SUBACK, PacketType.UNSUBACK) \
                and len(body) >= 2:
            extra = ""
            if kind == PacketType.SUBACK:
                extra = f", codes={list(body[2:] if self.protocol_level != 5 else body[-1:])}"
            return f"{kind.name}(packet_id={int.from_bytes(body[:2], 'big')}{extra})"
        if kind == PacketType.DISCONNECT and body:
            return f"DISCONNECT(reason_code={body[0]})"
        return kind.name


# -- traced connections ----------------------------------------------------------------------

@dataclass
class _Attached:
    trace: Trace
    received: Decoder
    sent: SentPackets


class Tracer:
    """The node's traces.  `connections()` lists the MQTT connections of every
    listener (to find a traced client's)."""

    def __init__(self, broker: Broker, directory: Path, max_size: int,
                 connections: Callable[[], Iterable[MQTTConnection]]) -> None:
        self.broker = broker
        self.directory = directory.absolute()
        self.max_size = max_size
        self.connections = connections
        self.traces: dict[tuple[str, str], Trace] = {}
        self._attached: dict[MQTTConnection, _Attached] = {}
        self._classes: dict[type[MQTTConnection], type[MQTTConnection]] = {}
        self._hooked: set[str] = set()  #: the kinds whose hooks are registered

    # -- the operator's commands ---------------------------------------------------------
    def start(self, kind: str, name: str, file_name: str) -> Trace:
        if kind not in KINDS:
            raise TraceError(f"a trace is of a client or a topic, not {kind!r}")
        if not name:
            raise TraceError(f"which {kind} to trace?")
        if not _FILE_NAME.match(file_name) or file_name in (".", ".."):
            raise TraceError(f"the trace file must be a plain file name (letters, digits, "
                             f"'.', '-', '_'), not {file_name!r}: traces are written to "
                             f"{self.directory}")
        if (kind, name) in self.traces:
            raise TraceError(f"{kind} {name!r} is already traced", 409)
        path = self.directory / file_name
        if any(t.path == path for t in self.traces.values()):
            raise TraceError(f"{file_name} is the file of another running trace", 409)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        trace = Trace(kind, name, path, self.max_size)
        trace.open()
        self.traces[(kind, name)] = trace
        trace.write(f"trace of {kind} {name!r} started")
        if kind == CLIENT:
            for conn in list(self.connections()):
                channel = conn.channel
                if channel is not None and channel.client_id == name \
                        and channel.state == "connected":
                    self._attach(conn, trace)
        self._update_hooks()
        log.info("trace of %s %r started: %s", kind, name, path)
        return trace

    def stop(self, kind: str, name: str) -> Trace:
        trace = self.traces.pop((kind, name), None)
        if trace is None:
            raise TraceError(f"no trace of {kind} {name!r}", 404)
        for conn, attached in list(self._attached.items()):
            if attached.trace is trace:
                self._detach(conn)
        trace.write("trace stopped")
        trace.close()
        self._update_hooks()
        log.info("trace of %s %r stopped: %s (%d bytes)", kind, name, trace.path, trace.size)
        return trace

    def stop_all(self) -> list[Trace]:
        return [self.stop(kind, name) for kind, name in list(self.traces)]

    def list(self) -> list[Trace]:
        return list(self.traces.values())

    # -- hooks, only while needed ----------------------------------------------------------
    def _update_hooks(self) -> None:
        hooks = self.broker.hooks
        clients = any(kind == CLIENT for kind, _ in self.traces)
        topics = any(kind == TOPIC for kind, _ in self.traces)
        if clients and CLIENT not in self._hooked:
            hooks.add(HookPoint.CLIENT_CONNECT, self._on_connect, 1000)
            hooks.add(HookPoint.CLIENT_DISCONNECTED, self._on_disconnected, 1000)
        elif not clients and CLIENT in self._hooked:
            hooks.remove(HookPoint.CLIENT_CONNECT, self._on_connect)
            hooks.remove(HookPoint.CLIENT_DISCONNECTED, self._on_disconnected)
        if topics and TOPIC not in self._hooked:
            hooks.add(HookPoint.MESSAGE_PUBLISH, self._on_publish, 1000)
        elif not topics and TOPIC in self._hooked:
            hooks.remove(HookPoint.MESSAGE_PUBLISH, self._on_publish)
        self._hooked = {kind for kind, wanted in ((CLIENT, clients), (TOPIC, topics))
                        if wanted}

    def _on_connect(self, client: ClientInfo) -> None:
        """A traced client id sends CONNECT: trace this connection from here on (its
        CONNACK included)."""
        trace = self.traces.get((CLIENT, client.client_id))
        if trace is None:
            return
        for conn in list(self.connections()):
            channel = conn.channel
            if channel is not None and channel.client_id == client.client_id \
                    and conn not in self._attached:
                self._write(trace, f"RECV CONNECT(client_id={client.client_id!r}, "
                            f"username={client.username!r}, password="
                            f"{None if client.password is None else '******'}, "
                            f"peer={client.peerhost}:{client.peerport}, "
                            f"listener={client.listener!r}, proto_ver={client.proto_ver}, "
                            f"clean_start={client.clean_start}, "
                            f"keepalive={client.keepalive})")
                self._attach(conn, trace)

    def _on_disconnected(self, client: ClientInfo, reason: str) -> None:
        trace = self.traces.get((CLIENT, client.client_id))
        if trace is None:
            return
        for conn, attached in list(self._attached.items()):
            if attached.trace is trace and (conn.channel is None
                                            or conn.channel.state == "closed"):
                self._detach(conn)
        self._write(trace, f"disconnected: {reason}")

    def _on_publish(self, message: Message) -> Message | None:
        for (kind, name), trace in list(self.traces.items()):
            if kind == TOPIC and matches(name, message.topic):
                self._write(trace, f"PUBLISH from {message.sender or '(the broker)'!r}: "
                            f"topic={message.topic!r}, qos={message.qos}, "
                            f"retain={message.retain}, payload={_payload(message.payload)}")
        return None

    def _write(self, trace: Trace, text: str) -> None:
        if not trace.write(text) and self.traces.get((trace.kind, trace.name)) is trace:
            log.warning("trace of %s %r stopped: %s reached %d bytes (trace.max_file_size)",
                        trace.kind, trace.name, trace.path, trace.max_size)
            self.traces.pop((trace.kind, trace.name))
            for conn, attached in list(self._attached.items()):
                if attached.trace is trace:
                    self._detach(conn)
            self._update_hooks()

    # -- connections -----------------------------------------------------------------------
    def _traced_class(self, cls: type[MQTTConnection]) -> type[MQTTConnection]:
        traced = self._classes.get(cls)
        if traced is None:
            tracer = self

            def feed(conn: MQTTConnection, data: bytes) -> None:
                tracer._received(conn, data)
                cls.feed(conn, data)

            def write(conn: MQTTConnection, data: bytes) -> None:
                cls.write(conn, data)
                tracer._sent(conn, data)

            def write_ahead(conn: MQTTConnection, data: bytes, later: int) -> None:
                # Traced as it is written: after the `later` packets it goes ahead of.
                cls.write_ahead(conn, data, later)
                tracer._sent(conn, data)

            traced = type(f"Traced{cls.__name__}", (cls,),
                          {"__slots__": (), "feed": feed, "write": write,
                           "write_ahead": write_ahead})
            self._classes[cls] = traced
        return traced

    def _attach(self, conn: MQTTConnection, trace: Trace) -> None:
        level = conn.channel.protocol_level if conn.channel is not None else 4
        self._attached[conn] = _Attached(trace, Decoder(1 << 28, level or 4),
                                         SentPackets(level or 4))
        conn.__class__ = self._traced_class(type(conn))

    def _detach(self, conn: MQTTConnection) -> None:
        self._attached.pop(conn, None)
        base = type(conn).__mro__[1]
        if type(conn) in self._classes.values():
            conn.__class__ = base

    def _received(self, conn: MQTTConnection, data: bytes) -> None:
        attached = self._attached.get(conn)
        if attached is None:
            return
        try:
            packets = attached.received.feed(data)
        except MQTTError as exc:
            attached.received = Decoder(1 << 28, attached.received.protocol_level)
            self._write(attached.trace, f"RECV {len(data)} bytes that are not MQTT: {exc}")
            return
        for packet in packets:
            self._write(attached.trace, f"RECV {describe(packet)}")

    def _sent(self, conn: MQTTConnection, data: bytes) -> None:
        attached = self._attached.get(conn)
        if attached is None:
            return
        for text in attached.sent.feed(data):
            self._write(attached.trace, f"SENT {text}")

