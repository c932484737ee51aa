"""One client of the broker, whatever its protocol, and the outlet its session
delivers through.

`Client` is what the broker knows of a connected client: its identity, zone,
ACL cache and session, and the flows every protocol shares: authentication
(the `client.authenticate` chain, anonymous access, the banned table), the
session (opened or resumed, taking over an older connection of the client id),
ACL checks, publishing, subscribing, acknowledging deliveries and the end of
the connection (the will, `client.disconnected`).  The MQTT `Channel` is a
`Client`; so is a protocol gateway's client (MQTT-SN, STOMP, CoAP, LwM2M): it
subclasses `Client`, implements the `Outlet` methods for its wire format and
calls `connect`, `publish`, `subscribe`, ... (docs/architecture.md, "Writing a
gateway client").  The broker lists it, kicks it and delivers to it like any
other.

A `Client` is the `Outlet` its session delivers through (`outlet.py`).
"""

from __future__ import annotations

from collections.abc import Set
from typing import TYPE_CHECKING, Any, ClassVar, Final, Protocol

from starling.mqtt import (
    PropertyId,
    ReasonCode,
    SubscriptionOptions,
    Will,
    has_control_characters,
    is_valid_topic_filter,
    is_valid_topic_name,
    is_wildcard,
    parse_share,
    topic_levels_ok,
)

from . import metrics as m
from .hooks import HookPoint, Points
from .info import PROTOCOL_MQTT, AuthResult, ClientInfo
from .message import Message

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Coroutine

    from .acl import AclCache
    from .banned import Banned
    from .clock import Clock
    from .cluster import ClusterLink
    from .hooks import Hooks
    from .journal import Journal
    from .options import BrokerOptions
    from .session import Session
    from .snapshots import SessionSnapshot
    from .timers import TimerWheel

#: A client's states: waiting for its connect, authenticating, connected, gone.
NEW: Final = "new"
CONNECTING: Final = "connecting"
CONNECTED: Final = "connected"
CLOSED: Final = "closed"
# Bound once: `ReasonCode.X` is a slow lookup on Python 3.11 (see `hooks.Points`).
_SUCCESS: Final = ReasonCode.SUCCESS
_NOT_AUTHORIZED: Final = ReasonCode.NOT_AUTHORIZED
_NO_IO: Final = {"recv_oct": 0, "recv_cnt": 0, "send_oct": 0, "send_cnt": 0, "send_pend": 0}
#: `Client.deliverable` until the client's first delivery decision: shared, empty.
_NO_DECISIONS: Final[Set[str]] = frozenset()


class ClientHost(Protocol):
    """What a client needs of the broker: the `Broker` is one.  Declared here, so
    a client depends on this much and the broker module depends on the client,
    not both on each other."""

    hooks: Hooks
    journal: Journal
    clock: Clock
    timers: TimerWheel
    counters: dict[str, int]
    banned: Banned
    #: The cluster this node belongs to; None: a lone node.
    cluster: ClusterLink | None

    @property
    def acl_is_async(self) -> bool: ...

    def zone_options(self, zone: str) -> BrokerOptions: ...

    def track(self, task: asyncio.Task[Any] | Coroutine[Any, Any, Any]) -> asyncio.Task[Any]: ...

    # -- the session and the client registry
    async def claim_client(self, client_id: str, clean_start: bool) -> None: ...

    def open_session(self, client: Client, clean_start: bool,
                     expiry_interval: float) -> tuple[Session, bool]: ...

    def channel_connected(self, client: Client) -> None: ...

    def channel_closed(self, client: Client, reason: str) -> None: ...

    def schedule_will(self, session: Session, message: Message, delay: float) -> None: ...

    # -- access control
    def check_acl(self, client: Client, action: str, topic: str) -> bool: ...

    async def check_acl_async(self, client: Client, action: str, topic: str) -> bool: ...

    def acl_known(self, client: Client, action: str, topic: str) -> bool | None: ...

    def decide_delivery(self, client: Client, topic: str) -> bool | None: ...

    # -- publish / subscribe
    def publish(self, message: Message) -> int: ...

    def needs_store(self, message: Message) -> bool: ...

    def subscribe(self, session: Session, topic_filter: str,
                  opts: SubscriptionOptions) -> bool: ...

    def unsubscribe(self, session: Session, topic_filter: str) -> bool: ...

    def deliver_retained(self, session: Session, topic_filter: str,
                         granted_qos: int) -> None: ...

    # -- readers
    def session_info(self, client_id: str) -> SessionSnapshot | None: ...


class Client:
    """A connected client of any protocol (see the module docstring).

    A subclass provides the `Outlet` methods (`send_publish`, `send_pubrel`),
    where the client is (`peername`, `listener`, optionally `peercert`,
    `io_stats`) and how its transport closes (`_close_transport`); it may
    override `kick` and `takeover` to tell its client why (MQTT 5.0 DISCONNECT).
    """

    # Slots: one object per connection, so every field is per-client memory.
    __slots__ = (
        "_info",
        "acl_cache",
        "broker",
        "clean_start",
        "client_id",
        "connected_at",
        "counters",
        "deliverable",
        "disconnect_reason",
        "is_superuser",
        "keepalive",
        "options",
        "password",
        "protocol_level",
        "recv_msg",
        "recv_pkt",
        "send_msg",
        "send_pkt",
        "session",
        "state",
        "username",
        "will",
        "writable",
        "zone",
    )

    #: `ClientInfo.protocol`: "mqtt", or a gateway's ("mqtt-sn", "stomp", ...).
    protocol: ClassVar[str] = PROTOCOL_MQTT
    #: Bridges are not implemented: no client is one (a class constant, no slot).
    is_bridge: ClassVar[bool] = False
    def __init__(self, broker: ClientHost, zone: str = "external") -> None:
        self.broker = broker
        self.zone = zone
        #: The options of the client's zone (`Broker.reconfigure` keeps it current).
        self.options: BrokerOptions = broker.zone_options(zone)
        self.counters = broker.counters
        self.state = NEW
        #: MQTT's protocol level (3, 4, 5), or the gateway protocol's version.
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
        #: Recent ACL decisions (made by `Broker.check_acl` when first needed).
        self.acl_cache: AclCache | None = None
        #: `acl_cache.deliverable` (`Outlet.deliverable`), once it has decisions.
        self.deliverable = _NO_DECISIONS
        #: False while the transport cannot take more: the session queues.
        self.writable = True
        self.disconnect_reason = ""
        self.recv_pkt = self.recv_msg = self.send_pkt = self.send_msg = 0
        #: `info`, once connected (what it holds does not change after that).
        self._info: ClientInfo | None = None

    # -- where the client is (a subclass answers) ---------------------------------------
    @property
    def peername(self) -> tuple[str, int]:
        """The client's address and port."""
        raise NotImplementedError

    @property
    def peerhost(self) -> str:
        return self.peername[0]

    @property
    def listener(self) -> str:
        """The listener the client came through, e.g. "mqttsn:udp:default"."""
        raise NotImplementedError

    @property
    def peercert(self) -> str | None:
        """The client certificate's subject, if the transport has one."""
        return None

    @property
    def proto_name(self) -> str:
        """The protocol's name as EMQ X's API shows it ("MQTT", "MQTT-SN", ...)."""
        return "MQTT"

    @property
    def receive_maximum(self) -> int:
        """Unacknowledged QoS 1/2 deliveries the client takes at most (flow control)."""
        return 65535

    def io_stats(self) -> dict[str, int]:
        """recv_oct, recv_cnt, send_oct, send_cnt, send_pend (bytes not yet sent)."""
        return dict(_NO_IO)

    def _close_transport(self) -> None:
        """Let go of the transport (the client is already closed for the broker)."""
        raise NotImplementedError

    # -- the outlet (a subclass writes its wire format) ------------------------------------
    def send_publish(self, message: Message, qos: int, retain: bool, packet_id: int,
                     dup: bool, via: str | None = None) -> bool:
        raise NotImplementedError

    def send_pubrel(self, packet_id: int, wait: bool = False) -> None:
        raise NotImplementedError

    def may_receive(self, topic: str) -> bool | None:
        """The delivery-time ACL check (`Outlet.may_receive`): `Broker.decide_delivery`."""
        return self.broker.decide_delivery(self, topic)

    def set_writable(self, writable: bool) -> None:
        """Flow control from the transport: queue while False, drain when True again."""
        self.writable = writable
        if writable and self.session is not None and self.session.mqueue:
            self.session.drain()

    # -- what hooks and the API see --------------------------------------------------------
    @property
    def info(self) -> ClientInfo:
        """Who the client is, as a frozen value (made when first asked for; kept
        once connected, when nothing in it changes any more)."""
        info = self._info
        if info is not None:
            return info
        host, port = self.peername
        info = ClientInfo(self.client_id, self.username, host, port, self.protocol,
                          self.protocol_level, self.proto_name, self.listener, self.zone,
                          self.clean_start, self.keepalive, self.connected_at,
                          self.is_superuser, self.is_bridge, self.peercert, self.password)
        if self.connected_at is not None:
            self._info = info
        return info

    def use_options(self, options: BrokerOptions) -> None:
        """Adopt the zone's options (they changed at runtime)."""
        self.options = options

    # -- connecting --------------------------------------------------------------------------
    async def connect(self, client_id: str, *, username: str | None = None,
                      password: bytes | None = None, clean_start: bool = True,
                      keepalive: int = 0, expiry_interval: float = 0.0,
                      will: Will | None = None) -> tuple[ReasonCode, bool]:
        """Authenticate and open the session, as an MQTT CONNECT does: the
        `client.connect` hook, the client id's length, the banned table, the
        `client.authenticate` chain (from `allow_anonymous`), the will's ACL,
        the session (a live connection of the same client id is taken over; a
        clean start discards the old session), `client.connack` and
        `client.connected`.  Returns the reason code and whether a session was
        resumed; on a refusal the client is closed for the broker and the caller
        tells its client and drops its transport."""
        if self.state != NEW:
            raise RuntimeError(f"connect() on a client that is {self.state}")
        options = self.broker.zone_options(self.zone)
        if options is not self.options:
            self.use_options(options)
        self.client_id, self.username, self.password = client_id, username, password
        self.clean_start, self.keepalive, self.will = clean_start, keepalive, will
        self.state = CONNECTING
        self._connect_hook()
        if not client_id or not self._client_id_valid(client_id):
            return self._connect_refused(ReasonCode.CLIENT_IDENTIFIER_NOT_VALID)
        if self._banned():
            return self._connect_refused(ReasonCode.BANNED)
        result = await self._authenticate(
            AuthResult(_SUCCESS if self.options.allow_anonymous else _NOT_AUTHORIZED))
        if self.state != CONNECTING:
            return ReasonCode.UNSPECIFIED_ERROR, False  # closed while authenticating
        will_allowed = None
        if result.reason_code == _SUCCESS:
            self.is_superuser = result.superuser
            will_allowed = await self._will_acl()
            if self.state != CONNECTING:
                return ReasonCode.UNSPECIFIED_ERROR, False
        if self._banned():
            return self._connect_refused(ReasonCode.BANNED)
        if result.reason_code != _SUCCESS:
            return self._connect_refused(result.reason_code)
        if not await self._claim():
            return ReasonCode.UNSPECIFIED_ERROR, False  # closed while the cluster decided
        outcome = self._establish(result, will_allowed, clean_start, expiry_interval)
        if isinstance(outcome, ReasonCode):
            return self._connect_refused(outcome)
        session = self.session
        journal = self.broker.journal
        if session is not None and session.journal is not None and journal.uncommitted:
            # A persistent session is promised once it is on disk (docs/durability.md).
            self.writable = False
            await journal.committed()
            if self.state != CONNECTED:
                return ReasonCode.UNSPECIFIED_ERROR, False
            self.writable = True
        # Deliveries (and `client.connected`) once the caller has answered its client.
        self.broker.clock.call_soon(self._connected, outcome)
        return _SUCCESS, outcome

    def _client_id_valid(self, client_id: str) -> bool:
        """At most `max_clientid_len` characters, and no control characters unless
        `allow_control_characters` (a client id is logged and shown: docs/behaviour.md)."""
        options = self.options
        return len(client_id) <= options.max_clientid_len and (
            options.allow_control_characters or not has_control_characters(client_id))

    async def _claim(self) -> bool:
        """In a cluster: make this node the client id's owner before the session
        opens (another node's connection is closed, its session may move here);
        False if the client went away meanwhile."""
        broker = self.broker
        if broker.cluster is None:
            return True
        await broker.claim_client(self.client_id, self.clean_start)
        return self.state == CONNECTING

    def _connect_refused(self, reason: ReasonCode) -> tuple[ReasonCode, bool]:
        self._connack(reason)
        self.state = CLOSED
        return reason, False

    def _connect_hook(self) -> None:
        """`client.connect`: a connect arrived, before any check."""
        hooks = self.broker.hooks
        if hooks.has(Points.CLIENT_CONNECT):
            hooks.run(Points.CLIENT_CONNECT, self.info)

    def _connack(self, reason: ReasonCode) -> None:
        """`client.connack`: the broker answers the connect."""
        hooks = self.broker.hooks
        if hooks.has(Points.CLIENT_CONNACK):
            hooks.run(Points.CLIENT_CONNACK, self.info, reason)

    def _banned(self) -> bool:
        """Is the client in the banned table (client id, user name, IP)?  Counted
        as refused when it is (zones with `enable_ban` off never are)."""
        banned = self.broker.banned
        if not self.options.enable_ban or banned.match(
                self.client_id, self.username, self.peerhost) is None:
            return False
        banned.refused += 1
        return True

    async def _authenticate(self, acc: AuthResult) -> AuthResult:
        """The `client.authenticate` chain (auth plugins may await I/O)."""
        hooks = self.broker.hooks
        if not hooks.has(Points.CLIENT_AUTHENTICATE):
            return acc
        result: AuthResult = await hooks.run_fold_async(
            HookPoint.CLIENT_AUTHENTICATE, (self.info,), acc)
        return result

    async def _will_acl(self) -> bool | None:
        """The will's publish permission from an ACL chain that must be awaited
        (None: no will, or the chain answers synchronously in `_establish`)."""
        broker = self.broker
        if self.will is None or not broker.acl_is_async:
            return None
        return await broker.check_acl_async(self, "publish", self.will.topic)

    def _establish(self, auth: AuthResult, will_allowed: bool | None, clean_start: bool,
                   expiry_interval: float) -> bool | ReasonCode:
        """After a successful authentication: the will's ACL (EMQ X's
        check_will_acl), then the session is opened or resumed and the client is
        connected (`client.connack`).  Whether a session was resumed, or why the
        client is refused after all.  Everything the client shows in `info` must
        be set before: it does not change once connected."""
        broker = self.broker
        if auth.anonymous and self.username is None:
            self.counters["auth/mqtt/anonymous"] += 1
        self.is_superuser = auth.superuser
        if self.will is not None and self.sys_publish_refused(self.will.topic):
            return _NOT_AUTHORIZED
        if will_allowed is None and self.will is not None and \
                Points.CLIENT_CHECK_ACL in broker.hooks.active:
            will_allowed = broker.check_acl(self, "publish", self.will.topic)
        if will_allowed is False:
            return _NOT_AUTHORIZED
        session, present = broker.open_session(self, clean_start, expiry_interval)
        self.session = session
        self.state = CONNECTED
        # A new session was made just now: one float for both.
        self.connected_at = broker.clock.time() if present else session.created_at
        if Points.CLIENT_CONNACK in broker.hooks.active:
            self._connack(_SUCCESS)
        return present

    def _connected(self, present: bool) -> None:
        """After the connect was answered: `client.connected`, then what the session
        holds is sent (unacknowledged messages again, then the queue)."""
        session = self.session
        if session is None or self.state != CONNECTED:
            return  # gone before its turn came
        self.broker.channel_connected(self)
        if present:
            session.resend_inflight()
        session.drain()

    # -- publishing --------------------------------------------------------------------------
    async def may(self, action: str, topic: str) -> bool:
        """May this client publish to ("publish") / subscribe to ("subscribe") `topic`?
        (`Broker.check_acl`: superuser, zone, ACL cache, then `client.check_acl`.)"""
        broker = self.broker
        if not broker.hooks.has(Points.CLIENT_CHECK_ACL):
            return True
        return await broker.check_acl_async(self, action, topic)

    def _message(self, topic: str, payload: bytes, qos: int, retain: bool,
                 properties: dict[PropertyId, Any]) -> Message:
        """A message from this client, its expiry capped by `message_expiry_interval`."""
        message = Message(topic, payload, qos, retain, self.client_id, self.username,
                          self.peerhost, properties)
        expiry: float | None = (properties.get(PropertyId.MESSAGE_EXPIRY_INTERVAL)
                                if properties else None)
        expiry_cap = self.options.message_expiry_interval
        if expiry_cap and (expiry is None or expiry > expiry_cap):
            expiry = expiry_cap
        if expiry is not None:
            message.expires_at = self.broker.clock.monotonic() + expiry
        return message

    async def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False,
                      packet_id: int | None = None,
                      properties: dict[PropertyId, Any] | None = None) -> ReasonCode:
        """Publish as this client, as an MQTT PUBLISH does: the topic's checks, the
        ACL, `message.publish`, the retained store, routing, metrics.  A QoS 2
        message with a `packet_id` is routed once until `release(packet_id)`.  In
        durable mode, returns once what it changed in the store is committed (the
        moment to acknowledge it).  SUCCESS, NO_MATCHING_SUBSCRIBERS, or why it was
        refused (TOPIC_NAME_INVALID, RETAIN_NOT_SUPPORTED, NOT_AUTHORIZED: then,
        with `acl_deny_action = disconnect`, the client is closed;
        RECEIVE_MAXIMUM_EXCEEDED: too many QoS 2 ids awaiting release; QUOTA_EXCEEDED:
        the store cannot write and the message needs it).  `properties` are the
        message's MQTT 5.0 properties (a gateway's own metadata: STOMP headers)."""
        session = self._live_session()
        counters = self.counters
        counters[m.MESSAGES_RECEIVED] += 1
        counters[m.QOS_RECEIVED[qos]] += 1
        self.recv_msg += 1
        if not is_valid_topic_name(topic) or not topic_levels_ok(
                topic, self.options.max_topic_levels):
            return ReasonCode.TOPIC_NAME_INVALID
        if retain and not self.options.retain_available:
            return ReasonCode.RETAIN_NOT_SUPPORTED
        if self.sys_publish_refused(topic):
            counters["packets/publish/auth_error"] += 1
            self._acl_denied()
            return _NOT_AUTHORIZED
        awaiting = qos == 2 and packet_id is not None
        journal = self.broker.journal
        if awaiting and packet_id in session.awaiting_rel:
            await journal.committed()  # the first copy's writes
            return _SUCCESS  # a resend before its release: routed once already
        if not await self.may("publish", topic):
            counters["packets/publish/auth_error"] += 1
            self._acl_denied()
            return _NOT_AUTHORIZED
        if self.state != CONNECTED:
            return ReasonCode.UNSPECIFIED_ERROR
        message = self._message(topic, payload, qos, retain, properties or {})
        if qos and journal.failing_since is not None and self.broker.needs_store(message):
            counters[m.MESSAGES_DROPPED] += 1
            return ReasonCode.QUOTA_EXCEEDED  # the store cannot write what it needs
        ops_before = journal.ops_added
        if awaiting:
            assert packet_id is not None
            limit = self.options.max_awaiting_rel
            if limit and len(session.awaiting_rel) >= limit:
                counters["messages/qos2/dropped"] += 1
                return ReasonCode.RECEIVE_MAXIMUM_EXCEEDED
            session.await_rel(packet_id)
        delivered = self.broker.publish(message)
        if qos and journal.changed_since(ops_before):
            await journal.committed()
        return _SUCCESS if delivered else ReasonCode.NO_MATCHING_SUBSCRIBERS

    def sys_publish_refused(self, topic: str) -> bool:
        """Is this a `$SYS/#` topic the client may not publish to?  Only the broker
        (and clients of a zone with `allow_sys_publish`, the internal listener's)
        publishes there, whatever the ACL says, as in Mosquitto; counted."""
        if self.options.allow_sys_publish or not (
                topic == "$SYS" or topic.startswith("$SYS/")):
            return False
        self.counters["packets/publish/sys_denied"] += 1
        return True

    def release(self, packet_id: int) -> bool:
        """A QoS 2 message's release (MQTT PUBREL): False if the id was unknown."""
        return self._live_session().release(packet_id)

    def _acl_denied(self) -> None:
        """`acl_deny_action = disconnect`: close (the will is published)."""
        if self.options.acl_deny_action == "disconnect":
            self.kick("not_authorized")

    # -- subscribing -------------------------------------------------------------------------
    def _filter_refusal(self, topic_filter: str) -> ReasonCode | None:
        """Why a filter cannot be subscribed to here (before the ACL), or None."""
        options = self.options
        if not is_valid_topic_filter(topic_filter) or not topic_levels_ok(
                topic_filter, options.max_topic_levels):
            return ReasonCode.TOPIC_FILTER_INVALID
        if not options.shared_subscription and parse_share(topic_filter)[0] is not None:
            return ReasonCode.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED
        if not options.wildcard_subscription and is_wildcard(topic_filter):
            return ReasonCode.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED
        return None

    async def subscribe(self, topic_filter: str, qos: int = 0) -> int:
        """Subscribe as an MQTT SUBSCRIBE of one filter does: `client.subscribe`, the
        filter's checks, the ACL, `session.subscribed`.  Returns the granted QoS, or
        a reason code >= 0x80.  The retained messages that match follow on the event
        loop's next turn: after the caller's answer, if it answers before it awaits
        anything else (as SUBACK precedes them in MQTT)."""
        session = self._live_session()
        broker = self.broker
        opts = SubscriptionOptions(qos)
        if broker.hooks.has(HookPoint.CLIENT_SUBSCRIBE):
            broker.hooks.run(HookPoint.CLIENT_SUBSCRIBE, self.info, [(topic_filter, opts)])
        refused = self._filter_refusal(topic_filter)
        if refused is not None:
            return refused
        if not await self.may("subscribe", topic_filter):
            self._acl_denied()
            return _NOT_AUTHORIZED
        if self.state != CONNECTED:
            return ReasonCode.UNSPECIFIED_ERROR
        ops_before = broker.journal.ops_added
        broker.subscribe(session, topic_filter, opts)
        if broker.journal.changed_since(ops_before):
            await broker.journal.committed()
        broker.clock.call_soon(self._send_retained, session, topic_filter, qos)
        return qos

    def _send_retained(self, session: Session, topic_filter: str, qos: int) -> None:
        if self.session is session:
            self.broker.deliver_retained(session, topic_filter, qos)

    def unsubscribe(self, topic_filter: str) -> bool:
        """`client.unsubscribe`, then the subscription goes; False if there was none."""
        session = self._live_session()
        broker = self.broker
        if broker.hooks.has(HookPoint.CLIENT_UNSUBSCRIBE):
            broker.hooks.run(HookPoint.CLIENT_UNSUBSCRIBE, self.info, [topic_filter])
        found = broker.unsubscribe(session, topic_filter)
        session.subscription_ids.pop(topic_filter, None)
        return found

    # -- acknowledgements of deliveries ----------------------------------------------------
    def puback(self, packet_id: int) -> Message | None:
        """The client acknowledged a QoS 1 delivery: the message, or None if unknown."""
        message = self._live_session().puback(packet_id)
        if message is not None and self.broker.hooks.has(Points.MESSAGE_ACKED):
            self.broker.hooks.run(Points.MESSAGE_ACKED, self.info, message)
        return message

    def pubrec(self, packet_id: int) -> Message | None:
        """The client received a QoS 2 delivery: the message (the caller sends
        PUBREL), or None if the id is unknown."""
        return self._live_session().pubrec(packet_id)

    def pubcomp(self, packet_id: int) -> Message | None:
        """A QoS 2 delivery is complete: the message, or None if unknown."""
        message = self._live_session().pubcomp(packet_id)
        if message is not None and self.broker.hooks.has(Points.MESSAGE_ACKED):
            self.broker.hooks.run(Points.MESSAGE_ACKED, self.info, message)
        return message

    def _live_session(self) -> Session:
        session = self.session
        if session is None or self.state != CONNECTED:
            raise RuntimeError(f"client {self.client_id!r} is not connected")
        return session

    # -- closing -------------------------------------------------------------------------------
    def disconnect(self) -> None:
        """The client said goodbye: close without publishing the will."""
        self.will = None
        self.close("normal")

    def close(self, reason: str) -> None:
        """Close the connection; the will is published unless it was a normal disconnect."""
        if self.state == CLOSED:
            return
        self.disconnect_reason = self.disconnect_reason or reason
        self._terminate(self.disconnect_reason)
        self._close_transport()

    def kick(self, reason: str = "kicked") -> None:
        """Administrative close (REST kickout, a new ban): the will is published."""
        self.close(reason)

    def takeover(self) -> None:
        """Another connection claimed our client id [MQTT-3.1.4-3]."""
        self.close("takeovered")

    def _terminate(self, reason: str) -> None:
        """Runs once, whatever ended the connection: the will, the session let go,
        `client.disconnected` (for a client that was connected)."""
        if self.state == CLOSED:
            return
        was_connected = self.state == CONNECTED
        self.state = CLOSED
        if not was_connected:
            return
        self._publish_will()
        self.broker.channel_closed(self, reason)

    def _publish_will(self) -> None:
        """The will, now or after its Will Delay Interval (MQTT 5.0 §3.1.3.2.2)."""
        will, self.will = self.will, None
        if will is None:
            return
        props = dict(will.properties)
        delay = props.pop(PropertyId.WILL_DELAY_INTERVAL, 0)
        if delay and self.disconnect_reason == "takeovered":
            # The connection that took over came before the delay could pass: a new
            # connection of the client id cancels the will [MQTT-3.1.3-9, MQTT-3.1.2-8].
            return
        message = Message(will.topic, will.payload, will.qos, will.retain, self.client_id,
                          self.username, self.peerhost, props)
        expiry = props.get(PropertyId.MESSAGE_EXPIRY_INTERVAL)
        if expiry is not None:
            message.expires_at = self.broker.clock.monotonic() + expiry
        session = self.session
        if delay and session is not None and session.expiry_interval > 0:
            # Wait, unless the session comes back first; never later than its end.
            self.broker.schedule_will(session, message, min(delay, session.expiry_interval))
        else:
            self.broker.publish(message)
