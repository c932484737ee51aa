"""The publish-in flow (channel/publish.py): PUBLISH from the client at each QoS,
PUBACK / PUBREC / PUBCOMP, QoS 2 resends, the ACL, MQTT 5.0 topic aliases and
Receive Maximum, acknowledgements held for their commit and kept in order, the
per-client rate limit; MQTT 3.1.1 and 5.0, on a real Channel and Broker through
a fake connection."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from helpers.channels import ChannelClient, ChannelWorld
from helpers.packets import (
    CONNACK,
    PINGRESP,
    PUBACK,
    PUBCOMP,
    PUBLISH,
    PUBREC,
    SUBACK,
    Packet,
    gen_connect,
    gen_pingreq,
    gen_publish,
    gen_pubrel,
    gen_subscribe,
    parse_publish,
)
from helpers.packets5 import (
    MESSAGE_EXPIRY_INTERVAL,
    NO_MATCHING_SUBSCRIBERS,
    PROTOCOL_ERROR,
    RECEIVE_MAXIMUM_EXCEEDED,
    TOPIC_ALIAS,
    TOPIC_ALIAS_INVALID,
    gen_publish5,
    gen_pubrel5,
    gen_subscribe5,
    parse_ack5,
    parse_disconnect5,
    parse_publish5,
)

from starling.broker import BrokerOptions, ClientInfo, HookPoint

NOT_AUTHORIZED_5 = 0x87
PACKET_ID_NOT_FOUND = 0x92
SECRET_ACL = '{deny, all, publish, ["secret/#"]}.\n{allow, all}.\n'


def publish(level: int, topic: str, qos: int = 0, payload: bytes = b"x",
            mid: int | None = None, **kw: object) -> bytes:
    if level == 5:
        return gen_publish5(topic, qos, payload, mid=mid, **kw)  # type: ignore[arg-type]
    return gen_publish(topic, qos, payload, mid=mid)


def watch(world: ChannelWorld, topic_filter: str = "#") -> ChannelClient:
    """A 3.1.1 subscriber at QoS 0 (it sees what was routed)."""
    watcher = world.connect("watcher")
    watcher.send(gen_subscribe(1, topic_filter, 0))
    watcher.read()
    return watcher


def routed(watcher: ChannelClient) -> list[bytes]:
    return [parse_publish(p).payload for p in watcher.read()]


@pytest.mark.parametrize("level", [4, 5])
async def test_qos_0_1_2_in(level: int) -> None:
    async with ChannelWorld() as world:
        watcher = watch(world)
        client = world.connect("pub", level)
        client.send(publish(level, "t", 0, b"zero"))
        assert client.read() == []
        client.send(publish(level, "t", 1, b"one", mid=7))
        assert client.read() == [Packet(PUBACK, 0, b"\x00\x07")]
        client.send(publish(level, "t", 2, b"two", mid=8))
        assert client.read() == [Packet(PUBREC, 0, b"\x00\x08")]
        client.send(gen_pubrel(8))
        assert client.read() == [Packet(PUBCOMP, 0, b"\x00\x08")]
        assert routed(watcher) == [b"zero", b"one", b"two"]


@pytest.mark.parametrize("level", [4, 5])
async def test_qos2_resend_before_pubrel_is_routed_once(level: int) -> None:
    """[MQTT-4.3.3-2]: PUBREC again, no second delivery."""
    async with ChannelWorld() as world:
        watcher = watch(world)
        client = world.connect("pub", level)
        client.send(publish(level, "t", 2, b"once", mid=3))
        client.send(publish(level, "t", 2, b"once", mid=3, dup=True))
        assert client.read() == [Packet(PUBREC, 0, b"\x00\x03")] * 2
        assert routed(watcher) == [b"once"]


@pytest.mark.parametrize("qos", [1, 2])
async def test_acknowledgement_goes_ahead_of_the_copy_to_oneself(qos: int) -> None:
    """The PUBACK / PUBREC is written before the publisher's own copy, and after
    what was written before the PUBLISH (a SUBACK still unread here)."""
    async with ChannelWorld() as world:
        client = world.connect("self")
        client.send(gen_subscribe(1, "me/#", qos))
        client.send(gen_publish("me/t", qos, b"mine", mid=4))
        packets = client.read()
        assert [p.type for p in packets] == [SUBACK, PUBACK if qos == 1 else PUBREC, PUBLISH]
        assert parse_publish(packets[2]).payload == b"mine"


async def test_pubrel_for_an_unknown_id() -> None:
    """3.1.1 completes it anyway; 5.0 says Packet Identifier not found."""
    async with ChannelWorld() as world:
        old = world.connect("old")
        old.send(gen_pubrel(9))
        assert old.read() == [Packet(PUBCOMP, 0, b"\x00\x09")]
        new = world.connect("new", 5)
        new.send(gen_pubrel5(9))
        assert parse_ack5(new.read_one()).rc == PACKET_ID_NOT_FOUND


async def test_no_matching_subscribers_told_to_5_only() -> None:
    async with ChannelWorld() as world:
        old = world.connect("old")
        old.send(gen_publish("nobody", 1, b"x", mid=1))
        assert old.read() == [Packet(PUBACK, 0, b"\x00\x01")]
        new = world.connect("new", 5)
        new.send(gen_publish5("nobody", 1, b"x", mid=1))
        assert parse_ack5(new.read_one()).rc == NO_MATCHING_SUBSCRIBERS


@pytest.mark.parametrize("level", [4, 5])
async def test_acl_denied_publish(level: int) -> None:
    async with ChannelWorld(acl=SECRET_ACL) as world:
        watcher = watch(world)
        client = world.connect("pub", level)
        client.send(publish(level, "secret/a", 1, b"no", mid=1))
        ack = client.read_one()
        assert ack.type == PUBACK
        assert parse_ack5(ack).rc == (NOT_AUTHORIZED_5 if level == 5 else 0)
        assert routed(watcher) == [] and not client.closed


@pytest.mark.parametrize("level", [4, 5])
async def test_acl_deny_action_disconnect(level: int) -> None:
    async with ChannelWorld(BrokerOptions(acl_deny_action="disconnect"),
                            acl=SECRET_ACL) as world:
        client = world.connect("pub", level)
        client.send(publish(level, "secret/a", 1, b"no", mid=1))
        packets = client.read()
        assert packets[0].type == PUBACK  # the refusal is acknowledged first
        if level == 5:
            assert parse_disconnect5(packets[1]).rc == NOT_AUTHORIZED_5
        assert client.closed


@pytest.mark.parametrize("level", [4, 5])
async def test_awaited_acl_answer_keeps_packets_in_order(level: int) -> None:
    """An ACL source that must be awaited holds the packets behind the PUBLISH."""
    async with ChannelWorld() as world:
        answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        async def check(info: ClientInfo, action: str, topic: str, acc: str) -> str:
            return await answer

        world.broker.hooks.add(HookPoint.CLIENT_CHECK_ACL, check)
        watcher = world.connect("watcher")
        watcher.send(gen_subscribe(1, "t", 0))
        client = world.connect("pub", level)
        client.send(publish(level, "t", 1, b"held", mid=1))
        client.send(gen_pingreq())
        await world.settle()
        assert client.read() == []
        answer.set_result("allow")
        await world.settle()
        assert [p.type for p in client.read()] == [PUBACK, PINGRESP]
        assert [parse_publish(p).payload for p in watcher.read()
                if p.type != SUBACK] == [b"held"]


async def test_topic_alias_in_5() -> None:
    async with ChannelWorld(BrokerOptions(max_topic_alias=4)) as world:
        watcher = watch(world)
        client = world.connect("pub", 5)
        client.send(gen_publish5("long/topic", 0, b"1", props=[(TOPIC_ALIAS, 2)]))
        client.send(gen_publish5("", 0, b"2", props=[(TOPIC_ALIAS, 2)]))
        assert [(parse_publish(p).topic, parse_publish(p).payload)
                for p in watcher.read()] == [(b"long/topic", b"1"), (b"long/topic", b"2")]
        client.send(gen_publish5("", 0, b"3", props=[(TOPIC_ALIAS, 3)]))  # never set
        assert parse_disconnect5(client.read_one()).rc == PROTOCOL_ERROR
        assert client.closed
        client = world.connect("pub2", 5)
        client.send(gen_publish5("t", 0, b"4", props=[(TOPIC_ALIAS, 5)]))  # over the maximum
        assert parse_disconnect5(client.read_one()).rc == TOPIC_ALIAS_INVALID


async def test_receive_maximum_exceeded() -> None:
    """5.0: more unreleased QoS 2 messages than announced is a DISCONNECT 0x93;
    3.1.1: the message is acknowledged and dropped (max_awaiting_rel)."""
    async with ChannelWorld(BrokerOptions(max_awaiting_rel=2)) as world:
        watcher = watch(world)
        new = world.connect("new", 5)
        for mid in (1, 2, 3):
            new.send(gen_publish5("t", 2, b"%d" % mid, mid=mid))
        packets = new.read()
        assert [parse_ack5(p).mid for p in packets[:2]] == [1, 2]
        assert parse_disconnect5(packets[2]).rc == RECEIVE_MAXIMUM_EXCEEDED
        old = world.connect("old")
        for mid in (1, 2, 3):
            old.send(gen_publish("t", 2, b"old%d" % mid, mid=mid))
        assert [p.type for p in old.read()] == [PUBREC] * 3
        assert routed(watcher) == [b"1", b"2", b"old1", b"old2"]


@pytest.mark.parametrize("level", [4, 5])
async def test_acknowledgements_wait_for_their_commit_and_keep_order(
        tmp_path: Path, level: int) -> None:
    """docs/durability.md: PUBACK for a message held by a persistent session leaves
    after the commit; the next PUBACK, which needs none, waits behind it."""
    async with ChannelWorld(store_dir=tmp_path) as world:
        keeper = world.client()
        keeper.send(gen_connect("keeper", clean=False))
        keeper.send(gen_subscribe(1, "kept", 1))
        await world.settle()
        assert [p.type for p in keeper.read()] == [CONNACK, SUBACK]
        client = world.connect("pub", level)
        client.send(publish(level, "kept", 1, b"stored", mid=1))
        client.send(publish(level, "nobody", 1, b"not stored", mid=2))
        assert client.read() == []  # the first waits for its commit, the second for it
        await world.settle()
        assert [parse_ack5(p).mid for p in client.read()] == [1, 2]
        assert [parse_publish(p).payload for p in keeper.read()] == [b"stored"]


async def test_rate_limit_stops_reading_until_the_bucket_refills() -> None:
    """publish_limit: nothing read is refused; the socket is paused, and read again
    once the clock has moved far enough."""
    async with ChannelWorld(BrokerOptions(publish_limit=(2, 1.0))) as world:
        watcher = watch(world)
        client = world.connect("pub")
        for n in range(4):
            client.send(gen_publish("t", 0, b"%d" % n))
        assert not client.conn.reading
        world.clock.advance(0.5)
        assert not client.conn.reading
        world.clock.advance(1.0)
        assert client.conn.reading
        assert routed(watcher) == [b"0", b"1", b"2", b"3"]


async def test_message_expiry_counted_down_5() -> None:
    """Message Expiry Interval: what a 5.0 subscriber gets is the time left."""
    async with ChannelWorld() as world:
        sub = world.connect("sub", 5)
        sub.send(gen_subscribe5(1, [("t", 1)]))
        sub.read()
        sub.channel.set_writable(False)  # the message waits in the session
        client = world.connect("pub", 5)
        client.send(gen_publish5("t", 1, b"x", mid=1, props=[(MESSAGE_EXPIRY_INTERVAL, 60)]))
        world.clock.advance(20)
        sub.channel.set_writable(True)
        delivered = parse_publish5(sub.read_one())
        assert delivered.props.get(MESSAGE_EXPIRY_INTERVAL) == 40
