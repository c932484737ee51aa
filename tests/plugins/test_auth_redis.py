"""emqx_auth_redis against a real redis-server started by the test: real paho
clients let in, refused and ignored by EMQ X's default commands, salted and
bcrypt hashes, a superuser (who passes the node's deny-all ACL file), Redis ACL
entries allowing and denying, and the server stopped mid-test: requests
answered by ``on_error`` (ignore or deny), the ``emqx_auth_redis_server_down``
alarm raised, then cleared and clients let in again once it is back."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
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
    node_settings,
    publish_reaches,
    suback,
    unload,
    wait_alarm,
)
from helpers.clients import uid
from helpers.db_servers import RedisServer

pytestmark = pytest.mark.needs_server

PLUGIN = "emqx_auth_redis"
ALARM = "emqx_auth_redis_server_down"


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.close()


@pytest.fixture
def node(make_node: Any, tmp_path: Path) -> Any:
    return make_node(node_settings(tmp_path))


def base_config(server: RedisServer, **extra: str) -> dict[str, str]:
    return {"auth.redis.server": f"127.0.0.1:{server.port}",
            "auth.redis.password": server.password,
            "auth.redis.password_hash": "plain",
            "auth.redis.auth_cmd": "HMGET mqtt_user:%u password",
            "auth.redis.query_timeout": "5s",
            "auth.redis.on_error": "ignore", **extra}


def seed(server: RedisServer) -> None:
    """EMQ X's example data: users (plain passwords) and ACL hashes."""
    r = server.client()
    r.hset("mqtt_user:alice", mapping={"password": "alice-pw", "is_superuser": "0"})
    r.hset("mqtt_user:root", mapping={"password": "root-pw", "is_superuser": "1"})
    r.hset("mqtt_acl:alice", mapping={"alice/%c/#": "3", "in/%u": "1", "out/+": "2"})
    r.close()


@pytest.fixture
def plain(node: Any, redis_server: RedisServer) -> Any:
    seed(redis_server)
    configure(node, PLUGIN, base_config(redis_server))
    return node


def test_let_in_refused_and_ignored(plain: Any) -> None:
    before = metrics(plain)
    assert connect_rc(plain, "alice", "alice-pw") == OK
    assert connect_rc(plain, "alice", "wrong") == BAD_PASSWORD
    assert connect_rc(plain, "alice", None) == BAD_PASSWORD
    # Redis knows nobody called bob: ignored, and the node lets anonymous in.
    assert connect_rc(plain, uid("bob"), "whatever") == OK
    after = metrics(plain)
    assert after["auth/redis/success"] - before["auth/redis/success"] == 1
    assert after["auth/redis/failure"] - before["auth/redis/failure"] == 2
    assert after["auth/redis/ignore"] - before["auth/redis/ignore"] == 1


def test_user_name_is_one_argument(plain: Any, redis_server: RedisServer) -> None:
    """A user name with spaces stays inside its argument (no command injection)."""
    r = redis_server.client()
    r.hset("mqtt_user:x y", "password", "xy-pw")
    r.close()
    assert connect_rc(plain, "x y", "xy-pw") == OK
    assert connect_rc(plain, "x y", "nope") == BAD_PASSWORD


@pytest.mark.parametrize("hash_type", ["sha256", "salt,sha256", "sha256,salt", "md5", "sha512",
                                       "salt,bcrypt", "bcrypt", "pbkdf2,sha256,1000,20"])
def test_hash_types(node: Any, redis_server: RedisServer, hash_type: str) -> None:
    user, password, salt = uid("h"), "s3cret", "NaCl"
    if hash_type == "sha256":
        stored = hashlib.sha256(password.encode()).hexdigest()
    elif hash_type == "md5":
        stored = hashlib.md5(password.encode()).hexdigest()
    elif hash_type == "sha512":
        stored = hashlib.sha512(password.encode()).hexdigest()
    elif hash_type == "salt,sha256":
        stored = hashlib.sha256((salt + password).encode()).hexdigest()
    elif hash_type == "sha256,salt":
        stored = hashlib.sha256((password + salt).encode()).hexdigest()
    elif hash_type == "salt,bcrypt":
        salt = bcrypt.gensalt(4).decode()
        stored = bcrypt.hashpw(password.encode(), salt.encode()).decode()
    elif hash_type == "bcrypt":
        stored = bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()
    else:
        stored = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), 1000, 20).hex()
    r = redis_server.client()
    r.hset(f"mqtt_user:{user}", mapping={"password": stored, "salt": salt})
    r.close()
    configure(node, PLUGIN, base_config(
        redis_server, **{"auth.redis.password_hash": hash_type,
                         "auth.redis.auth_cmd": "HMGET mqtt_user:%u password salt"}))
    assert connect_rc(node, user, password) == OK
    assert connect_rc(node, user, password + "x") == BAD_PASSWORD


def test_superuser_passes_the_acl(plain: Any) -> None:
    """The ACL file denies everything but ``open/#``: a superuser is not asked."""
    with connected(plain, "root", "root-pw") as root:
        assert suback(root, "secret/topic") == 1
    with connected(plain, "alice", "alice-pw") as alice:
        assert suback(alice, "secret/topic") == SUB_FAILED


def test_acl_allows_and_denies(plain: Any) -> None:
    client_id = uid("alice")
    with connected(plain, "root", "root-pw") as root, \
            connected(plain, "alice", "alice-pw", client_id=client_id) as alice:
        assert root.subscribe("#", qos=1) == [1]  # the watcher
        # HGETALL mqtt_acl:alice: alice/%c/# both ways, in/%u subscribe, out/+ publish
        assert suback(alice, f"alice/{client_id}/x") == 1
        assert suback(alice, "in/alice") == 1
        assert suback(alice, "out/x") == SUB_FAILED  # publish only
        assert suback(alice, "open/x") == SUB_FAILED  # entries exist, none matches: deny
        assert suback(alice, "alice/other-client/x") == SUB_FAILED
        control = f"alice/{client_id}/control"
        assert publish_reaches(alice, root, "out/x", control)
        assert not publish_reaches(alice, root, "in/alice", control)  # subscribe only
        assert not publish_reaches(alice, root, "secret", control)


def test_no_acl_entries_leave_it_to_the_file(plain: Any, redis_server: RedisServer) -> None:
    r = redis_server.client()
    r.hset("mqtt_user:carol", "password", "carol-pw")
    r.close()
    with connected(plain, "carol", "carol-pw") as carol:
        assert suback(carol, "open/x") == 1  # the file's rule
        assert suback(carol, "secret") == SUB_FAILED


def test_unloaded_plugin_asks_nobody(plain: Any) -> None:
    unload(plain, PLUGIN)
    assert connect_rc(plain, "alice", "wrong") == OK  # nobody knows alice now: anonymous


def test_server_going_away(node: Any, redis_server: RedisServer) -> None:
    seed(redis_server)
    configure(node, PLUGIN, base_config(redis_server, **{"auth.redis.query_timeout": "2s"}))
    assert connect_rc(node, "alice", "alice-pw") == OK
    assert ALARM not in alarms(node)
    with connected(node, "alice", "alice-pw") as alice:
        assert suback(alice, "in/alice") == 1
        redis_server.stop()
        try:
            # ignore: the next source decides (the node lets anonymous in; the
            # ACL file allows open/# and nothing else)
            assert connect_rc(node, "alice", "wrong") == OK
            wait_alarm(node, ALARM)
            assert f"127.0.0.1:{redis_server.port}" in alarms(node)[ALARM]
            assert redis_server.password not in alarms(node)[ALARM]
            assert suback(alice, "open/x") == 1
            assert suback(alice, "in/alice") == SUB_FAILED
            # deny: CONNECT refused as not authorized, ACL denied
            configure(node, PLUGIN, base_config(redis_server, **{
                "auth.redis.query_timeout": "2s", "auth.redis.on_error": "deny"}))
            assert connect_rc(node, "alice", "alice-pw") == NOT_AUTHORIZED
            assert suback(alice, "open/x") == SUB_FAILED
            wait_alarm(node, ALARM)
        finally:
            redis_server.start()
        seed(redis_server)
        wait_alarm(node, ALARM, present=False)
        assert suback(alice, "in/alice") == 1
    assert connect_rc(node, "alice", "alice-pw") == OK
    assert connect_rc(node, "alice", "wrong") == BAD_PASSWORD


def test_down_at_load_then_up(node: Any, redis_server: RedisServer) -> None:
    """A plugin loaded while its server is away loads, raises the alarm, and
    starts answering once the server appears."""
    redis_server.stop()
    try:
        configure(node, PLUGIN, base_config(redis_server, **{"auth.redis.on_error": "deny",
                                                             "auth.redis.query_timeout": "2s"}))
        wait_alarm(node, ALARM)
        assert connect_rc(node, "alice", "alice-pw") == NOT_AUTHORIZED
    finally:
        redis_server.start()
    seed(redis_server)
    wait_alarm(node, ALARM, present=False)
    assert connect_rc(node, "alice", "alice-pw") == OK


def test_unload_clears_the_alarm(node: Any, redis_server: RedisServer, tmp_path: Path) -> None:
    redis_server.stop()
    try:
        configure(node, PLUGIN, base_config(redis_server, **{"auth.redis.query_timeout": "1s"}))
        wait_alarm(node, ALARM)
        unload(node, PLUGIN)
        assert ALARM not in alarms(node)
    finally:
        redis_server.start()
