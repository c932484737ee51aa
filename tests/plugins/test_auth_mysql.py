"""emqx_auth_mysql against a real MariaDB started by the test
(mariadb-install-db + mariadbd on a free port): the cases of sql_auth_cases.py —
let in, refused, ignored, every hash form, client input kept out of the SQL,
superuser, ACL rows, the server stopped and restarted."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from db_auth_support import BAD_PASSWORD, OK, connect_rc, node_settings
from helpers.clients import uid
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


#: EMQ X v3.2's etc/plugins/emqx_auth_mysql.conf, its comments and examples
#: included; only the server, user and password are this test's.
EMQX_CONF = """\
##--------------------------------------------------------------------
## MySQL Auth/ACL Plugin
##--------------------------------------------------------------------

## MySQL server address.
auth.mysql.server = 127.0.0.1:{port}

## MySQL pool size.
auth.mysql.pool = 8

## MySQL username.
auth.mysql.username = {user}

## MySQL password.
auth.mysql.password = {password}

## MySQL database.
auth.mysql.database = mqtt

## auth.mysql.query_timeout = 5s

## Variables: %u = username, %c = clientid
auth.mysql.auth_query = select password from mqtt_user where username = '%u' limit 1
## auth.mysql.auth_query = select password_hash as password from mqtt_user where username = '%u' limit 1

## Password hash.
auth.mysql.password_hash = sha256

## sha256 with salt prefix
## auth.mysql.password_hash = salt,sha256

auth.mysql.super_query = select is_superuser from mqtt_user where username = '%u' limit 1

## Note: You can add the 'ORDER BY' statement to control the rules match order
auth.mysql.acl_query = select allow, ipaddr, username, clientid, access, topic from mqtt_acl where ipaddr = '%a' or username = '%u' or username = '$all' or clientid = '%c'
"""


def test_emqx_conf_file_at_boot(make_node: Any, tmp_path: Path, backend: SqlBackend) -> None:
    """A node started with EMQ X's conf file in plugins.etc_dir and the plugin in
    plugins.loaded asks MySQL from its first client on."""
    server = backend.server
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "emqx_auth_mysql.conf").write_text(EMQX_CONF.format(
        port=server.port, user=server.user, password=server.password))
    user = uid("boot")
    backend.add_user(user, hashlib.sha256(b"pw").hexdigest())
    node = make_node({**node_settings(tmp_path), "plugins.etc_dir": str(etc),
                      "plugins.loaded": "emqx_management,emqx_auth_mysql"})
    assert connect_rc(node, user, "pw") == OK
    assert connect_rc(node, user, "nope") == BAD_PASSWORD
