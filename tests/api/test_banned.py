"""/banned: EMQ X v3's shapes and errors, and real enforcement at CONNECT
(client id, user name and IP address; `until`; a ban closes a live connection)."""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from helpers.api import ok
from helpers.clients import PahoClient, uid, wait_until
from helpers.packets import (
    CONNACK_REFUSED_NOT_AUTHORIZED,
    RawClient,
    encode_string,
    fixed,
    gen_connect,
    gen_pingreq,
)

MISSING_AS = "missing mandatory params: ['as']"
BAD_AS = "value of 'as' must be one of: ['client_id', 'username', 'ip_address']"
FIELDS = {"who", "as", "reason", "desc", "by", "until"}


def error(resp: httpx.Response, status: int, code: int, message: str) -> None:
    assert resp.status_code == status, resp.text
    assert resp.json() == {"code": code, "message": message}


def bans(api: httpx.Client) -> dict[tuple[str, str], dict[str, Any]]:
    return {(b["as"], b["who"]): b for b in ok(api.get("/banned/"))}


@pytest.fixture
def banning(api: httpx.Client) -> Iterator[list[tuple[str, str]]]:
    """Bans a test makes (append (as, who)) are deleted afterwards, even on failure."""
    made: list[tuple[str, str]] = []
    yield made
    for kind, who in made:
        api.delete(f"/banned/{quote(who, safe='')}", params={"as": kind})


def ban(api: httpx.Client, made: list[tuple[str, str]], kind: str, who: str,
        **extra: Any) -> Any:
    made.append((kind, who))
    return ok(api.post("/banned/", json={"who": who, "as": kind, **extra}))


def refused(node: Any, client_id: str, username: str | None = None) -> None:
    """CONNECT (3.1.1) is answered with CONNACK 5 and the connection closed."""
    with RawClient(node.host, node.port) as c:
        c.connect(client_id, expect_rc=CONNACK_REFUSED_NOT_AUTHORIZED, username=username)
        c.expect_closed()


def accepted(node: Any, client_id: str, username: str | None = None) -> None:
    with RawClient(node.host, node.port) as c:
        c.connect(client_id, expect_rc=0, username=username)


def connect_v5(client_id: str) -> bytes:
    """A minimal MQTT 5.0 CONNECT (clean start, no properties)."""
    body = encode_string("MQTT") + bytes((5, 0x02)) + struct.pack("!H", 60) + b"\x00"
    return fixed(0x10, body + encode_string(client_id))


# -- shapes and errors ------------------------------------------------------------------

def test_create_echoes_the_params_and_lists_the_ban(api: httpx.Client,
                                                    banning: list[tuple[str, str]]) -> None:
    who = uid("mqttjs")
    params = {"who": who, "as": "client_id", "reason": "banned the clientId",
              "desc": "normal banned", "until": 4102444800}
    assert ban(api, banning, "client_id", who, **{k: v for k, v in params.items()
                                                  if k not in ("who", "as")}) == params
    item = bans(api)[("client_id", who)]
    assert set(item) == FIELDS
    assert item == {**params, "by": "undefined"}


def test_missing_fields_render_undefined(api: httpx.Client,
                                         banning: list[tuple[str, str]]) -> None:
    who = uid("u")
    assert ban(api, banning, "username", who) == {"who": who, "as": "username"}
    assert bans(api)[("username", who)] == {
        "who": who, "as": "username", "reason": "undefined", "desc": "undefined",
        "by": "undefined", "until": "undefined"}


def test_create_again_replaces(api: httpx.Client, banning: list[tuple[str, str]]) -> None:
    who = uid("c")
    ban(api, banning, "client_id", who, reason="first")
    ban(api, banning, "client_id", who, reason="second", by="ops")
    item = bans(api)[("client_id", who)]
    assert (item["reason"], item["by"]) == ("second", "ops")
    assert sum(1 for key in bans(api) if key == ("client_id", who)) == 1


def test_list_is_paginated(api: httpx.Client, banning: list[tuple[str, str]]) -> None:
    prefix = uid("page")
    for i in range(3):
        ban(api, banning, "client_id", f"{prefix}-{i}")
    body = api.get("/banned/").json()
    total = body["meta"]["count"]
    assert total == len(body["data"]) >= 3
    assert body["meta"] == {"page": 1, "limit": 10000, "count": total}
    pages = [api.get("/banned/", params={"_page": p, "_limit": 2}).json()
             for p in range(1, (total + 1) // 2 + 1)]
    assert all(p["meta"]["count"] == total and p["meta"]["limit"] == 2 for p in pages)
    seen = [(b["as"], b["who"]) for p in pages for b in p["data"]]
    assert sorted(seen) == sorted((b["as"], b["who"]) for b in body["data"])


@pytest.mark.parametrize(("body", "named"), [
    ({}, "['who', 'as']"), ({"who": "x"}, "['as']"), ({"as": "client_id"}, "['who']"),
    ({"who": "", "as": "client_id"}, "['who']")])
def test_create_without_who_or_as_names_what_is_missing(api: httpx.Client,
                                                        body: dict[str, Any],
                                                        named: str) -> None:
    error(api.post("/banned/", json=body), 400, 107, f"missing mandatory params: {named}")


@pytest.mark.parametrize("kind", ["peerhost", "clientid", "ipaddr", 1, ["client_id"]])
def test_create_with_a_bad_as(api: httpx.Client, kind: Any) -> None:
    error(api.post("/banned/", json={"who": "x", "as": kind}), 400, 108, BAD_AS)


@pytest.mark.parametrize("until", ["soon", True, {"a": 1}, 10**400, "nan", "-inf"])
def test_create_with_a_bad_until(api: httpx.Client, until: Any) -> None:
    resp = api.post("/banned/", json={"who": uid("x"), "as": "client_id", "until": until})
    assert resp.status_code == 400 and resp.json()["code"] == 108, resp.text


def test_params_may_come_in_the_query_string(api: httpx.Client,
                                             banning: list[tuple[str, str]]) -> None:
    who = uid("q")
    banning.append(("client_id", who))
    data = ok(api.post("/banned/", params={"who": who, "as": "client_id", "until": "4102444800"}))
    assert data == {"who": who, "as": "client_id", "until": "4102444800"}
    assert bans(api)[("client_id", who)]["until"] == 4102444800


def test_delete(api: httpx.Client, banning: list[tuple[str, str]]) -> None:
    who = uid("del") + "/with space"
    ban(api, banning, "client_id", who)
    assert ("client_id", who) in bans(api)
    # the wrong kind deletes nothing, and still answers code 0
    assert api.delete(f"/banned/{quote(who, safe='')}", params={"as": "username"}).json() == \
        {"code": 0}
    assert ("client_id", who) in bans(api)
    assert api.delete(f"/banned/{quote(who, safe='')}", params={"as": "client_id"}).json() == \
        {"code": 0}
    assert ("client_id", who) not in bans(api)
    # absent: still code 0
    assert api.delete(f"/banned/{quote(who, safe='')}", params={"as": "client_id"}).json() == \
        {"code": 0}


def test_delete_with_as_in_the_body(api: httpx.Client, banning: list[tuple[str, str]]) -> None:
    who = uid("body")
    ban(api, banning, "username", who)
    assert api.request("DELETE", f"/banned/{who}", json={"as": "username"}).json() == {"code": 0}
    assert ("username", who) not in bans(api)


def test_delete_errors(api: httpx.Client) -> None:
    error(api.delete("/banned/someone"), 400, 107, MISSING_AS)
    error(api.delete("/banned/someone", params={"as": "peerhost"}), 400, 108, BAD_AS)


# -- enforcement ------------------------------------------------------------------------

def test_client_id_ban_refuses_connect_until_deleted(api_node: Any, api: httpx.Client,
                                                     banning: list[tuple[str, str]]) -> None:
    who = uid("banned")
    accepted(api_node, who)
    ban(api, banning, "client_id", who)
    refused(api_node, who)
    accepted(api_node, uid("other"))  # only that client id
    with RawClient(api_node.host, api_node.port) as c:  # MQTT 5.0: reason code 0x8A Banned
        c.send(connect_v5(who))
        connack = c.read()
        assert (connack.type, connack.body[:2]) == (2, b"\x00\x8a"), connack
        c.expect_closed()
    ok(api.delete(f"/banned/{who}", params={"as": "client_id"}))
    accepted(api_node, who)


def test_username_ban(api_node: Any, api: httpx.Client,
                      banning: list[tuple[str, str]]) -> None:
    user = uid("user")
    ban(api, banning, "username", user)
    refused(api_node, uid("c"), username=user)
    accepted(api_node, uid("c"), username=uid("another"))
    accepted(api_node, user)  # a client id equal to the banned user name is not banned


def test_ip_address_ban(api_node: Any, api: httpx.Client,
                        banning: list[tuple[str, str]]) -> None:
    ban(api, banning, "ip_address", "127.0.0.1")
    refused(api_node, uid("ip"))
    ok(api.delete("/banned/127.0.0.1", params={"as": "ip_address"}))
    accepted(api_node, uid("ip"))


def test_expired_until_is_not_enforced_nor_listed(api_node: Any, api: httpx.Client,
                                                  banning: list[tuple[str, str]]) -> None:
    who = uid("past")
    ban(api, banning, "client_id", who, until=int(time.time()) - 10)
    accepted(api_node, who)
    assert ("client_id", who) not in bans(api)


def test_ban_ends_at_until(api_node: Any, api: httpx.Client,
                           banning: list[tuple[str, str]]) -> None:
    who = uid("soon")
    until = time.time() + 2
    ban(api, banning, "client_id", who, until=until)
    refused(api_node, who)

    def connects() -> bool:
        with RawClient(api_node.host, api_node.port) as c:
            c.send(gen_connect(who))
            return c.read().body == b"\x00\x00"

    wait_until(connects, timeout=10, interval=0.2, message="the ban to end")
    assert time.time() >= until - 0.5
    assert ("client_id", who) not in bans(api)


def listener_banned_count(api: httpx.Client) -> int:
    for listener in ok(api.get("/listeners/"))[0]["listeners"]:
        if listener["protocol"] == "mqtt:tcp":
            counts = listener["shutdown_count"]
            return counts.get("banned", 0) if isinstance(counts, dict) else 0
    raise AssertionError("no mqtt:tcp listener")


def test_a_ban_closes_the_live_connection(api_node: Any, api: httpx.Client,
                                          banning: list[tuple[str, str]]) -> None:
    who = uid("live")
    will_topic = f"will/{who}"
    watcher = PahoClient(api_node.host, api_node.port)
    victim = PahoClient(api_node.host, api_node.port, client_id=who)
    try:
        watcher.connect()
        watcher.subscribe(will_topic, 1)
        victim.will_set(will_topic, b"gone", qos=1)
        victim.connect()
        before = listener_banned_count(api)
        ban(api, banning, "client_id", who, reason="test")
        victim.wait_disconnected()
        assert watcher.get(topic=will_topic).payload == b"gone"  # as a kick
        wait_until(lambda: ok(api.get(f"/connections/{who}")) == [],
                   message="the connection to go")
        assert listener_banned_count(api) == before + 1
        refused(api_node, who)  # and it cannot come back
        assert listener_banned_count(api) == before + 2
    finally:
        victim.close()
        watcher.close()


@pytest.mark.parametrize("kind", ["username", "ip_address"])
def test_a_ban_by_username_or_ip_closes_live_connections(
        api_node: Any, api: httpx.Client, banning: list[tuple[str, str]], kind: str) -> None:
    user = uid("u")
    client = PahoClient(api_node.host, api_node.port)
    client.client.username_pw_set(user, "pw")
    try:
        client.connect()
        ban(api, banning, kind, user if kind == "username" else "127.0.0.1")
        client.wait_disconnected()
    finally:
        client.close()
        if kind == "ip_address":
            ok(api.delete("/banned/127.0.0.1", params={"as": "ip_address"}))


def test_mqtt5_client_is_told_why(api_node: Any, api: httpx.Client,
                                  banning: list[tuple[str, str]]) -> None:
    """MQTT 5.0: DISCONNECT with 0x98 Administrative action before the close."""
    who = uid("v5")
    with RawClient(api_node.host, api_node.port) as c:
        c.send(connect_v5(who))
        assert c.read().body[:2] == b"\x00\x00"
        c.send(gen_pingreq())  # a round trip: the connection is up
        assert c.read().type == 13
        ban(api, banning, "client_id", who)
        disconnect = c.read()
        assert (disconnect.type, disconnect.body[:1]) == (14, b"\x98"), disconnect
        c.expect_closed()
