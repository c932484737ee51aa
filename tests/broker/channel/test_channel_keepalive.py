"""The keepalive flow (channel/keepalive.py): the idle timeout before CONNECT,
PINGREQ, the keepalive window (1.5 x keepalive without a packet closes the
connection [MQTT-3.1.2-24], with DISCONNECT 0x8D to a 5.0 client), MQTT 5.0
Server Keep Alive; on a real Channel and Broker through a fake connection and a
clock moved by hand."""

from __future__ import annotations

import pytest
from helpers.channels import ChannelWorld
from helpers.packets import PINGRESP, Packet, gen_connect, gen_pingreq, gen_subscribe
from helpers.packets5 import (
    KEEP_ALIVE_TIMEOUT,
    SERVER_KEEP_ALIVE,
    gen_connect5,
    parse_connack5,
    parse_disconnect5,
)

from starling.broker import BrokerOptions, HookPoint


@pytest.mark.parametrize("level", [4, 5])
async def test_pingreq_answered(level: int) -> None:
    async with ChannelWorld() as world:
        client = world.connect("c1", level)
        client.send(gen_pingreq())
        assert client.read() == [Packet(PINGRESP, 0, b"")]


async def test_idle_timeout_without_connect() -> None:
    async with ChannelWorld(BrokerOptions(idle_timeout=5.0)) as world:
        client = world.client()
        world.clock.advance(4.8)
        assert not client.closed
        world.clock.advance(0.4)  # deadlines are acted on within 0.1 s
        assert client.closed and client.read() == []


@pytest.mark.parametrize("level", [4, 5])
async def test_keepalive_timeout(level: int) -> None:
    async with ChannelWorld() as world:
        reasons: list[str] = []
        world.broker.hooks.add(HookPoint.CLIENT_DISCONNECTED,
                               lambda info, reason: reasons.append(reason))
        client = world.connect("c1", level, keepalive=10)
        world.clock.advance(14.8)
        assert not client.closed
        world.clock.advance(0.4)
        assert client.closed
        packets = client.read()
        if level == 5:
            assert parse_disconnect5(packets[0]).rc == KEEP_ALIVE_TIMEOUT
        else:
            assert packets == []
        assert reasons == ["keepalive_timeout"]


@pytest.mark.parametrize("level", [4, 5])
async def test_traffic_keeps_the_connection_alive(level: int) -> None:
    async with ChannelWorld() as world:
        client = world.connect("c1", level, keepalive=10)
        for _ in range(5):
            world.clock.advance(10)
            client.send(gen_pingreq())
            assert client.read() == [Packet(PINGRESP, 0, b"")]
        assert not client.closed
        world.clock.advance(15.2)
        assert client.closed


async def test_keepalive_zero_never_times_out() -> None:
    async with ChannelWorld() as world:
        client = world.connect("c1", keepalive=0)
        client.send(gen_subscribe(1, "t", 0))
        world.clock.advance(3600)
        assert not client.closed


async def test_server_keep_alive_5() -> None:
    """Server Keep Alive: told in CONNACK, and the window the server keeps."""
    async with ChannelWorld(BrokerOptions(server_keepalive=4)) as world:
        client = world.client()
        client.send(gen_connect5("c1", keepalive=600))
        assert parse_connack5(client.read_one()).props.get(SERVER_KEEP_ALIVE) == 4
        world.clock.advance(6.2)
        assert client.closed
        old = world.client()
        old.send(gen_connect("c2", keepalive=600))  # 3.1.1: the client's own
        old.read()
        world.clock.advance(60)
        assert not old.closed
