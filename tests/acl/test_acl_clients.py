"""ACL with real clients against a running node: the ACL file's rules for
publish and subscribe (user, client id, IP address, all; %u and %c; eq), the
default acl.conf and its $SYS rules, the internal zone, wills, MQTT 5.0 reason
codes, acl_deny_action = disconnect, the ACL cache, reloading, the explain
endpoint, and a file that does not parse."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path
from typing import Any

import pytest
from acl_support import (
    API_SETTINGS,
    INTERNAL,
    Client,
    Observer,
    Raw5,
    api,
    client,
    metric,
    wait_for,
)
from helpers.clients import uid
from helpers.packets import RawClient, Will, gen_connack, gen_connect

from starling import ctl

RULES = """\
%% Starling's ACL suite
{allow, {user, "admin"}, pubsub, ["#"]}.
{deny, {client, "blocked"}, publish, ["open/#", "ip/#"]}.
{allow, {user, "alice"}, subscribe, ["alice/#"]}.
{allow, all, pubsub, ["users/%u/#", "clients/%c/#"]}.
{deny, all, subscribe, ["$SYS/#", {eq, "#"}]}.
{allow, {ipaddr, "127.0.0.2"}, publish, ["ip/#"]}.
{allow, all, subscribe, ["open/#", "ip/#", "secret/#", "a/#"]}.
{allow, all, publish, ["open/#", "marker/#"]}.
{deny, all}.
"""


def write_atomic(path: Path, text: str) -> None:
    """As an editor saves: a new file renamed over the old one (never half-written)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, "utf-8")
    os.replace(tmp, path)


def acl_node(make_node: Any, tmp_path: Path, rules: str = RULES, **settings: str) -> Any:
    path = tmp_path / "acl.conf"
    path.write_text(rules, "utf-8")
    return make_node({**API_SETTINGS, **INTERNAL, "acl_file": str(path),
                      "acl_file_check_interval": "0", **settings})


@pytest.fixture
def node(make_node: Any, tmp_path: Path) -> Any:
    return acl_node(make_node, tmp_path)


SUBSCRIBE_TABLE = [
    # (client id, user name, source address, filter, SUBACK code)
    (None, "admin", None, "#", 1),
    (None, None, None, "#", 0x80),  # {eq, "#"}
    (None, None, None, "$SYS/#", 0x80),
    (None, None, None, "$SYS/brokers/+/version", 0x80),
    (None, None, None, "open/#", 1),
    (None, None, None, "a/+", 1),  # the client's "+" matches the rule's "a/#"
    (None, None, None, "b/#", 0x80),  # {deny, all}
    (None, None, None, "$share/g/open/x", 1),  # checked by the real filter
    (None, None, None, "$share/g/#", 0x80),
    (None, "alice", None, "alice/#", 1),
    (None, "bob", None, "alice/#", 0x80),
    (None, "bob", None, "users/bob/#", 1),  # %u
    (None, "bob", None, "users/carol/#", 0x80),
    (None, None, None, "users/%u/x", 1),  # no user name: %u stays as written
    ("cid-7", None, None, "clients/cid-7/+", 1),  # %c
    ("cid-7", None, None, "clients/cid-8/+", 0x80),
]


def test_subscribe_allow_and_deny(node: Any) -> None:
    for client_id, username, source, topic_filter, code in SUBSCRIBE_TABLE:
        with client(node, client_id=client_id or uid("c"), username=username,
                    source=source) as c:
            assert c.subscribe(topic_filter, 1) == [code], (client_id, username, topic_filter)


PUBLISH_TABLE = [
    # (client id, user name, source address, topic, delivered)
    (None, None, None, "open/x", True),
    (None, None, None, "secret/x", False),
    (None, "admin", None, "secret/x", True),
    ("blocked", None, None, "open/x", False),  # {client, "blocked"}
    ("blocked", "admin", None, "open/x", True),  # ... but the admin rule comes first
    (None, "bob", None, "users/bob/x", True),
    (None, "bob", None, "users/carol/x", False),
    ("cid-7", None, None, "clients/cid-7/x", True),
    (None, None, "127.0.0.2", "ip/x", True),  # {ipaddr, "127.0.0.2"}
    (None, None, None, "ip/x", False),  # from 127.0.0.1
]


@pytest.mark.parametrize("qos", [0, 1])
def test_publish_allow_and_deny(node: Any, qos: int) -> None:
    observer = Observer(node)
    try:
        for client_id, username, source, topic, delivered in PUBLISH_TABLE:
            cid = client_id or uid("c")
            with client(node, client_id=cid, username=username, source=source) as c:
                # MQTT 3.1.1: a refused QoS 1 PUBLISH is acknowledged as usual, and dropped
                assert observer.delivered(c, topic, qos) is delivered, (cid, username, topic)
                assert c.is_connected()
    finally:
        observer.close()
    assert metric(node, "client/acl/deny") >= 4
    assert metric(node, "packets/publish/auth_error") >= 4


def test_internal_zone_is_not_checked(node: Any) -> None:
    observer = Observer(node)  # itself subscribed to "#" on the internal listener
    try:
        with client(node, listener="mqtt:tcp:internal") as c:
            assert c.subscribe("$SYS/#", 0) == [0]
            assert observer.delivered(c, "secret/internal", 1)
    finally:
        observer.close()


def test_will_topic_is_checked_at_connect(node: Any) -> None:
    with RawClient(*node.listeners["mqtt:tcp:default"]) as raw:
        raw.send(gen_connect(uid("will"), will=Will("secret/will", b"bye")))
        raw.expect_packet(gen_connack(5))  # not authorized (EMQ X's check_will_acl)
    accepted = Client(node, uid("will"))
    accepted.will_set("open/will", b"bye")
    try:
        accepted.connect()
    finally:
        accepted.close()
    with Raw5(node, will_topic="secret/will") as c:
        assert c.connack_code == 0x87


def test_mqtt5_reason_codes(node: Any) -> None:
    observer = Observer(node)
    try:
        with Raw5(node) as c:
            assert c.connack_code == 0
            assert c.subscribe("#", "open/none", "$SYS/#") == [0x87, 1, 0x87]
            assert c.publish("secret/x", 1, packet_id=1) == 0x87  # PUBACK Not authorized
            assert c.publish("secret/x", 2, packet_id=2) == 0x87  # PUBREC Not authorized
            assert c.publish("open/v5", 1, packet_id=3) == 0
            assert observer.client.get(5.0).topic == "open/v5"  # the refused ones never came
    finally:
        observer.close()


def test_default_acl_file_and_sys_rules(make_node: Any) -> None:
    """No acl_file: EMQ X's default rules, written into the data dir."""
    node = make_node({**API_SETTINGS})
    text = (node.data_dir / "acl.conf").read_text("utf-8")
    assert '{deny, all, subscribe, ["$SYS/#", {eq, "#"}]}.' in text
    remote = {"source": "127.0.0.2"}  # not 127.0.0.1: rule 2 does not apply
    for username, extra, topic_filter, code in [
        (None, remote, "$SYS/#", 0x80),
        (None, remote, "#", 0x80),
        (None, remote, "a/#", 0),
        (None, remote, "+/b", 0),
        ("dashboard", remote, "$SYS/#", 0),
        ("dashboard", remote, "#", 0x80),
        (None, {}, "#", 0),  # 127.0.0.1 may
        (None, {}, "$SYS/#", 0),
    ]:
        with client(node, username=username, **extra) as c:
            assert c.subscribe(topic_filter, 0) == [code], (username, extra, topic_filter)
    with client(node, source="127.0.0.2") as c:
        c.publish("anything/goes", b"", 1)  # {allow, all}


def test_deny_action_disconnect(make_node: Any, tmp_path: Path) -> None:
    node = acl_node(make_node, tmp_path, '{deny, all, pubsub, ["secret/#"]}.\n{allow, all}.\n',
                    acl_deny_action="disconnect")
    with client(node) as c:
        c.publish("open/x", b"", 1)
        c.client.publish("secret/x", b"", 0)
        c.wait_disconnected()
    with client(node) as c:
        assert c.subscribe([("open/x", 1), ("secret/x", 1)]) == [1, 0x80]  # SUBACK, then closed
        c.wait_disconnected()
    with Raw5(node) as c:
        assert c.publish("secret/x", 1) == 0x87
        assert c.expect_disconnect() == 0x87
    with Raw5(node) as c:
        assert c.subscribe("secret/#") == [0x87]
        assert c.expect_disconnect() == 0x87


def test_file_change_is_picked_up_and_clears_the_cache(make_node: Any, tmp_path: Path) -> None:
    node = acl_node(make_node, tmp_path, "{allow, all}.\n", acl_file_check_interval="100ms")
    path = Path(tmp_path / "acl.conf")
    observer = Observer(node)
    try:
        with client(node) as c:
            assert observer.delivered(c, "t/1", 1)  # allowed, and now cached
            write_atomic(path, '{deny, all, publish, ["t/#"]}.\n{allow, all}.\n')
            with api(node) as http:
                wait_for(lambda: len(http.get("/acl/").json()["data"]["rules"]) == 2,
                         "the changed file to be loaded")
            assert not observer.delivered(c, "t/1", 1)  # the cached "allow" is gone

            # a broken file: refused with its line and column, the rules in force stay
            write_atomic(path, '{deny, all, publish, ["t/#"]}.\n{allow, all\n')
            with api(node) as http:
                status = wait_for(lambda: http.get("/acl/").json()["data"]["last_error"],
                                  "the broken file to be reported")
                assert f"{path}:2:1:" in status
                resp = http.put("/acl/reload")
                assert resp.status_code == 400
                assert resp.json()["code"] == 102
                assert f"{path}:2:1:" in resp.json()["message"]
            assert not observer.delivered(c, "t/1", 0)
            node.wait_log(r"ACL file not loaded: .*acl\.conf:2:1:")

            write_atomic(path, "{allow, all}.\n")
            with api(node) as http:
                resp = http.put("/acl/reload")
                assert resp.json() == {"code": 0, "data": {"file": str(path), "rules": 1}}
                assert http.get("/acl/").json()["data"]["last_error"] is None
            assert observer.delivered(c, "t/1", 1)
    finally:
        observer.close()


def test_cache_size(make_node: Any, tmp_path: Path) -> None:
    node = acl_node(make_node, tmp_path, "{allow, all}.\n", acl_cache_max_size="2")
    with client(node) as c:
        for topic in ("a", "a", "b", "c"):  # three topics, room for two: "a" goes
            c.publish(topic, b"", 1)
        assert metric(node, "client/acl/cache_hit") == 1
        c.publish("a", b"", 1)
        assert metric(node, "client/acl/cache_hit") == 1
        c.publish("c", b"", 1)
        assert metric(node, "client/acl/cache_hit") == 2
    assert metric(node, "client/acl/allow") == 6  # cached or not, each is a decision


def test_cache_ttl(make_node: Any, tmp_path: Path) -> None:
    node = acl_node(make_node, tmp_path, "{allow, all}.\n", acl_cache_ttl="200ms")
    with client(node) as c:
        c.publish("a", b"", 1)
        time.sleep(0.3)  # past the TTL
        c.publish("a", b"", 1)
    assert metric(node, "client/acl/cache_hit") == 0
    assert metric(node, "client/acl/allow") == 2


def test_cache_off(make_node: Any, tmp_path: Path) -> None:
    node = acl_node(make_node, tmp_path, "{allow, all}.\n", enable_acl_cache="false")
    with client(node) as c:
        for _ in range(3):
            c.publish("a", b"", 1)
    assert metric(node, "client/acl/cache_hit") == 0
    assert metric(node, "client/acl/allow") == 3


def test_explain(node: Any) -> None:
    path = str(Path(node.data_dir).parent / "acl.conf")
    with api(node) as http:
        def explain(**params: str) -> dict[str, Any]:
            body = http.get("/acl/explain", params=params).json()
            assert body["code"] == 0, body
            return dict(body["data"])

        data = explain(topic="#", action="subscribe")
        assert (data["decision"], data["source"]) == ("deny", "rule")
        assert data["rule"] == {"file": path, "line": 6, "permission": "deny",
                                "rule": '{deny, all, subscribe, ["$SYS/#", {eq, "#"}]}.',
                                "topic": "#", "topic_match": "eq"}
        assert "acl.conf:6" in data["reason"]
        assert data["chain"][-1]["plugin"] == "emqx_mod_acl_internal"

        data = explain(topic="users/bob/inbox", action="publish", username="bob")
        assert (data["decision"], data["rule"]["line"]) == ("allow", 5)
        assert data["rule"]["topic_match"] == "pattern"

        data = explain(topic="ip/x", action="publish", ipaddr="127.0.0.2")
        assert (data["decision"], data["rule"]["line"]) == ("allow", 7)
        data = explain(topic="ip/x", action="publish", ipaddr="127.0.0.1")
        assert (data["decision"], data["rule"]["line"]) == ("deny", 10)

        data = explain(topic="open/x", action="publish", client_id="blocked")
        assert (data["decision"], data["rule"]["line"]) == ("deny", 3)
        data = explain(topic="$share/g/#", action="subscribe")
        assert (data["decision"], data["checked_topic"]) == ("deny", "#")

        data = explain(topic="secret/x", action="publish", zone="internal")
        assert (data["decision"], data["source"], data["rule"]) == ("allow", "zone", None)
        data = explain(topic="secret/x", action="publish", superuser="true")
        assert (data["decision"], data["source"]) == ("allow", "superuser")

        status = http.get("/acl/").json()["data"]
        assert status["file"] == path
        assert [r["line"] for r in status["rules"]] == list(range(2, 11))
        assert status["acl_nomatch"] == "allow"
        assert status["zones_without_acl"] == ["internal"]

        for params, code in [
            ({}, 107),
            ({"action": "publish"}, 107),
            ({"topic": "a"}, 107),
            ({"topic": "a", "action": "read"}, 108),
            ({"topic": "a/#", "action": "publish"}, 108),
            ({"topic": "a/#/b", "action": "subscribe"}, 108),
            ({"topic": "a", "action": "publish", "ipaddr": "nowhere"}, 108),
            ({"topic": "a", "action": "publish", "superuser": "maybe"}, 108),
        ]:
            resp = http.get("/acl/explain", params=params)
            assert (resp.status_code, resp.json()["code"]) == (400, code), (params, resp.text)


def test_explain_acl_nomatch(make_node: Any, tmp_path: Path) -> None:
    node = acl_node(make_node, tmp_path, '{allow, all, publish, ["a"]}.\n', acl_nomatch="deny")
    with api(node) as http:
        data = http.get("/acl/explain", params={"topic": "b", "action": "publish"}).json()["data"]
    assert (data["decision"], data["source"], data["acl_nomatch"]) == ("deny", "acl_nomatch",
                                                                       "deny")
    with client(node) as c:
        c.publish("b", b"", 1)
    assert metric(node, "client/acl/deny") == 1


def test_a_bad_file_refuses_to_start(make_node: Any, tmp_path: Path) -> None:
    path = tmp_path / "acl.conf"
    path.write_text('{allow, all}.\n{allow, {user, "x"}, publsh, ["a"]}.\n', "utf-8")
    with pytest.raises(RuntimeError) as info:
        make_node({"acl_file": str(path)})
    assert f"{path}:2:22: access is publish, subscribe or pubsub" in str(info.value)
    with pytest.raises(RuntimeError) as info:
        make_node({"acl_file": str(tmp_path / "absent.conf")})
    assert "cannot read the ACL file" in str(info.value)


def test_ctl_acl(node: Any) -> None:
    host, port = node.listeners["http:management"]

    def ctl_acl(*args: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        status = ctl.main(["--url", f"http://{host}:{port}", "--app-id", "admin", "--secret",
                           "test-secret", "acl", *args], stdout=out, stderr=err)
        return status, out.getvalue(), err.getvalue()

    status, out, _ = ctl_acl()
    assert status == 0
    assert '{deny, all, subscribe, ["$SYS/#", {eq, "#"}]}.' in out and "acl_nomatch" in out
    status, out, _ = ctl_acl("explain", "subscribe", "#")
    assert status == 0 and out.startswith("deny: ") and "acl.conf:6" in out
    status, out, _ = ctl_acl("explain", "publish", "users/bob/x", "--username", "bob")
    assert status == 0 and out.startswith("allow: ")
    status, out, _ = ctl_acl("reload")
    assert (status, out.strip()) == (0, f"ACL file {node.data_dir.parent / 'acl.conf'} "
                                        "reloaded: 9 rules.")
    (node.data_dir.parent / "acl.conf").write_text("{allow, all\n", "utf-8")
    status, _, err = ctl_acl("reload")
    assert status == 1 and "acl.conf:1:1:" in err
    status, _, err = ctl_acl("explain", "publish")
    assert status == 2 and "topic" in err
