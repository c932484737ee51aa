"""emqx_auth_pgsql against a real PostgreSQL started by the test (initdb on a
free port; as the postgres user when run as root): the cases of
sql_auth_cases.py — let in, refused, ignored, every hash form, client input
kept out of the SQL, superuser, ACL rows, the server stopped and restarted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from db_auth_support import node_settings
from helpers.db_servers import PostgresServer
from sql_auth_cases import (  # noqa: F401  (the shared test cases)
    SqlBackend,
    test_acl_rows_allow_and_deny,
    test_client_input_is_never_sql,
    test_hash_types,
    test_let_in_refused_and_ignored,
    test_server_going_away,
    test_superuser_passes_the_acl,
)

pytestmark = pytest.mark.needs_server

#: EMQ X's example tables (emqx_auth_pgsql README).
TABLES = """
CREATE TABLE mqtt_user (
  id SERIAL primary key,
  is_superuser boolean,
  username character varying(100),
  password character varying(100),
  salt character varying(40)
);
CREATE TABLE mqtt_acl (
  id SERIAL primary key,
  allow integer,
  ipaddr character varying(60),
  username character varying(100),
  clientid character varying(100),
  access integer,
  topic character varying(100)
);
"""


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    server.sql(f"create database {server.database}", database="postgres")
    server.sql(TABLES)
    yield server
    server.close()


@pytest.fixture
def backend(pg_server: PostgresServer) -> SqlBackend:
    return SqlBackend("emqx_auth_pgsql", "auth.pgsql", "pgsql", pg_server, "true", lambda: {
        "auth.pgsql.server": f"127.0.0.1:{pg_server.port}",
        "auth.pgsql.username": pg_server.user, "auth.pgsql.password": pg_server.password,
        "auth.pgsql.database": pg_server.database})


@pytest.fixture
def node(make_node: Any, tmp_path: Path) -> Any:
    return make_node(node_settings(tmp_path))
