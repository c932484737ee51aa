"""emqx_auth_pgsql: clients authenticated, made superusers and given their ACL
by SQL queries to PostgreSQL (EMQ X v3.2's ``etc/plugins/emqx_auth_pgsql.conf``),
through an `asyncpg` pool.

The queries are EMQ X's, ``'%u'`` and the other placeholders included; each
becomes a server-side statement parameter (``$1``, `auth_common.SqlQuery`),
never text spliced into the SQL.  Behaviour shared with the other backends:
`auth_backend`.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from typing import Any

from .. import ConfigKey, parse_positive_int, parse_switch
from .backend import (
    SqlAuthPlugin,
    common_keys,
    parse_server,
    sql_key,
)
from .common import SqlQuery

DEFAULT_PORT = 5432
STYLE = "numeric"


def parse_encoding(value: str) -> str:
    if value.strip().lower().replace("-", "") != "utf8":
        raise ValueError(f"only utf8 is supported, got {value!r}")
    return "utf8"


class PgsqlAuthPlugin(SqlAuthPlugin):
    PLUGIN = "emqx_auth_pgsql"
    BACKEND = "pgsql"
    LABEL = "PostgreSQL"
    STYLE = STYLE
    SCHEMA = (
        ConfigKey("auth.pgsql.server", "127.0.0.1:5432", "PostgreSQL server, host:port.",
                  lambda v: parse_server(v, DEFAULT_PORT)),
        ConfigKey("auth.pgsql.pool", "8", "Most connections open at once.", parse_positive_int),
        ConfigKey("auth.pgsql.username", "root", "PostgreSQL user."),
        ConfigKey("auth.pgsql.password", "", "PostgreSQL password.", required=False),
        ConfigKey("auth.pgsql.database", "mqtt", "PostgreSQL database."),
        ConfigKey("auth.pgsql.encoding", "utf8", "Client encoding (utf8).", parse_encoding),
        ConfigKey("auth.pgsql.ssl", "false", "TLS to PostgreSQL: true or false.",
                  parse_switch),
        ConfigKey("auth.pgsql.ssl_opts.keyfile", "", "Client key file (TLS).", required=False),
        ConfigKey("auth.pgsql.ssl_opts.certfile", "", "Client certificate file (TLS).",
                  required=False),
        ConfigKey("auth.pgsql.ssl_opts.cacertfile", "", "CA certificate file (TLS).",
                  required=False),
        *common_keys("auth.pgsql", "PostgreSQL", hash_key="auth.pgsql.password_hash",
                     hash_default="sha256", on_error="ignore"),
        sql_key("auth.pgsql", "auth_query",
                "select password from mqtt_user where username = '%u' limit 1",
                "Query for the password hash (columns password and, optionally, salt); "
                "empty: no auth.", STYLE),
        sql_key("auth.pgsql", "super_query",
                "select is_superuser from mqtt_user where username = '%u' limit 1",
                "Query giving true for a superuser; empty: nobody is.", STYLE),
        sql_key("auth.pgsql", "acl_query",
                "select allow, ipaddr, username, clientid, access, topic from mqtt_acl "
                "where ipaddr = '%a' or username = '%u' or username = '$all' "
                "or clientid = '%c'",
                "Query for the ACL rows; empty: no ACL.", STYLE),
    )

    pool: Any = None

    def _ssl(self) -> ssl.SSLContext | None:
        s = self.settings
        if not s["auth.pgsql.ssl"]:
            return None
        context = ssl.create_default_context(cafile=s["auth.pgsql.ssl_opts.cacertfile"] or None)
        if s["auth.pgsql.ssl_opts.certfile"]:
            context.load_cert_chain(s["auth.pgsql.ssl_opts.certfile"],
                                    s["auth.pgsql.ssl_opts.keyfile"] or None)
        return context

    async def open(self) -> None:
        import asyncpg

        s = self.settings
        host, port = s["auth.pgsql.server"]
        # min_size 0: nothing connects here; the first query (or the probe) does.
        self.pool = await asyncpg.create_pool(
            host=host, port=port, user=s["auth.pgsql.username"],
            password=s["auth.pgsql.password"] or None, database=s["auth.pgsql.database"],
            min_size=0, max_size=s["auth.pgsql.pool"], timeout=self.timeout,
            command_timeout=self.timeout, ssl=self._ssl())

    async def close(self) -> None:
        pool, self.pool = self.pool, None
        if pool is not None:
            pool.terminate()

    def is_connection_error(self, exc: BaseException) -> bool:
        from asyncpg import exceptions as pg

        return isinstance(exc, (OSError, pg.PostgresConnectionError,
                                pg.OperatorInterventionError,
                                pg.InvalidAuthorizationSpecificationError,
                                pg.InsufficientResourcesError, pg.InterfaceError))

    async def fetch(self, query: SqlQuery,
                    args: list[str | None]) -> tuple[list[str], list[Sequence[Any]]]:
        assert self.pool is not None
        rows = await self.pool.fetch(query.sql, *args)
        columns = list(rows[0].keys()) if rows else []
        return columns, [tuple(row.values()) for row in rows]

    async def ping(self) -> None:
        assert self.pool is not None
        await self.pool.fetchval("select 1")
