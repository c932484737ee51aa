"""emqx_auth_redis: clients authenticated, made superusers and given their ACL
by Redis commands (EMQ X v3.2's ``etc/plugins/emqx_auth_redis.conf``).

- ``auth.redis.auth_cmd`` (``HMGET mqtt_user:%u password``): a nil answer (or
  ``[nil, ...]``) → ignore; one value → the stored hash; two or more → hash
  and salt (``HMGET mqtt_user:%u password salt``).
- ``auth.redis.super_cmd`` (``HGET mqtt_user:%u is_superuser``): ``1`` → superuser.
- ``auth.redis.acl_cmd`` (``HGETALL mqtt_acl:%u``): topic filter → access
  (1 subscribe, 2 publish, 3 both); ``%u`` / ``%c`` in a filter stand for the
  user name / client id.  No entries → ignore; entries but none matches → deny.

A command is split on spaces first and each placeholder filled within its own
argument, so a user name with spaces or Redis syntax in it stays one argument.
An empty command turns that part off.  The shared behaviour (timeouts, errors,
the alarm) is `auth_backend.BackendAuthPlugin`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from starling.broker import topic_matches

from .. import ConfigKey, parse_nonnegative_int, parse_positive_int, parse_switch
from .backend import (
    BackendAuthPlugin,
    common_keys,
    parse_server,
    truthy,
)
from .common import fill

if TYPE_CHECKING:
    from redis.asyncio import Redis

DEFAULT_PORT = 6379


def parse_type(value: str) -> str:
    text = value.strip().lower()
    if text != "single":
        raise ValueError(f"only single is supported (sentinel and cluster are not yet), "
                         f"got {value!r}")
    return text


def parse_command(value: str) -> tuple[str, ...]:
    return tuple(value.split())


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class RedisAuthPlugin(BackendAuthPlugin):
    PLUGIN = "emqx_auth_redis"
    BACKEND = "redis"
    LABEL = "Redis"
    SCHEMA = (
        ConfigKey("auth.redis.type", "single", "Redis deployment: single.", parse_type),
        ConfigKey("auth.redis.server", "127.0.0.1:6379", "Redis server, host:port.",
                  lambda v: parse_server(v, DEFAULT_PORT)),
        ConfigKey("auth.redis.pool", "8", "Most connections open at once.", parse_positive_int),
        ConfigKey("auth.redis.database", "0", "Redis database number.", parse_nonnegative_int),
        ConfigKey("auth.redis.password", "", "Redis password (AUTH); empty for none.",
                  required=False),
        *common_keys("auth.redis", "Redis", hash_key="auth.redis.password_hash",
                     hash_default="plain", on_error="ignore"),
        ConfigKey("auth.redis.auth_cmd", "HMGET mqtt_user:%u password",
                  "Command giving the stored password hash (and salt); empty: no auth.",
                  parse_command, required=False),
        ConfigKey("auth.redis.super_cmd", "HGET mqtt_user:%u is_superuser",
                  "Command giving 1 for a superuser; empty: nobody is.", parse_command,
                  required=False),
        ConfigKey("auth.redis.acl_cmd", "HGETALL mqtt_acl:%u",
                  "Command giving topic filter → access pairs; empty: no ACL.", parse_command,
                  required=False),
        ConfigKey("auth.redis.ssl", "off", "TLS to Redis: on or off.", parse_switch),
        ConfigKey("auth.redis.cafile", "", "CA certificate file (TLS).", required=False),
        ConfigKey("auth.redis.certfile", "", "Client certificate file (TLS).", required=False),
        ConfigKey("auth.redis.keyfile", "", "Client key file (TLS).", required=False),
    )

    client: Redis | None = None

    @property
    def server_name(self) -> str:
        host, port = self.settings["auth.redis.server"]
        return f"{host}:{port}"

    @property
    def auth_enabled(self) -> bool:
        return bool(self.settings["auth.redis.auth_cmd"])

    @property
    def super_enabled(self) -> bool:
        return bool(self.settings["auth.redis.super_cmd"])

    @property
    def acl_enabled(self) -> bool:
        return bool(self.settings["auth.redis.acl_cmd"])

    async def open(self) -> None:
        from redis.asyncio import BlockingConnectionPool, Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        s = self.settings
        host, port = s["auth.redis.server"]
        options: dict[str, Any] = {
            "host": host, "port": port, "db": s["auth.redis.database"],
            "password": s["auth.redis.password"] or None,
            "socket_timeout": self.timeout, "socket_connect_timeout": self.timeout,
            # One try: `ask` bounds the whole call and the alarm tells about failures.
            "retry": Retry(NoBackoff(), 0),
        }
        if s["auth.redis.ssl"]:
            from redis.asyncio.connection import SSLConnection
            options |= {"connection_class": SSLConnection,
                        "ssl_ca_certs": s["auth.redis.cafile"] or None,
                        "ssl_certfile": s["auth.redis.certfile"] or None,
                        "ssl_keyfile": s["auth.redis.keyfile"] or None}
        pool = BlockingConnectionPool(max_connections=s["auth.redis.pool"],
                                      timeout=self.timeout, **options)
        self.client = Redis(connection_pool=pool)

    async def close(self) -> None:
        if self.client is not None:
            client, self.client = self.client, None
            await client.aclose(close_connection_pool=True)

    def is_connection_error(self, exc: BaseException) -> bool:
        from redis.exceptions import ConnectionError, TimeoutError

        return isinstance(exc, (OSError, ConnectionError, TimeoutError))

    async def _run(self, key: str, values: Mapping[str, str | None]) -> Any:
        assert self.client is not None
        args = [fill(arg, values) for arg in self.settings[key]]
        return await self.client.execute_command(*args)  # type: ignore[no-untyped-call]

    async def ping(self) -> None:
        assert self.client is not None
        await self.client.ping()

    async def lookup_password(self, values: Mapping[str, str | None]) -> tuple[Any, Any] | None:
        answer = await self._run("auth.redis.auth_cmd", values)
        if isinstance(answer, list):
            if not answer or answer[0] is None:
                return None
            return answer[0], answer[1] if len(answer) > 1 else None
        if answer is None:
            return None
        return answer, None

    async def lookup_superuser(self, values: Mapping[str, str | None]) -> bool:
        return truthy(await self._run("auth.redis.super_cmd", values))

    async def lookup_acl(self, client: Any, action: str, topic: str,
                         values: Mapping[str, str | None]) -> str | None:
        answer = await self._run("auth.redis.acl_cmd", values)
        if isinstance(answer, list):  # RESP2 HGETALL without the client's dict callback
            answer = dict(zip(answer[::2], answer[1::2], strict=False))
        if not answer:
            return None
        bit = 2 if action == "publish" else 1
        names = {"u": values.get("u"), "c": values.get("c")}
        for topic_filter, access in dict(answer).items():
            try:
                allowed = int(_text(access)) & bit
            except ValueError:
                continue  # not a number: this entry grants nothing
            if allowed and topic_matches(topic, fill(_text(topic_filter), names, None)):
                return "allow"
        return "deny"
