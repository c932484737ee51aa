"""The subscription flow (channel/subscribe.py): SUBACK codes (granted QoS,
invalid filters, features switched off, the ACL), retained messages after
SUBACK and MQTT 5.0 retain handling, Subscription Identifiers and No Local
checks, UNSUBACK, and SUBACK held for the commit of a persistent session; MQTT
3.1.1 and 5.0, on a real Channel and Broker through a fake connection."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.channels import ChannelWorld
from helpers.packets import (
    PUBLISH,
    SUBACK,
    UNSUBACK,
    Packet,
    gen_connect,
    gen_publish,
    gen_subscribe,
    gen_unsubscribe,
)
from helpers.packets5 import (
    NO_SUBSCRIPTION_EXISTED,
    PROTOCOL_ERROR,
    SHARED_SUBSCRIPTIONS_NOT_SUPPORTED,
    SUBSCRIPTION_IDENTIFIER,
    WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED,
    gen_connect5,
    gen_publish5,
    gen_subscribe5,
    gen_unsubscribe5,
    parse_disconnect5,
    parse_suback5,
    sub_options,
)

from starling.broker import BrokerOptions

TOPIC_FILTER_INVALID = 0x8F
NOT_AUTHORIZED_5 = 0x87
PRIVATE_ACL = '{deny, all, subscribe, ["private/#"]}.\n{allow, all}.\n'


def subscribe(level: int, mid: int, *filters: tuple[str, int]) -> bytes:
    if level == 5:
        return gen_subscribe5(mid, list(filters))
    return gen_subscribe(mid, [(f, q) for f, q in filters])


@pytest.mark.parametrize("level", [4, 5])
async def test_suback_grants_and_refuses(level: int) -> None:
    options = BrokerOptions(wildcard_subscription=False, shared_subscription=False)
    async with ChannelWorld(options) as world:
        client = world.connect("c1", level)
        client.send(subscribe(level, 3, ("a/b", 2), ("a/#/b", 1), ("a/+", 0),
                              ("$share/g/a", 1)))
        packet = client.read_one()
        assert packet.body[:2] == b"\x00\x03"
        codes = parse_suback5(packet)[2] if level == 5 else list(packet.body[2:])
        if level == 5:
            assert codes == [2, TOPIC_FILTER_INVALID, WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED,
                             SHARED_SUBSCRIPTIONS_NOT_SUPPORTED]
        else:
            assert codes == [2, 0x80, 0x80, 0x80]


@pytest.mark.parametrize(("level", "refused"), [(4, 0x80), (5, NOT_AUTHORIZED_5)])
async def test_acl_refused_filter(level: int, refused: int) -> None:
    async with ChannelWorld(acl=PRIVATE_ACL) as world:
        client = world.connect("c1", level)
        client.send(subscribe(level, 1, ("private/x", 1), ("public/x", 1)))
        packet = client.read_one()
        codes = parse_suback5(packet)[2] if level == 5 else list(packet.body[2:])
        assert codes == [refused, 1]


@pytest.mark.parametrize("level", [4, 5])
async def test_retained_messages_follow_the_suback(level: int) -> None:
    async with ChannelWorld() as world:
        pub = world.connect("pub")
        pub.send(gen_publish("r/1", 0, b"kept", retain=True))
        client = world.connect("c1", level)
        client.send(subscribe(level, 1, ("r/#", 0)))
        packets = client.read()
        assert [p.type for p in packets] == [SUBACK, PUBLISH]
        assert packets[1].flags & 0x01  # RETAIN set [MQTT-3.3.1-8]


async def test_retain_handling_5() -> None:
    """0: always; 1: only for a new subscription; 2: never (§3.8.3.1)."""
    async with ChannelWorld() as world:
        pub = world.connect("pub")
        pub.send(gen_publish("r", 0, b"kept", retain=True))
        client = world.connect("c1", 5)
        sent = []
        for mid, handling in ((1, 1), (2, 1), (3, 2), (4, 0)):
            client.send(gen_subscribe5(mid, [("r", sub_options(0, retain_handling=handling))]))
            sent.append([p.type for p in client.read()])
        assert sent == [[SUBACK, PUBLISH], [SUBACK], [SUBACK], [SUBACK, PUBLISH]]


async def test_subscription_identifier_and_no_local_checks_5() -> None:
    async with ChannelWorld() as world:
        client = world.connect("c1", 5)
        client.send(gen_subscribe5(1, [("t", 0)], props=[(SUBSCRIPTION_IDENTIFIER, 0)]))
        assert parse_disconnect5(client.read_one()).rc == PROTOCOL_ERROR  # §3.8.2.1.2
        client = world.connect("c2", 5)
        client.send(gen_subscribe5(1, [("$share/g/t", sub_options(0, no_local=True))]))
        assert parse_disconnect5(client.read_one()).rc == PROTOCOL_ERROR  # [MQTT-3.8.3-4]


async def test_no_local_5() -> None:
    async with ChannelWorld() as world:
        client = world.connect("c1", 5)
        client.send(gen_subscribe5(1, [("t", sub_options(0, no_local=True))]))
        client.read()
        client.send(gen_publish5("t", 0, b"mine"))
        assert client.read() == [] and not client.closed


@pytest.mark.parametrize("level", [4, 5])
async def test_unsubscribe(level: int) -> None:
    async with ChannelWorld() as world:
        client = world.connect("c1", level)
        client.send(subscribe(level, 1, ("t", 0)))
        client.read()
        client.send(gen_unsubscribe5(2, ["t", "never"]) if level == 5
                    else gen_unsubscribe(2, ["t", "never"]))
        packet = client.read_one()
        assert packet.type == UNSUBACK
        if level == 5:
            assert parse_suback5(packet)[2] == [0, NO_SUBSCRIPTION_EXISTED]
        else:
            assert packet == Packet(UNSUBACK, 0, b"\x00\x02")
        pub = world.connect("pub")
        pub.send(gen_publish("t", 0, b"x"))
        assert client.read() == []


@pytest.mark.parametrize("level", [4, 5])
async def test_suback_of_a_persistent_session_waits_for_its_commit(
        tmp_path: Path, level: int) -> None:
    async with ChannelWorld(store_dir=tmp_path) as world:
        client = world.client()
        client.send(gen_connect5("c1", False, props=[(0x11, 600)]) if level == 5
                    else gen_connect("c1", clean=False, proto_level=level))
        await world.settle()
        client.read()
        client.send(subscribe(level, 1, ("t", 1)))
        assert client.read() == []
        await world.settle()
        assert [p.type for p in client.read()] == [SUBACK]
        clean = world.connect("c2", level)  # a clean session: nothing to wait for
        clean.send(subscribe(level, 1, ("t", 1)))
        assert [p.type for p in clean.read()] == [SUBACK]
