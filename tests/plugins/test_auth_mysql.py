"""emqx_auth_mysql against a real MariaDB started by the test
(mariadb-install-db + mariadbd on a free port): the cases of sql_auth_cases.py —
let in, refused, ignored, every hash form, client input kept out of the SQL,
superuser, ACL rows, the server stopped and restarted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from db_auth_support import node_settings
from helpers.db_servers import MariaDBServer
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

#: EMQ X's example tables (emqx_auth_mysql's mqtt.sql).
TABLES = """
CREATE TABLE mqtt_user (
  id int(11) unsigned NOT NULL AUTO_INCREMENT,
  username varchar(100) DEFAULT NULL,
  password varchar(100) DEFAULT NULL,
  salt varchar(35) DEFAULT NULL,
  is_superuser tinyint(1) DEFAULT 0,
  created datetime DEFAULT NULL,
  PRIMARY KEY (id),
  UNIQUE KEY mqtt_username (username)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE mqtt_acl (
  id int(11) unsigned NOT NULL AUTO_INCREMENT,
  allow int(1) DEFAULT 1 COMMENT '0: deny, 1: allow',
  ipaddr varchar(60) DEFAULT NULL COMMENT 'IpAddress',
  username varchar(100) DEFAULT NULL COMMENT 'Username',
  clientid varchar(100) DEFAULT NULL COMMENT 'ClientId',
  access int(2) NOT NULL COMMENT '1: subscribe, 2: publish, 3: pubsub',
  topic varchar(100) NOT NULL DEFAULT '' COMMENT 'Topic Filter',
  PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
"""


@pytest.fixture(scope="module")
def mysql_server() -> Iterator[MariaDBServer]:
    server = MariaDBServer().start()
    server.setup()
    server.sql(TABLES)
    yield server
    server.close()


@pytest.fixture
def backend(mysql_server: MariaDBServer) -> SqlBackend:
    return SqlBackend("emqx_auth_mysql", "auth.mysql", "mysql", mysql_server, "1", lambda: {
        "auth.mysql.server": f"127.0.0.1:{mysql_server.port}",
        "auth.mysql.username": mysql_server.user, "auth.mysql.password": mysql_server.password,
        "auth.mysql.database": mysql_server.database}, backslash_escapes=True)


@pytest.fixture
def node(make_node: Any, tmp_path: Path) -> Any:
    return make_node(node_settings(tmp_path))
