"""Per-connection protocol logic: one Channel per network connection.

The transport shell (starling.transport) owns the socket; it feeds decoded
packets to `Channel.handle()` and reports errors and EOF.  The channel owns
everything MQTT: the CONNECT handshake, keepalive, acknowledgements, and the
link between the connection and its `Session`.  It writes through the small
`Connection` interface and never sees a socket.

States: NEW (waiting for CONNECT) → CONNECTING (authentication running) →
CONNECTED → CLOSED.  `_terminate()` runs exactly once, whatever closed the
connection, and is where the will is published and the session let go.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from starling.mqtt import (
    PINGRESP_BYTES,
    Connack,
    Connect,
    Disconnect,
    MQTTError,
    Packet,
    PacketType,
    PropertyId,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    ReasonCode,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
    UnsupportedProtocolVersion,
    Will,
    connack_code_for,
    encode,
    is_valid_topic_filter,
    parse_share,
)

from . import metrics as m
from .hooks import HookPoint
from .message import Message

if TYPE_CHECKING:
    from .broker import Broker
    from .session import Session

log = logging.getLogger(__name__)

NEW, CONNECTING, CONNECTED, CLOSED = "new", "connecting", "connected", "closed"


class Connection(Protocol):
    """What a channel needs from its transport."""

    peername: tuple[str, int]
    listener: str
    #: Subject of the client certificate (TLS), None for plain connections.
    peercert: str | None

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...

    def io_stats(self) -> dict[str, int]:
        """recv_oct, recv_cnt, send_oct, send_cnt, send_pend (bytes not yet sent)."""
        ...


@dataclass(slots=True)
class AuthResult:
    """The accumulator of the `client.authenticate` hook."""

    reason_code: ReasonCode = ReasonCode.SUCCESS
    anonymous: bool = True
    superuser: bool = False


class Channel:
    def __init__(self, broker: Broker, conn: Connection, zone: str = "external") -> None:
        self.broker = broker
        self.conn = conn
        self.zone = zone
        self.counters = broker.counters
        self.state = NEW
        self.protocol_level = 0
        self.client_id = ""
        self.username: str | None = None
        self.password: bytes | None = None
        self.clean_start = True
        self.keepalive = 0
        self.will: Will | None = None
        self.session: Session | None = None
        self.connected_at: float | None = None
        self.is_superuser = False
        self.is_bridge = False
        #: False while the transport's write buffer is over its high-water mark.
        self.writable = True
        self.last_seen = time.monotonic()
        self.disconnect_reason = ""
        self.recv_pkt = self.recv_msg = self.send_pkt = self.send_msg = 0
        self._timer: asyncio.TimerHandle | None = None
        self._retry_timer: asyncio.TimerHandle | None = None
        self._retry_interval = 0.0
        self._pending: list[Packet] = []
        #: Acknowledgements waiting for a store commit: (batch id needed, bytes).
        self._held_acks: deque[tuple[int, bytes]] = deque()
        self.connect_packet: Connect | None = None
        self.assigned_client_id = False
        self._loop = asyncio.get_event_loop()
        self._handlers: dict[PacketType, Callable[[Any], None]] = {
            PacketType.PUBLISH: self._on_publish,
            PacketType.PUBACK: self._on_puback,
            PacketType.PUBREC: self._on_pubrec,
            PacketType.PUBREL: self._on_pubrel,
            PacketType.PUBCOMP: self._on_pubcomp,
            PacketType.SUBSCRIBE: self._on_subscribe,
            PacketType.UNSUBSCRIBE: self._on_unsubscribe,
            PacketType.PINGREQ: self._on_pingreq,
            PacketType.DISCONNECT: self._on_disconnect,
            PacketType.AUTH: self._on_auth,
        }
        self._timer = self._loop.call_later(broker.options.idle_timeout, self._idle_timeout)

    @property
    def peerhost(self) -> str:
        return self.conn.peername[0]

    # -- input from the shell ------------------------------------------------
    def handle(self, packet: Packet) -> None:
        """One decoded packet from the client."""
        self.recv_pkt += 1
        self.counters[m.PACKETS_RECEIVED] += 1
        state = self.state
        if state == CONNECTED:
            handler = self._handlers.get(packet.type)
            if handler is None:
                # CONNECT twice [MQTT-3.1.0-2], or a packet only servers send.
                self._protocol_violation(f"unexpected {packet.type.name}")
                return
            handler(packet)
        elif state == NEW:
            if not isinstance(packet, Connect):
                self._protocol_violation(f"{packet.type.name} before CONNECT")  # [MQTT-3.1.0-1]
                return
            self._on_connect(packet)
        elif state == CONNECTING:
            if isinstance(packet, Connect):
                self._protocol_violation("second CONNECT")
                return
            self._pending.append(packet)

    def handle_error(self, error: MQTTError) -> None:
        """The decoder refused the client's bytes: answer if the spec says how, close."""
        self.counters[m.PACKETS_MALFORMED] += 1
        log.debug("client %r: %s", self.client_id, error)
        if self.state == NEW and isinstance(error, UnsupportedProtocolVersion):
            # Answered in 3.1.1 form: the client does not speak our 5.0 [MQTT-3.1.2-2].
            self._write_connack(False, 1, level=4)
        elif self.state == CONNECTED and self.protocol_level == 5:
            self._send_disconnect(error.reason_code)
        self.close("frame_error")

    def connection_lost(self) -> None:
        """The socket is gone (peer closed, error, or our own close)."""
        self._terminate(self.disconnect_reason or "closed")

    def set_writable(self, writable: bool) -> None:
        self.writable = writable
        if writable and self.session is not None and self.session.mqueue:
            self.session.drain()

    # -- closing ---------------------------------------------------------------
    def close(self, reason: str) -> None:
        """Close the connection; the will is published unless it was a DISCONNECT."""
        if self.state == CLOSED:
            return
        self.disconnect_reason = self.disconnect_reason or reason
        self._terminate(self.disconnect_reason)
        self.conn.close()

    def kick(self, reason: str = "kicked") -> None:
        """Administrative close (REST kickout, a new ban): the will is published."""
        if self.protocol_level == 5:
            self._send_disconnect(ReasonCode.ADMINISTRATIVE_ACTION)
        self.close(reason)

    def takeover(self) -> None:
        """Another connection claimed our client id [MQTT-3.1.4-3]."""
        if self.protocol_level == 5:
            self._send_disconnect(ReasonCode.SESSION_TAKEN_OVER)
        self.close("takeovered")

    def _protocol_violation(self, why: str) -> None:
        self.counters[m.PACKETS_MALFORMED] += 1
        log.debug("client %r: protocol violation: %s", self.client_id, why)
        if self.state == CONNECTED and self.protocol_level == 5:
            self._send_disconnect(ReasonCode.PROTOCOL_ERROR)
        self.close("protocol_error")

    def _terminate(self, reason: str) -> None:
        if self.state == CLOSED:
            return
        was_connected = self.state == CONNECTED
        self.state = CLOSED
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._retry_timer is not None:
            self._retry_timer.cancel()
            self._retry_timer = None
        if not was_connected:
            return
        broker = self.broker
        if self.will is not None:  # cleared by a normal DISCONNECT
            will, self.will = self.will, None
            broker.publish(Message(will.topic, will.payload, will.qos, will.retain,
                                   self.client_id, self.username, self.peerhost,
                                   dict(will.properties)))
        broker.channel_closed(self, reason)

    # -- CONNECT -----------------------------------------------------------------
    def _on_connect(self, p: Connect) -> None:
        broker = self.broker
        self.counters["packets/connect"] += 1
        self.protocol_level = p.protocol_level
        self.clean_start = p.clean_start
        self.keepalive = p.keepalive
        self.username = p.username
        self.password = p.password
        self.will = p.will
        self.connect_packet = p
        self.assigned_client_id = False
        client_id = p.client_id
        if not client_id:
            if not p.clean_start and p.protocol_level < 5:
                self._refuse(ReasonCode.CLIENT_IDENTIFIER_NOT_VALID)  # [MQTT-3.1.3-8]
                return
            client_id = "starling-" + uuid.uuid4().hex
            self.assigned_client_id = True
        elif len(client_id) > broker.options.max_clientid_len:
            self._refuse(ReasonCode.CLIENT_IDENTIFIER_NOT_VALID)
            return
        self.client_id = client_id
        if self._refuse_if_banned():
            return
        acc = AuthResult(ReasonCode.SUCCESS if broker.options.allow_anonymous
                         else ReasonCode.NOT_AUTHORIZED)
        if broker.hooks.has(HookPoint.CLIENT_AUTHENTICATE):
            self.state = CONNECTING
            task = self._loop.create_task(self._authenticate(acc))
            broker.track(task)
        else:
            self._finish_connect(acc)

    async def _authenticate(self, acc: AuthResult) -> None:
        result = await self.broker.hooks.run_fold_async(
            HookPoint.CLIENT_AUTHENTICATE, (self,), acc)
        if self.state != CONNECTING:
            return  # the socket went away while we waited
        if self._refuse_if_banned():
            return  # banned while authentication ran
        self._finish_connect(result)
        pending, self._pending = self._pending, []
        for packet in pending:
            if self.state != CONNECTED:
                break
            self.handle(packet)

    def _finish_connect(self, auth: AuthResult) -> None:
        broker = self.broker
        if auth.reason_code != ReasonCode.SUCCESS:
            self.counters["packets/connack/auth_error"] += 1
            self._refuse(auth.reason_code)
            return
        if auth.anonymous and self.username is None:
            self.counters["auth/mqtt/anonymous"] += 1
        self.is_superuser = auth.superuser
        p = self.connect_packet
        assert p is not None
        if p.protocol_level == 5:
            expiry = float(p.properties.get(PropertyId.SESSION_EXPIRY_INTERVAL, 0))
        else:
            expiry = 0.0 if p.clean_start else broker.options.session_expiry_interval
        session, present = broker.open_session(self, p.clean_start, expiry)
        self.session = session
        self.state = CONNECTED
        self.connected_at = time.time()
        props: dict[PropertyId, Any] = {}
        if p.protocol_level == 5 and self.assigned_client_id:
            props[PropertyId.ASSIGNED_CLIENT_IDENTIFIER] = self.client_id
        if p.protocol_level < 5:
            self._retry_interval = broker.options.retry_interval
        self._write_connack(present, 0, props=props)
        self._reset_keepalive_timer()
        broker.channel_connected(self)
        if present:
            session.resend_inflight()
        session.drain()

    def _refuse(self, reason: ReasonCode, close_reason: str = "refused") -> None:
        self.counters["packets/connack/error"] += 1
        self._write_connack(False, connack_code_for(reason, self.protocol_level))
        self.close(close_reason)

    def _refuse_if_banned(self) -> bool:
        """The banned table (client id, user name, IP): CONNACK 5 / 0x8A on a hit."""
        banned = self.broker.banned
        if banned.match(self.client_id, self.username, self.peerhost) is None:
            return False
        banned.refused += 1
        self._refuse(ReasonCode.BANNED, "banned")
        return True

    def _write_connack(self, present: bool, code: int, level: int | None = None,
                       props: dict[PropertyId, Any] | None = None) -> None:
        self.counters["packets/connack"] += 1
        self._send(encode(Connack(present, code, props or {}), level or self.protocol_level))

    # -- keepalive -----------------------------------------------------------------
    def _idle_timeout(self) -> None:
        if self.state in (NEW, CONNECTING):
            self.close("idle_timeout")

    def _reset_keepalive_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.keepalive:
            self._timer = self._loop.call_later(
                self.keepalive * self.broker.options.keepalive_multiplier, self._check_keepalive)

    def _check_keepalive(self) -> None:
        """Close if nothing arrived for 1.5 x keepalive [MQTT-3.1.2-24]."""
        window = self.keepalive * self.broker.options.keepalive_multiplier
        idle = time.monotonic() - self.last_seen
        if idle >= window:
            if self.protocol_level == 5:
                self._send_disconnect(ReasonCode.KEEP_ALIVE_TIMEOUT)
            self.close("keepalive_timeout")
        else:
            self._timer = self._loop.call_later(window - idle, self._check_keepalive)

    # -- PUBLISH in ----------------------------------------------------------------
    def _on_publish(self, p: Publish) -> None:
        counters = self.counters
        counters["packets/publish/received"] += 1
        counters[m.MESSAGES_RECEIVED] += 1
        qos = p.qos
        counters[m.QOS_RECEIVED[qos]] += 1
        self.recv_msg += 1
        if p.properties and PropertyId.TOPIC_ALIAS in p.properties:
            # We announce no Topic Alias Maximum (so 0): any alias is invalid [MQTT-3.3.2-8].
            self._send_disconnect(ReasonCode.TOPIC_ALIAS_INVALID)
            self.close("protocol_error")
            return
        if not p.topic:
            self._protocol_violation("empty topic without a topic alias")
            return
        broker = self.broker
        session = self.session
        assert session is not None
        if qos == 2 and p.packet_id in session.awaiting_rel:
            # A resend before PUBREL: acknowledge, do not deliver again [MQTT-4.3.3-2].
            self._send_ack(0x50, p.packet_id, 0, False)
            return
        journal = broker.journal
        ops_before = journal.ops_added
        if broker.options.max_topic_levels and not broker.topic_levels_ok(p.topic):
            self._ack_publish(p, ReasonCode.TOPIC_NAME_INVALID)
            return
        if broker.hooks.has(HookPoint.CLIENT_CHECK_ACL) and not broker.check_acl(
                self, "publish", p.topic):
            counters["packets/publish/auth_error"] += 1
            self._ack_publish(p, ReasonCode.NOT_AUTHORIZED)
            return
        if qos == 2:
            limit = broker.options.max_awaiting_rel
            if limit and len(session.awaiting_rel) >= limit:
                counters["messages/qos2/expired"] += session.expire_awaiting_rel(
                    time.monotonic())
                if len(session.awaiting_rel) >= limit:
                    counters["messages/qos2/dropped"] += 1
                    self._ack_publish(p, ReasonCode.RECEIVE_MAXIMUM_EXCEEDED)
                    return
            assert p.packet_id is not None
            session.await_rel(p.packet_id)
        message = Message(p.topic, p.payload, qos, p.retain, self.client_id, self.username,
                          self.conn.peername[0], p.properties)
        delivered = broker.publish(message)
        if qos:
            code = 0
            if not delivered and self.protocol_level == 5:
                code = ReasonCode.NO_MATCHING_SUBSCRIBERS
            # Durable mode: what this PUBLISH changed in the store is committed first.
            self._ack_publish(p, code, journal.durable and journal.ops_added != ops_before)

    def _ack_publish(self, p: Publish, code: int, wait: bool = False) -> None:
        if not p.qos:
            return
        assert p.packet_id is not None
        if code >= 0x80:
            self.counters["packets/publish/error"] += 1
        if p.qos == 1:
            self.counters["packets/puback/sent"] += 1
            self._send_ack(0x40, p.packet_id, code, wait)
        else:
            self.counters["packets/pubrec/sent"] += 1
            self._send_ack(0x50, p.packet_id, code, wait)

    def _send_ack(self, first: int, packet_id: int, code: int, wait: bool) -> None:
        """Send PUBACK/PUBREC/PUBCOMP, after the journal's commit when `wait`.

        Acknowledgements leave in the order their packets arrived
        [MQTT-4.6.0-2, -3]: once one is held back, later ones queue behind it.
        """
        if code and self.protocol_level == 5:
            data = bytes((first, 3)) + packet_id.to_bytes(2, "big") + bytes((code,))
        else:
            data = bytes((first, 2)) + packet_id.to_bytes(2, "big")
        held = self._held_acks
        if not wait and not held:
            self._send(data)
            return
        journal = self.broker.journal
        held.append((journal.batch_id if wait else 0, data))
        if wait:
            journal.after_commit(self._release_acks)

    def _release_acks(self) -> None:
        held = self._held_acks
        committed = self.broker.journal.committed_id
        while held and held[0][0] <= committed:
            self._send(held.popleft()[1])

    def _on_pubrel(self, p: Pubrel) -> None:
        self.counters["packets/pubrel/received"] += 1
        session = self.session
        assert session is not None
        code = 0
        journal = self.broker.journal
        ops_before = journal.ops_added
        if not session.release(p.packet_id):
            self.counters["packets/pubrel/missed"] += 1
            code = ReasonCode.PACKET_IDENTIFIER_NOT_FOUND
        self.counters["packets/pubcomp/sent"] += 1
        self._send_ack(0x70, p.packet_id, code, journal.durable and journal.ops_added != ops_before)

    # -- PUBLISH out ---------------------------------------------------------------
    def send_publish(self, message: Message, qos: int, retain: bool, packet_id: int,
                     dup: bool) -> None:
        head, tail = message.parts(qos, retain, self.protocol_level)
        if qos:
            if dup:
                head = bytes((head[0] | 0x08,)) + head[1:]
            self.conn.write(head + packet_id.to_bytes(2, "big") + tail)
            if self._retry_timer is None and self._retry_interval:
                self._retry_timer = self._loop.call_later(self._retry_interval, self._retry)
        else:
            self.conn.write(head + tail)
        self.send_pkt += 1
        if not message.sys:
            self.send_msg += 1
            counters = self.counters
            counters[m.PACKETS_SENT] += 1
            counters["packets/publish/sent"] += 1
            counters[m.MESSAGES_SENT] += 1
            counters[m.QOS_SENT[qos]] += 1

    def _retry(self) -> None:
        """retry_interval elapsed: resend what is still unacknowledged (MQTT 3.x)."""
        self._retry_timer = None
        session = self.session
        if session is None or self.state != CONNECTED:
            return
        interval = self._retry_interval
        oldest = session.resend_inflight(older_than=time.monotonic() - interval)
        if self._retry_timer is not None:  # armed by the resends; re-arm precisely
            self._retry_timer.cancel()
            self._retry_timer = None
        if oldest is not None:
            delay = max(0.01, oldest + interval - time.monotonic())
            self._retry_timer = self._loop.call_later(delay, self._retry)

    def send_pubrel(self, packet_id: int) -> None:
        self.counters["packets/pubrel/sent"] += 1
        self._send(bytes((0x62, 2)) + packet_id.to_bytes(2, "big"))

    def _on_puback(self, p: Puback) -> None:
        self.counters["packets/puback/received"] += 1
        session = self.session
        assert session is not None
        message = session.puback(p.packet_id)
        if message is None:
            self.counters["packets/puback/missed"] += 1
        elif self.broker.hooks.has(HookPoint.MESSAGE_ACKED):
            self.broker.hooks.run(HookPoint.MESSAGE_ACKED, self, message)

    def _on_pubrec(self, p: Pubrec) -> None:
        self.counters["packets/pubrec/received"] += 1
        session = self.session
        assert session is not None
        if p.reason_code >= 0x80:
            # MQTT 5.0: the client refused the message; the flow ends here.
            session.abandon(p.packet_id)
            return
        if session.pubrec(p.packet_id) is None:
            self.counters["packets/pubrec/missed"] += 1
            if self.protocol_level == 5:
                self.counters["packets/pubrel/sent"] += 1
                self._send(encode(Pubrel(p.packet_id, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND), 5))
                return
        self.send_pubrel(p.packet_id)

    def _on_pubcomp(self, p: Pubcomp) -> None:
        self.counters["packets/pubcomp/received"] += 1
        session = self.session
        assert session is not None
        message = session.pubcomp(p.packet_id)
        if message is None:
            self.counters["packets/pubcomp/missed"] += 1
        elif self.broker.hooks.has(HookPoint.MESSAGE_ACKED):
            self.broker.hooks.run(HookPoint.MESSAGE_ACKED, self, message)

    # -- SUBSCRIBE / UNSUBSCRIBE -------------------------------------------------------
    def _on_subscribe(self, p: Subscribe) -> None:
        self.counters["packets/subscribe"] += 1
        broker = self.broker
        session = self.session
        assert session is not None
        v5 = self.protocol_level == 5
        codes: list[int] = []
        granted: list[tuple[str, int, bool]] = []
        for topic_filter, opts in p.subscriptions:
            if not is_valid_topic_filter(topic_filter) or not broker.topic_levels_ok(topic_filter):
                codes.append(ReasonCode.TOPIC_FILTER_INVALID if v5 else 0x80)
                continue
            if parse_share(topic_filter)[0] is not None:
                codes.append(ReasonCode.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED if v5 else 0x80)
                continue
            if broker.hooks.has(HookPoint.CLIENT_CHECK_ACL) and not broker.check_acl(
                    self, "subscribe", topic_filter):
                codes.append(ReasonCode.NOT_AUTHORIZED if v5 else 0x80)
                continue
            is_new = broker.subscribe(session, topic_filter, opts)
            codes.append(opts.qos)
            granted.append((topic_filter, opts.qos, is_new))
        self.counters["packets/suback"] += 1
        self._send(encode(Suback(p.packet_id, codes), self.protocol_level))
        for topic_filter, qos, is_new in granted:
            opts = session.subscriptions[topic_filter]
            if opts.retain_handling == 2 or (opts.retain_handling == 1 and not is_new):
                continue
            broker.deliver_retained(session, topic_filter, qos)

    def _on_unsubscribe(self, p: Unsubscribe) -> None:
        self.counters["packets/unsubscribe"] += 1
        session = self.session
        assert session is not None
        codes = []
        for topic_filter in p.topic_filters:
            found = self.broker.unsubscribe(session, topic_filter)
            codes.append(0 if found else ReasonCode.NO_SUBSCRIPTION_EXISTED)
        self.counters["packets/unsuback"] += 1
        self._send(encode(Unsuback(p.packet_id, codes if self.protocol_level == 5 else []),
                          self.protocol_level))

    # -- the rest --------------------------------------------------------------------
    def _on_pingreq(self, p: Packet) -> None:
        self.counters["packets/pingreq"] += 1
        self.counters["packets/pingresp"] += 1
        self._send(PINGRESP_BYTES)

    def _on_disconnect(self, p: Disconnect) -> None:
        self.counters["packets/disconnect/received"] += 1
        if p.reason_code != ReasonCode.DISCONNECT_WITH_WILL_MESSAGE:
            self.will = None  # [MQTT-3.1.2-10]
        self.close("normal")

    def _on_auth(self, p: Packet) -> None:
        """MQTT 5.0 AUTH: enhanced authentication is not offered, so any AUTH
        is a protocol error (none was negotiated in CONNECT) [MQTT-4.12.0-1]."""
        self.counters["packets/auth"] += 1
        self._protocol_violation("AUTH without an authentication method")

    def _send_disconnect(self, reason: ReasonCode) -> None:
        self.counters["packets/disconnect/sent"] += 1
        self._send(encode(Disconnect(reason), 5))

    def _send(self, data: bytes) -> None:
        self.send_pkt += 1
        self.counters[m.PACKETS_SENT] += 1
        self.conn.write(data)
