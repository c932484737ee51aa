"""emqx_auth_ldap: authentication and ACL from an LDAP directory (OpenLDAP),
as EMQ X v3.2's plugin (docs/auth-backends.md#ldap).

At CONNECT the entry ``<username.attributetype>=<user name>,<device_dn>`` of
object class ``match_objectclass`` is read (a base-scope search, the user name
escaped): no such entry → ignore; ``isEnabled: FALSE`` → refused; the
``password.attributetype`` value checked against the password (``{SHA}``,
``{SSHA}``, ``{MD5}``, ``{SMD5}``, ``{SHA256}``, ``{SSHA256}``, ``{SHA512}``,
``{SSHA512}`` or plain) → let in or refused; ``isSuperuser: TRUE`` (Starling's
addition, ``superuser.attributetype``) makes a superuser.  ACL checks read the
same entry's ``mqttPublishTopic`` / ``mqttSubscriptionTopic`` and
``mqttPubSubTopic`` values: a filter that matches allows, none → ignore (the
ACL file or ``acl_nomatch`` decides), as EMQ X.

The client is ldap3, whose sockets block: every LDAP call runs in a pool of
``auth.ldap.pool`` worker threads (each with its own bound connection), bounded
by ``auth.ldap.timeout`` on both sides (ldap3's socket timeouts, and
`asyncio.wait_for` on the event loop).  A connection that fails is dropped and
made again at the next call; while the server cannot be reached, calls are
answered by ``auth.ldap.on_error`` and the ``emqx_auth_ldap_down`` alarm is up.
The bind password is never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import ssl
import threading
import warnings
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from starling.broker import AuthResult, ClientInfo, HookPoint, Stop, topic_matches
from starling.mqtt import ReasonCode

from .. import (
    ConfigKey,
    Plugin,
    PluginContext,
    parse_port,
    parse_positive_int,
    parse_switch,
    parse_timeout,
)
from .common import denied, parse_on_error
from .monitor import AuthMetrics, ServerAlarm
from .passwords import ldap_password_matches

if TYPE_CHECKING:
    import ldap3

log = logging.getLogger(__name__)

PLUGIN = "emqx_auth_ldap"
ALARM = "emqx_auth_ldap_down"
T = TypeVar("T")


class LDAPError(Exception):
    """A failed LDAP call (ldap3's own exceptions are turned into this)."""


def _ldap3() -> Any:
    """ldap3, imported when the plugin is first made: its import makes pyasn1
    warn (DeprecationWarning), which need not reach nodes that never use LDAP."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import ldap3
        import ldap3.utils.conv
        import ldap3.utils.dn
    return ldap3

def parse_servers(value: str) -> tuple[str, ...]:
    servers = tuple(s.strip() for s in value.split(",") if s.strip())
    if not servers:
        raise ValueError("at least one server")
    return servers


def parse_name(value: str) -> str:
    text = value.strip()
    if not text:
        raise ValueError("must not be empty")
    return text


SCHEMA: tuple[ConfigKey, ...] = (
    ConfigKey("auth.ldap.servers", "127.0.0.1", "LDAP servers, separated by commas "
              "(tried in order).", parse_servers),
    ConfigKey("auth.ldap.port", "389", "LDAP port of every server.", parse_port),
    ConfigKey("auth.ldap.pool", "8", "Connections (worker threads) at most.", parse_positive_int),
    ConfigKey("auth.ldap.bind_dn", "cn=root,dc=emqx,dc=io", "DN the plugin binds as.",
              required=False),
    ConfigKey("auth.ldap.bind_password", "public", "Password of bind_dn.", required=False),
    ConfigKey("auth.ldap.timeout", "30s", "Time limit of one LDAP call.", parse_timeout),
    ConfigKey("auth.ldap.device_dn", "ou=device,dc=emqx,dc=io",
              "DN under which the clients' entries are.", parse_name),
    ConfigKey("auth.ldap.match_objectclass", "mqttUser", "Object class of a client's entry.",
              parse_name),
    ConfigKey("auth.ldap.username.attributetype", "uid",
              "Attribute whose value is the user name (the entry's RDN).", parse_name),
    ConfigKey("auth.ldap.password.attributetype", "userPassword",
              "Attribute holding the password ({SHA}, {SSHA}, ... or plain).", parse_name),
    ConfigKey("auth.ldap.superuser.attributetype", "isSuperuser",
              "Boolean attribute that makes a superuser (Starling's addition); "
              "empty = none.", required=False),
    ConfigKey("auth.ldap.ssl", "false", "LDAPS (TLS from the start).", parse_switch),
    ConfigKey("auth.ldap.on_error", "ignore",
              "When the server cannot be reached or times out: ignore or deny.", parse_on_error),
)


class LdapDown(Exception):
    """The directory could not be reached (or answered too late)."""


class LdapClient:
    """ldap3 on worker threads: one bound connection per thread, made lazily and
    made again after a failure; every call bounded by `timeout`."""

    def __init__(self, servers: tuple[str, ...], port: int, use_ssl: bool, bind_dn: str,
                 bind_password: str, timeout: float, pool: int) -> None:
        self._ldap3 = lib = _ldap3()
        # LDAPS checks the server's certificate against the system CA store.
        tls = lib.Tls(validate=ssl.CERT_REQUIRED) if use_ssl else None
        # Our own failover, not ldap3's ServerPool: that one sleeps 10 s after a
        # round in which no server answered, holding the worker thread.
        self._servers = [lib.Server(host, port=port, use_ssl=use_ssl, tls=tls,
                                    get_info=lib.NONE, connect_timeout=timeout)
                         for host in servers]
        self._bind_dn = bind_dn or None
        self._bind_password = bind_password or None
        self.timeout = timeout
        self.servers = [f"{host}:{port}" for host in servers]
        self._executor = ThreadPoolExecutor(max_workers=pool, thread_name_prefix=PLUGIN)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: set[ldap3.Connection] = set()
        self._closed = False

    def _connection(self) -> ldap3.Connection:
        lib = self._ldap3
        conn: ldap3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and not conn.closed:
            return conn
        conn = None
        why = "no server"
        for server in self._servers:  # the first that answers, in the configured order
            candidate = lib.Connection(
                server, user=self._bind_dn, password=self._bind_password,
                receive_timeout=max(1, math.ceil(self.timeout)),  # whole seconds (SO_RCVTIMEO)
                read_only=True, raise_exceptions=False, auto_bind=lib.AUTO_BIND_NONE)
            try:
                if candidate.bind():
                    conn = candidate
                    break
                why = f"bind refused: {(candidate.result or {}).get('description', 'unknown')}"
            except Exception as exc:  # cannot connect: the next server
                why = type(exc).__name__
            with contextlib.suppress(Exception):
                candidate.unbind()
        if conn is None:
            raise LDAPError(why)
        with self._lock:
            if self._closed:
                conn.unbind()
                raise LDAPError("closed")
            self._connections.add(conn)
        self._local.conn = conn
        return conn

    def _drop(self) -> None:
        conn: ldap3.Connection | None = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with self._lock:
                self._connections.discard(conn)
            with contextlib.suppress(Exception):
                conn.unbind()

    def _search(self, base: str, search_filter: str,
                attributes: list[str]) -> dict[str, list[bytes]] | None:
        """On a worker thread: the raw attributes of the one entry at `base` that
        matches, or None.  A kept connection that fails (the server restarted
        since) is replaced and the search made once more."""
        conn: ldap3.Connection | None = getattr(self._local, "conn", None)
        reused = conn is not None and not conn.closed
        try:
            return self._search_once(base, search_filter, attributes)
        except LDAPError:
            if not reused:
                raise
        return self._search_once(base, search_filter, attributes)

    def _search_once(self, base: str, search_filter: str,
                     attributes: list[str]) -> dict[str, list[bytes]] | None:
        try:
            conn = self._connection()
            conn.search(base, search_filter, search_scope=self._ldap3.BASE,
                        attributes=attributes)
        except LDAPError:
            self._drop()
            raise
        except Exception as exc:  # socket errors, and whatever else ldap3 lets out
            self._drop()
            raise LDAPError(type(exc).__name__) from None
        result = conn.result or {}
        code = result.get("result")
        if code == 32:  # noSuchObject
            return None
        if code != 0:  # an error, or no answer at all
            self._drop()
            raise LDAPError(f"search failed: {result.get('description', code)}")
        for entry in conn.response or []:
            if entry.get("type") == "searchResEntry":
                raw: dict[str, list[bytes]] = entry.get("raw_attributes", {})
                return {k.lower(): list(v) for k, v in raw.items()}
        return None  # the entry is there but not of match_objectclass

    async def run(self, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(self._executor, fn)
        except RuntimeError:  # the pool was shut down: the plugin unloaded
            raise LdapDown("closed") from None
        try:
            return await asyncio.wait_for(future, self.timeout)
        except (LDAPError, TimeoutError) as exc:
            raise LdapDown(type(exc).__name__ if isinstance(exc, TimeoutError)
                           else str(exc)) from None

    async def search(self, base: str, search_filter: str,
                     attributes: list[str]) -> dict[str, list[bytes]] | None:
        return await self.run(lambda: self._search(base, search_filter, attributes))

    async def probe(self) -> None:
        """Bind a fresh connection (raises `LdapDown` while the server is away)."""
        await self.run(self._connection)

    async def close(self) -> None:
        with self._lock:
            self._closed = True
            connections, self._connections = list(self._connections), set()
        self._executor.shutdown(wait=False)  # queued calls fail fast: closed

        def unbind_all() -> None:
            for conn in connections:
                with contextlib.suppress(Exception):
                    conn.unbind()

        await asyncio.to_thread(unbind_all)


class LdapAuthPlugin(Plugin):
    SCHEMA = SCHEMA

    def __init__(self, context: PluginContext, settings: Mapping[str, Any]) -> None:
        super().__init__(context, settings)
        self.device_dn: str = settings["auth.ldap.device_dn"]
        self.objectclass: str = settings["auth.ldap.match_objectclass"]
        self.uid_attr: str = settings["auth.ldap.username.attributetype"]
        self.password_attr: str = settings["auth.ldap.password.attributetype"]
        self.superuser_attr: str = settings["auth.ldap.superuser.attributetype"].strip()
        self.on_error: str = settings["auth.ldap.on_error"]
        self.client = LdapClient(settings["auth.ldap.servers"], settings["auth.ldap.port"],
                                 settings["auth.ldap.ssl"], settings["auth.ldap.bind_dn"],
                                 settings["auth.ldap.bind_password"],
                                 settings["auth.ldap.timeout"], settings["auth.ldap.pool"])
        broker = context.broker
        self.metrics = AuthMetrics(broker, "ldap")
        self.alarm = ServerAlarm(broker, ALARM, lambda server: self.client.probe())

    @property
    def server(self) -> str:
        return ",".join(self.client.servers)

    async def load(self) -> None:
        hooks = self.context.broker.hooks
        hooks.add(HookPoint.CLIENT_AUTHENTICATE, self.authenticate)
        hooks.add(HookPoint.CLIENT_CHECK_ACL, self.check_acl)

    async def unload(self) -> None:
        hooks = self.context.broker.hooks
        hooks.remove(HookPoint.CLIENT_AUTHENTICATE, self.authenticate)
        hooks.remove(HookPoint.CLIENT_CHECK_ACL, self.check_acl)
        await self.alarm.close()
        await self.client.close()

    async def lookup(self, username: str, attributes: list[str]) -> dict[str, list[bytes]] | None:
        """The client's entry (raw attributes, lower-case names), None if there is
        none; raises `LdapDown`."""
        utils = self.client._ldap3.utils
        base = f"{self.uid_attr}={utils.dn.escape_rdn(username)},{self.device_dn}"
        search_filter = f"(objectClass={utils.conv.escape_filter_chars(self.objectclass)})"
        try:
            entry = await self.client.search(base, search_filter, attributes)
        except LdapDown as exc:
            log.warning("emqx_auth_ldap: %s: %s", self.server, exc)
            self.alarm.failed(self.server, exc)
            raise
        self.alarm.succeeded(self.server)
        return entry

    # -- hooks -------------------------------------------------------------------------
    async def authenticate(self, client: ClientInfo, acc: AuthResult) -> AuthResult | Stop | None:
        username = client.username
        if not username:
            # EMQ X: no user name is "bad user name or password", left for a
            # later plugin to overrule (not a stop).
            self.metrics.auth("failure")
            return denied()
        attributes = [self.password_attr, "isEnabled"]
        if self.superuser_attr:
            attributes.append(self.superuser_attr)
        try:
            entry = await self.lookup(username, attributes)
        except LdapDown:
            if self.on_error == "deny":
                self.metrics.auth("failure")
                return Stop(denied())
            self.metrics.auth("ignore")
            return None
        if entry is None or not entry.get(self.password_attr.lower()):
            self.metrics.auth("ignore")
            return None
        if _flag(entry, "isEnabled") is False:
            self.metrics.auth("failure")
            return Stop(denied())
        password = client.password or b""
        stored = entry[self.password_attr.lower()]
        if not password or not any(ldap_password_matches(value, password) for value in stored):
            self.metrics.auth("failure")
            return Stop(denied())
        self.metrics.auth("success")
        superuser = bool(self.superuser_attr) and _flag(entry, self.superuser_attr) is True
        return Stop(AuthResult(ReasonCode.SUCCESS, anonymous=False, superuser=superuser))

    async def check_acl(self, client: ClientInfo, action: str, topic: str,
                        acc: str) -> Stop | None:
        username = client.username
        if not username or username.startswith("$"):
            return None  # EMQ X: nothing to look up for these
        own = "mqttPublishTopic" if action == "publish" else "mqttSubscriptionTopic"
        try:
            entry = await self.lookup(username, [own, "mqttPubSubTopic"])
        except LdapDown:
            answer = "ignore" if self.on_error == "ignore" else "deny"
            self.metrics.acl(answer)
            return None if answer == "ignore" else Stop("deny")
        if entry is not None:
            filters = entry.get(own.lower(), []) + entry.get("mqttpubsubtopic", [])
            for value in filters:
                if topic_matches(topic, value.decode("utf-8", "replace")):
                    self.metrics.acl("allow")
                    return Stop("allow")
        self.metrics.acl("ignore")
        return None


def _flag(entry: Mapping[str, list[bytes]], name: str) -> bool | None:
    """An LDAP boolean attribute: True, False, or None when absent."""
    values = entry.get(name.lower())
    if not values:
        return None
    return values[0].strip().upper() == b"TRUE"
