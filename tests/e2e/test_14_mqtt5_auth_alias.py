"""MQTT 5.0 enhanced authentication (§4.12) through the `client.enhanced_authenticate`
hook, and server-to-client topic aliases (§3.3.2.3.4), with raw clients."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.packets5 import (
    AUTH,
    AUTHENTICATION_DATA,
    AUTHENTICATION_METHOD,
    TOPIC_ALIAS,
    TOPIC_ALIAS_MAXIMUM,
    RawClient5,
    decode_props,
    gen_auth5,
    gen_connect5,
    gen_publish5,
    parse_connack5,
)
from tests.helpers.plugins import install_plugin

CONNACK = 2
CONTINUE = 0x18


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(autouse=True)
def _close_raw_clients(monkeypatch) -> Iterator[None]:
    """Every RawClient5 a test opens is closed when it ends."""
    made: list[RawClient5] = []
    original = RawClient5.__init__

    def tracking_init(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        original(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(RawClient5, "__init__", tracking_init)
    yield
    for client in made:
        client.close()


# -- server-to-client topic aliases -------------------------------------------------------------
def test_server_assigns_topic_aliases_up_to_the_client_maximum(make_node) -> None:
    node = make_node({"mqtt.server_topic_alias": "true"})
    base = uid("alias")
    sub = RawClient5(node.host, node.port)
    sub.connect5(uid("as"), props=[(TOPIC_ALIAS_MAXIMUM, 2)])
    assert sub.subscribe5(1, [(f"{base}/#", 0)]) == [0]
    pub = RawClient5(node.host, node.port)
    pub.connect5(uid("ap"))
    sequence = ["a", "a", "b", "c", "a", "c"]
    for i, leaf in enumerate(sequence):
        pub.send(gen_publish5(f"{base}/{leaf}", 0, str(i).encode()))
    got = [sub.expect_publish5() for _ in sequence]
    seen = [(m.topic, m.props.get(TOPIC_ALIAS), m.payload) for m in got]
    assert seen == [
        (f"{base}/a", 1, b"0"),  # new topic: full name and its alias
        ("", 1, b"1"),            # known: alias only
        (f"{base}/b", 2, b"2"),
        (f"{base}/c", None, b"3"),  # the client's maximum (2) is used up
        ("", 1, b"4"),
        (f"{base}/c", None, b"5"),
    ], seen


def test_no_aliases_for_a_client_that_takes_none(make_node) -> None:
    node = make_node({"mqtt.server_topic_alias": "true"})
    topic = uid("noalias")
    sub = RawClient5(node.host, node.port)
    sub.connect5(uid("ns"))
    sub.subscribe5(1, [(topic, 0)])
    pub = RawClient5(node.host, node.port)
    pub.connect5(uid("np"))
    for _ in range(2):
        pub.send(gen_publish5(topic, 0, b"x"))
    for _ in range(2):
        message = sub.expect_publish5()
        assert message.topic == topic and TOPIC_ALIAS not in message.props


def test_aliases_off_by_default(make_node) -> None:
    node = make_node()
    topic = uid("off")
    sub = RawClient5(node.host, node.port)
    sub.connect5(uid("os"), props=[(TOPIC_ALIAS_MAXIMUM, 10)])
    sub.subscribe5(1, [(topic, 0)])
    pub = RawClient5(node.host, node.port)
    pub.connect5(uid("op"))
    pub.send(gen_publish5(topic, 0, b"x"))
    message = sub.expect_publish5()
    assert message.topic == topic and TOPIC_ALIAS not in message.props


# -- enhanced authentication ---------------------------------------------------------------------
TOY = '''
from starling.broker import AuthStep, HookPoint, Stop
from starling.plugins import Plugin, PluginInfo


class Toy(Plugin):
    """Method TOY: hello -> challenge; response -> welcome.  Anything else fails."""

    async def load(self):
        self.context.broker.hooks.add(HookPoint.CLIENT_ENHANCED_AUTHENTICATE, self.step)

    async def unload(self):
        self.context.broker.hooks.remove(HookPoint.CLIENT_ENHANCED_AUTHENTICATE, self.step)

    async def step(self, channel, method, data, acc):
        if method != "TOY":
            return None
        if data == b"hello":
            return Stop(AuthStep("continue", b"challenge"))
        if data == b"response":
            return Stop(AuthStep("success", b"welcome"))
        return Stop(AuthStep("failure"))


def register(registry):
    registry.add(PluginInfo("toy_auth", "Challenge/response test plugin", "auth"))
    registry.implement("toy_auth", Toy, ())
'''


def toy_node(make_node, tmp_path: Path, monkeypatch):
    install_plugin(tmp_path / "site", monkeypatch, "toy_auth", TOY)
    return make_node({"plugins.loaded": "emqx_management,toy_auth"})


def connect_toy(node, data: bytes) -> RawClient5:
    client = RawClient5(node.host, node.port)
    client.send(gen_connect5(uid("toy"), props=[(AUTHENTICATION_METHOD, "TOY"),
                                               (AUTHENTICATION_DATA, data)]))
    return client


def test_challenge_response_then_connack(make_node, tmp_path, monkeypatch) -> None:
    node = toy_node(make_node, tmp_path, monkeypatch)
    client = connect_toy(node, b"hello")
    auth = client.expect_type(AUTH)
    props, _ = decode_props(auth.body, 1)
    assert auth.body[0] == CONTINUE
    assert props.get(AUTHENTICATION_METHOD) == "TOY"
    assert props.get(AUTHENTICATION_DATA) == b"challenge"
    client.send(gen_auth5(CONTINUE, [(AUTHENTICATION_METHOD, "TOY"),
                                     (AUTHENTICATION_DATA, b"response")]))
    connack = parse_connack5(client.expect_type(CONNACK))
    assert connack.rc == 0
    assert connack.props.get(AUTHENTICATION_METHOD) == "TOY"
    assert connack.props.get(AUTHENTICATION_DATA) == b"welcome"


def test_wrong_response_is_refused(make_node, tmp_path, monkeypatch) -> None:
    node = toy_node(make_node, tmp_path, monkeypatch)
    client = connect_toy(node, b"hello")
    client.expect_type(AUTH)
    client.send(gen_auth5(CONTINUE, [(AUTHENTICATION_METHOD, "TOY"),
                                     (AUTHENTICATION_DATA, b"wrong")]))
    assert parse_connack5(client.expect_type(CONNACK)).rc == 0x87
    client.expect_closed()


def test_unknown_method_with_a_handler_loaded_is_refused(make_node, tmp_path,
                                                         monkeypatch) -> None:
    node = toy_node(make_node, tmp_path, monkeypatch)
    client = RawClient5(node.host, node.port)
    client.send(gen_connect5(uid("other"), props=[(AUTHENTICATION_METHOD, "SCRAM-SHA-1")]))
    assert parse_connack5(client.expect_type(CONNACK)).rc == 0x87
