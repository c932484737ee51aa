"""The banned table: matching at CONNECT, expiry, enforcement callback, store hand-over."""

from __future__ import annotations

import time

import pytest

from starling.broker import Ban, Banned


def test_match_by_each_kind() -> None:
    table = Banned()
    assert table.match("c", "u", "10.0.0.1") is None
    table.add(Ban("client_id", "c1"))
    table.add(Ban("username", "bob"))
    table.add(Ban("ip_address", "10.0.0.9"))
    hit = table.match("c1", None, "1.2.3.4")
    assert hit is not None and hit.key == ("client_id", "c1")
    hit = table.match("other", "bob", "1.2.3.4")
    assert hit is not None and hit.key == ("username", "bob")
    hit = table.match("other", "alice", "10.0.0.9")
    assert hit is not None and hit.key == ("ip_address", "10.0.0.9")
    assert table.match("other", "alice", "10.0.0.8") is None
    # a client id that equals a banned user name is not banned, and vice versa
    assert table.match("bob", "c1", "1.2.3.4") is None


def test_ip_addresses_are_compared_canonically() -> None:
    table = Banned()
    table.add(Ban("ip_address", "::FFFF:10.0.0.9"))
    assert table.all()[0].who == "10.0.0.9"
    assert table.match("x", None, "10.0.0.9") is not None
    assert table.match("x", None, "::ffff:10.0.0.9") is not None
    table.add(Ban("ip_address", "2001:db8:0:0::1"))
    assert table.match("x", None, "2001:db8::1") is not None
    assert table.delete("ip_address", "2001:0db8::1") is True
    # not an address: kept as written, never matches a peer
    table.add(Ban("ip_address", "not-an-ip"))
    assert table.get("ip_address", "not-an-ip") is not None


def test_bad_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="ban kind"):
        Ban("peerhost", "x")


def test_until_in_the_past_is_ignored_and_swept() -> None:
    table = Banned()
    now = time.time()
    table.add(Ban("client_id", "old", until=now - 1))
    table.add(Ban("client_id", "soon", until=now + 100))
    table.add(Ban("client_id", "forever"))
    assert table.match("old", None, None) is None
    assert table.match("soon", None, None) is not None
    assert [b.who for b in table.all()] == ["soon", "forever"]
    assert table.sweep(now) == 1
    assert table.match("soon", None, None, now=now + 100) is None
    assert table.sweep(now + 100) == 1
    assert [b.who for b in table.all()] == ["forever"]
    assert table.sweep(now + 10**9) == 0


def test_replacing_a_ban_keeps_only_the_new_expiry() -> None:
    table = Banned()
    now = time.time()
    table.add(Ban("client_id", "c", until=now + 10))
    table.add(Ban("client_id", "c", reason="longer", until=now + 1000))
    assert table.sweep(now + 20) == 0  # the first expiry no longer applies
    ban = table.get("client_id", "c")
    assert ban is not None and ban.reason == "longer"
    table.add(Ban("client_id", "c"))  # and now never
    assert table.sweep(now + 10**6) == 0
    assert table.get("client_id", "c") is not None


def test_delete() -> None:
    table = Banned()
    table.add(Ban("username", "u"))
    assert table.delete("client_id", "u") is False
    assert table.delete("username", "u") is True
    assert table.delete("username", "u") is False
    assert table.all() == []


def test_on_ban_is_told_of_bans_in_force_only() -> None:
    seen: list[Ban] = []
    table = Banned(on_ban=seen.append)
    table.add(Ban("client_id", "a"))
    table.add(Ban("client_id", "b", until=time.time() - 5))
    assert [b.who for b in seen] == ["a"]
    assert seen[0].at > 0


def test_attach_loads_and_writes_through() -> None:
    rows: dict[str, str] = {}

    def save(table: str, key: str, value: str) -> None:
        assert table == "banned"
        rows[key] = value

    def delete(table: str, key: str) -> None:
        assert table == "banned"
        del rows[key]

    first = Banned()
    first.attach({}, save, delete)
    first.add(Ban("client_id", "c", "r", "d", "me", 4102444800))
    first.add(Ban("ip_address", "::1"))
    first.add(Ban("username", "gone", until=time.time() - 1))
    first.delete("ip_address", "::1")
    first.sweep()
    assert len(rows) == 1

    second = Banned()
    second.attach(dict(rows), save, delete)
    [ban] = second.all()
    assert (ban.kind, ban.who, ban.reason, ban.desc, ban.by, ban.until) == (
        "client_id", "c", "r", "d", "me", 4102444800)
