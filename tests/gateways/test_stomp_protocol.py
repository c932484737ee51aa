"""The STOMP connection state machine, frame by frame (STOMP 1.2).

The broker side is a recording stand-in for the per-connection link; the
machine under test is the real one.  End-to-end behaviour with stomp.py and a
real broker is in test_stomp_gateway.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from starling.gateways.stomp.codec import Frame
from starling.gateways.stomp.protocol import (
    CLOSED,
    CONNECTED,
    ConnectOutcome,
    ConnectRequest,
    Outgoing,
    StompClient,
    heartbeat,
    negotiate,
)


@dataclass
class Link:
    accept: ConnectOutcome = field(default_factory=lambda: ConnectOutcome(True))
    allowed: bool = True
    grant: int | None = 1
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    async def connect(self, request: ConnectRequest) -> ConnectOutcome:
        self.calls.append(("connect", request))
        return self.accept

    async def publish(self, message: Outgoing) -> bool:
        self.calls.append(("publish", message))
        return self.allowed

    async def subscribe(self, topic_filter: str, qos: int) -> int | None:
        self.calls.append(("subscribe", topic_filter, qos))
        return None if self.grant is None else min(qos, self.grant)

    async def unsubscribe(self, topic_filter: str) -> None:
        self.calls.append(("unsubscribe", topic_filter))

    def puback(self, packet_id: int) -> None:
        self.calls.append(("puback", packet_id))

    def close(self, reason: str) -> None:
        self.calls.append(("close", reason))

    def named(self, name: str) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == name]


class Harness:
    def __init__(self, max_redeliveries: int = 3) -> None:
        self.link = Link()
        self.sent: list[Frame] = []
        self.closed: list[StompClient] = []
        self.client = StompClient(self.link, self.sent.append, self.closed.append,
                                  client_id="stomp-test", max_redeliveries=max_redeliveries)

    def feed(self, command: str, *headers: tuple[str, str], body: bytes = b"") -> list[Frame]:
        start = len(self.sent)
        asyncio.run(self.client.handle(Frame(command, list(headers), body)))
        return self.sent[start:]

    def connected(self, version: str = "1.2") -> Harness:
        [reply] = self.feed("CONNECT", ("accept-version", version), ("host", "x"))
        assert reply.command == "CONNECTED"
        return self

    def messages(self) -> list[Frame]:
        return [f for f in self.sent if f.command == "MESSAGE"]


def test_version_negotiation() -> None:
    assert negotiate(None) == "1.0"
    assert negotiate("1.0,1.1,1.2") == "1.2"
    assert negotiate("1.1, 1.0") == "1.1"
    assert negotiate("2.0,1.0") == "1.0"
    assert negotiate("2.0") is None


def test_heart_beat_header() -> None:
    assert heartbeat(None) == (0, 0)
    assert heartbeat("0,0") == (0, 0)
    assert heartbeat("10,5000") == (100, 5000)  # faster than 100 ms is raised to it


def test_connect_replies_connected_with_version_heart_beat_and_session() -> None:
    h = Harness()
    [reply] = h.feed("STOMP", ("accept-version", "1.1,1.2"), ("login", "u"),
                     ("passcode", "p"), ("heart-beat", "2000,3000"), ("client-id", "app-1"))
    assert reply == Frame("CONNECTED", [("version", "1.2"), ("server", "Starling"),
                                        ("session", "app-1"), ("heart-beat", "3000,2000")])
    assert h.link.named("connect") == [("connect", ConnectRequest("app-1", "u", "p", "1.2", 2.0))]
    assert (h.client.heartbeat_in, h.client.heartbeat_out) == (2.0, 3.0)
    assert h.client.escapes


def test_stomp_1_0_connect() -> None:
    h = Harness()
    [reply] = h.feed("CONNECT", ("login", "guest"), ("passcode", "guest"))
    assert reply.get("version") == "1.0" and reply.get("heart-beat") is None
    assert not h.client.escapes


def test_unsupported_version_is_an_error() -> None:
    h = Harness()
    [reply] = h.feed("CONNECT", ("accept-version", "2.0"))
    assert reply.command == "ERROR" and reply.get("version") == "1.0,1.1,1.2"
    assert h.client.state == CLOSED and h.link.named("connect") == []


def test_refused_login() -> None:
    h = Harness()
    h.link.accept = ConnectOutcome(False, "bad login or passcode")
    [reply] = h.feed("CONNECT", ("accept-version", "1.2"), ("login", "x"), ("passcode", "y"))
    assert reply.command == "ERROR" and reply.get("message") == "bad login or passcode"
    assert h.client.state == CLOSED and h.closed == [h.client]


@pytest.mark.parametrize("command", ["SEND", "SUBSCRIBE", "DISCONNECT"])
def test_frames_before_connect_are_an_error(command: str) -> None:
    h = Harness()
    [reply] = h.feed(command, ("destination", "a"), ("receipt", "r1"))
    assert reply.command == "ERROR" and reply.get("receipt-id") == "r1"
    assert h.client.state == CLOSED and h.link.calls == []


def test_second_connect_and_unknown_commands_are_errors() -> None:
    h = Harness().connected()
    assert h.feed("CONNECT")[0].command == "ERROR"
    assert h.client.state == CLOSED
    h = Harness().connected()
    assert h.feed("FROB")[0].get("message") == "unknown command FROB"
    assert h.link.named("close") == [("close", "protocol_error")]


def test_send_publishes_with_extra_headers_and_receipt() -> None:
    h = Harness().connected()
    reply = h.feed("SEND", ("destination", "sensors/1"), ("content-type", "text/plain"),
                   ("receipt", "r-9"), ("x-trace", "t1"), ("x-trace", "t2"), ("qos", "1"),
                   ("retain", "true"), body=b"21.5")
    assert reply == [Frame("RECEIPT", [("receipt-id", "r-9")])]
    assert h.link.named("publish") == [("publish", Outgoing(
        "sensors/1", b"21.5", 1, True, "text/plain", (("x-trace", "t1"),)))]


@pytest.mark.parametrize("headers, message", [
    ((), "SEND without a destination"),
    ((("destination", "a/#"),), "is not a topic name"),
    ((("destination", "a"), ("qos", "3")), "qos must be"),
])
def test_bad_send(headers: tuple[tuple[str, str], ...], message: str) -> None:
    h = Harness().connected()
    [reply] = h.feed("SEND", *headers)
    assert reply.command == "ERROR" and message in (reply.get("message") or "")
    assert h.client.state == CLOSED


def test_send_refused_by_acl_is_an_error() -> None:
    h = Harness().connected()
    h.link.allowed = False
    [reply] = h.feed("SEND", ("destination", "secret"), ("receipt", "r"))
    assert reply.command == "ERROR" and reply.get("receipt-id") == "r"
    assert "not authorized" in (reply.get("message") or "")


def test_subscribe_with_wildcards_receives_matching_topics() -> None:
    h = Harness().connected()
    assert h.feed("SUBSCRIBE", ("id", "s1"), ("destination", "room/+/temp"),
                  ("receipt", "r")) == [Frame("RECEIPT", [("receipt-id", "r")])]
    assert h.link.named("subscribe") == [("subscribe", "room/+/temp", 0)]
    h.client.deliver("room/1/temp", b"20", 0, content_type="text/plain",
                     headers=(("x-trace", "t"),))
    h.client.deliver("room/1/humidity", b"50", 0)
    assert h.messages() == [Frame("MESSAGE", [
        ("subscription", "s1"), ("message-id", "1"), ("destination", "room/1/temp"),
        ("content-type", "text/plain"), ("x-trace", "t")], b"20")]


def test_overlapping_subscriptions_each_get_a_copy() -> None:
    h = Harness().connected()
    h.feed("SUBSCRIBE", ("id", "all"), ("destination", "a/#"))
    h.feed("SUBSCRIBE", ("id", "one"), ("destination", "a/b"), ("ack", "client-individual"))
    assert h.link.named("subscribe")[1] == ("subscribe", "a/b", 1)
    h.client.deliver("a/b", b"x", 5)
    assert [f.get("subscription") for f in h.messages()] == ["all", "one"]
    assert h.link.named("puback") == []  # the client-acknowledged copy is pending
    h.feed("ACK", ("id", h.messages()[1].get("ack") or ""))
    assert h.link.named("puback") == [("puback", 5)]


def test_subscription_ids() -> None:
    h = Harness().connected()
    h.feed("SUBSCRIBE", ("id", "s"), ("destination", "a"))
    assert h.feed("SUBSCRIBE", ("id", "s"), ("destination", "a"), ("receipt", "again")) == \
        [Frame("RECEIPT", [("receipt-id", "again")])]
    assert len(h.link.named("subscribe")) == 1
    [reply] = h.feed("SUBSCRIBE", ("id", "s"), ("destination", "b"))
    assert reply.command == "ERROR" and "already in use" in (reply.get("message") or "")


def test_subscribe_errors() -> None:
    for headers, message in [((("id", "1"),), "without a destination"),
                             ((("destination", "a"),), "without an id"),
                             ((("id", "1"), ("destination", "a/#/b")), "not a topic filter"),
                             ((("id", "1"), ("destination", "a"), ("ack", "sometimes")),
                              "ack must be")]:
        h = Harness().connected()
        [reply] = h.feed("SUBSCRIBE", *headers)
        assert reply.command == "ERROR" and message in (reply.get("message") or ""), message
    h = Harness().connected()
    h.link.grant = None
    [reply] = h.feed("SUBSCRIBE", ("id", "1"), ("destination", "secret/#"))
    assert "not authorized to subscribe" in (reply.get("message") or "")


def test_stomp_1_0_subscribe_and_unsubscribe_by_destination() -> None:
    h = Harness().connected("1.0")
    h.feed("SUBSCRIBE", ("destination", "a/b"))
    h.client.deliver("a/b", b"x", 0)
    assert h.messages()[0].get("subscription") == "a/b"
    h.feed("UNSUBSCRIBE", ("destination", "a/b"))
    assert h.link.named("unsubscribe") == [("unsubscribe", "a/b")]


def test_two_ids_on_one_destination_share_the_mqtt_subscription() -> None:
    h = Harness().connected()
    h.feed("SUBSCRIBE", ("id", "1"), ("destination", "a"))
    h.feed("SUBSCRIBE", ("id", "2"), ("destination", "a"))
    h.feed("UNSUBSCRIBE", ("id", "1"))
    assert h.link.named("unsubscribe") == []
    assert h.feed("UNSUBSCRIBE", ("id", "2"), ("receipt", "u")) == \
        [Frame("RECEIPT", [("receipt-id", "u")])]
    assert h.link.named("unsubscribe") == [("unsubscribe", "a")]
    # An unknown id is not an error.
    assert h.feed("UNSUBSCRIBE", ("id", "nope")) == []


def test_client_individual_ack_and_nack_redelivery() -> None:
    h = Harness(max_redeliveries=2).connected()
    h.feed("SUBSCRIBE", ("id", "s"), ("destination", "q"), ("ack", "client-individual"))
    h.client.deliver("q", b"m1", 1)
    h.client.deliver("q", b"m2", 2)
    first, _ = h.messages()
    assert first.get("ack") == first.get("message-id") == "1"
    h.feed("NACK", ("id", "1"))
    redelivered = h.messages()[-1]
    assert redelivered.body == b"m1" and redelivered.get("redelivered") == "true"
    assert redelivered.get("message-id") == "3"
    h.feed("ACK", ("id", "2"))
    assert h.link.named("puback") == [("puback", 2)]
    # NACKed past the limit: dropped, and the session hears it is done.
    h.feed("NACK", ("id", "3"))
    h.feed("NACK", ("id", h.messages()[-1].get("ack") or ""))
    assert len([m for m in h.messages() if m.body == b"m1"]) == 3
    assert h.link.named("puback") == [("puback", 2), ("puback", 1)]
    assert h.client.unacked == {}


def test_client_ack_is_cumulative() -> None:
    h = Harness().connected()
    h.feed("SUBSCRIBE", ("id", "s"), ("destination", "q"), ("ack", "client"))
    h.feed("SUBSCRIBE", ("id", "t"), ("destination", "r"), ("ack", "client"))
    for packet_id, topic in ((1, "q"), (2, "r"), (3, "q"), (4, "q")):
        h.client.deliver(topic, b"", packet_id)
    # ACK of the third MESSAGE settles the first and third (same subscription), not r's.
    h.feed("ACK", ("id", "3"))
    assert h.link.named("puback") == [("puback", 1), ("puback", 3)]
    assert sorted(h.client.unacked) == ["2", "4"]


def test_ack_headers_of_each_version() -> None:
    for version, headers in (("1.1", (("message-id", "1"), ("subscription", "s"))),
                             ("1.0", (("message-id", "1"),))):
        h = Harness().connected(version)
        h.feed("SUBSCRIBE", ("id", "s"), ("destination", "q"), ("ack", "client"))
        h.client.deliver("q", b"", 9)
        h.feed("ACK", *headers)
        assert h.link.named("puback") == [("puback", 9)], version
    h = Harness().connected()
    assert h.feed("ACK")[0].command == "ERROR"


def test_qos0_delivery_to_a_client_ack_subscription_is_tracked_without_the_session() -> None:
    h = Harness().connected()
    h.feed("SUBSCRIBE", ("id", "s"), ("destination", "q"), ("ack", "client"))
    h.client.deliver("q", b"x", 0)
    h.feed("NACK", ("id", "1"))
    assert [m.body for m in h.messages()] == [b"x", b"x"]
    h.feed("ACK", ("id", "2"))
    assert h.client.unacked == {} and h.link.named("puback") == []


def test_auto_subscription_deliveries_are_settled_at_once() -> None:
    h = Harness().connected()
    h.feed("SUBSCRIBE", ("id", "s"), ("destination", "q"))
    h.client.deliver("q", b"x", 7)
    assert h.link.named("puback") == [("puback", 7)]
    assert h.messages()[0].get("ack") is None


def test_session_resend_goes_again_with_redelivered() -> None:
    h = Harness().connected()
    h.feed("SUBSCRIBE", ("id", "s"), ("destination", "q"), ("ack", "client-individual"))
    h.client.deliver("q", b"x", 4)
    h.client.deliver("q", b"x", 4, dup=True)
    assert [m.get("redelivered") for m in h.messages()] == [None, "true"]
    assert list(h.client.unacked) == ["2"]


def test_unsubscribe_settles_what_it_had_pending() -> None:
    h = Harness().connected()
    h.feed("SUBSCRIBE", ("id", "s"), ("destination", "q"), ("ack", "client"))
    h.client.deliver("q", b"x", 4)
    h.feed("UNSUBSCRIBE", ("id", "s"))
    assert h.link.named("puback") == [("puback", 4)]


def test_transaction_commit_runs_queued_frames_in_order() -> None:
    h = Harness().connected()
    h.feed("SUBSCRIBE", ("id", "s"), ("destination", "q"), ("ack", "client-individual"))
    h.client.deliver("q", b"in", 3)
    assert h.feed("BEGIN", ("transaction", "tx"), ("receipt", "b")) == \
        [Frame("RECEIPT", [("receipt-id", "b")])]
    h.feed("SEND", ("destination", "out/1"), ("transaction", "tx"), body=b"1")
    h.feed("ACK", ("id", "1"), ("transaction", "tx"))
    h.feed("SEND", ("destination", "out/2"), ("transaction", "tx"), body=b"2")
    assert h.link.named("publish") == [] and h.link.named("puback") == []
    assert h.feed("COMMIT", ("transaction", "tx"), ("receipt", "c")) == \
        [Frame("RECEIPT", [("receipt-id", "c")])]
    assert [c[1].topic for c in h.link.named("publish")] == ["out/1", "out/2"]
    assert h.link.named("puback") == [("puback", 3)]


def test_transaction_abort_discards() -> None:
    h = Harness().connected()
    h.feed("BEGIN", ("transaction", "tx"))
    h.feed("SEND", ("destination", "out"), ("transaction", "tx"))
    h.feed("ABORT", ("transaction", "tx"))
    assert h.link.named("publish") == []
    [reply] = h.feed("COMMIT", ("transaction", "tx"))
    assert reply.command == "ERROR" and "not found" in (reply.get("message") or "")


def test_transaction_errors() -> None:
    h = Harness().connected()
    h.feed("BEGIN", ("transaction", "tx"))
    assert "already started" in (h.feed("BEGIN", ("transaction", "tx"))[0].get("message") or "")
    h = Harness().connected()
    assert h.feed("BEGIN")[0].command == "ERROR"
    h = Harness().connected()
    [reply] = h.feed("SEND", ("destination", "a"), ("transaction", "nope"))
    assert "transaction nope not found" in (reply.get("message") or "")
    h = Harness().connected()
    h.feed("BEGIN", ("transaction", "tx"))
    [reply] = h.feed("SEND", ("destination", "a/#"), ("transaction", "tx"))
    assert reply.command == "ERROR"  # refused when queued, not at COMMIT


def test_disconnect_with_receipt() -> None:
    h = Harness().connected()
    assert h.feed("DISCONNECT", ("receipt", "bye")) == [Frame("RECEIPT", [("receipt-id", "bye")])]
    assert h.client.state == CLOSED and h.link.named("close") == [("close", "normal")]


def test_kick_sends_error_and_closes_without_telling_the_broker_again() -> None:
    h = Harness().connected()
    h.client.kick("kicked")
    assert h.sent[-1].command == "ERROR" and h.client.state == CLOSED
    assert h.link.named("close") == [] and h.closed == [h.client]
    assert h.client.state != CONNECTED
