"""The sans-IO pieces of certificate DTLS (starling/gateways/coap/dtls_session.py):
records packed into datagrams, ClientHellos recognised, cookies that expire."""

from __future__ import annotations

from starling.gateways.coap.dtls_session import (
    COOKIE_LIFETIME,
    CookieJar,
    is_client_hello,
    pack_datagrams,
)


def record(kind: int, epoch: int, body: bytes) -> bytes:
    return bytes([kind, 0xFE, 0xFD]) + epoch.to_bytes(2, "big") + bytes(6) + \
        len(body).to_bytes(2, "big") + body


def test_records_are_packed_whole_into_datagrams_of_at_most_the_mtu() -> None:
    records = [record(22, 0, bytes([11]) + bytes(n)) for n in (500, 500, 300, 1500)]
    datagrams = pack_datagrams(b"".join(records), 1100)
    # 514 + 514 fit, 314 does not join them; the oversized record goes alone
    assert datagrams == [records[0] + records[1], records[2], records[3]]
    assert pack_datagrams(b"", 1400) == []


def test_a_client_hello_is_recognised_only_at_epoch_zero() -> None:
    hello = record(22, 0, bytes([1]) + bytes(40))
    assert is_client_hello(hello)
    assert not is_client_hello(record(22, 1, bytes([1]) + bytes(40)))  # encrypted
    assert not is_client_hello(record(22, 0, bytes([16]) + bytes(40)))  # key exchange
    assert not is_client_hello(record(23, 0, bytes([1]) + bytes(40)))  # application data
    assert not is_client_hello(b"\x16\xfe")


def test_a_cookie_is_bound_to_the_address_and_expires() -> None:
    now = [0.0]
    jar = CookieJar(lambda: now[0])
    cookie = jar.make(("192.0.2.1", 5684))
    assert jar.check(("192.0.2.1", 5684), cookie)
    assert not jar.check(("192.0.2.1", 5685), cookie)
    assert not jar.check(("192.0.2.2", 5684), cookie)
    now[0] += COOKIE_LIFETIME  # one secret later the old cookie still counts
    assert jar.check(("192.0.2.1", 5684), cookie)
    now[0] += COOKIE_LIFETIME  # two, and it does not
    assert not jar.check(("192.0.2.1", 5684), cookie)
