"""Per-connection protocol logic: one Channel per MQTT network connection.

The transport shell (starling.transport) owns the socket; it feeds decoded
packets to `Channel.handle()` and reports errors and EOF.  The channel owns
everything MQTT: the CONNECT handshake, keepalive, acknowledgements, and the
link between the connection and its `Session`.  It writes through the small
`Connection` interface and never sees a socket.  It is a `Client` (what every
protocol shares: authentication, the session, ACL, the will) and the `Outlet`
its session delivers through.

States: NEW (waiting for CONNECT) → CONNECTING (authentication running) →
CONNECTED → CLOSED.  `_terminate()` runs exactly once, whatever closed the
connection, and is where the will is published and the session let go.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections import deque
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Final, Protocol

from starling.mqtt import (
    MAX_PACKET_SIZE,
    PINGRESP_BYTES,
    Auth,
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
    connack_bytes,
    connack_code_for,
    encode,
    is_valid_topic_filter,
    matches,
    parse_share,
    publish_parts,
    topic_levels_ok,
)

from . import metrics as m
from .client import CLOSED, CONNECTED, CONNECTING, NEW, Client
from .hooks import HookPoint, Points
from .info import AuthResult, AuthStep
from .limiter import Limiter
from .message import Message
from .session import NO_ENTRIES

if TYPE_CHECKING:
    from .broker import Broker
    from .options import BrokerOptions

log = logging.getLogger(__name__)

# Bound once: `ReasonCode.X` is a slow lookup on Python 3.11 (see `hooks.Points`).
_SUCCESS: Final = ReasonCode.SUCCESS
_NOT_AUTHORIZED: Final = ReasonCode.NOT_AUTHORIZED
#: Held packets past which the channel stops reading its socket.
HOLD_LIMIT: Final = 256


class Connection(Protocol):
    """What a channel needs from its transport."""

    #: The client's address; `peername` adds the port.
    peerhost: str

    @property
    def peername(self) -> tuple[str, int]: ...

    @property
    def listener(self) -> str: ...

    #: Subject of the client certificate (TLS), None for plain connections.
    peercert: str | None
    #: User name / client id taken from the client certificate, when configured.
    cert_username: str | None
    cert_clientid: str | None

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...

    def pause_reading(self) -> None:
        """Stop reading from the socket (the channel holds too many packets)."""
        ...

    def resume_reading(self) -> None: ...

    def io_stats(self) -> dict[str, int]:
        """recv_oct, recv_cnt, send_oct, send_cnt, send_pend (bytes not yet sent)."""
        ...


class _V5:
    """What only MQTT 5.0 clients ask for: made for the first that a client uses, so
    a 3.x client (or a 5.0 one using none of it) costs one empty slot, not eight."""

    __slots__ = ("alias_max", "auth_method", "auth_props", "max_packet", "out_aliases",
                 "problem_info", "receive_maximum", "topic_aliases")

    def __init__(self) -> None:
        #: Enhanced authentication: the method CONNECT named, and what the last
        #: step returned for CONNACK.
        self.auth_method: str | None = None
        self.auth_props: dict[PropertyId, Any] = NO_ENTRIES
        #: The client's Maximum Packet Size (0 = no limit) and Receive Maximum.
        self.max_packet = 0
        self.receive_maximum = 65535
        #: Request Problem Information: reason strings allowed.
        self.problem_info = True
        #: Client-to-server topic aliases (MQTT 5.0 §3.3.2.3.4).
        self.topic_aliases: dict[int, str] = NO_ENTRIES
        #: Server-to-client aliases (`mqtt.server_topic_alias`), up to the client's maximum.
        self.alias_max = 0
        self.out_aliases: dict[str, int] = NO_ENTRIES


class Channel(Client):
    # Slots: a node holds one Channel per connection, so its size is per-client
    # memory (with `Client`'s slots).
    __slots__ = (
        "_blocked",
        "_busy",
        "_connack_pending",
        "_held_acks",
        "_pending",
        "_retry_interval",
        "_retry_timer",
        "_v5",
        "conn",
        "connect_packet",
        "last_seen",
        "limiter",
        "timer_bucket",
    )

    def __init__(self, broker: Broker, conn: Connection, zone: str = "external") -> None:
        Client.__init__(self, broker, zone)  # not super(): one object less per connect
        self.conn = conn
        #: The zone's per-client rate limits, if it has any (set by `use_options`).
        self.limiter: Limiter | None = None
        self.use_options(self.options)
        #: Deliveries wait while the transport's write buffer is over its high-water
        #: mark (`_blocked`), and before a CONNACK that waits for its commit has left.
        self._blocked = False
        self._connack_pending = False
        self.last_seen = time.monotonic()
        self._retry_timer: asyncio.TimerHandle | None = None
        self._retry_interval = 0.0
        #: Packets held while CONNECT or an awaited ACL answer is pending
        #: (a list only while there are some).
        self._pending: list[Packet] | None = None
        #: Waits under way (an ACL answer, a rate limit); while any, packets are held.
        self._busy = 0
        #: Acknowledgements waiting for a store commit: (batch id needed, bytes).
        self._held_acks: deque[tuple[int, bytes]] | None = None  # made when first needed
        #: The CONNECT being handled; let go once connected (what lasts is copied out).
        self.connect_packet: Connect | None = None
        #: What only MQTT 5.0 clients ask for (limits, aliases, enhanced auth),
        #: made when one does.
        self._v5: _V5 | None = None
        #: The idle timeout, then the keepalive, are deadlines in `broker.timers`.
        self.timer_bucket: dict[Any, None] | None = None
        broker.timers.add(self, self.last_seen + self.options.idle_timeout)

    # -- where the client is: its transport knows --------------------------------------------
    @property
    def peerhost(self) -> str:
        return self.conn.peerhost

    @property
    def peername(self) -> tuple[str, int]:
        return self.conn.peername

    @property
    def listener(self) -> str:
        return self.conn.listener

    @property
    def peercert(self) -> str | None:
        return self.conn.peercert

    @property
    def proto_name(self) -> str:
        return "MQIsdp" if self.protocol_level == 3 else "MQTT"

    def io_stats(self) -> dict[str, int]:
        return self.conn.io_stats()

    def _close_transport(self) -> None:
        self.conn.close()

    def _v5_state(self) -> _V5:
        v5 = self._v5
        if v5 is None:
            v5 = self._v5 = _V5()
        return v5

    @property
    def client_max_packet(self) -> int:
        """The client's Maximum Packet Size; 0 = no limit."""
        return self._v5.max_packet if self._v5 is not None else 0

    @property
    def receive_maximum(self) -> int:
        """At most this many unacknowledged QoS 1/2 PUBLISHes to the client."""
        return self._v5.receive_maximum if self._v5 is not None else 65535

    @property
    def request_problem_info(self) -> bool:
        return self._v5.problem_info if self._v5 is not None else True

    @property
    def _auth_method(self) -> str | None:
        return self._v5.auth_method if self._v5 is not None else None

    # -- input from the shell ------------------------------------------------
    def handle(self, packet: Packet) -> None:
        """One decoded packet from the client."""
        self.recv_pkt += 1
        self.counters[m.PACKETS_RECEIVED] += 1
        state = self.state
        if state == CONNECTED:
            if self._busy:
                self._hold(packet)  # keep order behind the packet being answered
                return
            handler = _HANDLERS.get(packet.type)
            if handler is None:
                # CONNECT twice [MQTT-3.1.0-2], or a packet only servers send.
                self._protocol_violation(f"unexpected {packet.type.name}")
                return
            handler(self, packet)
        elif state == NEW:
            if not isinstance(packet, Connect):
                self._protocol_violation(f"{packet.type.name} before CONNECT")  # [MQTT-3.1.0-1]
                return
            self._on_connect(packet)
        elif state == CONNECTING:
            if isinstance(packet, Connect):
                self._protocol_violation("second CONNECT")
                return
            if isinstance(packet, Auth) and self._auth_method is not None:
                self._auth_packet(packet)
                return
            self._hold(packet)

    def use_options(self, options: BrokerOptions) -> None:
        """Adopt the zone's options (at start, and when they change at runtime:
        new limits start now)."""
        self.options = options
        if self.limiter is not None:
            self.limiter.cancel()  # ends its wait, if any
            self.limiter = None
        if options.publish_limit or options.bytes_in_limit:
            self.limiter = Limiter(options.publish_limit, options.bytes_in_limit,
                                   self._throttle, self._wait_over)

    def _hold(self, packet: Packet) -> None:
        """Keep a packet until the wait under way is over; past `HOLD_LIMIT` held
        packets, stop reading the socket (TCP pushes back)."""
        pending = self._pending
        if pending is None:
            pending = self._pending = []
        pending.append(packet)
        if len(pending) == HOLD_LIMIT:
            self.conn.pause_reading()

    def _wait_for(self, answer: Coroutine[Any, Any, None]) -> None:
        """Run `answer` (which finishes handling the current packet) and hold the
        packets that arrive meanwhile, so they are handled after it, in order."""
        self._busy += 1
        self.broker.track(asyncio.get_running_loop().create_task(self._answered(answer)))

    async def _answered(self, answer: Coroutine[Any, Any, None]) -> None:
        try:
            await answer
        finally:
            self._wait_over()

    def _throttle(self) -> None:
        """Over a rate limit: hold what comes next and stop reading until
        the limiter calls `_wait_over`."""
        self._busy += 1
        self.conn.pause_reading()

    def _wait_over(self) -> None:
        self._busy -= 1
        if not self._busy:
            self._release_held()

    def _release_held(self) -> None:
        """Handle the held packets (once connected) and read the socket again,
        unless one of them started a new wait."""
        if self.state == CONNECTED:
            self._handle_held()
        if not self._busy and self.state != CLOSED and len(self._held_acks or ()) < HOLD_LIMIT:
            self.conn.resume_reading()

    def _handle_held(self) -> None:
        """Handle what arrived while waiting (stops early if the channel closes;
        held again, in order, if one of them makes the channel wait)."""
        pending, self._pending = self._pending, None
        for packet in pending or ():
            if self.state != CONNECTED:
                break
            self.handle(packet)

    def handle_error(self, error: MQTTError) -> None:
        """The decoder refused the client's bytes: answer if the spec says how, close."""
        self.counters[m.PACKETS_MALFORMED] += 1
        log.debug("client %r: %s", self.client_id, error)
        if self.state == NEW and isinstance(error, UnsupportedProtocolVersion):
            # Answered in 3.1.1 form: the client does not speak our 5.0 [MQTT-3.1.2-2].
            self._write_connack(False, 1, level=4)
        elif self.state == CONNECTED and self.protocol_level == 5:
            self._send_disconnect(error.reason_code, str(error))
        self.close("frame_error")

    def connection_lost(self) -> None:
        """The socket is gone (peer closed, error, or our own close)."""
        self._terminate(self.disconnect_reason or "closed")

    def set_writable(self, writable: bool) -> None:
        self._blocked = not writable
        Client.set_writable(self, writable and not self._connack_pending)

    # -- closing ---------------------------------------------------------------
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
            self._send_disconnect(ReasonCode.PROTOCOL_ERROR, why)
        self.close("protocol_error")

    def _terminate(self, reason: str) -> None:
        if self.state == CLOSED:
            return
        if self.timer_bucket is not None:
            self.broker.timers.remove(self)
        if self._retry_timer is not None:
            self._retry_timer.cancel()
            self._retry_timer = None
        if self.limiter is not None:
            self.limiter.cancel()
        super()._terminate(reason)

    # -- CONNECT -----------------------------------------------------------------
    def _on_connect(self, p: Connect) -> None:
        broker = self.broker
        self.counters["packets/connect"] += 1
        options = broker.zone_options(self.zone)
        if options is not self.options:  # changed at runtime since the socket opened
            self.use_options(options)
        self.protocol_level = p.protocol_level
        self.clean_start = p.clean_start
        self.keepalive = p.keepalive
        self.username = p.username
        if self.conn.cert_username is not None:  # peer_cert_as_username (EMQ X)
            self.username = p.username = self.conn.cert_username
        if self.conn.cert_clientid is not None:  # peer_cert_as_clientid
            p.client_id = self.conn.cert_clientid
        self.password = p.password
        self.will = p.will
        self.connect_packet = p
        self.client_id = client_id = p.client_id  # as the client sent it, for client.connect
        if Points.CLIENT_CONNECT in broker.hooks.active:
            broker.hooks.run(Points.CLIENT_CONNECT, self.info)
        if not client_id:
            if not p.clean_start and p.protocol_level < 5:
                self._refuse(ReasonCode.CLIENT_IDENTIFIER_NOT_VALID)  # [MQTT-3.1.3-8]
                return
            client_id = "starling-" + uuid.uuid4().hex  # assigned: p.client_id stays ""
        elif len(client_id) > self.options.max_clientid_len:
            self._refuse(ReasonCode.CLIENT_IDENTIFIER_NOT_VALID)
            return
        self.client_id = client_id
        if p.protocol_level == 5 and not self._accept_v5_connect(p):
            return
        if self._banned():
            self._refuse(ReasonCode.BANNED, "banned")
            return
        if self._auth_method is not None:
            # Enhanced authentication replaces the user name / password chain.
            self.state = CONNECTING
            data = p.properties.get(PropertyId.AUTHENTICATION_DATA)
            broker.track(asyncio.get_running_loop().create_task(self._enhanced_step(data)))
            return
        acc = AuthResult(_SUCCESS if self.options.allow_anonymous else _NOT_AUTHORIZED)
        if broker.hooks.has(Points.CLIENT_AUTHENTICATE) or (
                p.will is not None and broker.acl_is_async) or broker.cluster is not None:
            self.state = CONNECTING
            task = asyncio.get_running_loop().create_task(self._connect_after_auth(acc))
            broker.track(task)
        else:
            self._finish_connect(acc)

    def _accept_v5_connect(self, p: Connect) -> bool:
        """Check the MQTT 5.0 CONNECT properties and note the client's limits."""
        props = p.properties
        if props.get(PropertyId.RECEIVE_MAXIMUM) == 0 or props.get(
                PropertyId.MAXIMUM_PACKET_SIZE) == 0:
            self._refuse(ReasonCode.PROTOCOL_ERROR)  # §3.1.2.11.3, §3.1.2.11.4
            return False
        if PropertyId.AUTHENTICATION_METHOD in props:
            if not self.broker.hooks.has(HookPoint.CLIENT_ENHANCED_AUTHENTICATE):
                self._refuse(ReasonCode.BAD_AUTHENTICATION_METHOD)  # §4.12
                return False
            self._v5_state().auth_method = props[PropertyId.AUTHENTICATION_METHOD]
        if p.will is not None and p.will.retain and not self.options.retain_available:
            self._refuse(ReasonCode.RETAIN_NOT_SUPPORTED)  # [MQTT-3.2.2-13]
            return False
        max_packet = props.get(PropertyId.MAXIMUM_PACKET_SIZE, 0)
        receive_maximum = int(props.get(PropertyId.RECEIVE_MAXIMUM, 65535))
        alias_max = 0
        if self.options.server_topic_alias:
            alias_max = props.get(PropertyId.TOPIC_ALIAS_MAXIMUM, 0)
        problem_info = props.get(PropertyId.REQUEST_PROBLEM_INFORMATION, 1) != 0
        if max_packet or receive_maximum != 65535 or alias_max or not problem_info:
            v5 = self._v5_state()
            v5.max_packet, v5.receive_maximum = max_packet, receive_maximum
            v5.problem_info = problem_info
            if alias_max:
                v5.alias_max, v5.out_aliases = alias_max, {}
        return True

    # -- enhanced authentication (MQTT 5.0 §4.12) ------------------------------
    def _auth_packet(self, p: Auth) -> None:
        """An AUTH from the client: the next step of a running exchange (0x18),
        or a re-authentication once connected (0x19)."""
        self.counters["packets/auth"] += 1
        method = p.properties.get(PropertyId.AUTHENTICATION_METHOD)
        expected = (ReasonCode.CONTINUE_AUTHENTICATION if self.state == CONNECTING
                    else ReasonCode.RE_AUTHENTICATE)
        if method != self._auth_method or p.reason_code not in (
                expected, ReasonCode.CONTINUE_AUTHENTICATION):
            self._protocol_violation("AUTH with another method or reason")  # [MQTT-4.12.0-5]
            return
        data = p.properties.get(PropertyId.AUTHENTICATION_DATA)
        self.broker.track(asyncio.get_running_loop().create_task(self._enhanced_step(data)))

    async def _enhanced_step(self, data: bytes | None) -> None:
        assert self._auth_method is not None
        state = self.state
        step = await self.broker.hooks.run_fold_async(
            HookPoint.CLIENT_ENHANCED_AUTHENTICATE, (self.info, self._auth_method, data), None)
        if self.state != state or self.state == CLOSED:
            return  # the connection went away while the plugin worked
        props: dict[PropertyId, Any] = {PropertyId.AUTHENTICATION_METHOD: self._auth_method}
        if isinstance(step, AuthStep) and step.data is not None:
            props[PropertyId.AUTHENTICATION_DATA] = step.data
        status = step.status if isinstance(step, AuthStep) else "failure"
        if status == "continue":
            self.counters["packets/auth/sent"] += 1
            self._send(encode(Auth(ReasonCode.CONTINUE_AUTHENTICATION, props), 5))
        elif self.state == CONNECTING:
            if status != "success":
                self._refuse(ReasonCode.NOT_AUTHORIZED)
                return
            assert isinstance(step, AuthStep)
            self._v5_state().auth_props = props
            self.is_superuser = step.superuser
            will_allowed = await self._will_acl()
            if self.state != CONNECTING or not await self._claim():
                return
            self._finish_connect(AuthResult(ReasonCode.SUCCESS, anonymous=False,
                                            superuser=step.superuser), will_allowed)
            self._release_held()
        elif status == "success":  # re-authentication done
            self.counters["packets/auth/sent"] += 1
            self._send(encode(Auth(ReasonCode.SUCCESS, props), 5))
        else:
            self._disconnect(ReasonCode.NOT_AUTHORIZED, "re-authentication failed")

    async def _connect_after_auth(self, acc: AuthResult) -> None:
        result = await self._authenticate(acc)
        if self.state != CONNECTING:
            return  # the socket went away while we waited
        will_allowed = None
        if result.reason_code == ReasonCode.SUCCESS:
            self.is_superuser = result.superuser
            will_allowed = await self._will_acl()
            if self.state != CONNECTING:
                return
        if self._banned():  # banned while authentication ran
            self._refuse(ReasonCode.BANNED, "banned")
            return
        if result.reason_code == ReasonCode.SUCCESS and not await self._claim():
            return
        self._finish_connect(result, will_allowed)
        self._release_held()

    def _finish_connect(self, auth: AuthResult, will_allowed: bool | None = None) -> None:
        if auth.reason_code != _SUCCESS:
            self.counters["packets/connack/auth_error"] += 1
            self._refuse(auth.reason_code)
            return
        p = self.connect_packet
        assert p is not None
        if p.protocol_level == 5:
            expiry = float(p.properties.get(PropertyId.SESSION_EXPIRY_INTERVAL, 0))
            if self.options.server_keepalive:  # Server Keep Alive: the client's from now
                self.keepalive = self.options.server_keepalive
        else:
            expiry = 0.0 if p.clean_start else self.options.session_expiry_interval
        present = self._establish(auth, will_allowed, p.clean_start, expiry)
        if isinstance(present, ReasonCode):
            self._refuse(present)  # EMQ X's check_will_acl
            return
        session = self.session
        assert session is not None
        self.connect_packet = None
        props: dict[PropertyId, Any] = {}
        if p.protocol_level == 5:
            props = self._connack_properties(p)
            session.max_inflight = min(self.options.max_inflight or 65535,
                                       self.receive_maximum)
        else:
            self._retry_interval = self.options.retry_interval
        journal = self.broker.journal
        if session.journal is not None and journal.durable and \
                journal.flush_id > journal.committed_id:
            # A persistent session is promised only once it is on disk; until
            # then deliveries wait in the session, behind the CONNACK.
            self._connack_pending = True
            self.writable = False
            self.counters["packets/connack"] += 1
            self._send_ordered(self._connack_bytes(present, 0, None, props), True)
        else:
            self._write_connack(present, 0, props=props)
        self._reset_keepalive_timer()
        if not self._connack_pending:
            # `Client._connected`, inlined: every connect runs it.
            self.broker.channel_connected(self)
            if present:
                session.resend_inflight()
            session.drain()

    def _connack_sent(self) -> None:
        """The CONNACK that waited for its commit has left: the client is connected
        for everyone else now, and what its session holds goes out."""
        self._connack_pending = False
        self.writable = not self._blocked
        session = self.session
        self._connected(session is not None and bool(session.inflight))

    def _connack_properties(self, p: Connect) -> dict[PropertyId, Any]:
        """The server's limits, told to a 5.0 client in CONNACK (§3.2.2.3)."""
        options = self.options
        props: dict[PropertyId, Any] = {
            PropertyId.RECEIVE_MAXIMUM: self.server_receive_maximum,
            PropertyId.TOPIC_ALIAS_MAXIMUM: options.max_topic_alias,
        }
        if not p.client_id:  # we assigned one
            props[PropertyId.ASSIGNED_CLIENT_IDENTIFIER] = self.client_id
        if self._v5 is not None:
            props.update(self._v5.auth_props)
        if options.max_packet_size < MAX_PACKET_SIZE:
            props[PropertyId.MAXIMUM_PACKET_SIZE] = options.max_packet_size
        if not options.retain_available:
            props[PropertyId.RETAIN_AVAILABLE] = 0
        if not options.wildcard_subscription:
            props[PropertyId.WILDCARD_SUBSCRIPTION_AVAILABLE] = 0
        if not options.shared_subscription:
            props[PropertyId.SHARED_SUBSCRIPTION_AVAILABLE] = 0
        if options.server_keepalive:
            props[PropertyId.SERVER_KEEP_ALIVE] = options.server_keepalive
        if p.properties.get(PropertyId.REQUEST_RESPONSE_INFORMATION) and \
                options.response_information:
            props[PropertyId.RESPONSE_INFORMATION] = options.response_information
        return props

    @property
    def server_receive_maximum(self) -> int:
        """How many unacknowledged QoS 1/2 PUBLISHes the client may send us."""
        return min(self.options.max_awaiting_rel or 65535, 65535)

    def _refuse(self, reason: ReasonCode, close_reason: str = "refused") -> None:
        self.counters["packets/connack/error"] += 1
        self._connack(reason)
        self._write_connack(False, connack_code_for(reason, self.protocol_level))
        self.close(close_reason)

    def _write_connack(self, present: bool, code: int, level: int | None = None,
                       props: dict[PropertyId, Any] | None = None) -> None:
        self.counters["packets/connack"] += 1
        self._send(self._connack_bytes(present, code, level, props))

    def _connack_bytes(self, present: bool, code: int, level: int | None,
                       props: dict[PropertyId, Any] | None) -> bytes:
        level = level or self.protocol_level
        if level < 5:
            return connack_bytes(present, code)
        return encode(Connack(present, code, props or {}), level)

    # -- keepalive -----------------------------------------------------------------
    def _reset_keepalive_timer(self) -> None:
        timers = self.broker.timers
        if self.keepalive:
            timers.add(self, time.monotonic()
                       + self.keepalive * self.options.keepalive_multiplier)
        elif self.timer_bucket is not None:
            timers.remove(self)

    def on_deadline(self, now: float) -> None:
        """`broker.timers`: the idle timeout (no CONNECT handled in time), or the
        keepalive window: close if nothing arrived for 1.5 x keepalive [MQTT-3.1.2-24]."""
        state = self.state
        if state in (NEW, CONNECTING):
            self.close("idle_timeout")
            return
        if state != CONNECTED or not self.keepalive:
            return
        window = self.keepalive * self.options.keepalive_multiplier
        # last_seen may be up to 1 ms early (reads share their time: transport).
        window += 0.001
        if now - self.last_seen >= window:
            if self.protocol_level == 5:
                self._send_disconnect(ReasonCode.KEEP_ALIVE_TIMEOUT)
            self.close("keepalive_timeout")
        else:
            self.broker.timers.add(self, self.last_seen + window)

    # -- PUBLISH in ----------------------------------------------------------------
    def _on_publish(self, p: Publish) -> None:
        counters = self.counters
        counters["packets/publish/received"] += 1
        counters[m.MESSAGES_RECEIVED] += 1
        qos = p.qos
        counters[m.QOS_RECEIVED[qos]] += 1
        self.recv_msg += 1
        if self.limiter is not None:
            self.limiter.published()
        if self.protocol_level == 5 and not self._v5_publish_checks(p):
            return
        if not p.topic:
            self._protocol_violation("empty topic without a topic alias")
            return
        broker = self.broker
        session = self.session
        assert session is not None
        if qos == 2 and p.packet_id in session.awaiting_rel:
            # A resend before PUBREL: acknowledge, do not deliver again [MQTT-4.3.3-2];
            # after the first copy's writes are committed, if they are not yet.
            self._send_ack(0x50, p.packet_id, 0, broker.journal.durable)
            return
        ops_before = broker.journal.ops_added
        if not topic_levels_ok(p.topic, self.options.max_topic_levels):
            self._ack_publish(p, ReasonCode.TOPIC_NAME_INVALID)
            return
        if broker.hooks.has(Points.CLIENT_CHECK_ACL):
            if broker.acl_is_async:
                allowed = broker.acl_known(self, "publish", p.topic)
                if allowed is None:
                    self._wait_for(self._publish_after_acl(p))
                    return
            else:
                allowed = broker.check_acl(self, "publish", p.topic)
            if not allowed:
                self._publish_denied(p)
                return
        self._publish_allowed(p, ops_before)

    async def _publish_after_acl(self, p: Publish) -> None:
        broker = self.broker
        allowed = await broker.check_acl_async(self, "publish", p.topic)
        if self.state != CONNECTED:
            return
        if allowed:
            self._publish_allowed(p, broker.journal.ops_added)
        else:
            self._publish_denied(p)

    def _publish_denied(self, p: Publish) -> None:
        self.counters["packets/publish/auth_error"] += 1
        self._ack_publish(p, ReasonCode.NOT_AUTHORIZED)
        if self.options.acl_deny_action == "disconnect":
            self._acl_disconnect()

    def _publish_allowed(self, p: Publish, ops_before: int) -> None:
        """The rest of PUBLISH handling, once the ACL let it through."""
        broker = self.broker
        counters = self.counters
        session = self.session
        assert session is not None
        qos = p.qos
        message = Message(p.topic, p.payload, qos, p.retain, self.client_id, self.username,
                          self.conn.peerhost, p.properties)
        if qos and broker.journal.failing_since is not None and self.protocol_level == 5 \
                and broker.needs_store(message):
            # The store cannot write what this message needs: refused, not held
            # (a 3.x client is held instead, by its waiting acknowledgements).
            counters[m.MESSAGES_DROPPED] += 1
            self._ack_publish(p, ReasonCode.QUOTA_EXCEEDED)
            return
        if qos == 2:
            limit = self.options.max_awaiting_rel
            if limit and len(session.awaiting_rel) >= limit:
                counters["messages/qos2/expired"] += session.expire_awaiting_rel(
                    time.monotonic())
                if len(session.awaiting_rel) >= limit:
                    counters["messages/qos2/dropped"] += 1
                    self._ack_publish(p, ReasonCode.RECEIVE_MAXIMUM_EXCEEDED)
                    return
            assert p.packet_id is not None
            session.await_rel(p.packet_id)
        expiry: float | None = (p.properties.get(PropertyId.MESSAGE_EXPIRY_INTERVAL)
                                if p.properties else None)
        expiry_cap = self.options.message_expiry_interval
        if expiry_cap and (expiry is None or expiry > expiry_cap):
            expiry = expiry_cap
        if expiry is not None:
            message.expires_at = time.monotonic() + expiry
        delivered = broker.publish(message)
        if qos:
            code = 0
            if not delivered and self.protocol_level == 5:
                code = ReasonCode.NO_MATCHING_SUBSCRIBERS
            # Durable mode: what this PUBLISH changed in the store is committed first.
            self._ack_publish(p, code, self._store_changed(ops_before))

    def _v5_publish_checks(self, p: Publish) -> bool:
        """Topic aliases, forbidden properties and Receive Maximum (MQTT 5.0)."""
        props = p.properties
        if PropertyId.SUBSCRIPTION_IDENTIFIER in props:
            self._protocol_violation("Subscription Identifier in a client PUBLISH")  # §3.3.4
            return False
        alias = props.pop(PropertyId.TOPIC_ALIAS, None)
        if alias is not None:
            if alias == 0 or alias > self.options.max_topic_alias:
                self._disconnect(ReasonCode.TOPIC_ALIAS_INVALID, f"topic alias {alias}")
                return False
            v5 = self._v5_state()
            if p.topic:
                if v5.topic_aliases is NO_ENTRIES:
                    v5.topic_aliases = {}
                v5.topic_aliases[alias] = p.topic
            else:
                topic = v5.topic_aliases.get(alias)
                if topic is None:
                    self._protocol_violation(f"unknown topic alias {alias}")
                    return False
                p.topic = topic
        if p.retain and not self.options.retain_available:
            # Retain Available 0 was announced [MQTT-3.2.2-14] (§3.3.1.3).
            self._disconnect(ReasonCode.RETAIN_NOT_SUPPORTED, "retain not supported")
            return False
        if p.qos and self.session is not None and not (
                p.qos == 2 and p.packet_id in self.session.awaiting_rel) and (
                len(self.session.awaiting_rel) + len(self._held_acks or ())
                >= self.server_receive_maximum):
            self._disconnect(ReasonCode.RECEIVE_MAXIMUM_EXCEEDED, "receive maximum exceeded")
            return False
        return True

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
        self._send_ordered(data, wait)

    def _send_ordered(self, data: bytes, wait: bool) -> None:
        """Send now, or after the commit holding what the packet confirms.

        Past `HOLD_LIMIT` acknowledgements waiting (a store that cannot write),
        the socket is not read until they leave: the client's packets wait in
        TCP, not in our memory."""
        held = self._held_acks
        if not wait and not held:
            self._write(data)
            return
        journal = self.broker.journal
        if wait and journal.flush_id <= journal.committed_id:
            wait = False  # committed already
            if not held:
                self._write(data)
                return
        if held is None:
            held = self._held_acks = deque()
        held.append((journal.flush_id if wait else 0, data))
        if len(held) == HOLD_LIMIT:
            self.conn.pause_reading()
        if wait:
            journal.after_commit(self._release_acks)

    def _release_acks(self) -> None:
        held = self._held_acks
        if held is None:
            return
        committed = self.broker.journal.committed_id
        was_full = len(held) >= HOLD_LIMIT
        wrote = False
        while held and held[0][0] <= committed:
            self._write(held.popleft()[1])
            wrote = True
        if self.state == CLOSED:
            return
        if wrote and self._connack_pending:  # nothing is ever held before a CONNACK
            self._connack_sent()
        if was_full and len(held) < HOLD_LIMIT and not self._busy:
            self.conn.resume_reading()

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
        self._send_ack(0x70, p.packet_id, code, self._store_changed(ops_before))

    # -- PUBLISH out ---------------------------------------------------------------
    def send_publish(self, message: Message, qos: int, retain: bool, packet_id: int,
                     dup: bool, via: str | None = None) -> bool:
        """Write one PUBLISH; False if it was dropped (over the client's maximum
        packet size, MQTT 5.0 §3.1.2.11.4: the flow counts as completed)."""
        alias = 0
        v5 = self._v5
        if self.protocol_level == 5 and (
                (v5 is not None and v5.alias_max) or message.expires_at is not None or (
                self.session is not None and self.session.subscription_ids)):
            alias = self._alias_for(message.topic)
            head, tail = self._v5_parts(message, qos, retain, via, alias)
        else:
            head, tail = message.parts(qos, retain, self.protocol_level)
        if v5 is not None and v5.max_packet and (
                len(head) + len(tail) + (2 if qos else 0) > v5.max_packet):
            self.counters[m.MESSAGES_DROPPED] += 1
            return False
        if alias and v5 is not None and message.topic not in v5.out_aliases:
            v5.out_aliases[message.topic] = alias  # sent: the client knows it now
        if qos:
            if dup:
                head = bytes((head[0] | 0x08,)) + head[1:]
            self.conn.write(head + packet_id.to_bytes(2, "big") + tail)
            if self._retry_timer is None and self._retry_interval:
                self._retry_timer = asyncio.get_running_loop().call_later(
                    self._retry_interval, self._retry)
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
        return True

    def _alias_for(self, topic: str) -> int:
        """The alias to send `topic` with: known, new (while there is room), or 0."""
        v5 = self._v5
        if v5 is None or not v5.alias_max:
            return 0
        alias = v5.out_aliases.get(topic)
        if alias is not None:
            return alias
        if len(v5.out_aliases) < v5.alias_max:
            return len(v5.out_aliases) + 1
        return 0

    def _v5_parts(self, message: Message, qos: int, retain: bool,
                  via: str | None, alias: int = 0) -> tuple[bytes, bytes]:
        """A per-subscriber encoding: remaining expiry, Subscription Identifiers,
        and a topic alias (the topic itself left out once the client knows it)."""
        props = dict(message.properties)
        topic = message.topic
        if alias:
            props[PropertyId.TOPIC_ALIAS] = alias
            if self._v5 is not None and topic in self._v5.out_aliases:
                topic = ""
        if message.expires_at is not None:
            props[PropertyId.MESSAGE_EXPIRY_INTERVAL] = max(
                0, math.ceil(message.expires_at - time.monotonic()))
        session = self.session
        if session is not None and session.subscription_ids:
            # The identifiers of the subscriptions this copy is for [MQTT-3.3.4-5]:
            # the shared subscription it came through, or every plain one that matches.
            if via is not None:
                ident = session.subscription_ids.get(via)
                ids = [ident] if ident else []
            else:
                ids = [i for f, i in session.subscription_ids.items()
                       if parse_share(f)[0] is None and matches(f, message.topic)]
            if ids:
                props[PropertyId.SUBSCRIPTION_IDENTIFIER] = ids
        return publish_parts(topic, message.payload, qos, retain, False, 5, props)

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
            self._retry_timer = asyncio.get_running_loop().call_later(delay, self._retry)

    def send_pubrel(self, packet_id: int, wait: bool = False) -> None:
        self.counters["packets/pubrel/sent"] += 1
        self._send_ordered(bytes((0x62, 2)) + packet_id.to_bytes(2, "big"), wait)

    def _on_puback(self, p: Puback) -> None:
        # `Client.puback`, inlined: every QoS 1 delivery ends here.
        self.counters["packets/puback/received"] += 1
        session = self.session
        assert session is not None
        message = session.puback(p.packet_id)
        if message is None:
            self.counters["packets/puback/missed"] += 1
        elif self.broker.hooks.has(Points.MESSAGE_ACKED):
            self.broker.hooks.run(Points.MESSAGE_ACKED, self.info, message)

    def _on_pubrec(self, p: Pubrec) -> None:
        self.counters["packets/pubrec/received"] += 1
        session = self.session
        assert session is not None
        if p.reason_code >= 0x80:
            # MQTT 5.0: the client refused the message; the flow ends here.
            session.abandon(p.packet_id)
            return
        ops_before = self.broker.journal.ops_added
        if session.pubrec(p.packet_id) is None:
            self.counters["packets/pubrec/missed"] += 1
            if self.protocol_level == 5:
                self.counters["packets/pubrel/sent"] += 1
                self._send(encode(Pubrel(p.packet_id, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND), 5))
                return
        # The "released" state must be on disk before PUBREL: else a restart would
        # resend the PUBLISH to a client that already completed it.
        self.send_pubrel(p.packet_id, self._store_changed(ops_before))

    def _on_pubcomp(self, p: Pubcomp) -> None:
        self.counters["packets/pubcomp/received"] += 1
        if self.pubcomp(p.packet_id) is None:
            self.counters["packets/pubcomp/missed"] += 1

    # -- SUBSCRIBE / UNSUBSCRIBE -------------------------------------------------------
    def _on_subscribe(self, p: Subscribe, acl_answers: dict[str, bool] | None = None) -> None:
        broker = self.broker
        if acl_answers is None and broker.acl_is_async and self._acl_lookups(p):
            return  # handled again once the ACL sources answered
        self.counters["packets/subscribe"] += 1
        session = self.session
        assert session is not None
        v5 = self.protocol_level == 5
        sub_id = 0
        if v5 and PropertyId.SUBSCRIPTION_IDENTIFIER in p.properties:
            ids = p.properties[PropertyId.SUBSCRIPTION_IDENTIFIER]
            if len(ids) != 1 or ids[0] == 0:
                self._protocol_violation("bad Subscription Identifier")  # §3.8.2.1.2
                return
            sub_id = ids[0]
        if v5 and any(opts.no_local and parse_share(f)[0] is not None
                      for f, opts in p.subscriptions):
            self._protocol_violation("No Local on a shared subscription")  # [MQTT-3.8.3-4]
            return
        if broker.hooks.has(HookPoint.CLIENT_SUBSCRIBE):  # what was asked, before any check
            broker.hooks.run(HookPoint.CLIENT_SUBSCRIBE, self.info, list(p.subscriptions))
        codes: list[int] = []
        granted: list[tuple[str, int, bool]] = []
        denied = False
        ops_before = broker.journal.ops_added
        for topic_filter, opts in p.subscriptions:
            refused = self._filter_refusal(topic_filter)
            if refused is not None:
                codes.append(refused if v5 else 0x80)
                continue
            if broker.hooks.has(HookPoint.CLIENT_CHECK_ACL) and not (
                    acl_answers[topic_filter] if acl_answers and topic_filter in acl_answers
                    else broker.check_acl(self, "subscribe", topic_filter)):
                codes.append(ReasonCode.NOT_AUTHORIZED if v5 else 0x80)
                denied = True
                continue
            is_new = broker.subscribe(session, topic_filter, opts)
            session.set_subscription_id(topic_filter, sub_id)
            codes.append(opts.qos)
            granted.append((topic_filter, opts.qos, is_new))
        self.counters["packets/suback"] += 1
        self._send_ordered(encode(Suback(p.packet_id, codes), self.protocol_level),
                           self._store_changed(ops_before))
        if denied and self.options.acl_deny_action == "disconnect":
            self._acl_disconnect()
            return
        for topic_filter, qos, is_new in granted:
            opts = session.subscriptions[topic_filter]
            if opts.retain_handling == 2 or (opts.retain_handling == 1 and not is_new):
                continue
            broker.deliver_retained(session, topic_filter, qos)

    def _acl_lookups(self, p: Subscribe) -> bool:
        """Start awaiting the ACL answers this SUBSCRIBE needs and are not known
        yet (cache aside); True when the channel now waits for them."""
        broker = self.broker
        unknown = [f for f, _ in p.subscriptions
                   if is_valid_topic_filter(f) and broker.acl_known(self, "subscribe", f) is None]
        if not unknown:
            return False
        self._wait_for(self._subscribe_after_acl(p, unknown))
        return True

    async def _subscribe_after_acl(self, p: Subscribe, filters: list[str]) -> None:
        answers = {f: await self.broker.check_acl_async(self, "subscribe", f) for f in filters}
        if self.state == CONNECTED:
            self._on_subscribe(p, answers)

    def _on_unsubscribe(self, p: Unsubscribe) -> None:
        self.counters["packets/unsubscribe"] += 1
        session = self.session
        assert session is not None
        if self.broker.hooks.has(HookPoint.CLIENT_UNSUBSCRIBE):
            self.broker.hooks.run(HookPoint.CLIENT_UNSUBSCRIBE, self.info, list(p.topic_filters))
        codes = []
        ops_before = self.broker.journal.ops_added
        for topic_filter in p.topic_filters:
            found = self.broker.unsubscribe(session, topic_filter)
            session.subscription_ids.pop(topic_filter, None)
            codes.append(0 if found else ReasonCode.NO_SUBSCRIPTION_EXISTED)
        self.counters["packets/unsuback"] += 1
        self._send_ordered(encode(Unsuback(p.packet_id, codes if self.protocol_level == 5
                                           else []), self.protocol_level),
                           self._store_changed(ops_before))

    # -- the rest --------------------------------------------------------------------
    def _on_pingreq(self, p: Packet) -> None:
        self.counters["packets/pingreq"] += 1
        self.counters["packets/pingresp"] += 1
        self._send(PINGRESP_BYTES)

    def _on_disconnect(self, p: Disconnect) -> None:
        self.counters["packets/disconnect/received"] += 1
        expiry = p.properties.get(PropertyId.SESSION_EXPIRY_INTERVAL)
        session = self.session
        if expiry is not None and session is not None:
            if session.expiry_interval == 0 and expiry > 0:
                # From 0 to non-zero is a protocol error [MQTT-3.14.2-2].
                self._protocol_violation("session expiry raised from 0 at DISCONNECT")
                return
            session.expiry_interval = float(expiry)
        if p.reason_code != ReasonCode.DISCONNECT_WITH_WILL_MESSAGE:
            self.will = None  # [MQTT-3.1.2-10]
        self.close("normal")

    def _on_auth(self, p: Auth) -> None:
        """AUTH after CONNACK: re-authentication, if CONNECT chose a method;
        otherwise a protocol error [MQTT-4.12.0-1]."""
        if self._auth_method is None:
            self.counters["packets/auth"] += 1
            self._protocol_violation("AUTH without an authentication method")
            return
        self._auth_packet(p)

    def _send_disconnect(self, reason: ReasonCode, why: str = "") -> None:
        """MQTT 5.0 only; a reason string unless the client asked for none."""
        self.counters["packets/disconnect/sent"] += 1
        props: dict[PropertyId, Any] = {}
        if why and self.request_problem_info:
            props[PropertyId.REASON_STRING] = why
        self._write(encode(Disconnect(reason, props), 5))

    def _acl_disconnect(self) -> None:
        """`acl_deny_action = disconnect`, after the refusal was acknowledged:
        DISCONNECT 0x87 to a 5.0 client, then close (the will is published)."""
        if self.protocol_level == 5:
            self._send_disconnect(ReasonCode.NOT_AUTHORIZED, "not authorized")
        self.close("not_authorized")

    def _disconnect(self, reason: ReasonCode, why: str) -> None:
        """Server-side DISCONNECT (5.0 clients) and close: the will is published."""
        self.counters[m.PACKETS_MALFORMED] += 1
        if self.protocol_level == 5:
            self._send_disconnect(reason, why)
        self.close("protocol_error")

    def _send(self, data: bytes) -> None:
        """Write a reply; behind the acknowledgements waiting for a commit, if any
        (replies leave in the order their packets came)."""
        if self._held_acks:
            self._held_acks.append((0, data))
            return
        self._write(data)

    def _write(self, data: bytes) -> None:
        self.send_pkt += 1
        self.counters[m.PACKETS_SENT] += 1
        self.conn.write(data)


#: What a connected channel does with each packet type: one table for every
#: channel (a per-channel table of bound methods cost ~1 KiB per connection).
_HANDLERS: dict[PacketType, Callable[[Channel, Any], None]] = {
    PacketType.PUBLISH: Channel._on_publish,
    PacketType.PUBACK: Channel._on_puback,
    PacketType.PUBREC: Channel._on_pubrec,
    PacketType.PUBREL: Channel._on_pubrel,
    PacketType.PUBCOMP: Channel._on_pubcomp,
    PacketType.SUBSCRIBE: Channel._on_subscribe,
    PacketType.UNSUBSCRIBE: Channel._on_unsubscribe,
    PacketType.PINGREQ: Channel._on_pingreq,
    PacketType.DISCONNECT: Channel._on_disconnect,
    PacketType.AUTH: Channel._on_auth,
}
