"""One STOMP connection's conversation with the gateway, without I/O.

`StompClient` takes parsed frames (`handle`) and deliveries from its broker
session (`deliver`); it answers through `send` (frames) and reaches the
broker through a `StompBroker`, the per-client link the asyncio adapter builds
on the broker's client seam.  `handle` awaits the link (authentication and
ACL may do I/O); the adapter hands it one frame at a time, in order.

Destinations are MQTT topics and topic filters.  A SUBSCRIBE with
``ack:auto`` is an MQTT subscription at QoS 0; ``ack:client`` and
``ack:client-individual`` subscribe at QoS 1, so the session keeps what the
client has not acknowledged (its in-flight window, then its queue).  A NACK,
or a MESSAGE redelivered by the session, is sent again with
``redelivered:true``, at most `max_redeliveries` times, then dropped.

Any protocol error is answered by an ERROR frame and the connection is closed
(STOMP 1.2, "ERROR").  Where EMQ X v3 differs, docs/gateways.md says how.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol

from starling.mqtt import is_valid_topic_filter, is_valid_topic_name, matches, parse_share

from .codec import Frame

NEW: Final = "new"
CONNECTING: Final = "connecting"
CONNECTED: Final = "connected"
CLOSED: Final = "closed"

VERSIONS: Final = ("1.0", "1.1", "1.2")
ACK_MODES: Final = ("auto", "client", "client-individual")
SERVER_NAME: Final = "Starling"
#: Heart-beats faster than this (ms) are raised to it: a client cannot make the
#: gateway write or check every millisecond.
MIN_HEARTBEAT_MS: Final = 100
#: Headers of SEND that are the frame's own, not carried on the message.
SEND_HEADERS: Final = frozenset({"destination", "content-length", "content-type",
                                 "transaction", "receipt", "qos", "retain"})
MAX_TRANSACTIONS: Final = 64
MAX_TRANSACTION_FRAMES: Final = 1000


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    client_id: str
    login: str | None
    passcode: str | None
    version: str
    #: Seconds between heart-beats the client must send (0 = none): the
    #: gateway closes the connection after twice that without a byte.
    heartbeat_in: float = 0.0


@dataclass(frozen=True, slots=True)
class ConnectOutcome:
    accepted: bool
    message: str = ""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message published by a STOMP client."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


class StompBroker(Protocol):
    """What a STOMP connection needs from the broker (one per connection)."""

    async def connect(self, request: ConnectRequest) -> ConnectOutcome: ...

    async def publish(self, message: Outgoing) -> bool:
        """Publish for the client; False when refused (ACL)."""
        ...

    async def subscribe(self, topic_filter: str, qos: int) -> int | None:
        """Subscribe; the granted QoS, None when refused.  Retained messages follow
        on the event loop's next turn: after the RECEIPT sent right away."""
        ...

    async def unsubscribe(self, topic_filter: str) -> None: ...

    def puback(self, packet_id: int) -> None:
        """The client has acknowledged every copy of a QoS 1 delivery."""
        ...

    def close(self, reason: str) -> None: ...


@dataclass(slots=True)
class Subscription:
    id: str
    destination: str
    ack: str
    #: The filter without a ``$share/<group>/`` prefix, for matching topics.
    real_filter: str


@dataclass(slots=True)
class Unacked:
    """A MESSAGE sent on a client-acknowledged subscription, not yet ACKed."""

    subscription: str
    packet_id: int  #: the session's id of the delivery; 0 for a QoS 0 one
    topic: str
    payload: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)
    redeliveries: int = 0


@dataclass(slots=True)
class Transaction:
    frames: list[Frame] = field(default_factory=list)


class ProtocolViolation(Exception):
    """A frame the client must not send now: ERROR, then the connection closes."""


def negotiate(accept_version: str | None) -> str | None:
    """The highest version both sides speak; None if there is none.  No
    `accept-version` header means STOMP 1.0."""
    if accept_version is None:
        return "1.0"
    offered = {v.strip() for v in accept_version.split(",")}
    common = [v for v in VERSIONS if v in offered]
    return common[-1] if common else None


def heartbeat(client: str | None) -> tuple[int, int]:
    """(cx, cy) of a `heart-beat` header, raised to MIN_HEARTBEAT_MS where not 0."""
    if not client:
        return 0, 0
    parts = client.split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ProtocolViolation(f"bad heart-beat header {client[:32]!r}")
    cx, cy = (int(p) for p in parts)
    return (max(cx, MIN_HEARTBEAT_MS) if cx else 0, max(cy, MIN_HEARTBEAT_MS) if cy else 0)


class StompClient:
    """The gateway's side of one STOMP connection."""

    def __init__(self, link: StompBroker, send: Callable[[Frame], None],
                 on_closed: Callable[[StompClient], None], *, client_id: str,
                 max_redeliveries: int = 3) -> None:
        self.link = link
        self.send_frame = send
        self._on_closed = on_closed
        self.client_id = client_id
        self.max_redeliveries = max_redeliveries
        self.state: str = NEW
        self.version = "1.0"
        #: Negotiated heart-beats, seconds: the gateway sends every `heartbeat_out`,
        #: the client must send every `heartbeat_in` (0 = none).
        self.heartbeat_out = 0.0
        self.heartbeat_in = 0.0
        self.close_reason = ""
        self.subscriptions: dict[str, Subscription] = {}
        #: Client-acknowledged MESSAGEs by message-id, in the order sent.
        self.unacked: dict[str, Unacked] = {}
        #: Copies of a delivery still unacknowledged, by the session's packet id.
        self._copies: dict[int, int] = {}
        self._transactions: dict[str, Transaction] = {}
        self._next_message_id = 0
        #: STOMP subscriptions per MQTT filter (two ids may share a destination).
        self._filters: dict[str, int] = {}

    @property
    def escapes(self) -> bool:
        """Header escaping is on from STOMP 1.1."""
        return self.version != "1.0"

    # -- input -----------------------------------------------------------------------------
    async def handle(self, frame: Frame) -> None:
        if self.state == CLOSED:
            return
        try:
            if self.state == NEW:
                if frame.command not in ("CONNECT", "STOMP"):
                    raise ProtocolViolation(f"{frame.command} before CONNECT")
                await self._on_connect(frame)
            elif self.state == CONNECTED:
                await self._dispatch(frame)
        except ProtocolViolation as exc:
            self.error(str(exc), frame)

    async def _dispatch(self, frame: Frame) -> None:
        command = frame.command
        if command in ("SEND", "ACK", "NACK") and frame.get("transaction") is not None:
            self._in_transaction(frame)
            return
        if command == "SEND":
            await self._on_send(frame)
        elif command == "SUBSCRIBE":
            await self._on_subscribe(frame)
        elif command == "UNSUBSCRIBE":
            await self._on_unsubscribe(frame)
        elif command in ("ACK", "NACK"):
            self._on_ack(frame)
        elif command == "BEGIN":
            self._on_begin(frame)
        elif command == "COMMIT":
            await self._on_commit(frame)
        elif command == "ABORT":
            self._transaction(frame, pop=True)
        elif command == "DISCONNECT":
            self._receipt(frame)
            self.close("normal")
            return
        elif command in ("CONNECT", "STOMP"):
            raise ProtocolViolation("already connected")
        else:
            raise ProtocolViolation(f"unknown command {command[:32]}")
        if command not in ("SEND", "SUBSCRIBE", "UNSUBSCRIBE", "COMMIT"):
            self._receipt(frame)

    # -- connecting ------------------------------------------------------------------------
    async def _on_connect(self, frame: Frame) -> None:
        version = negotiate(frame.get("accept-version"))
        if version is None:
            self.send_frame(Frame("ERROR", [("version", ",".join(VERSIONS)),
                                            ("content-type", "text/plain"),
                                            ("message", "unsupported protocol version")],
                                  f"Supported protocol versions are {' '.join(VERSIONS)}".encode()))
            self.close("unsupported_version")
            return
        self.version = version
        self.client_id = frame.get("client-id") or self.client_id
        cx, cy = heartbeat(frame.get("heart-beat"))
        self.state = CONNECTING
        outcome = await self.link.connect(ConnectRequest(
            self.client_id, frame.get("login"), frame.get("passcode"), version,
            heartbeat_in=cx / 1000))
        if self.state != CONNECTING:
            return
        if not outcome.accepted:
            self.send_frame(Frame("ERROR", [("message", outcome.message or "not authorized"),
                                            ("content-type", "text/plain")],
                                  (outcome.message or "not authorized").encode()))
            self._closed("auth_failure")
            return
        self.state = CONNECTED
        # The client sends every cx ms and wants one every cy ms: the gateway
        # agrees to both (STOMP 1.2 "Heart-beating").
        self.heartbeat_in, self.heartbeat_out = cx / 1000, cy / 1000
        headers = [("version", version), ("server", SERVER_NAME),
                   ("session", self.client_id)]
        if version != "1.0":
            headers.append(("heart-beat", f"{cy},{cx}"))
        self.send_frame(Frame("CONNECTED", headers))

    # -- SEND ------------------------------------------------------------------------------
    def _outgoing(self, frame: Frame) -> Outgoing:
        topic = frame.get("destination")
        if not topic:
            raise ProtocolViolation("SEND without a destination")
        if not is_valid_topic_name(topic):
            raise ProtocolViolation(f"destination {topic[:64]!r} is not a topic name")
        qos_text = frame.get("qos", "0")
        if qos_text not in ("0", "1", "2"):
            raise ProtocolViolation("qos must be 0, 1 or 2")
        seen: set[str] = set()
        extra: list[tuple[str, str]] = []
        for name, value in frame.headers:
            if name not in SEND_HEADERS and name not in seen:
                seen.add(name)
                extra.append((name, value))
        return Outgoing(topic, frame.body, int(qos_text or "0"), frame.get("retain") == "true",
                        frame.get("content-type"), tuple(extra))

    async def _on_send(self, frame: Frame) -> None:
        message = self._outgoing(frame)
        if not await self.link.publish(message):
            raise ProtocolViolation(f"not authorized to send to {message.topic[:64]}")
        if self.state == CONNECTED:
            self._receipt(frame)

    # -- subscriptions ---------------------------------------------------------------------
    async def _on_subscribe(self, frame: Frame) -> None:
        destination = frame.get("destination")
        if not destination:
            raise ProtocolViolation("SUBSCRIBE without a destination")
        sub_id = frame.get("id")
        if sub_id is None:
            if self.version != "1.0":
                raise ProtocolViolation("SUBSCRIBE without an id")
            sub_id = destination
        ack = frame.get("ack", "auto") or "auto"
        if ack not in ACK_MODES:
            raise ProtocolViolation(f"ack must be one of {', '.join(ACK_MODES)}")
        if not is_valid_topic_filter(destination):
            raise ProtocolViolation(f"destination {destination[:64]!r} is not a topic filter")
        current = self.subscriptions.get(sub_id)
        if current is not None:
            if (current.destination, current.ack) != (destination, ack):
                raise ProtocolViolation(f"subscription id {sub_id[:64]} is already in use")
            self._receipt(frame)
            return
        qos = 0 if ack == "auto" else 1
        qos = max([qos] + [1 for s in self.subscriptions.values()
                           if s.destination == destination and s.ack != "auto"])
        granted = await self.link.subscribe(destination, qos)
        if granted is None:
            raise ProtocolViolation(f"not authorized to subscribe to {destination[:64]}")
        if self.state != CONNECTED:
            return
        self.subscriptions[sub_id] = Subscription(sub_id, destination, ack,
                                                  parse_share(destination)[1])
        self._filters[destination] = self._filters.get(destination, 0) + 1
        self._receipt(frame)

    async def _on_unsubscribe(self, frame: Frame) -> None:
        sub_id = frame.get("id")
        if sub_id is None and self.version == "1.0":
            sub_id = frame.get("destination")
        if sub_id is None:
            raise ProtocolViolation("UNSUBSCRIBE without an id")
        sub = self.subscriptions.pop(sub_id, None)
        if sub is not None:
            for message_id in [m for m, u in self.unacked.items() if u.subscription == sub_id]:
                self._settle(message_id)
            left = self._filters.get(sub.destination, 1) - 1
            if left:
                self._filters[sub.destination] = left
            else:
                self._filters.pop(sub.destination, None)
                await self.link.unsubscribe(sub.destination)
        if self.state == CONNECTED:
            self._receipt(frame)

    # -- acknowledgements ------------------------------------------------------------------
    def _on_ack(self, frame: Frame) -> None:
        message_id = frame.get("id") if self.version == "1.2" else None
        if message_id is None:
            message_id = frame.get("message-id")
        if message_id is None:
            raise ProtocolViolation(f"{frame.command} without an id")
        entry = self.unacked.get(message_id)
        if entry is None:
            return  # already settled (e.g. by a cumulative ACK): nothing to do
        sub = self.subscriptions.get(entry.subscription)
        chosen = [message_id]
        if sub is not None and sub.ack == "client":
            # Cumulative: this one and everything sent before it on the subscription.
            chosen = []
            for mid, other in self.unacked.items():
                if other.subscription == entry.subscription:
                    chosen.append(mid)
                if mid == message_id:
                    break
        for mid in chosen:
            if frame.command == "ACK":
                self._settle(mid)
            else:
                self._redeliver(mid)

    def _settle(self, message_id: str) -> None:
        """Forget an unacknowledged MESSAGE; the session hears once every copy of
        its delivery is settled."""
        entry = self.unacked.pop(message_id, None)
        if entry is None or not entry.packet_id:
            return
        left = self._copies.get(entry.packet_id, 1) - 1
        if left > 0:
            self._copies[entry.packet_id] = left
        else:
            self._copies.pop(entry.packet_id, None)
            self.link.puback(entry.packet_id)

    def _redeliver(self, message_id: str) -> None:
        entry = self.unacked.get(message_id)
        if entry is None:
            return
        sub = self.subscriptions.get(entry.subscription)
        if sub is None or entry.redeliveries >= self.max_redeliveries:
            self._settle(message_id)  # given up: dropped
            return
        del self.unacked[message_id]
        entry.redeliveries += 1
        self._send_message(sub, entry, redelivered=True)

    # -- transactions ----------------------------------------------------------------------
    def _on_begin(self, frame: Frame) -> None:
        name = frame.get("transaction")
        if not name:
            raise ProtocolViolation("BEGIN without a transaction")
        if name in self._transactions:
            raise ProtocolViolation(f"transaction {name[:64]} already started")
        if len(self._transactions) >= MAX_TRANSACTIONS:
            raise ProtocolViolation(f"more than {MAX_TRANSACTIONS} open transactions")
        self._transactions[name] = Transaction()

    def _transaction(self, frame: Frame, pop: bool = False) -> Transaction:
        name = frame.get("transaction")
        if not name:
            raise ProtocolViolation(f"{frame.command} without a transaction")
        tx = self._transactions.pop(name, None) if pop else self._transactions.get(name)
        if tx is None:
            raise ProtocolViolation(f"transaction {name[:64]} not found")
        return tx

    def _in_transaction(self, frame: Frame) -> None:
        tx = self._transaction(frame)
        if len(tx.frames) >= MAX_TRANSACTION_FRAMES:
            raise ProtocolViolation(f"more than {MAX_TRANSACTION_FRAMES} frames in a "
                                    "transaction")
        if frame.command == "SEND":
            self._outgoing(frame)  # refuse a bad SEND now, not at COMMIT
        tx.frames.append(frame)
        self._receipt(frame)

    async def _on_commit(self, frame: Frame) -> None:
        tx = self._transaction(frame, pop=True)
        for queued in tx.frames:
            if self.state != CONNECTED:
                return
            if queued.command == "SEND":
                message = self._outgoing(queued)
                if not await self.link.publish(message):
                    raise ProtocolViolation(f"not authorized to send to {message.topic[:64]}")
            else:
                self._on_ack(queued)
        if self.state == CONNECTED:
            self._receipt(frame)

    # -- output ----------------------------------------------------------------------------
    def deliver(self, topic: str, payload: bytes, packet_id: int, *,
                content_type: str | None = None,
                headers: tuple[tuple[str, str], ...] = (), dup: bool = False) -> None:
        """A message from the client's session: a MESSAGE for each subscription
        whose destination matches its topic (wildcards included)."""
        if self.state != CONNECTED:
            return
        if dup and packet_id and packet_id in self._copies:
            # The session sends it again: the copies still unacknowledged go again.
            for mid in [m for m, u in self.unacked.items() if u.packet_id == packet_id]:
                entry = self.unacked.pop(mid)
                sub = self.subscriptions.get(entry.subscription)
                if sub is not None:
                    self._send_message(sub, entry, redelivered=True)
            return
        extra = [("content-type", content_type)] if content_type else []
        extra += list(headers)
        copies = 0
        for sub in list(self.subscriptions.values()):
            if not matches(sub.real_filter, topic):
                continue
            entry = Unacked(sub.id, packet_id, topic, payload, extra)
            self._send_message(sub, entry, redelivered=False)
            if sub.ack != "auto":
                copies += 1
        if packet_id:
            if copies:
                self._copies[packet_id] = copies
            else:
                self.link.puback(packet_id)  # nobody acknowledges: done

    def _send_message(self, sub: Subscription, entry: Unacked, redelivered: bool) -> None:
        self._next_message_id += 1
        message_id = str(self._next_message_id)
        headers = [("subscription", sub.id), ("message-id", message_id),
                   ("destination", entry.topic)]
        if sub.ack != "auto":
            headers.append(("ack", message_id))
            self.unacked[message_id] = entry
        if redelivered:
            headers.append(("redelivered", "true"))
        headers += entry.headers
        self.send_frame(Frame("MESSAGE", headers, entry.payload))

    def _receipt(self, frame: Frame) -> None:
        receipt = frame.get("receipt")
        if receipt is not None:
            self.send_frame(Frame("RECEIPT", [("receipt-id", receipt)]))

    def error(self, message: str, frame: Frame | None = None) -> None:
        """Send ERROR (with the receipt-id of the frame that caused it) and close."""
        if self.state == CLOSED:
            return
        headers = [("message", message[:200]), ("content-type", "text/plain")]
        receipt = frame.get("receipt") if frame is not None else None
        if receipt is not None:
            headers.append(("receipt-id", receipt))
        self.send_frame(Frame("ERROR", headers, message.encode()))
        self.close("protocol_error")

    def kick(self, reason: str) -> None:
        """The broker ends the connection (kick, takeover, ban)."""
        if self.state == CLOSED:
            return
        self.send_frame(Frame("ERROR", [("message", f"connection closed by the server: "
                                                    f"{reason}")]))
        self._closed(reason)

    def shutdown(self, reason: str) -> None:
        """The gateway stops: ERROR to the client, and the connection ends."""
        if self.state == CLOSED:
            return
        self.send_frame(Frame("ERROR", [("message", f"server stopping: {reason}")]))
        self.close(reason)

    def close(self, reason: str) -> None:
        if self.state == CLOSED:
            return
        connected = self.state in (CONNECTING, CONNECTED)
        self._closed(reason)
        if connected:
            self.link.close(reason)

    def _closed(self, reason: str) -> None:
        self.state = CLOSED
        self.close_reason = reason
        self._transactions.clear()
        self._on_closed(self)
