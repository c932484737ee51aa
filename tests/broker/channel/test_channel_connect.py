"""The connect flow (channel/connect.py): CONNECT, CONNACK, authentication (the
`client.authenticate` chain, MQTT 5.0 enhanced authentication), the ban check,
takeover, the will, DISCONNECT, and the CONNACK that waits for its commit, in
MQTT 3.1.1 and 5.0, on a real Channel and Broker through a fake connection."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from helpers.channels import ChannelWorld
from helpers.packets import (
    CONNACK,
    DISCONNECT,
    PINGRESP,
    PUBLISH,
    SUBACK,
    Packet,
    Will,
    gen_connect,
    gen_disconnect,
    gen_pingreq,
    gen_publish,
    gen_subscribe,
    parse_publish,
)
from helpers.packets5 import (
    ASSIGNED_CLIENT_IDENTIFIER,
    AUTH,
    AUTHENTICATION_DATA,
    AUTHENTICATION_METHOD,
    BAD_AUTHENTICATION_METHOD,
    DISCONNECT_WITH_WILL,
    PROTOCOL_ERROR,
    RECEIVE_MAXIMUM,
    SESSION_EXPIRY_INTERVAL,
    SESSION_TAKEN_OVER,
    TOPIC_ALIAS_MAXIMUM,
    Will5,
    decode_props,
    gen_auth5,
    gen_connect5,
    gen_disconnect5,
    gen_subscribe5,
    parse_connack5,
    parse_disconnect5,
    parse_publish5,
)

from starling.broker import AuthResult, AuthStep, Ban, BrokerOptions, ClientInfo, HookPoint
from starling.mqtt import ReasonCode

NOT_AUTHORIZED_311 = 5
BANNED_5 = 0x8A
NOT_AUTHORIZED_5 = 0x87


async def test_connect_accepted_311() -> None:
    async with ChannelWorld() as world:
        client = world.client()
        client.send(gen_connect("c1", keepalive=30))
        assert client.read() == [Packet(CONNACK, 0, b"\x00\x00")]
        info = world.broker.client_info("c1")
        assert info is not None and info.proto_ver == 4 and info.keepalive == 30


async def test_connect_accepted_5_tells_the_server_limits() -> None:
    async with ChannelWorld(BrokerOptions(max_topic_alias=7)) as world:
        client = world.client()
        client.send(gen_connect5("", props=[(SESSION_EXPIRY_INTERVAL, 0)]))
        connack = parse_connack5(client.read_one())
        assert connack.rc == 0 and not connack.session_present
        assert connack.props.get(TOPIC_ALIAS_MAXIMUM) == 7
        assert connack.props.get(RECEIVE_MAXIMUM) is not None
        assigned = connack.props.get(ASSIGNED_CLIENT_IDENTIFIER)
        assert assigned and world.broker.client_info(assigned) is not None


async def test_empty_client_id_with_a_persistent_session_refused_311() -> None:
    """[MQTT-3.1.3-8]: identifier rejected (2), then the connection closes."""
    async with ChannelWorld() as world:
        client = world.client()
        client.send(gen_connect("", clean=False))
        assert client.read() == [Packet(CONNACK, 0, b"\x00\x02")]
        assert client.closed


async def test_a_packet_before_connect_closes_without_an_answer() -> None:
    async with ChannelWorld() as world:
        client = world.client()
        client.send(gen_pingreq())
        assert client.read() == [] and client.closed


@pytest.mark.parametrize("level", [4, 5])
async def test_second_connect_is_a_protocol_error(level: int) -> None:
    async with ChannelWorld() as world:
        client = world.connect("c1", level)
        client.send(gen_connect5("c1") if level == 5 else gen_connect("c1"))
        packets = client.read()
        if level == 5:
            assert [p.type for p in packets] == [DISCONNECT]
            assert parse_disconnect5(packets[0]).rc == PROTOCOL_ERROR
        else:
            assert packets == []
        assert client.closed and world.broker.client_info("c1") is None


async def test_unsupported_protocol_level_answered_in_311_form() -> None:
    """[MQTT-3.1.2-2]: CONNACK 0x01, 4 bytes, then close."""
    async with ChannelWorld() as world:
        client = world.client()
        client.send(gen_connect("c1", proto_level=6))
        assert client.read() == [Packet(CONNACK, 0, b"\x00\x01")]
        assert client.closed


@pytest.mark.parametrize(("level", "code"), [(4, NOT_AUTHORIZED_311), (5, NOT_AUTHORIZED_5)])
async def test_authentication_hook_is_awaited_and_packets_wait_behind_it(
        level: int, code: int) -> None:
    """A `client.authenticate` coroutine decides; a packet sent meanwhile is handled
    after CONNACK (here: refused, so never)."""
    async with ChannelWorld() as world:
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

        async def authenticate(info: ClientInfo, acc: AuthResult) -> AuthResult:
            ok = await answer
            return AuthResult(ReasonCode.SUCCESS if ok else ReasonCode.NOT_AUTHORIZED,
                              anonymous=False)

        world.broker.hooks.add(HookPoint.CLIENT_AUTHENTICATE, authenticate)
        accepted, refused = world.client(), world.client()
        for client, user in ((accepted, "good"), (refused, "bad")):
            client.send(gen_connect5("c-" + user, username=user) if level == 5
                        else gen_connect("c-" + user, username=user, proto_level=level))
            client.send(gen_pingreq())
        await world.settle()
        assert accepted.read() == [] and refused.read() == []  # still authenticating
        answer.set_result(True)
        await world.settle()
        packets = accepted.read()
        assert [p.type for p in packets] == [CONNACK, PINGRESP]
        assert refused.read()[0].type == CONNACK  # same answer: both awaited one future

    async with ChannelWorld() as world:
        async def deny(info: ClientInfo, acc: AuthResult) -> AuthResult:
            await asyncio.sleep(0)
            return AuthResult(ReasonCode.NOT_AUTHORIZED, anonymous=False)

        world.broker.hooks.add(HookPoint.CLIENT_AUTHENTICATE, deny)
        client = world.client()
        client.send(gen_connect5("c1") if level == 5 else gen_connect("c1", proto_level=level))
        client.send(gen_pingreq())
        await world.settle()
        packets = client.read()
        assert [p.type for p in packets] == [CONNACK]
        rc = parse_connack5(packets[0]).rc if level == 5 else packets[0].body[1]
        assert rc == code and client.closed


async def test_enhanced_authentication_5() -> None:
    """§4.12: AUTH 0x18 back and forth, then CONNACK with the method; a
    re-authentication once connected answers AUTH 0x00."""
    async with ChannelWorld() as world:
        seen: list[bytes | None] = []

        async def scram(info: ClientInfo, method: str, data: bytes | None,
                        acc: AuthStep | None) -> AuthStep:
            seen.append(data)
            if data == b"first":
                return AuthStep("continue", b"challenge")
            return AuthStep("success" if data == b"proof" else "failure")

        world.broker.hooks.add(HookPoint.CLIENT_ENHANCED_AUTHENTICATE, scram)
        client = world.client()
        method = [(AUTHENTICATION_METHOD, "SCRAM")]
        client.send(gen_connect5("c1", props=[*method, (AUTHENTICATION_DATA, b"first")]))
        await world.settle()
        step = client.read_one()
        assert step.type == AUTH and step.body[0] == 0x18
        assert decode_props(step.body, 1)[0].get(AUTHENTICATION_DATA) == b"challenge"
        client.send(gen_auth5(0x18, [*method, (AUTHENTICATION_DATA, b"proof")]))
        await world.settle()
        connack = parse_connack5(client.read_one())
        assert connack.rc == 0 and connack.props.get(AUTHENTICATION_METHOD) == "SCRAM"
        client.send(gen_auth5(0x19, [*method, (AUTHENTICATION_DATA, b"proof")]))
        await world.settle()
        again = client.read_one()
        assert again.type == AUTH and again.body[0] == 0x00
        assert seen == [b"first", b"proof", b"proof"]


async def test_enhanced_authentication_without_a_backend_is_a_bad_method_5() -> None:
    async with ChannelWorld() as world:
        client = world.client()
        client.send(gen_connect5("c1", props=[(AUTHENTICATION_METHOD, "SCRAM")]))
        assert parse_connack5(client.read_one()).rc == BAD_AUTHENTICATION_METHOD
        assert client.closed


@pytest.mark.parametrize(("level", "code"), [(4, NOT_AUTHORIZED_311), (5, BANNED_5)])
async def test_banned_client_refused(level: int, code: int) -> None:
    async with ChannelWorld() as world:
        world.broker.banned.add(Ban("client_id", "bad"))
        client = world.client()
        client.send(gen_connect5("bad") if level == 5 else gen_connect("bad", proto_level=level))
        packet = client.read_one()
        rc = parse_connack5(packet).rc if level == 5 else packet.body[1]
        assert rc == code and client.closed


@pytest.mark.parametrize("level", [4, 5])
async def test_takeover_closes_the_older_connection(level: int) -> None:
    async with ChannelWorld() as world:
        first = world.connect("c1", level, clean=False,
                              props=[(SESSION_EXPIRY_INTERVAL, 60)] if level == 5 else ())
        second = world.client()
        second.send(gen_connect5("c1", False, props=[(SESSION_EXPIRY_INTERVAL, 60)])
                    if level == 5 else gen_connect("c1", clean=False, proto_level=level))
        packet = second.read_one()
        present = parse_connack5(packet).session_present if level == 5 else packet.body[0] == 1
        assert present
        assert first.closed
        if level == 5:
            assert parse_disconnect5(first.read_one()).rc == SESSION_TAKEN_OVER
        else:
            assert first.read() == []


@pytest.mark.parametrize("level", [4, 5])
async def test_will_published_when_the_connection_drops_not_after_disconnect(
        level: int) -> None:
    async with ChannelWorld() as world:
        watcher = world.connect("watcher")
        watcher.send(gen_subscribe(1, "will/#", 0))
        watcher.read()
        for name, goodbye in (("dropped", None), ("polite", gen_disconnect())):
            client = world.client()
            client.send(gen_connect5(name, will=Will5(f"will/{name}", b"gone"))
                        if level == 5 else
                        gen_connect(name, will=Will(f"will/{name}", b"gone"), proto_level=level))
            client.read()
            if goodbye is None:
                client.drop()
            else:
                client.send(goodbye)
                assert client.closed
        published = [parse_publish(p) for p in watcher.read()]
        assert [(p.topic, p.payload) for p in published] == [(b"will/dropped", b"gone")]


async def test_disconnect_with_will_message_5() -> None:
    """DISCONNECT 0x04 publishes the will; raising a 0 session expiry is an error."""
    async with ChannelWorld() as world:
        watcher = world.connect("watcher")
        watcher.send(gen_subscribe(1, "will/#", 0))
        watcher.read()
        client = world.client()
        client.send(gen_connect5("c1", will=Will5("will/c1", b"bye")))
        client.read()
        client.send(gen_disconnect5(DISCONNECT_WITH_WILL))
        assert [parse_publish(p).topic for p in watcher.read()] == [b"will/c1"]

        client = world.connect("c2", 5)
        client.send(gen_disconnect5(0, [(SESSION_EXPIRY_INTERVAL, 30)]))  # [MQTT-3.14.2-2]
        assert parse_disconnect5(client.read_one()).rc == PROTOCOL_ERROR
        assert client.closed


@pytest.mark.parametrize("level", [4, 5])
async def test_connack_of_a_persistent_session_waits_for_its_commit(
        tmp_path: Path, level: int) -> None:
    """docs/durability.md: the CONNACK leaves once the session is on disk; a reply
    to a packet sent right behind CONNECT, and deliveries, queue behind it."""
    async with ChannelWorld(store_dir=tmp_path) as world:
        sender = world.connect("sender")
        await world.settle()
        client = world.client()
        client.send(gen_connect5("c1", False, props=[(SESSION_EXPIRY_INTERVAL, 600)])
                    if level == 5 else gen_connect("c1", clean=False, proto_level=level))
        client.send(gen_pingreq())
        assert client.read() == []  # the session is not committed yet
        await world.settle()
        assert [p.type for p in client.read()] == [CONNACK, PINGRESP]
        client.send(gen_subscribe5(1, [("t", 1)]) if level == 5 else gen_subscribe(1, "t", 1))
        await world.settle()
        assert [p.type for p in client.read()] == [SUBACK]
        client.drop()
        sender.send(gen_publish("t", 1, b"kept", mid=1))  # queued for the offline session
        await world.settle()
        sender.read()
        client = world.client()
        client.send(gen_connect5("c1", False, props=[(SESSION_EXPIRY_INTERVAL, 600)])
                    if level == 5 else gen_connect("c1", clean=False, proto_level=level))
        assert client.read() == []
        await world.settle()
        packets = client.read()
        assert [p.type for p in packets] == [CONNACK, PUBLISH]
        assert packets[0].body[0] == 1  # session present
        delivered = parse_publish5(packets[1]) if level == 5 else parse_publish(packets[1])
        assert delivered.payload == b"kept"
