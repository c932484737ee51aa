"""The delivery flow (channel/deliver.py): PUBLISH to the client at the granted
QoS, the in-flight window and the queue, the client's PUBACK / PUBREC / PUBCOMP
and our PUBREL, resends after retry_interval (3.x) and after a reconnect, flow
control from the transport, and what MQTT 5.0 adds per subscriber (Maximum
Packet Size, server topic aliases, Subscription Identifiers); on a real Channel
and Broker through a fake connection."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.channels import ChannelClient, ChannelWorld
from helpers.packets import (
    PUBLISH,
    PUBREL,
    Packet,
    gen_connect,
    gen_puback,
    gen_pubcomp,
    gen_publish,
    gen_pubrec,
    gen_subscribe,
    parse_publish,
)
from helpers.packets5 import (
    MAXIMUM_PACKET_SIZE,
    SUBSCRIPTION_IDENTIFIER,
    TOPIC_ALIAS,
    TOPIC_ALIAS_MAXIMUM,
    gen_connect5,
    gen_pubrec5,
    gen_subscribe5,
    parse_ack5,
    parse_publish5,
)

from starling.broker import BrokerOptions

PACKET_ID_NOT_FOUND = 0x92


def subscriber(world: ChannelWorld, level: int, qos: int, topic_filter: str = "t",
               client_id: str = "sub", **kw: object) -> ChannelClient:
    client = world.connect(client_id, level, **kw)  # type: ignore[arg-type]
    client.send(gen_subscribe5(1, [(topic_filter, qos)]) if level == 5
                else gen_subscribe(1, topic_filter, qos))
    client.read()
    return client


def deliveries(client: ChannelClient, level: int) -> list[tuple[bytes, int, int | None, bool]]:
    """(payload, qos, packet id, dup) of each PUBLISH written to the client."""
    out = []
    for packet in client.read():
        assert packet.type == PUBLISH, str(packet)
        p = parse_publish5(packet) if level == 5 else parse_publish(packet)
        out.append((p.payload, p.qos, p.mid, p.dup))
    return out


@pytest.mark.parametrize("level", [4, 5])
async def test_delivered_at_the_lower_of_the_two_qos(level: int) -> None:
    async with ChannelWorld() as world:
        sub = subscriber(world, level, 1)
        pub = world.connect("pub")
        pub.send(gen_publish("t", 2, b"two", mid=5))
        pub.send(gen_publish("t", 0, b"zero"))
        assert deliveries(sub, level) == [(b"two", 1, 1, False), (b"zero", 0, None, False)]


@pytest.mark.parametrize("level", [4, 5])
async def test_window_then_queue_drained_by_puback(level: int) -> None:
    async with ChannelWorld(BrokerOptions(max_inflight=2)) as world:
        sub = subscriber(world, level, 1)
        pub = world.connect("pub")
        for n in range(4):
            pub.send(gen_publish("t", 1, b"%d" % n, mid=n + 1))
        assert [d[0] for d in deliveries(sub, level)] == [b"0", b"1"]
        sub.send(gen_puback(1))
        assert deliveries(sub, level) == [(b"2", 1, 3, False)]
        sub.send(gen_puback(2))
        sub.send(gen_puback(3))
        assert [d[0] for d in deliveries(sub, level)] == [b"3"]


@pytest.mark.parametrize("level", [4, 5])
async def test_qos2_out_pubrec_pubrel_pubcomp(level: int) -> None:
    async with ChannelWorld() as world:
        sub = subscriber(world, level, 2)
        pub = world.connect("pub")
        pub.send(gen_publish("t", 2, b"x", mid=9))
        assert deliveries(sub, level) == [(b"x", 2, 1, False)]
        sub.send(gen_pubrec(1))
        assert sub.read() == [Packet(PUBREL, 2, b"\x00\x01")]
        sub.send(gen_pubrec(1))  # again before PUBCOMP: PUBREL again
        assert sub.read() == [Packet(PUBREL, 2, b"\x00\x01")]
        sub.send(gen_pubcomp(1))
        assert sub.read() == []
        info = world.broker.session_info("sub")
        assert info is not None and info.inflight_len == 0


async def test_pubrec_for_an_unknown_id_5() -> None:
    async with ChannelWorld() as world:
        sub = world.connect("sub", 5)
        sub.send(gen_pubrec5(4))
        rel = parse_ack5(sub.read_one())
        assert rel.type == PUBREL and rel.rc == PACKET_ID_NOT_FOUND


async def test_retry_interval_resends_with_dup_311() -> None:
    """3.x: what is unacknowledged retry_interval after it was sent goes again,
    DUP set, and again after each further interval."""
    async with ChannelWorld(BrokerOptions(retry_interval=10.0)) as world:
        sub = subscriber(world, 4, 1)
        pub = world.connect("pub")
        pub.send(gen_publish("t", 1, b"x", mid=1))
        assert deliveries(sub, 4) == [(b"x", 1, 1, False)]
        world.clock.advance(9.9)
        assert sub.read() == []
        world.clock.advance(0.2)
        assert deliveries(sub, 4) == [(b"x", 1, 1, True)]
        world.clock.advance(10)
        assert deliveries(sub, 4) == [(b"x", 1, 1, True)]
        sub.send(gen_puback(1))
        world.clock.advance(30)
        assert sub.read() == []


async def test_no_timed_resend_to_5_clients() -> None:
    """MQTT 5.0 resends only on reconnect [MQTT-4.4.0-1]."""
    async with ChannelWorld(BrokerOptions(retry_interval=10.0)) as world:
        sub = subscriber(world, 5, 1)
        pub = world.connect("pub")
        pub.send(gen_publish("t", 1, b"x", mid=1))
        deliveries(sub, 5)
        world.clock.advance(60)
        assert sub.read() == []


@pytest.mark.parametrize("level", [4, 5])
async def test_unacknowledged_resent_on_reconnect(level: int) -> None:
    async with ChannelWorld() as world:
        props = [(0x11, 600)] if level == 5 else ()
        sub = subscriber(world, level, 1, clean=False, props=props)
        pub = world.connect("pub")
        pub.send(gen_publish("t", 1, b"x", mid=1))
        deliveries(sub, level)
        sub.drop()
        sub = world.connect("sub", level, clean=False, props=props)
        await world.settle()  # what the session holds goes out after CONNACK
        assert deliveries(sub, level) == [(b"x", 1, 1, True)]


@pytest.mark.parametrize("level", [4, 5])
async def test_transport_backpressure_queues_then_drains(level: int) -> None:
    async with ChannelWorld() as world:
        sub = subscriber(world, level, 0)
        pub = world.connect("pub")
        sub.channel.set_writable(False)  # the socket's write buffer is full
        pub.send(gen_publish("t", 0, b"a"))
        pub.send(gen_publish("t", 0, b"b"))
        assert sub.read() == []
        sub.channel.set_writable(True)
        assert [d[0] for d in deliveries(sub, level)] == [b"a", b"b"]


async def test_maximum_packet_size_drops_what_does_not_fit_5() -> None:
    """§3.1.2.11.4: too large for the client: not sent, the flow counts as done."""
    async with ChannelWorld() as world:
        sub = subscriber(world, 5, 1, props=[(MAXIMUM_PACKET_SIZE, 40)])
        pub = world.connect("pub")
        pub.send(gen_publish("t", 1, b"small", mid=1))
        pub.send(gen_publish("t", 1, b"x" * 100, mid=2))
        pub.send(gen_publish("t", 1, b"after", mid=3))
        assert [d[0] for d in deliveries(sub, 5)] == [b"small", b"after"]


async def test_server_topic_alias_5() -> None:
    """mqtt.server_topic_alias: the first PUBLISH carries topic and alias, the
    next only the alias; the client's Topic Alias Maximum bounds them."""
    async with ChannelWorld(BrokerOptions(server_topic_alias=True)) as world:
        sub = subscriber(world, 5, 0, "#", props=[(TOPIC_ALIAS_MAXIMUM, 1)])
        pub = world.connect("pub")
        for topic in ("a/long/topic", "a/long/topic", "other"):
            pub.send(gen_publish(topic, 0, b"x"))
        seen = [parse_publish5(p) for p in sub.read()]
        assert [(p.topic, p.props.get(TOPIC_ALIAS)) for p in seen] == [
            ("a/long/topic", 1), ("", 1), ("other", None)]


async def test_subscription_identifiers_out_5() -> None:
    """[MQTT-3.3.4-3]: each matching subscription's identifier goes with the copy."""
    async with ChannelWorld() as world:
        sub = world.connect("sub", 5)
        sub.send(gen_subscribe5(1, [("t/#", 0)], props=[(SUBSCRIPTION_IDENTIFIER, 7)]))
        sub.send(gen_subscribe5(2, [("t/+", 0)], props=[(SUBSCRIPTION_IDENTIFIER, 9)]))
        sub.read()
        pub = world.connect("pub")
        pub.send(gen_publish("t/a", 0, b"x"))
        ids = [sorted(parse_publish5(p).props.all(SUBSCRIPTION_IDENTIFIER)) for p in sub.read()]
        assert ids == [[7, 9]]


@pytest.mark.parametrize("level", [4, 5])
async def test_pubrel_to_a_persistent_subscriber_waits_for_its_commit(
        tmp_path: Path, level: int) -> None:
    """docs/durability.md: the "released" state is on disk before PUBREL."""
    async with ChannelWorld(store_dir=tmp_path) as world:
        props = [(0x11, 600)] if level == 5 else ()
        sub = world.client()
        sub.send(gen_connect5("sub", False, props=props) if level == 5
                 else gen_connect("sub", clean=False, proto_level=level))
        sub.send(gen_subscribe5(1, [("t", 2)]) if level == 5 else gen_subscribe(1, "t", 2))
        await world.settle()
        sub.read()
        pub = world.connect("pub")
        pub.send(gen_publish("t", 2, b"x", mid=1))
        await world.settle()
        assert deliveries(sub, level) == [(b"x", 2, 1, False)]
        sub.send(gen_pubrec(1))
        assert sub.read() == []
        await world.settle()
        assert sub.read() == [Packet(PUBREL, 2, b"\x00\x01")]
