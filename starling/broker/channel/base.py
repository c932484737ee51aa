"""What every flow of an MQTT channel shares: its state, where it writes, the
packets it holds while it waits, and how it closes.

A `Channel` (`channel/__init__.py`) is this base with one class per flow on top
of it, as Mosquitto splits its packet handling into handle_*.c: `connect`
(CONNECT, AUTH, DISCONNECT), `publish` (PUBLISH and PUBREL in), `deliver`
(PUBLISH out and the client's acknowledgements), `subscribe`, `keepalive`, and
`acks` (every reply in order, held for its store commit).  All the state is
here, in one set of slots: a node holds one channel per connection.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Final, Protocol

from starling.mqtt import Connect, Disconnect, Packet, PropertyId, ReasonCode, encode

from .. import metrics as m
from ..client import CLOSED, CONNECTED, Client, ClientHost
from ..limiter import Limiter
from ..sentinels import NO_ENTRIES

if TYPE_CHECKING:
    from ..clock import Timer
    from ..options import BrokerOptions

log = logging.getLogger(__name__)
#: Client lives (starling/client_log.py); bad input is logged here, once per connection.
clients_log = logging.getLogger("starling.clients")

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

    def write_ahead(self, data: bytes, later: int) -> None:
        """Write `data` before the last `later` writes, which have not left yet
        (they were made in the same call, without giving the loop a turn)."""
        ...

    def close(self) -> None: ...

    def pause_reading(self) -> None:
        """Stop reading from the socket (the channel holds too many packets)."""
        ...

    def admit_auth(self) -> bool:
        """May this CONNECT wait for the authentication chain now?  False when the
        listener already has its most connections waiting (`max_auth_pending`);
        True takes a place that `auth_done` gives back."""
        ...

    def auth_done(self) -> None: ...

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


class ChannelBase(Client):
    """The state of one MQTT connection and what all its flows use."""

    # Slots: a node holds one Channel per connection, so its size is per-client
    # memory (with `Client`'s slots).  The flows add none.
    __slots__ = (
        "_blocked",
        "_busy",
        "_connack_pending",
        "_held_acks",
        "_last_qos1_id",
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

    def __init__(self, broker: ClientHost, conn: Connection, zone: str = "external") -> None:
        Client.__init__(self, broker, zone)  # not super(): one object less per connect
        self.conn = conn
        #: The zone's per-client rate limits, if it has any (set by `use_options`).
        self.limiter: Limiter | None = None
        self.use_options(self.options)
        #: Deliveries wait while the transport's write buffer is over its high-water
        #: mark (`_blocked`), and before a CONNACK that waits for its commit has left.
        self._blocked = False
        self._connack_pending = False
        self.last_seen = broker.clock.monotonic()
        self._retry_timer: Timer | None = None
        self._retry_interval = 0.0
        #: Packets held while CONNECT or an awaited ACL answer is pending
        #: (a list only while there are some).
        self._pending: list[Packet] | None = None
        #: Waits under way (an ACL answer, a rate limit); while any, packets are held.
        self._busy = 0
        #: Acknowledgements waiting for a store commit: (batch id needed, bytes).
        self._held_acks: deque[tuple[int, bytes]] | None = None  # made when first needed
        #: The packet id of the client's latest PUBLISH if it was QoS 1 (else 0): a
        #: PUBREL for it is an acknowledgement of the wrong kind (`_on_pubrel`).
        self._last_qos1_id = 0
        #: The CONNECT being handled; let go once connected (what lasts is copied out).
        self.connect_packet: Connect | None = None
        #: What only MQTT 5.0 clients ask for (limits, aliases, enhanced auth),
        #: made when one does.
        self._v5: _V5 | None = None
        #: The idle timeout, then the keepalive, are deadlines in `broker.timers`.
        self.timer_bucket: dict[Any, None] | None = None
        broker.timers.add(self, self.last_seen + self.options.idle_timeout)

    # -- where the client is: its transport knows ----------------------------------------------
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

    @property
    def server_receive_maximum(self) -> int:
        """How many unacknowledged QoS 1/2 PUBLISHes the client may send us."""
        return min(self.options.max_awaiting_rel or 65535, 65535)

    # -- input from the shell ------------------------------------------------------------------
    def handle(self, packet: Packet) -> None:
        """One decoded packet from the client (`Channel` dispatches it to its flow)."""
        raise NotImplementedError

    def on_deadline(self, now: float) -> None:
        """`broker.timers`: the idle timeout or the keepalive window is over
        (`KeepaliveFlow` answers)."""
        raise NotImplementedError

    def use_options(self, options: BrokerOptions) -> None:
        """Adopt the zone's options (at start, and when they change at runtime:
        new limits start now)."""
        self.options = options
        if self.limiter is not None:
            self.limiter.cancel()  # ends its wait, if any
            self.limiter = None
        if options.publish_limit or options.bytes_in_limit:
            self.limiter = Limiter(options.publish_limit, options.bytes_in_limit,
                                   self._throttle, self._wait_over, self.broker.clock)

    # -- waiting: packets held in order until an answer or a rate limit lets go ----------------
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
        self.broker.track(self._answered(answer))

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

    # -- writing -------------------------------------------------------------------------------
    def _write(self, data: bytes, ahead_of: int = 0) -> None:
        """Write a packet; before the last `ahead_of` packets written, if any."""
        self.send_pkt += 1
        self.counters[m.PACKETS_SENT] += 1
        if ahead_of:
            self.conn.write_ahead(data, ahead_of)
        else:
            self.conn.write(data)

    def _send_disconnect(self, reason: ReasonCode, why: str = "") -> None:
        """MQTT 5.0 only; a reason string unless the client asked for none."""
        self.counters["packets/disconnect/sent"] += 1
        props: dict[PropertyId, Any] = {}
        if why and self.request_problem_info:
            props[PropertyId.REASON_STRING] = why
        self._write(encode(Disconnect(reason, props), 5))

    # -- closing -------------------------------------------------------------------------------
    def connection_lost(self) -> None:
        """The socket is gone (peer closed, error, or our own close)."""
        self._terminate(self.disconnect_reason or "closed")

    def set_writable(self, writable: bool) -> None:
        self._blocked = not writable
        Client.set_writable(self, writable and not self._connack_pending)

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

    def _named(self) -> str:
        return f"client {self.client_id!r}" if self.client_id else "a connection (no CONNECT yet)"

    def _wrong_acknowledgement(self, packet: str, packet_id: int, expected: str) -> None:
        """The client acknowledged with a packet of the wrong kind (§4.3): closed as a
        protocol violation, not left waiting for an acknowledgement that never comes."""
        self._protocol_violation(f"{packet} for packet id {packet_id}, which expects {expected}")

    def _protocol_violation(self, why: str) -> None:
        self.counters[m.PACKETS_MALFORMED] += 1
        clients_log.warning("%s from %s: protocol violation, connection closed: %s",
                            self._named(), self.peerhost, why)
        if self.state == CONNECTED and self.protocol_level == 5:
            self._send_disconnect(ReasonCode.PROTOCOL_ERROR, why)
        self.close("protocol_error")

    def _disconnect(self, reason: ReasonCode, why: str) -> None:
        """Server-side DISCONNECT (5.0 clients) and close: the will is published."""
        self.counters[m.PACKETS_MALFORMED] += 1
        if self.protocol_level == 5:
            self._send_disconnect(reason, why)
        self.close("protocol_error")

    def _acl_disconnect(self) -> None:
        """`acl_deny_action = disconnect`, after the refusal was acknowledged:
        DISCONNECT 0x87 to a 5.0 client, then close (the will is published)."""
        if self.protocol_level == 5:
            self._send_disconnect(ReasonCode.NOT_AUTHORIZED, "not authorized")
        self.close("not_authorized")

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
