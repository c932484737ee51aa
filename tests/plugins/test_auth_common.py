"""The pieces the database auth plugins share (starling/plugins/auth/common.py):
EMQ X queries turned into driver parameters, emqx_passwd's hash forms checked
against digests computed here independently, placeholders, and mqtt_acl rows
turned into ACL rules."""

from __future__ import annotations

import hashlib

import bcrypt
import pytest

from starling.broker import AclSubject
from starling.plugins.auth.common import (
    SqlQuery,
    compile_acl_row,
    fill,
    placeholder_values,
)
from starling.plugins.auth.passwords import parse_password_hash

EMQX_AUTH = "select password from mqtt_user where username = '%u' limit 1"
EMQX_ACL = ("select allow, ipaddr, username, clientid, access, topic from mqtt_acl "
            "where ipaddr = '%a' or username = '%u' or username = '$all' or clientid = '%c'")


def test_emqx_queries_become_parameters() -> None:
    mysql = SqlQuery.parse(EMQX_AUTH, "format")
    assert mysql.sql == "select password from mqtt_user where username = %s limit 1"
    assert mysql.params == ("u",)
    pg = SqlQuery.parse(EMQX_ACL, "numeric")
    assert pg.sql == ("select allow, ipaddr, username, clientid, access, topic from mqtt_acl "
                      "where ipaddr = $1 or username = $2 or username = '$all' or clientid = $3")
    assert pg.params == ("a", "u", "c")
    assert pg.args({"a": "10.0.0.1", "u": None, "c": "x"}) == ["10.0.0.1", None, "x"]


def test_other_percent_signs_and_literals_stay_as_written() -> None:
    query = SqlQuery.parse("select 1 from t where a like 'x%' and b = '%user' and c = %c "
                           "and d = 'it''s %u' and e = \"%u\"", "format")
    # MySQL drivers format with %: a literal % is doubled; only the bare %c binds
    assert query.sql == ("select 1 from t where a like 'x%%' and b = '%%user' and c = %s "
                         "and d = 'it''s %%u' and e = \"%%u\"")
    assert query.params == ("c",)
    pg = SqlQuery.parse("select 1 where a like 'x%' and b = '%u'", "numeric")
    assert pg.sql == "select 1 where a like 'x%' and b = $1"


def test_placeholders() -> None:
    client = AclSubject(client_id="dev-1", username="alice", peerhost="10.0.0.1")
    values = placeholder_values(client, "publish", "a/b")
    assert values["u"] == "alice" and values["c"] == "dev-1" and values["a"] == "10.0.0.1"
    assert values["A"] == "2" and values["t"] == "a/b" and values["m"] == ""
    assert placeholder_values(client, "subscribe")["A"] == "1"
    assert fill("HMGET mqtt_user:%u password", values) == "HMGET mqtt_user:alice password"
    nobody = placeholder_values(AclSubject(client_id="c"))
    assert fill("user:%u", nobody) == "user:"
    assert fill("t/%u/%c", nobody, None) == "t/%u/c"  # unknown: left as written (topics)


def _hex(name: str, data: bytes) -> str:
    return hashlib.new(name, data).hexdigest()


@pytest.mark.parametrize(("spec", "stored", "salt"), [
    ("plain", "pw", None),
    ("md5", _hex("md5", b"pw"), None),
    ("sha", _hex("sha1", b"pw"), None),
    ("sha256", _hex("sha256", b"pw"), None),
    ("sha512", _hex("sha512", b"pw"), None),
    ("sha256", _hex("sha256", b"pw").upper(), None),  # hex compares in any case
    ("salt,sha256", _hex("sha256", b"NaClpw"), "NaCl"),
    ("sha256,salt", _hex("sha256", b"pwNaCl"), "NaCl"),
    ("salt,md5", _hex("md5", b"NaClpw"), "NaCl"),
    ("pbkdf2,sha512,10,32", hashlib.pbkdf2_hmac("sha512", b"pw", b"NaCl", 10, 32).hex(),
     "NaCl"),
])
def test_hashes(spec: str, stored: str, salt: str | None) -> None:
    kind = parse_password_hash(spec)
    assert kind.check(stored, b"pw", salt)
    assert not kind.check(stored, b"pw2", salt)
    assert not kind.check(None, b"pw", salt)


def test_bcrypt_forms() -> None:
    stored = bcrypt.hashpw(b"pw", bcrypt.gensalt(4))
    assert parse_password_hash("bcrypt").check(stored.decode(), b"pw")
    assert not parse_password_hash("bcrypt").check(stored.decode(), b"px")
    assert not parse_password_hash("bcrypt").check("not-a-bcrypt-hash", b"pw")
    salt = bcrypt.gensalt(4)
    salted = bcrypt.hashpw(b"pw", salt).decode()
    assert parse_password_hash("salt,bcrypt").check(salted, b"pw", salt.decode())
    assert not parse_password_hash("salt,bcrypt").check(salted, b"pw", "bad salt")


@pytest.mark.parametrize("value", ["sha3", "salt", "salt,plain", "pbkdf2",
                                   "pbkdf2,sha256,0,20", "sha256,pepper", ""])
def test_bad_hash_names(value: str) -> None:
    with pytest.raises(ValueError):
        parse_password_hash(value)


def test_acl_rows() -> None:
    alice = AclSubject(client_id="dev-1", username="alice", peerhost="10.1.2.3")
    bob = AclSubject(client_id="dev-2", username="bob", peerhost="192.168.0.1")
    rule = compile_acl_row((1, None, "alice", None, 3, "room/%u/#"))
    assert rule.match(alice, "publish", "room/alice/x")
    assert not rule.match(alice, "publish", "room/bob/x")
    assert not rule.match(bob, "publish", "room/bob/x")
    everyone = compile_acl_row((0, None, "$all", None, 1, "eq a/#"))
    assert everyone.permission == "deny"
    assert everyone.match(bob, "subscribe", "a/#") and not everyone.match(bob, "subscribe", "a/b")
    assert not everyone.match(bob, "publish", "a/#")
    both = compile_acl_row((b"1", "10.0.0.0/8", "alice", "dev-1", b"2", "t"))
    assert both.match(alice, "publish", "t")
    assert not both.match(AclSubject(client_id="dev-1", username="alice", peerhost="11.0.0.1"),
                          "publish", "t")
    for bad in [(1, None, None, None, 1, "t"), (2, None, "a", None, 1, "t"),
                (1, None, "a", None, 4, "t"), (1, "not-an-ip", "a", None, 1, "t"),
                (1, None, "a", None, 1, None)]:
        with pytest.raises(ValueError):
            compile_acl_row(bad)


def test_backslashes_in_literals() -> None:
    """MySQL: a backslash escapes the quote; PostgreSQL: it is a plain character."""
    mysql = SqlQuery.parse(r"select 1 where a = 'x\' %u' and b = '%c'", "format")
    assert mysql.params == ("c",)
    pg = SqlQuery.parse(r"select 1 where a = 'C:\' and b = '%u'", "numeric")
    assert pg.sql == r"select 1 where a = 'C:\' and b = $1"
    assert pg.params == ("u",)
