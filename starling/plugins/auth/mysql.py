"""emqx_auth_mysql: clients authenticated, made superusers and given their ACL
by SQL queries to MySQL / MariaDB (EMQ X v3.2's
``etc/plugins/emqx_auth_mysql.conf``), through an `aiomysql` pool.

The queries are EMQ X's, ``'%u'`` and the other placeholders included; each
becomes a driver parameter (`auth_common.SqlQuery`), never text spliced into
the SQL.  The connection runs in autocommit, so every query sees the table as
it is now.  Behaviour shared with the other backends: `auth_backend`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from .. import ConfigKey, parse_positive_int
from .backend import (
    SqlAuthPlugin,
    common_keys,
    parse_server,
    sql_key,
)
from .common import SqlQuery

DEFAULT_PORT = 3306
STYLE = "format"


class MysqlAuthPlugin(SqlAuthPlugin):
    PLUGIN = "emqx_auth_mysql"
    BACKEND = "mysql"
    LABEL = "MySQL"
    STYLE = STYLE
    SCHEMA = (
        ConfigKey("auth.mysql.server", "127.0.0.1:3306", "MySQL server, host:port.",
                  lambda v: parse_server(v, DEFAULT_PORT)),
        ConfigKey("auth.mysql.pool", "8", "Most connections open at once.", parse_positive_int),
        ConfigKey("auth.mysql.username", "root", "MySQL user.", required=False),
        ConfigKey("auth.mysql.password", "", "MySQL password.", required=False),
        ConfigKey("auth.mysql.database", "mqtt", "MySQL database."),
        *common_keys("auth.mysql", "MySQL", hash_key="auth.mysql.password_hash",
                     hash_default="sha256", on_error="deny"),
        sql_key("auth.mysql", "auth_query",
                "select password from mqtt_user where username = '%u' limit 1",
                "Query for the password hash (columns password and, optionally, salt); "
                "empty: no auth.", STYLE),
        sql_key("auth.mysql", "super_query",
                "select is_superuser from mqtt_user where username = '%u' limit 1",
                "Query giving 1 for a superuser; empty: nobody is.", STYLE),
        sql_key("auth.mysql", "acl_query",
                "select allow, ipaddr, username, clientid, access, topic from mqtt_acl "
                "where ipaddr = '%a' or username = '%u' or username = '$all' "
                "or clientid = '%c'",
                "Query for the ACL rows; empty: no ACL.", STYLE),
    )

    pool: Any = None

    async def open(self) -> None:
        import aiomysql

        s = self.settings
        host, port = s["auth.mysql.server"]
        # minsize 0: nothing connects here; the first query (or the probe) does.
        self.pool = await aiomysql.create_pool(
            host=host, port=port, user=s["auth.mysql.username"] or None,
            password=s["auth.mysql.password"], db=s["auth.mysql.database"],
            minsize=0, maxsize=s["auth.mysql.pool"], connect_timeout=self.timeout,
            autocommit=True, charset="utf8mb4", pool_recycle=3600)

    async def close(self) -> None:
        pool, self.pool = self.pool, None
        if pool is not None:
            pool.close()
            await pool.wait_closed()

    def is_connection_error(self, exc: BaseException) -> bool:
        import pymysql

        return isinstance(exc, (OSError, pymysql.err.OperationalError,
                                pymysql.err.InterfaceError))

    async def fetch(self, query: SqlQuery,
                    args: list[str | None]) -> tuple[list[str], list[Sequence[Any]]]:
        return await self._execute(query.sql, args)

    async def _execute(self, sql: str,
                       args: list[str | None] | None) -> tuple[list[str], list[Sequence[Any]]]:
        assert self.pool is not None
        conn = await self.pool.acquire()
        try:
            async with conn.cursor() as cursor:
                await cursor.execute(sql, args)
                rows = list(await cursor.fetchall())
                columns = [d[0] for d in cursor.description or ()]
        except BaseException:
            # Broken, or cancelled mid-reply by the timeout: never reuse it.
            with contextlib.suppress(Exception):
                conn.close()
            raise
        finally:
            self.pool.release(conn)
        return columns, rows

    async def ping(self) -> None:
        await self._execute("select 1", None)
