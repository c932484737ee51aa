"""The shape of EMQ X v3's database auth plugins (emqx_auth_redis, _mysql,
_pgsql, _mongo): a server asked at CONNECT for the client's stored password
(and whether it is a superuser), and at PUBLISH / SUBSCRIBE for its ACL.

A subclass says how to ask its server (`lookup_password`, `lookup_superuser`,
`lookup_acl`, `ping`) and which of its errors mean "the server is not there"
(`is_connection_error`).  This class does the rest, the same way for all:

- CONNECT (``client.authenticate``): no entry → ignore (the chain goes on);
  entry and right password → success, stop, with the superuser flag from the
  super query; wrong password → "bad user name or password", stop.  Counted
  ``auth/<backend>/success|failure|ignore``.
- ACL (``client.check_acl``, an async callback): the subclass answers allow,
  deny or nothing; counted ``acl/<backend>/allow|deny|ignore``.  A user name
  starting with ``$`` is not looked up (EMQ X).
- Every call is bounded by ``auth.<backend>.query_timeout``.  When no answer
  can be had (the server is down, slow, or the query fails), the request is
  answered as ``auth.<backend>.on_error`` says: ``ignore`` (the chain goes on)
  or ``deny`` (CONNECT refused as not authorized, ACL denied).
- A server that cannot be reached raises the alarm ``<plugin>_server_down``
  (`auth_monitor.ServerAlarm`); while it is raised the server is probed every
  `RECONNECT_INTERVAL`; the first answer (a probe or a request) clears it.
  The drivers' pools reconnect by themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

from starling.broker import AuthResult, ClientInfo, HookPoint, Stop, match_rules
from starling.config import parse_port
from starling.mqtt import ReasonCode

from .. import ConfigKey, Plugin, PluginContext, cancel, parse_timeout
from .common import (
    SqlQuery,
    compile_acl_row,
    denied,
    parse_on_error,
    placeholder_values,
)
from .monitor import AuthMetrics, ServerAlarm
from .passwords import PasswordHash, parse_password_hash

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds between probes of a server that went away.
RECONNECT_INTERVAL = 1.0
#: At most one log line per this many seconds for failing queries.
LOG_EVERY = 10.0


class BackendError(Exception):
    """No answer from the backend (down, too slow, or the query failed)."""


# -- config values -------------------------------------------------------------------------

def parse_server(value: str, default_port: int) -> tuple[str, int]:
    """``host:port``, ``host`` or ``port`` (EMQ X: ``Port | IP:Port``)."""
    text = value.strip()
    if not text:
        raise ValueError("must not be empty")
    if text.isdigit():
        host, port_text = "127.0.0.1", text
    elif text.startswith("["):  # [::1]:6379
        host, _, rest = text[1:].partition("]")
        port_text = rest.lstrip(":") or str(default_port)
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, str(default_port)
    if not host or any(c.isspace() for c in host):
        raise ValueError(f"bad host in {value!r} (expected host:port)")
    # The port is checked as the node's own config checks ports; the host is not
    # resolved here: a backend may come up after the node (the plugin reconnects).
    return host, parse_port(port_text, low=1)


def parse_servers(value: str, default_port: int) -> list[tuple[str, int]]:
    """A comma-separated list of `parse_server` values."""
    return [parse_server(part, default_port) for part in value.split(",") if part.strip()]


def common_keys(prefix: str, label: str, *, hash_key: str, hash_default: str,
                on_error: str) -> tuple[ConfigKey, ...]:
    """The keys every backend has: query timeout, password hash, error action."""
    return (
        ConfigKey(f"{prefix}.query_timeout", "5s",
                  f"Longest wait for one {label} call (connecting included).", parse_timeout),
        ConfigKey(hash_key, hash_default,
                  "Hash of the stored passwords: plain, md5, sha, sha256, sha512, bcrypt, "
                  "salt,HASH, HASH,salt or pbkdf2,MAC,ITERATIONS,DKLEN.", parse_password_hash),
        ConfigKey(f"{prefix}.on_error", on_error,
                  f"When {label} gives no answer (down, too slow, query error): ignore "
                  "(the next auth/ACL source decides) or deny.", parse_on_error),
    )


# -- the plugin ------------------------------------------------------------------------------

class BackendAuthPlugin(Plugin):
    """Auth, superuser and ACL through a server; subclasses set the class
    attributes and implement the lookups."""

    PLUGIN: ClassVar[str]  #: "emqx_auth_redis"
    BACKEND: ClassVar[str]  #: "redis": metric names, conf prefix auth.<BACKEND>
    LABEL: ClassVar[str]  #: "Redis", for messages
    HASH_KEY: ClassVar[str] = ""  #: defaults to auth.<BACKEND>.password_hash

    def __init__(self, context: PluginContext, settings: Mapping[str, Any]) -> None:
        super().__init__(context, settings)
        prefix = self.prefix
        self.timeout: float = settings[f"{prefix}.query_timeout"]
        self.on_error: str = settings[f"{prefix}.on_error"]
        self.hash: PasswordHash = settings[self.HASH_KEY or f"{prefix}.password_hash"]
        self.metrics = AuthMetrics(context.broker, self.BACKEND)
        # The probe is a request like any other: its failures keep the alarm's
        # description up to date, its answer clears it.
        self.alarm = ServerAlarm(context.broker, f"{self.PLUGIN}_server_down",
                                 lambda server: self.ask(self.ping),
                                 interval=RECONNECT_INTERVAL, label=f"{self.LABEL} server ")
        self._first_probe: asyncio.Task[None] | None = None
        self._logged_at = 0.0
        self._hooked: list[tuple[HookPoint, Callable[..., Any]]] = []

    @property
    def prefix(self) -> str:
        return f"auth.{self.BACKEND}"

    # -- what a subclass provides ----------------------------------------------------------
    @property
    def server_name(self) -> str:
        """Where the server is, for the alarm (never a password)."""
        return str(self.settings.get(f"{self.prefix}.server", ""))

    @property
    def auth_enabled(self) -> bool:
        return True

    @property
    def super_enabled(self) -> bool:
        return True

    @property
    def acl_enabled(self) -> bool:
        return True

    async def open(self) -> None:
        """Make the client / pool (it may connect lazily)."""

    async def close(self) -> None:
        """Close the client / pool."""

    async def ping(self) -> None:
        """Raise unless the server answers."""
        raise NotImplementedError

    async def lookup_password(self, values: Mapping[str, str | None]) -> tuple[Any, Any] | None:
        """(stored hash, salt or None) of the client, None when it has no entry."""
        raise NotImplementedError

    async def lookup_superuser(self, values: Mapping[str, str | None]) -> bool:
        raise NotImplementedError

    async def lookup_acl(self, client: Any, action: str, topic: str,
                         values: Mapping[str, str | None]) -> str | None:
        """allow / deny, or None to leave the decision to the rest of the chain."""
        raise NotImplementedError

    def is_connection_error(self, exc: BaseException) -> bool:
        """Whether `exc` means the server cannot be reached (raises the alarm)."""
        return isinstance(exc, OSError)

    # -- load / unload ---------------------------------------------------------------------
    async def load(self) -> None:
        await self.open()
        hooks = self.context.broker.hooks
        if self.auth_enabled:
            self._hooked.append((HookPoint.CLIENT_AUTHENTICATE, self.authenticate))
        if self.acl_enabled:
            self._hooked.append((HookPoint.CLIENT_CHECK_ACL, self.check_acl))
        for point, callback in self._hooked:
            hooks.add_dynamic(point, callback)
        self._first_probe = asyncio.get_running_loop().create_task(self._probe_at_load())

    async def unload(self) -> None:
        hooks = self.context.broker.hooks
        for point, callback in self._hooked:
            hooks.remove(point, callback)
        self._hooked.clear()
        await cancel(self._first_probe)
        self._first_probe = None
        await self.alarm.close()  # a request still in flight no longer raises it
        try:
            await asyncio.wait_for(self.close(), self.timeout)
        except Exception as exc:  # closing a pool to a dead server: nothing more to do
            log.debug("%s: close failed: %r", self.PLUGIN, exc)

    # -- asking the server -----------------------------------------------------------------
    async def ask(self, call: Callable[[], Awaitable[T]]) -> T:
        """`call()` bounded by the query timeout; `BackendError` when it fails."""
        try:
            result = await asyncio.wait_for(call(), self.timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if isinstance(exc, TimeoutError) or self.is_connection_error(exc):
                reason = "no answer within the query timeout" if isinstance(
                    exc, TimeoutError) else f"{type(exc).__name__}: {str(exc)[:200]}"
                self.alarm.failed(self.server_name, exc, reason)
            else:
                self._log_failure(exc)
            raise BackendError(str(exc)) from exc
        self.alarm.succeeded(self.server_name)
        return result

    def _log_failure(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY:
            self._logged_at = now
            log.warning("%s: query failed: %s: %s", self.PLUGIN, type(exc).__name__,
                        str(exc)[:300])

    async def _probe_at_load(self) -> None:
        """A server away at load raises the alarm at once (the alarm's probe
        then tries it every `RECONNECT_INTERVAL`)."""
        with contextlib.suppress(BackendError):
            await self.ask(self.ping)

    # -- the hooks -------------------------------------------------------------------------

    async def authenticate(self, client: ClientInfo, acc: AuthResult) -> Stop | None:
        values = placeholder_values(client)
        try:
            found = await self.ask(lambda: self.lookup_password(values))
        except BackendError:
            return self._auth_error()
        if found is None:
            self.metrics.auth("ignore")
            return None
        stored, salt = found
        if not await self.hash.check_async(stored, client.password or b"", salt):
            self.metrics.auth("failure")
            return Stop(denied())
        superuser = False
        if self.super_enabled:
            try:
                superuser = await self.ask(lambda: self.lookup_superuser(values))
            except BackendError:
                superuser = False  # EMQ X: a failed super query means not a superuser
        self.metrics.auth("success")
        return Stop(AuthResult(ReasonCode.SUCCESS, anonymous=False, superuser=superuser))

    def _auth_error(self) -> Stop | None:
        if self.on_error == "deny":
            self.metrics.auth("failure")
            return Stop(AuthResult(ReasonCode.NOT_AUTHORIZED, anonymous=False))
        self.metrics.auth("ignore")
        return None

    async def check_acl(self, client: Any, action: str, topic: str, acc: Any) -> Stop | None:
        username = client.username
        if username is not None and username.startswith("$"):
            self.metrics.acl("ignore")
            return None
        values = placeholder_values(client, action, topic)
        try:
            answer = await self.ask(lambda: self.lookup_acl(client, action, topic, values))
        except BackendError:
            answer = "deny" if self.on_error == "deny" else None
        if answer is None:
            self.metrics.acl("ignore")
            return None
        self.metrics.acl(answer)
        return Stop(answer)


def truthy(value: Any) -> bool:
    """A superuser column / field: 1, true, "1", "true" (any case) are yes."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true")
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value == 1
    return False


# -- SQL backends ----------------------------------------------------------------------------

class SqlAuthPlugin(BackendAuthPlugin):
    """emqx_auth_mysql / emqx_auth_pgsql: ``auth_query``, ``super_query`` and
    ``acl_query`` as EMQ X writes them, run with bound parameters (`SqlQuery`).

    - auth: no row → ignore; else the ``password`` column (and ``salt`` if the
      query selects one; without those names, the first and second column).
    - super: the first column of the first row is 1 / true.
    - ACL: each row of ``allow, ipaddr, username, clientid, access, topic`` is a
      rule (`compile_acl_row`), tried in the order the query returns them; the
      first that matches decides; no row or no match → ignore.
    """

    #: ``format`` (%s, MySQL drivers) or ``numeric`` ($1, PostgreSQL).
    STYLE: ClassVar[str]

    def _query(self, name: str) -> SqlQuery | None:
        query: SqlQuery | None = self.settings[f"{self.prefix}.{name}"]
        return query

    @property
    def server_name(self) -> str:
        host, port = self.settings[f"{self.prefix}.server"]
        return f"{host}:{port}"

    @property
    def auth_enabled(self) -> bool:
        return self._query("auth_query") is not None

    @property
    def super_enabled(self) -> bool:
        return self._query("super_query") is not None

    @property
    def acl_enabled(self) -> bool:
        return self._query("acl_query") is not None

    async def fetch(self, query: SqlQuery,
                    args: list[str | None]) -> tuple[list[str], list[Sequence[Any]]]:
        """Run `query` with `args`: (column names, rows)."""
        raise NotImplementedError

    async def lookup_password(self, values: Mapping[str, str | None]) -> tuple[Any, Any] | None:
        query = self._query("auth_query")
        assert query is not None
        columns, rows = await self.fetch(query, query.args(values))
        if not rows:
            return None
        row = rows[0]
        names = [c.lower() for c in columns]
        if "password" in names:
            salt = row[names.index("salt")] if "salt" in names else None
            return row[names.index("password")], salt
        return row[0], row[1] if len(row) > 1 else None

    async def lookup_superuser(self, values: Mapping[str, str | None]) -> bool:
        query = self._query("super_query")
        assert query is not None
        _, rows = await self.fetch(query, query.args(values))
        return bool(rows) and len(rows[0]) > 0 and truthy(rows[0][0])

    async def lookup_acl(self, client: Any, action: str, topic: str,
                         values: Mapping[str, str | None]) -> str | None:
        query = self._query("acl_query")
        assert query is not None
        _, rows = await self.fetch(query, query.args(values))
        rules = []
        for row in rows:
            try:
                rules.append(compile_acl_row(row))
            except (ValueError, TypeError) as exc:
                self._log_failure(ValueError(f"ACL row {tuple(row)!r} skipped: {exc}"))
        found = match_rules(rules, client, action, topic)
        return None if found is None else found.permission


def sql_key(prefix: str, name: str, default: str, desc: str, style: str) -> ConfigKey:
    """A query key: the EMQ X query text, parsed for the driver; empty turns it off."""
    def parse(value: str) -> SqlQuery | None:
        return SqlQuery.parse(value.strip(), style) if value.strip() else None
    return ConfigKey(f"{prefix}.{name}", default, desc, parse, required=False)
