"""The connection's life: CONNECT (authentication, the session, CONNACK), MQTT
5.0 enhanced authentication and re-authentication (AUTH), and DISCONNECT.

What every protocol shares (the ban check, the authentication chain, the will's
ACL, opening or resuming the session) is `Client`'s; this is the MQTT side:
the packet's checks, assigned client ids, the 5.0 limits both ways, CONNACK
(held for its commit when a persistent session changed, `acks.py`).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, Final

from starling.mqtt import (
    MAX_PACKET_SIZE,
    Auth,
    Connack,
    Connect,
    Disconnect,
    PropertyId,
    ReasonCode,
    connack_bytes,
    connack_code_for,
    encode,
)

from ..client import CLOSED, CONNECTING
from ..hooks import HookPoint, Points
from ..info import AuthResult, AuthStep
from .keepalive import KeepaliveFlow

log = logging.getLogger(__name__)

# Bound once: `ReasonCode.X` is a slow lookup on Python 3.11 (see `hooks.Points`).
_SUCCESS: Final = ReasonCode.SUCCESS
_NOT_AUTHORIZED: Final = ReasonCode.NOT_AUTHORIZED


class ConnectFlow(KeepaliveFlow):
    __slots__ = ()

    # -- CONNECT -------------------------------------------------------------------------------
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
            if p.protocol_level == 3 or (not p.clean_start and p.protocol_level < 5):
                # [MQTT-3.1.3-8]; MQTT 3.1 has no server-assigned ids (1 to 23 characters).
                self._refuse(ReasonCode.CLIENT_IDENTIFIER_NOT_VALID)
                return
            client_id = "starling-" + uuid.uuid4().hex  # assigned: p.client_id stays ""
        elif len(client_id) > self.options.max_clientid_len or (
                not client_id.isprintable() and not self._client_id_valid(client_id)):
            # (`isprintable` first: one C call passes the usual client id.)
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
            broker.track(self._enhanced_step(data))
            return
        acc = AuthResult(_SUCCESS if self.options.allow_anonymous else _NOT_AUTHORIZED)
        backend = broker.hooks.has(Points.CLIENT_AUTHENTICATE) or (
            p.will is not None and broker.acl_is_async)
        if backend or broker.cluster is not None:
            # Only a wait for an authentication backend takes one of the listener's
            # `max_auth_pending` places: a cluster's client-id claim is not a backend's
            # answer, and a reconnect storm must not be refused for it.
            if backend and not self.conn.admit_auth():
                # Clients arrive faster than the backend answers: refuse now rather
                # than queue without bound (docs/reliability.md).
                self._refuse(ReasonCode.SERVER_BUSY, "auth_overload")
                return
            self.state = CONNECTING
            broker.track(self._connect_after_auth(acc))
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

    # -- enhanced authentication (MQTT 5.0 §4.12) ----------------------------------------------
    def _on_auth(self, p: Auth) -> None:
        """AUTH after CONNACK: re-authentication, if CONNECT chose a method;
        otherwise a protocol error [MQTT-4.12.0-1]."""
        if self._auth_method is None:
            self.counters["packets/auth"] += 1
            self._protocol_violation("AUTH without an authentication method")
            return
        self._auth_packet(p)

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
        self.broker.track(self._enhanced_step(data))

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
        try:
            result = await self._authenticate(acc)
            if self.state != CONNECTING:
                return  # the socket went away while we waited
            will_allowed = None
            if result.reason_code == ReasonCode.SUCCESS:
                self.is_superuser = result.superuser
                will_allowed = await self._will_acl()
                if self.state != CONNECTING:
                    return
        finally:
            self.conn.auth_done()
        if self._banned():  # banned while authentication ran
            self._refuse(ReasonCode.BANNED, "banned")
            return
        if result.reason_code == ReasonCode.SUCCESS and not await self._claim():
            return
        self._finish_connect(result, will_allowed)
        self._release_held()

    # -- CONNACK -------------------------------------------------------------------------------
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
        if session.journal is not None and journal.durable and journal.uncommitted:
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

    # -- DISCONNECT ----------------------------------------------------------------------------
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
