"""The MQTT-SN client state machine, message by message (spec §6).

The broker side is a recording stand-in for the per-client link (what the
machine asks of the broker, and the answers it gets); the machine under test
is the real one, and what it sends is checked as MQTT-SN messages.  The
end-to-end behaviour with a real client and broker is in test_mqttsn_gateway.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from starling.gateways.mqttsn.messages import (
    Connack,
    Connect,
    Disconnect,
    Message,
    Pingreq,
    Pingresp,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Regack,
    Register,
    ReturnCode,
    Suback,
    Subscribe,
    TopicIdType,
    Unsuback,
    Unsubscribe,
    WillMsg,
    WillMsgReq,
    WillMsgResp,
    WillMsgUpd,
    WillTopic,
    WillTopicReq,
    WillTopicResp,
    WillTopicUpd,
    short_id,
)
from starling.gateways.mqttsn.protocol import (
    ACTIVE,
    ASLEEP,
    AWAKE,
    CLOSED,
    ConnectOutcome,
    ConnectRequest,
    SnClient,
    SnSettings,
    WillSpec,
)
from starling.gateways.mqttsn.topics import PredefinedTopics
from starling.mqtt import is_valid_topic_name

PREDEFINED = PredefinedTopics({1: "/predefined/hello", 2: "/predefined/nice"})


@dataclass
class Link:
    """Records what the client asks of the broker; answers as told."""

    accept: ConnectOutcome = field(default_factory=lambda: ConnectOutcome(True))
    allowed: bool = True
    awaiting: set[int] = field(default_factory=set)
    max_awaiting: int = 100
    grant: int | None = 1
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    held: int = 0

    async def connect(self, request: ConnectRequest) -> ConnectOutcome:
        self.calls.append(("connect", request))
        return self.accept

    async def publish(self, topic: str, payload: bytes, qos: int, retain: bool,
                      msg_id: int) -> ReturnCode:
        """As the broker's client does: topic checks; QoS 2 ids routed once until
        released."""
        if not is_valid_topic_name(topic):
            return ReturnCode.NOT_SUPPORTED
        if qos == 2 and msg_id in self.awaiting:
            return ReturnCode.ACCEPTED
        if not self.allowed:
            return ReturnCode.NOT_SUPPORTED
        if qos == 2:
            if len(self.awaiting) >= self.max_awaiting:
                return ReturnCode.CONGESTION
            self.awaiting.add(msg_id)
        self.calls.append(("publish", topic, payload, qos, retain))
        return ReturnCode.ACCEPTED

    def release(self, msg_id: int) -> None:
        self.calls.append(("release", msg_id))
        self.awaiting.discard(msg_id)

    async def subscribe(self, topic_filter: str, qos: int) -> int | None:
        self.calls.append(("subscribe", topic_filter, qos))
        return None if self.grant is None else min(qos, self.grant)

    async def unsubscribe(self, topic_filter: str) -> None:
        self.calls.append(("unsubscribe", topic_filter))

    def puback(self, msg_id: int) -> None:
        self.calls.append(("puback", msg_id))
        self.held = max(0, self.held - 1)

    def pubrec(self, msg_id: int) -> None:
        self.calls.append(("pubrec", msg_id))

    def pubcomp(self, msg_id: int) -> None:
        self.calls.append(("pubcomp", msg_id))
        self.held = max(0, self.held - 1)

    def set_will(self, will: WillSpec | None) -> None:
        self.calls.append(("set_will", will))

    def pause(self) -> None:
        self.calls.append(("pause",))

    def resume(self) -> None:
        self.calls.append(("resume",))

    def pending(self) -> int:
        return self.held

    def close(self, reason: str, will: bool) -> None:
        self.calls.append(("close", reason, will))

    def named(self, name: str) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == name]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Harness:
    def __init__(self, **settings: Any) -> None:
        self.link = Link()
        self.sent: list[Message] = []
        self.closed: list[SnClient] = []
        self.clock = Clock()
        self.client = SnClient(SnSettings(PREDEFINED, **settings), self.link, self.sent.append,
                               self.closed.append, clock=self.clock)

    def feed(self, *messages: Message) -> list[Message]:
        """Handle messages in order; return what the client sent meanwhile."""
        start = len(self.sent)
        for message in messages:
            asyncio.run(self.client.handle(message))
        return self.sent[start:]

    def connected(self, client_id: str = "dev", duration: int = 10) -> Harness:
        assert self.feed(Connect(client_id, duration)) == [Connack(ReturnCode.ACCEPTED)]
        return self


def test_connect_without_will() -> None:
    h = Harness()
    assert h.feed(Connect("dev-1", 30, clean_session=False)) == [Connack(ReturnCode.ACCEPTED)]
    assert h.link.named("connect") == [("connect", ConnectRequest("dev-1", False, 30, None))]
    assert h.client.state == ACTIVE


def test_connect_with_will_asks_for_topic_then_message() -> None:
    h = Harness()
    assert h.feed(Connect("dev", 30, will=True)) == [WillTopicReq()]
    assert h.feed(WillTopic("dev/status", 1, True)) == [WillMsgReq()]
    assert h.link.named("connect") == []
    assert h.feed(WillMsg(b"offline")) == [Connack(ReturnCode.ACCEPTED)]
    request = h.link.named("connect")[0][1]
    assert request.will == WillSpec("dev/status", b"offline", 1, True)


def test_empty_will_topic_means_no_will() -> None:
    h = Harness()
    h.feed(Connect("dev", 30, will=True))
    assert h.feed(WillTopic(None)) == [Connack(ReturnCode.ACCEPTED)]
    assert h.link.named("connect")[0][1].will is None


def test_wildcard_will_topic_is_refused() -> None:
    h = Harness()
    h.feed(Connect("dev", 30, will=True))
    assert h.feed(WillTopic("dev/#")) == [Connack(ReturnCode.NOT_SUPPORTED)]
    assert h.client.state == CLOSED and h.closed == [h.client]


@pytest.mark.parametrize("connect", [Connect("", 30), Connect("dev", 30, protocol_id=2)])
def test_bad_connect_is_refused(connect: Connect) -> None:
    h = Harness()
    assert h.feed(connect) == [Connack(ReturnCode.NOT_SUPPORTED)]
    assert h.client.state == CLOSED and h.link.named("connect") == []


def test_refused_by_the_broker() -> None:
    h = Harness()
    h.link.accept = ConnectOutcome(False, ReturnCode.NOT_SUPPORTED, "not_authorized")
    assert h.feed(Connect("dev", 30)) == [Connack(ReturnCode.NOT_SUPPORTED)]
    assert h.client.state == CLOSED and h.client.close_reason == "not_authorized"


def test_messages_before_connect_is_done_are_ignored() -> None:
    h = Harness()
    h.feed(Connect("dev", 30, will=True))
    assert h.feed(Publish(TopicIdType.PREDEFINED, 1, 1, b"x", qos=1)) == []
    assert h.link.named("publish") == []


def test_register_then_publish_at_each_qos() -> None:
    h = Harness().connected()
    [regack] = h.feed(Register(0, 1, "room/1/temp"))
    assert isinstance(regack, Regack) and regack.return_code == ReturnCode.ACCEPTED
    tid = regack.topic_id
    assert tid == 3  # allocated above the largest predefined id
    assert h.feed(Register(0, 2, "room/1/temp")) == [Regack(tid, 2, ReturnCode.ACCEPTED)]
    assert h.feed(Publish(TopicIdType.NORMAL, tid, 0, b"q0")) == []
    assert h.feed(Publish(TopicIdType.NORMAL, tid, 7, b"q1", qos=1)) == \
        [Puback(tid, 7, ReturnCode.ACCEPTED)]
    assert h.feed(Publish(TopicIdType.NORMAL, tid, 8, b"q2", qos=2)) == [Pubrec(8)]
    # A resent QoS 2 PUBLISH is not published twice.
    assert h.feed(Publish(TopicIdType.NORMAL, tid, 8, b"q2", qos=2, dup=True)) == [Pubrec(8)]
    assert h.feed(Pubrel(8)) == [Pubcomp(8)]
    assert h.link.named("release") == [("release", 8)]
    assert [c[1:4] for c in h.link.named("publish")] == [
        ("room/1/temp", b"q0", 0), ("room/1/temp", b"q1", 1), ("room/1/temp", b"q2", 2)]


def test_register_refusals() -> None:
    h = Harness(max_topics=1).connected()
    assert h.feed(Register(0, 1, "a/#")) == [Regack(0, 1, ReturnCode.NOT_SUPPORTED)]
    assert h.feed(Register(0, 2, "a/b"))[0].return_code == ReturnCode.ACCEPTED  # type: ignore[union-attr]
    assert h.feed(Register(0, 3, "a/c")) == [Regack(0, 3, ReturnCode.CONGESTION)]
    # A predefined name costs nothing: its id comes back.
    assert h.feed(Register(0, 4, "/predefined/nice")) == [Regack(2, 4, ReturnCode.ACCEPTED)]


def test_publish_predefined_and_short_topics() -> None:
    h = Harness().connected()
    assert h.feed(Publish(TopicIdType.PREDEFINED, 1, 3, b"p", qos=1)) == \
        [Puback(1, 3, ReturnCode.ACCEPTED)]
    # A normal-type id that is a predefined one is understood (as EMQ X does).
    h.feed(Publish(TopicIdType.NORMAL, 2, 0, b"n"))
    sid = short_id("ab") or 0
    h.feed(Publish(TopicIdType.SHORT, sid, 0, b"s"))
    assert [c[1] for c in h.link.named("publish")] == ["/predefined/hello",
                                                       "/predefined/nice", "ab"]


def test_unknown_topic_id_answers_invalid_topic_id_at_every_qos() -> None:
    h = Harness().connected()
    assert h.feed(Publish(TopicIdType.NORMAL, 99, 0, b"x")) == \
        [Puback(99, 0, ReturnCode.INVALID_TOPIC_ID)]
    assert h.feed(Publish(TopicIdType.PREDEFINED, 98, 4, b"x", qos=2)) == \
        [Puback(98, 4, ReturnCode.INVALID_TOPIC_ID)]
    assert h.feed(Publish(TopicIdType.RESERVED, 1, 5, b"x", qos=1)) == \
        [Puback(1, 5, ReturnCode.NOT_SUPPORTED)]
    wild = short_id("a#") or 0
    assert h.feed(Publish(TopicIdType.SHORT, wild, 6, b"x", qos=1)) == \
        [Puback(wild, 6, ReturnCode.NOT_SUPPORTED)]
    assert h.link.named("publish") == []


def test_publish_refused_by_acl() -> None:
    h = Harness().connected()
    h.link.allowed = False
    assert h.feed(Publish(TopicIdType.PREDEFINED, 1, 3, b"p", qos=1)) == \
        [Puback(1, 3, ReturnCode.NOT_SUPPORTED)]
    assert h.feed(Publish(TopicIdType.PREDEFINED, 1, 4, b"p", qos=2)) == \
        [Puback(1, 4, ReturnCode.NOT_SUPPORTED)]
    assert h.feed(Publish(TopicIdType.PREDEFINED, 1, 0, b"p", qos=0)) == []


def test_qos2_window_full_answers_congestion() -> None:
    h = Harness().connected()
    h.link.max_awaiting = 2
    h.feed(Publish(TopicIdType.PREDEFINED, 1, 1, b"a", qos=2),
           Publish(TopicIdType.PREDEFINED, 1, 2, b"b", qos=2))
    assert h.feed(Publish(TopicIdType.PREDEFINED, 1, 3, b"c", qos=2)) == \
        [Puback(1, 3, ReturnCode.CONGESTION)]
    assert len(h.link.named("publish")) == 2


def test_qos_minus_one_in_a_connection() -> None:
    off = Harness().connected()
    assert off.feed(Publish(TopicIdType.PREDEFINED, 1, 0, b"x", qos=-1)) == []
    assert off.link.named("publish") == []
    on = Harness(enable_qos3=True).connected()
    on.feed(Publish(TopicIdType.PREDEFINED, 1, 0, b"x", qos=-1))
    assert on.link.named("publish") == [("publish", "/predefined/hello", b"x", 0, False)]


def test_subscribe_by_name_wildcard_predefined_and_short() -> None:
    h = Harness().connected()
    [suback] = h.feed(Subscribe(TopicIdType.NORMAL, 1, "room/1/temp", qos=1))
    assert isinstance(suback, Suback) and suback.return_code == ReturnCode.ACCEPTED
    assert suback.topic_id == 3 and suback.qos == 1
    assert h.feed(Subscribe(TopicIdType.NORMAL, 2, "room/+/temp", qos=2)) == \
        [Suback(1, 0, 2, ReturnCode.ACCEPTED)]
    assert h.feed(Subscribe(TopicIdType.PREDEFINED, 3, topic_id=2)) == \
        [Suback(0, 2, 3, ReturnCode.ACCEPTED)]
    assert h.feed(Subscribe(TopicIdType.SHORT, 4, topic_id=short_id("ab") or 0)) == \
        [Suback(0, 0, 4, ReturnCode.ACCEPTED)]
    assert [c[1:] for c in h.link.named("subscribe")] == [
        ("room/1/temp", 1), ("room/+/temp", 2), ("/predefined/nice", 0), ("ab", 0)]


def test_subscribe_refusals() -> None:
    h = Harness().connected()
    assert h.feed(Subscribe(TopicIdType.PREDEFINED, 1, topic_id=77)) == \
        [Suback(0, 0, 1, ReturnCode.INVALID_TOPIC_ID)]
    assert h.feed(Subscribe(TopicIdType.NORMAL, 2, "a/#/b")) == \
        [Suback(0, 0, 2, ReturnCode.NOT_SUPPORTED)]
    assert h.feed(Subscribe(TopicIdType.RESERVED, 3, topic_id=1)) == \
        [Suback(0, 0, 3, ReturnCode.NOT_SUPPORTED)]
    h.link.grant = None  # ACL says no
    assert h.feed(Subscribe(TopicIdType.NORMAL, 4, "secret/#")) == \
        [Suback(0, 0, 4, ReturnCode.NOT_SUPPORTED)]


def test_unsubscribe_always_answers() -> None:
    h = Harness().connected()
    assert h.feed(Unsubscribe(TopicIdType.NORMAL, 1, "a/+")) == [Unsuback(1)]
    assert h.feed(Unsubscribe(TopicIdType.PREDEFINED, 2, topic_id=1)) == [Unsuback(2)]
    assert h.feed(Unsubscribe(TopicIdType.PREDEFINED, 3, topic_id=99)) == [Unsuback(3)]
    assert [c[1] for c in h.link.named("unsubscribe")] == ["a/+", "/predefined/hello"]


def test_deliveries_name_their_topic_the_shortest_way() -> None:
    h = Harness().connected()
    h.feed(Register(0, 1, "room/1/temp"))
    h.sent.clear()
    assert h.client.deliver("/predefined/hello", b"1", 0, False, 0)
    assert h.client.deliver("room/1/temp", b"2", 1, False, 11)
    assert h.client.deliver("ab", b"3", 2, True, 12)
    # An unknown topic is registered first, then published with its new id.
    assert h.client.deliver("room/2/temp", b"4", 1, False, 13, dup=True)
    assert h.sent == [
        Publish(TopicIdType.PREDEFINED, 1, 0, b"1"),
        Publish(TopicIdType.NORMAL, 3, 11, b"2", qos=1),
        Publish(TopicIdType.SHORT, short_id("ab") or 0, 12, b"3", qos=2, retain=True),
        Register(4, 1, "room/2/temp"),
        Publish(TopicIdType.NORMAL, 4, 13, b"4", qos=1, dup=True),
    ]


def test_delivery_acknowledgements_reach_the_session() -> None:
    h = Harness().connected()
    h.client.deliver("/predefined/hello", b"1", 1, False, 5)
    h.client.deliver("/predefined/hello", b"2", 2, False, 6)
    assert h.feed(Puback(1, 5, ReturnCode.ACCEPTED)) == []
    assert h.feed(Pubrec(6)) == [Pubrel(6)]
    assert h.feed(Pubcomp(6)) == []
    assert h.link.named("puback") == [("puback", 5)]
    assert h.link.named("pubrec") == [("pubrec", 6)]
    assert h.link.named("pubcomp") == [("pubcomp", 6)]


def test_client_that_lost_a_registration_gets_it_again() -> None:
    h = Harness().connected()
    h.client.deliver("x/y", b"1", 1, False, 5)
    register = h.sent[-2]
    assert isinstance(register, Register)
    assert h.feed(Puback(register.topic_id, 5, ReturnCode.INVALID_TOPIC_ID)) == [
        Register(register.topic_id, 2, "x/y")]
    assert h.link.named("puback") == []  # still in flight: sent again later
    # A client that refuses our REGISTER: the id is forgotten, the next delivery registers anew.
    h.feed(Regack(register.topic_id, 2, ReturnCode.CONGESTION))
    h.client.deliver("x/y", b"2", 0, False, 0)
    assert isinstance(h.sent[-2], Register) and h.sent[-2].topic_id != register.topic_id


def test_full_topic_table_drops_deliveries() -> None:
    h = Harness(max_topics=1).connected()
    assert h.client.deliver("a/1", b"", 0, False, 0)
    assert not h.client.deliver("a/2", b"", 0, False, 0)


def test_ping_and_disconnect() -> None:
    h = Harness().connected()
    assert h.feed(Pingreq()) == [Pingresp()]
    assert h.feed(Disconnect()) == [Disconnect()]
    assert h.client.state == CLOSED
    assert h.link.named("close") == [("close", "normal", False)]


def test_disconnect_with_a_zero_duration_is_a_disconnect() -> None:
    h = Harness().connected()
    assert h.feed(Disconnect(0)) == [Disconnect()]
    assert h.link.named("close") == [("close", "normal", False)]


def test_sleep_buffers_until_the_wake_up_ping() -> None:
    h = Harness().connected("sleepy")
    assert h.feed(Disconnect(60)) == [Disconnect()]
    assert h.client.state == ASLEEP and h.link.calls[-1] == ("pause",)
    # Another client's wake-up id is not ours.
    assert h.feed(Pingreq("other")) == []
    assert h.client.state == ASLEEP
    # Awake with messages in flight: no PINGRESP until they are acknowledged.
    h.link.held = 2
    assert h.feed(Pingreq("sleepy")) == []
    assert h.client.state == AWAKE and ("resume",) in h.link.calls
    h.client.deliver("/predefined/hello", b"1", 1, False, 1)
    h.client.deliver("/predefined/hello", b"2", 1, False, 2)
    assert h.feed(Puback(1, 1, ReturnCode.ACCEPTED)) == []
    assert h.feed(Puback(1, 2, ReturnCode.ACCEPTED)) == [Pingresp()]
    assert h.client.state == ASLEEP and h.link.calls[-1] == ("pause",)
    # Nothing buffered: PINGRESP at once (a wake-up PINGREQ may omit the client id).
    assert h.feed(Pingreq()) == [Pingresp()]
    assert h.client.state == ASLEEP


def test_connect_while_asleep_returns_to_active_without_a_new_session() -> None:
    h = Harness().connected("sleepy")
    h.feed(Disconnect(60))
    assert h.feed(Connect("sleepy", 30, will=True)) == [Connack(ReturnCode.ACCEPTED)]
    assert h.client.state == ACTIVE
    assert len(h.link.named("connect")) == 1 and h.link.calls[-1] == ("resume",)


def test_connect_while_active_starts_over() -> None:
    h = Harness().connected()
    assert h.feed(Connect("dev", 30)) == []
    assert h.client.state == CLOSED and h.client.replaced_by_connect
    assert h.link.named("close") == [("close", "reconnect", False)]


def test_keepalive_expiry_publishes_the_will() -> None:
    h = Harness().connected(duration=10)
    assert h.client.deadline() == 1000.0 + 15.0
    h.clock.now += 14.9
    assert not h.client.expire()
    h.clock.now += 0.2
    assert h.client.expire()
    assert h.link.named("close") == [("close", "keepalive_timeout", True)]


def test_asleep_past_its_duration_is_lost() -> None:
    h = Harness().connected(duration=10)
    h.feed(Disconnect(100))
    h.clock.now += 20  # past the keepalive, within the sleep: still there
    assert not h.client.expire()
    h.clock.now += 140
    assert h.client.expire()
    assert h.link.named("close") == [("close", "asleep_timeout", True)]


def test_no_keepalive_never_expires_and_idle_connect_does() -> None:
    h = Harness().connected(duration=0)
    assert h.client.deadline() is None
    half = Harness(idle_timeout=5.0)
    half.feed(Connect("dev", 30, will=True))  # never sends WILLTOPIC
    half.clock.now += 6
    assert half.client.expire() and half.link.named("close") == []


def test_will_updates() -> None:
    h = Harness().connected()
    assert h.feed(WillMsgUpd(b"orphan")) == [WillMsgResp(ReturnCode.NOT_SUPPORTED)]
    assert h.feed(WillTopicUpd("dev/status", 1, True)) == [WillTopicResp(ReturnCode.ACCEPTED)]
    assert h.feed(WillMsgUpd(b"down")) == [WillMsgResp(ReturnCode.ACCEPTED)]
    assert h.feed(WillTopicUpd("bad/+")) == [WillTopicResp(ReturnCode.NOT_SUPPORTED)]
    assert h.feed(WillTopicUpd(None)) == [WillTopicResp(ReturnCode.ACCEPTED)]
    assert [c[1] for c in h.link.named("set_will")] == [
        WillSpec("dev/status", b"", 1, True), WillSpec("dev/status", b"down", 1, True), None]


def test_kick_tells_the_client() -> None:
    h = Harness().connected()
    h.client.kick("kicked")
    assert h.sent[-1] == Disconnect() and h.client.state == CLOSED
    assert h.link.named("close") == []  # the broker ended it: it knows
    assert h.closed == [h.client]
