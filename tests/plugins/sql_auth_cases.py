"""Test cases shared by emqx_auth_mysql and emqx_auth_pgsql: each test module
defines a `backend` fixture (a `SqlBackend` over its real server, EMQ X's
example tables made) and imports these functions, so both plugins are held to
the same behaviour."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import bcrypt
import pytest
from db_auth_support import (
    BAD_PASSWORD,
    NOT_AUTHORIZED,
    OK,
    SUB_FAILED,
    alarms,
    configure,
    connect_rc,
    connected,
    metrics,
    publish_reaches,
    suback,
    wait_alarm,
)
from helpers.clients import uid

ACL_QUERY = ("select allow, ipaddr, username, clientid, access, topic from mqtt_acl "
             "where ipaddr = '%a' or username = '%u' or username = '$all' or clientid = '%c' "
             "order by id")


@dataclass
class SqlBackend:
    plugin: str
    prefix: str  #: auth.mysql
    metric: str  #: mysql
    server: Any  #: MariaDBServer / PostgresServer
    true: str  #: the SQL literal of is_superuser = yes
    #: The plugin's connection keys for `server`.
    connection: Callable[[], dict[str, str]]
    #: Whether a backslash escapes in a string literal (MySQL) or not (PostgreSQL).
    backslash_escapes: bool = False

    @property
    def alarm(self) -> str:
        return f"{self.plugin}_server_down"

    def config(self, **extra: str) -> dict[str, str]:
        return {**self.connection(), f"{self.prefix}.password_hash": "sha256",
                f"{self.prefix}.query_timeout": "3s", f"{self.prefix}.on_error": "ignore",
                f"{self.prefix}.acl_query": ACL_QUERY,
                **{f"{self.prefix}.{k}": v for k, v in extra.items()}}

    def add_user(self, username: str, password: str, salt: str | None = None,
                 superuser: bool = False) -> None:
        self.server.sql(
            "insert into mqtt_user (username, password, salt, is_superuser) values "
            f"({self.quote(username)}, {self.quote(password)}, {self.quote(salt)}, "
            f"{self.true if superuser else 'false'})")

    def add_acl(self, allow: int, ipaddr: str | None, username: str | None,
                clientid: str | None, access: int, topic: str) -> None:
        self.server.sql(
            "insert into mqtt_acl (allow, ipaddr, username, clientid, access, topic) values "
            f"({allow}, {self.quote(ipaddr)}, {self.quote(username)}, "
            f"{self.quote(clientid)}, {access}, {self.quote(topic)})")

    def quote(self, value: str | None) -> str:
        """A SQL literal for the test's own setup statements."""
        if value is None:
            return "NULL"
        if self.backslash_escapes:
            value = value.replace("\\", "\\\\")
        return "'" + value.replace("'", "''") + "'"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_let_in_refused_and_ignored(node: Any, backend: SqlBackend) -> None:
    user = uid("u")
    backend.add_user(user, sha256("pw-1"))
    configure(node, backend.plugin, backend.config())
    before = metrics(node)
    assert connect_rc(node, user, "pw-1") == OK
    assert connect_rc(node, user, "pw-2") == BAD_PASSWORD
    assert connect_rc(node, user, None) == BAD_PASSWORD
    assert connect_rc(node, uid("nobody"), "x") == OK  # no row: ignored, anonymous allowed
    after = metrics(node)
    for outcome, moved in (("success", 1), ("failure", 2), ("ignore", 1)):
        key = f"auth/{backend.metric}/{outcome}"
        assert after[key] - before[key] == moved, key


def test_client_input_is_never_sql(node: Any, backend: SqlBackend) -> None:
    """Quotes and % in a user name are data: bound parameters, not SQL text."""
    tricky = "o'brien %u \\' --"
    backend.add_user(tricky, sha256("pw"))
    configure(node, backend.plugin, backend.config())
    assert connect_rc(node, tricky, "pw") == OK
    assert connect_rc(node, tricky, "nope") == BAD_PASSWORD
    # the classic injection finds no row (ignored), instead of the first user's row
    assert connect_rc(node, "x' or '1'='1", "pw") == OK
    before = metrics(node)[f"auth/{backend.metric}/ignore"]
    assert connect_rc(node, "x' or '1'='1", "pw") == OK
    assert metrics(node)[f"auth/{backend.metric}/ignore"] == before + 1


@pytest.mark.parametrize("hash_type", ["plain", "md5", "sha", "salt,sha256",
                                       "sha256,salt", "salt,md5", "bcrypt", "salt,bcrypt",
                                       "pbkdf2,sha256,1000,20"])
def test_hash_types(node: Any, backend: SqlBackend, hash_type: str) -> None:
    user, password, salt = uid("h"), "s3cret", "NaCl"
    digests = {"md5": hashlib.md5, "sha": hashlib.sha1, "sha512": hashlib.sha512,
               "sha256": hashlib.sha256}
    if hash_type == "plain":
        stored = password
    elif hash_type in digests:
        stored = digests[hash_type](password.encode()).hexdigest()
    elif hash_type.startswith("salt,") and hash_type != "salt,bcrypt":
        stored = digests[hash_type[5:]]((salt + password).encode()).hexdigest()
    elif hash_type == "sha256,salt":
        stored = hashlib.sha256((password + salt).encode()).hexdigest()
    elif hash_type == "salt,bcrypt":
        salt = bcrypt.gensalt(4).decode()
        stored = bcrypt.hashpw(password.encode(), salt.encode()).decode()
    elif hash_type == "bcrypt":
        stored = bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()
    else:
        stored = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), 1000,
                                     20).hex()
    backend.add_user(user, stored, salt)
    configure(node, backend.plugin, backend.config(
        password_hash=hash_type,
        auth_query="select password, salt from mqtt_user where username = '%u' limit 1"))
    assert connect_rc(node, user, password) == OK
    assert connect_rc(node, user, password + "x") == BAD_PASSWORD


def test_superuser_passes_the_acl(node: Any, backend: SqlBackend) -> None:
    boss, worker = uid("boss"), uid("worker")
    backend.add_user(boss, sha256("b"), superuser=True)
    backend.add_user(worker, sha256("w"))
    configure(node, backend.plugin, backend.config())
    with connected(node, boss, "b") as client:
        assert suback(client, "secret/topic") == 1  # the ACL file denies it to others
    with connected(node, worker, "w") as client:
        assert suback(client, "secret/topic") == SUB_FAILED


def test_acl_rows_allow_and_deny(node: Any, backend: SqlBackend) -> None:
    boss, user, client_id = uid("boss"), uid("user"), uid("cid")
    backend.add_user(boss, sha256("b"), superuser=True)
    backend.add_user(user, sha256("u"))
    backend.add_acl(1, None, user, None, 1, "room/%u/#")  # subscribe, user placeholder
    backend.add_acl(0, None, user, None, 3, "room/+/private")  # deny both, after the above
    backend.add_acl(1, None, None, client_id, 2, "dev/%c")  # publish, by client id
    backend.add_acl(1, "127.0.0.1", user, None, 3, "eq lit/#")  # exact topic, ip and user
    backend.add_acl(0, None, "$all", None, 1, "open/denied")  # everybody
    backend.add_acl(1, None, uid("other"), None, 3, "#")  # another user's rule
    backend.add_acl(1, None, user, None, 2, "pub/%u")  # publish only
    configure(node, backend.plugin, backend.config())
    with connected(node, boss, "b") as root, \
            connected(node, user, "u", client_id=client_id) as client:
        assert root.subscribe("#", qos=1) == [1]  # the watcher
        assert suback(client, f"room/{user}/a") == 1
        assert suback(client, f"room/{user}/private") == 1  # the first matching row wins
        assert suback(client, "room/else/private") == SUB_FAILED  # denied by row 2
        assert suback(client, "lit/#") == 1  # eq: the text itself
        assert suback(client, "lit/x") == SUB_FAILED  # not that text: the file denies
        assert suback(client, "open/denied") == SUB_FAILED  # $all row beats the file
        assert suback(client, "open/fine") == 1  # no row matches: the file's rule
        control = f"dev/{client_id}"
        assert suback(client, f"pub/{user}") == SUB_FAILED
        assert publish_reaches(client, root, f"pub/{user}", control)
        assert not publish_reaches(client, root, f"room/{user}/a", control)
        assert not publish_reaches(client, root, "room/else/private", control)


def test_server_going_away(node: Any, backend: SqlBackend) -> None:
    user = uid("u")
    backend.add_user(user, sha256("pw"))
    backend.add_acl(1, None, user, None, 1, "mine/#")
    configure(node, backend.plugin, backend.config())
    assert connect_rc(node, user, "pw") == OK
    assert backend.alarm not in alarms(node)
    with connected(node, user, "pw") as client:
        assert suback(client, "mine/x") == 1
        backend.server.stop()
        try:
            # ignore: the next source decides (the node lets anonymous in; the
            # ACL file allows open/# and nothing else)
            assert connect_rc(node, user, "wrong") == OK
            wait_alarm(node, backend.alarm)
            assert f"127.0.0.1:{backend.server.port}" in alarms(node)[backend.alarm]
            assert backend.server.password not in alarms(node)[backend.alarm]
            assert suback(client, "open/x") == 1
            assert suback(client, "mine/x") == SUB_FAILED
            # deny: CONNECT refused as not authorized, ACL denied
            configure(node, backend.plugin, backend.config(on_error="deny"))
            assert connect_rc(node, user, "pw") == NOT_AUTHORIZED
            assert suback(client, "open/x") == SUB_FAILED
            wait_alarm(node, backend.alarm)
        finally:
            backend.server.start()
        wait_alarm(node, backend.alarm, present=False)
        assert suback(client, "mine/x") == 1
    assert connect_rc(node, user, "pw") == OK
    assert connect_rc(node, user, "wrong") == BAD_PASSWORD
