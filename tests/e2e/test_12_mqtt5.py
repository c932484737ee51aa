"""MQTT 5.0 (issue 3): one group of tests per bullet of the issue.

Clients are paho-mqtt 2.x speaking MQTT v5 (`V5` below) and, where paho hides
what matters (reason codes and properties on the wire, server DISCONNECTs,
CONNACK properties), raw sockets with hand-built MQTT 5.0 packets
(`helpers/packets5.py`, written from the standard, not from Starling's codec).

Negative checks ("X is not delivered") use a barrier instead of a sleep: a
message published afterwards, on a path that keeps order, must arrive first.
Raw clients use PINGREQ as the barrier: the server answers it after every
PUBLISH it had already decided to send.  Sleeps appear only where time itself
is under test (expiry intervals, will delay), each 3 s at most.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from helpers import packets as p3
from helpers.clients import sys_metric, uid, wait_until
from helpers.nodes import ON_MOSQUITTO
from helpers.packets import PINGRESP, PUBACK, PUBCOMP, PUBLISH, PUBREC, UNSUBACK, Packet
from helpers.packets5 import (
    ASSIGNED_CLIENT_IDENTIFIER,
    AUTHENTICATION_METHOD,
    BAD_AUTHENTICATION_METHOD,
    CONTENT_TYPE,
    CORRELATION_DATA,
    DISCONNECT_WITH_WILL,
    KEEP_ALIVE_TIMEOUT,
    MALFORMED_PACKET,
    MAXIMUM_PACKET_SIZE,
    MAXIMUM_QOS,
    MESSAGE_EXPIRY_INTERVAL,
    NO_MATCHING_SUBSCRIBERS,
    NO_SUBSCRIPTION_EXISTED,
    PACKET_TOO_LARGE,
    PAYLOAD_FORMAT_INDICATOR,
    PROTOCOL_ERROR,
    REASON_STRING,
    RECEIVE_MAXIMUM,
    RECEIVE_MAXIMUM_EXCEEDED,
    REQUEST_PROBLEM_INFORMATION,
    REQUEST_RESPONSE_INFORMATION,
    RESPONSE_INFORMATION,
    RESPONSE_TOPIC,
    RETAIN_AVAILABLE,
    RETAIN_NOT_SUPPORTED,
    SERVER_KEEP_ALIVE,
    SESSION_EXPIRY_INTERVAL,
    SESSION_TAKEN_OVER,
    SHARED_SUBSCRIPTION_AVAILABLE,
    SHARED_SUBSCRIPTIONS_NOT_SUPPORTED,
    SUBSCRIPTION_IDENTIFIER,
    SUBSCRIPTION_IDENTIFIER_AVAILABLE,
    TOPIC_ALIAS,
    TOPIC_ALIAS_INVALID,
    TOPIC_ALIAS_MAXIMUM,
    USER_PROPERTY,
    WILDCARD_SUBSCRIPTION_AVAILABLE,
    WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED,
    WILL_DELAY_INTERVAL,
    PropList,
    Publish5,
    RawClient5,
    Will5,
    decode_vbi,
    encode_vbi,
    gen_auth5,
    gen_connect5,
    gen_disconnect5,
    gen_puback5,
    gen_publish5,
    gen_pubrel5,
    gen_subscribe5,
    gen_unsubscribe5,
    parse_connack5,
    parse_publish5,
    parse_suback5,
    sub_options,
)
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

#: A MUST of the standard that Debian's mosquitto 2.0.11 does not meet: expected to
#: fail only when the suite is cross-checked against it (STARLING_E2E_BROKER=mosquitto).
mosquitto_deviates = pytest.mark.xfail(ON_MOSQUITTO, strict=False,
                                       reason="mosquitto 2.0.11 does not conform here")


# -- a paho MQTT v5 client with blocking helpers ---------------------------------------------
@dataclass(frozen=True)
class Msg:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    props: Any  #: paho Properties

    def prop(self, name: str) -> Any:
        return getattr(self.props, name, None) if self.props is not None else None


def _props(packet_type: int, values: dict[str, Any] | None) -> Properties | None:
    if not values:
        return None
    props = Properties(packet_type)
    for name, value in values.items():
        setattr(props, name, value)
    return props


class V5:
    """paho-mqtt MQTT v5 client (callback API 2) on a background loop."""

    def __init__(self, node: Any, client_id: str | None = None) -> None:
        self.node = node
        self.client_id = uid("v5") if client_id is None else client_id
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                  protocol=mqtt.MQTTv5)
        self.client.reconnect_delay_set(min_delay=60, max_delay=60)  # no silent reconnects
        self.messages: queue.Queue[Msg] = queue.Queue()
        self.connack: tuple[int, bool, Any] | None = None
        self.disconnect_rc: int | None = None
        self._connected = threading.Event()
        self._disconnected = threading.Event()
        self._cond = threading.Condition()
        self._subacks: dict[int, list[int]] = {}
        self._acks: dict[int, int] = {}
        self._loop = False
        c = self.client
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        c.on_publish = self._on_publish

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self.connack = (int(rc.value), bool(flags.session_present), props)
        self._connected.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, rc: Any,
                       props: Any) -> None:
        self.disconnect_rc = int(rc.value)
        self._connected.clear()
        self._disconnected.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        self.messages.put(Msg(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain),
                              getattr(msg, "properties", None)))

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, rcs: Any, props: Any) -> None:
        with self._cond:
            self._subacks[mid] = [int(rc.value) for rc in rcs]
            self._cond.notify_all()

    def _on_publish(self, client: Any, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        with self._cond:
            self._acks[mid] = int(rc.value)
            self._cond.notify_all()

    def will_set(self, topic: str, payload: bytes = b"", qos: int = 0, retain: bool = False,
                 props: dict[str, Any] | None = None) -> None:
        self.client.will_set(topic, payload, qos, retain,
                             properties=_props(PacketTypes.WILLMESSAGE, props))

    def connect(self, clean_start: bool = True, keepalive: int = 60,
                props: dict[str, Any] | None = None, expect_rc: int | None = 0,
                timeout: float = 5.0) -> tuple[int, bool, Any]:
        """Connect; return (reason code, session present, CONNACK properties)."""
        self._connected.clear()
        self._disconnected.clear()
        self.connack = None
        self.client.connect(self.node.host, self.node.port, keepalive, clean_start=clean_start,
                            properties=_props(PacketTypes.CONNECT, props))
        if not self._loop:
            self.client.loop_start()
            self._loop = True
        wait_until(lambda: self.connack is not None, timeout, message=f"{self.client_id} CONNACK")
        assert self.connack is not None
        if expect_rc is not None:
            assert self.connack[0] == expect_rc, f"CONNACK 0x{self.connack[0]:02x}"
        return self.connack

    def subscribe(self, topic: str, qos: int = 0, no_local: bool = False,
                  retain_as_published: bool = False, retain_handling: int = 0,
                  sub_id: int | None = None, timeout: float = 5.0) -> list[int]:
        options = SubscribeOptions(qos, no_local, retain_as_published, retain_handling)
        props = _props(PacketTypes.SUBSCRIBE,
                       {"SubscriptionIdentifier": sub_id} if sub_id else None)
        rc, mid = self.client.subscribe(topic, options=options, properties=props)
        assert rc == mqtt.MQTT_ERR_SUCCESS, rc
        with self._cond:
            if not self._cond.wait_for(lambda: mid in self._subacks, timeout):
                raise AssertionError(f"no SUBACK for {topic!r}")
            return self._subacks.pop(mid)

    def publish(self, topic: str, payload: bytes | str = b"", qos: int = 0,
                retain: bool = False, props: dict[str, Any] | None = None,
                timeout: float = 5.0) -> int | None:
        """Publish; for QoS > 0 wait for the acknowledgement and return its reason code."""
        info = self.client.publish(topic, payload, qos, retain,
                                   properties=_props(PacketTypes.PUBLISH, props))
        if not qos:
            return None
        with self._cond:
            if not self._cond.wait_for(lambda: info.mid in self._acks, timeout):
                raise AssertionError(f"publish to {topic!r} not acknowledged in {timeout}s")
            return self._acks.pop(info.mid)

    def get(self, timeout: float = 5.0) -> Msg:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.client_id}: no message within {timeout}s") from None

    def get_until(self, payload: bytes, timeout: float = 5.0) -> list[Msg]:
        """Messages up to and including the first with `payload` (a barrier)."""
        out: list[Msg] = []
        deadline = time.monotonic() + timeout
        while True:
            msg = self.get(max(deadline - time.monotonic(), 0.001))
            out.append(msg)
            if msg.payload == payload:
                return out

    def disconnect(self, rc: int | None = None, props: dict[str, Any] | None = None) -> None:
        """DISCONNECT (optionally with a reason code and properties) and wait for the close."""
        if not self.client.is_connected():
            return
        reason = ReasonCode(PacketTypes.DISCONNECT, identifier=rc) if rc is not None else None
        self.client.disconnect(reason, _props(PacketTypes.DISCONNECT, props))
        self._disconnected.wait(3.0)
        if self._loop:  # paho's loop thread ends after a DISCONNECT; connect() restarts it
            self.client.loop_stop()
            self._loop = False
            self.client._reset_sockets()  # loop_start makes a new wake-up socket pair

    def close(self) -> None:
        try:
            self.disconnect()
        finally:
            if self._loop:
                self.client.loop_stop()
                self._loop = False
            with contextlib.suppress(Exception):
                self.client._reset_sockets()


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture
def v5(node: Any) -> Iterator[Callable[..., V5]]:
    """Factory for paho v5 clients (not connected) to `node` or `target=`."""
    made: list[V5] = []

    def factory(client_id: str | None = None, target: Any = None) -> V5:
        client = V5(target or node, client_id)
        made.append(client)
        return client

    yield factory
    for client in made:
        client.close()


@pytest.fixture
def cv5(v5: Callable[..., V5]) -> Callable[..., V5]:
    """Factory for connected paho v5 clients (clean start, no session expiry)."""

    def factory(client_id: str | None = None, target: Any = None, **kwargs: Any) -> V5:
        client = v5(client_id, target)
        client.connect(**kwargs)
        return client

    return factory


def until_pingresp(client: RawClient5, timeout: float = 5.0) -> list[Packet]:
    """PINGREQ, then every packet the server sent before the PINGRESP."""
    client.send(p3.gen_pingreq())
    out: list[Packet] = []
    deadline = time.monotonic() + timeout
    while True:
        packet = client.read(max(deadline - time.monotonic(), 0.001))
        if packet.type == PINGRESP:
            return out
        out.append(packet)


def publishes(packets: list[Packet]) -> list[Publish5]:
    assert all(pk.type == PUBLISH for pk in packets), [str(pk) for pk in packets]
    return [parse_publish5(pk) for pk in packets]


def exact_size_payload(topic: str, qos: int, size: int) -> bytes:
    """A payload making an MQTT 5.0 PUBLISH (no properties) exactly `size` bytes."""
    for payload_len in range(size, -1, -1):
        body = 2 + len(topic.encode()) + (2 if qos else 0) + 1 + payload_len
        if 1 + len(encode_vbi(body)) + body == size:
            return b"p" * payload_len
    raise ValueError(size)


# == the test helpers themselves, against vectors written from the standard ===============
def test_packets5_helpers_match_spec_vectors():
    """The raw builders used below encode as the standard's figures say."""
    # §1.5.5 Variable Byte Integer table
    for value, hexa in [(0, "00"), (127, "7f"), (128, "8001"), (16383, "ff7f"),
                        (16384, "808001"), (2097151, "ffff7f"), (2097152, "80808001"),
                        (268435455, "ffffff7f")]:
        assert encode_vbi(value).hex() == hexa
        assert decode_vbi(bytes.fromhex(hexa), 0) == (value, len(hexa) // 2)
    # CONNECT: "MQTT" 5, clean start, keepalive 60, Session Expiry 10, client id "c"
    assert gen_connect5("c", props=[(SESSION_EXPIRY_INTERVAL, 10)]).hex() == (
        "1013" "00044d515454" "05" "02" "003c" "05" "110000000a" "000163")
    # PUBLISH QoS 1, packet id 10, Topic Alias 1, payload "hi"
    assert gen_publish5("a/b", 1, b"hi", mid=10, props=[(TOPIC_ALIAS, 1)]).hex() == (
        "320d" "0003612f62" "000a" "03" "230001" "6869")
    # SUBSCRIBE id 1, Subscription Identifier 200, "a" with QoS 1 + NL + RAP + RH 2
    opts = sub_options(1, no_local=True, retain_as_published=True, retain_handling=2)
    assert opts == 0x2D
    assert gen_subscribe5(1, [("a", opts)], [(SUBSCRIPTION_IDENTIFIER, 200)]).hex() == (
        "820a" "0001" "03" "0bc801" "000161" "2d")
    # DISCONNECT 0x04 with a User Property
    assert gen_disconnect5(4, [(USER_PROPERTY, ("k", "v"))]).hex() == (
        "e009" "04" "07" "26" "00016b" "000176")
    # CONNACK parse: session present, success, Receive Maximum 20, Topic Alias Maximum 5
    connack = parse_connack5(Packet(2, 0, bytes.fromhex("0100" "06" "210014" "220005")))
    assert (connack.session_present, connack.rc) == (True, 0)
    assert (connack.props.get(RECEIVE_MAXIMUM), connack.props.get(TOPIC_ALIAS_MAXIMUM)) == (20, 5)


# == Every packet's properties, with the rules for duplicates and placement ======================
@pytest.mark.parametrize("packet", ["publish", "subscribe", "unsubscribe", "puback"])
def test_property_not_allowed_in_packet_is_malformed(raw5, packet, require_starling):
    """§2.2.2.2: a property identifier not valid for the packet type makes it a
    Malformed Packet: the server sends DISCONNECT 0x81 and closes."""
    c = raw5()
    c.connect5(uid("m5"))
    topic = uid("m5/t")
    bad: dict[str, bytes] = {
        "publish": gen_publish5(topic, props=[(SESSION_EXPIRY_INTERVAL, 5)]),
        "subscribe": gen_subscribe5(1, [(topic, 0)], [(CONTENT_TYPE, "text/plain")]),
        "unsubscribe": gen_unsubscribe5(2, [topic], [(MESSAGE_EXPIRY_INTERVAL, 1)]),
        "puback": gen_puback5(3, 0, [(TOPIC_ALIAS, 1)]),
    }
    c.send(bad[packet])
    c.expect_disconnect(MALFORMED_PACKET)


@pytest.mark.parametrize("case", ["publish-content-type", "subscribe-subscription-id",
                                  "subscription-id-zero"])
def test_duplicate_property_is_protocol_error(raw5, case, require_starling):
    """[MQTT-2.2.2-2] a property other than User Property (and Subscription
    Identifier in a server PUBLISH) twice is a Protocol Error: DISCONNECT 0x82,
    with a Reason String since the client did not refuse problem information.
    A Subscription Identifier of 0 is a Protocol Error too (§3.8.2.1.2)."""
    c = raw5()
    c.connect5(uid("dup"))
    topic = uid("dup/t")
    bad = {
        "publish-content-type": gen_publish5(
            topic, props=[(CONTENT_TYPE, "a"), (CONTENT_TYPE, "b")]),
        "subscribe-subscription-id": gen_subscribe5(
            1, [(topic, 0)], [(SUBSCRIPTION_IDENTIFIER, 1), (SUBSCRIPTION_IDENTIFIER, 2)]),
        "subscription-id-zero": gen_subscribe5(1, [(topic, 0)], [(SUBSCRIPTION_IDENTIFIER, 0)]),
    }
    c.send(bad[case])
    disconnect = c.expect_disconnect(PROTOCOL_ERROR)
    assert disconnect.props.get(REASON_STRING), "no Reason String with the protocol error"


def test_no_reason_string_when_problem_information_refused(raw5, require_starling):
    """§3.1.2.11.7: with Request Problem Information 0 the DISCONNECT for a
    protocol error carries no Reason String (the issue's choice: it MAY)."""
    c = raw5()
    c.connect5(uid("rpi"), props=[(REQUEST_PROBLEM_INFORMATION, 0)])
    c.send(gen_publish5(uid("rpi/t"), props=[(CONTENT_TYPE, "a"), (CONTENT_TYPE, "b")]))
    disconnect = c.expect_disconnect(PROTOCOL_ERROR)
    assert REASON_STRING not in disconnect.props


@pytest.mark.parametrize("case", ["duplicate-session-expiry", "receive-maximum-zero",
                                  "will-topic-alias"])
def test_bad_connect_properties_refused(raw5, case):
    """A CONNECT with a protocol error in its properties is refused: at most a
    CONNACK with a reason code >= 0x80, then the connection closes."""
    c = raw5()
    cid = uid("badc")
    packet = {
        "duplicate-session-expiry": gen_connect5(
            cid, props=[(SESSION_EXPIRY_INTERVAL, 1), (SESSION_EXPIRY_INTERVAL, 2)]),
        "receive-maximum-zero": gen_connect5(cid, props=[(RECEIVE_MAXIMUM, 0)]),
        "will-topic-alias": gen_connect5(cid, will=Will5("w/t", b"x", props=[(TOPIC_ALIAS, 1)])),
    }[case]
    c.send(packet)
    try:
        got = c.read(3.0)
    except p3.ConnectionClosed:
        return
    connack = parse_connack5(got)
    assert connack.rc >= 0x80, connack
    c.expect_closed()


# == Reason codes as the spec chooses them ===========================================================
def test_puback_no_matching_subscribers(raw5, cv5, require_starling):
    """§3.4.2.1: PUBACK / PUBREC 0x10 when nobody is subscribed; 0x00 when someone is."""
    c = raw5()
    c.connect5(uid("nms"))
    topic = uid("nms/t")
    c.send(gen_publish5(topic, 1, b"x", mid=1))
    ack = c.expect_ack5(PUBACK)
    assert (ack.mid, ack.rc) == (1, NO_MATCHING_SUBSCRIBERS)
    c.send(gen_publish5(topic, 2, b"x", mid=2))
    ack = c.expect_ack5(PUBREC)
    assert (ack.mid, ack.rc) == (2, NO_MATCHING_SUBSCRIBERS)
    c.send(gen_pubrel5(2))
    assert c.expect_ack5(PUBCOMP).rc == 0
    sub = cv5()
    sub.subscribe(topic, 1)
    c.send(gen_publish5(topic, 1, b"y", mid=3))
    ack = c.expect_ack5(PUBACK)
    assert (ack.mid, ack.rc) == (3, 0)
    assert sub.get().payload == b"y"


def test_unsuback_reason_codes(raw5):
    """§3.11.3: UNSUBACK 0x11 for a filter that was not subscribed, 0x00 otherwise."""
    c = raw5()
    c.connect5(uid("unsub"))
    topic = uid("unsub/t")
    assert c.subscribe5(1, [(topic, 1)]) == [1]
    c.send(gen_unsubscribe5(2, [topic, topic + "/never"]))
    mid, _, codes = parse_suback5(c.expect_type(UNSUBACK))
    assert (mid, codes) == (2, [0, NO_SUBSCRIPTION_EXISTED])


# == Server-initiated DISCONNECT =====================================================================
def test_takeover_sends_disconnect_0x8e(raw5, require_starling):
    """[MQTT-3.1.4-3] the old connection of a client id gets DISCONNECT 0x8E
    (Session taken over) before it is closed."""
    cid = uid("take")
    old = raw5()
    old.connect5(cid)
    new = raw5()
    new.connect5(cid)
    old.expect_disconnect(SESSION_TAKEN_OVER)
    new.ping()


def test_takeover_of_311_client_has_no_disconnect(raw5, raw):
    """No DISCONNECT is ever sent to a 3.1.1 client: the connection just closes."""
    cid = uid("take311")
    old = raw()
    old.connect(cid)
    new = raw5()
    new.connect5(cid)
    old.expect_closed()


def test_keepalive_timeout_sends_0x8d(raw5, require_starling):
    """[MQTT-3.1.2-22] silence for 1.5 x keepalive: DISCONNECT 0x8D, then close."""
    c = raw5()
    c.connect5(uid("ka"), keepalive=1)
    start = time.monotonic()
    c.expect_disconnect(KEEP_ALIVE_TIMEOUT, timeout=5.0)
    assert time.monotonic() - start >= 1.0


def test_packet_too_large_sends_0x95(make_node, raw5):
    """§3.2.2.3.6: CONNACK announces `mqtt.max_packet_size`; a packet of exactly
    that size is accepted, a larger one gets DISCONNECT 0x95."""
    n = make_node({"mqtt.max_packet_size": "256"})
    c = raw5(target=n)
    connack = c.connect5(uid("big"))
    assert connack.props.get(MAXIMUM_PACKET_SIZE) == 256
    topic = uid("big/t")
    fits = gen_publish5(topic, 1, exact_size_payload(topic, 1, 256), mid=1)
    assert len(fits) == 256
    c.send(fits)
    assert c.expect_ack5(PUBACK).mid == 1
    c.send(gen_publish5(topic, 1, b"x" * 300, mid=2))
    c.expect_disconnect(PACKET_TOO_LARGE)


# == CONNACK carries the server's limits =============================================================
def test_connack_properties_defaults(raw5):
    """§3.2.2.3: an empty client id gets an Assigned Client Identifier; Receive
    Maximum and Topic Alias Maximum are announced; Server Keep Alive only when
    configured; what is supported is absent or 1; no property twice."""
    c = raw5()
    connack = c.connect5("")
    props = connack.props
    assigned = props.get(ASSIGNED_CLIENT_IDENTIFIER)
    assert assigned, props
    assert 1 <= props.get(RECEIVE_MAXIMUM, 65535) <= 65535
    assert props.get(TOPIC_ALIAS_MAXIMUM, 0) >= 1
    assert SERVER_KEEP_ALIVE not in props
    assert props.get(MAXIMUM_QOS, 2) == 2
    for pid in (RETAIN_AVAILABLE, WILDCARD_SUBSCRIPTION_AVAILABLE,
                SUBSCRIPTION_IDENTIFIER_AVAILABLE, SHARED_SUBSCRIPTION_AVAILABLE):
        assert props.get(pid, 1) == 1, hex(pid)
    assert RESPONSE_INFORMATION not in props  # not requested (and not configured)
    ids = [pid for pid in props.ids() if pid != USER_PROPERTY]
    assert len(ids) == len(set(ids)), props
    c.ping()
    # a client id given by the client is not reassigned
    d = raw5()
    assert ASSIGNED_CLIENT_IDENTIFIER not in d.connect5(uid("own")).props


def test_connack_properties_configured(make_node, raw5):
    """The configured limits reach CONNACK: Server Keep Alive, Maximum Packet
    Size, Retain Available 0, Topic Alias Maximum, Receive Maximum, Wildcard and
    Shared Subscription Available 0, Response Information when requested."""
    n = make_node({
        "mqtt.server_keepalive": "30", "mqtt.max_packet_size": "4096",
        "mqtt.retain_available": "false", "mqtt.max_topic_alias": "7",
        "session.max_awaiting_rel": "5", "mqtt.wildcard_subscription": "false",
        "mqtt.shared_subscription": "false", "mqtt.response_information": "resp/",
    })
    props = raw5(target=n).connect5(uid("cfg"), keepalive=60).props
    assert props.get(SERVER_KEEP_ALIVE) == 30
    assert props.get(MAXIMUM_PACKET_SIZE) == 4096
    assert props.get(RETAIN_AVAILABLE) == 0
    assert props.get(TOPIC_ALIAS_MAXIMUM) == 7
    assert props.get(RECEIVE_MAXIMUM) == 5
    assert props.get(WILDCARD_SUBSCRIPTION_AVAILABLE) == 0
    assert props.get(SHARED_SUBSCRIPTION_AVAILABLE) == 0
    assert RESPONSE_INFORMATION not in props  # configured, but not requested
    asked = raw5(target=n).connect5(uid("cfg"), props=[(REQUEST_RESPONSE_INFORMATION, 1)])
    assert asked.props.get(RESPONSE_INFORMATION) == "resp/"


def test_server_keepalive_is_imposed(make_node, raw5):
    """§3.2.2.3.14: with `mqtt.server_keepalive` the server's value replaces the
    client's: a client that asked for 60 s is cut off after 1.5 x 1 s (0x8D)."""
    n = make_node({"mqtt.server_keepalive": "1"})
    c = raw5(target=n)
    assert c.connect5(uid("ska"), keepalive=60).props.get(SERVER_KEEP_ALIVE) == 1
    c.expect_disconnect(KEEP_ALIVE_TIMEOUT, timeout=5.0)


def test_retain_not_available(make_node, raw5):
    """[MQTT-3.2.2-14] with Retain Available 0, a PUBLISH with RETAIN 1 is a
    protocol error answered by DISCONNECT 0x9A; [MQTT-3.2.2-13] a CONNECT whose
    will has Will Retain 1 is refused (CONNACK 0x9A)."""
    n = make_node({"mqtt.retain_available": "false"})
    c = raw5(target=n)
    assert c.connect5(uid("nr")).props.get(RETAIN_AVAILABLE) == 0
    c.send(gen_publish5(uid("nr/t"), 0, b"x", retain=True))
    c.expect_disconnect(RETAIN_NOT_SUPPORTED)
    w = raw5(target=n)
    w.connect5(uid("nr"), will=Will5(uid("nr/w"), b"w", retain=True),
               expect_rc=RETAIN_NOT_SUPPORTED)
    w.expect_closed()


def test_wildcard_subscriptions_disabled(make_node, raw5):
    """§3.2.2.3.12: with wildcards off, a wildcard filter gets SUBACK 0xA2."""
    n = make_node({"mqtt.wildcard_subscription": "false"})
    c = raw5(target=n)
    c.connect5(uid("wc"))
    base = uid("wc")
    assert c.subscribe5(1, [(base + "/+", 1), (base + "/#", 0), (base + "/x", 1)]) == [
        WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED, WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED, 1]


def test_shared_subscriptions_disabled(make_node, raw5):
    """§3.2.2.3.14: with shared subscriptions off, `$share/...` and `$queue/...`
    get SUBACK 0x9E."""
    n = make_node({"mqtt.shared_subscription": "false"})
    c = raw5(target=n)
    c.connect5(uid("sh"))
    topic = uid("sh/t")
    assert c.subscribe5(1, [(f"$share/g/{topic}", 1), (f"$queue/{topic}", 1), (topic, 0)]) == [
        SHARED_SUBSCRIPTIONS_NOT_SUPPORTED, SHARED_SUBSCRIPTIONS_NOT_SUPPORTED, 0]


# == Session Expiry Interval =========================================================================
def test_clean_start_session_with_expiry_resumes(raw5, cv5):
    """§3.1.2.11.2: Clean Start 1 with a Session Expiry > 0 creates a session
    that outlives the connection: reconnecting with Clean Start 0 finds it
    (session present) with its subscription and the messages queued meanwhile."""
    cid, topic = uid("se"), uid("se/t")
    c = raw5()
    c.connect5(cid, clean_start=True, props=[(SESSION_EXPIRY_INTERVAL, 60)])
    assert c.subscribe5(1, [(topic, 1)]) == [1]
    c.send(gen_disconnect5())
    c.expect_closed()
    assert cv5().publish(topic, b"while-away", 1) == 0
    again = raw5()
    assert again.connect5(cid, clean_start=False,
                          props=[(SESSION_EXPIRY_INTERVAL, 60)]).session_present
    assert again.expect_publish5().payload == b"while-away"


def test_session_expiry_zero_discards(raw5, cv5):
    """No Session Expiry Interval (0): the session ends with the connection."""
    cid, topic = uid("se0"), uid("se0/t")
    c = raw5()
    c.connect5(cid)
    c.subscribe5(1, [(topic, 1)])
    c.send(gen_disconnect5())
    c.expect_closed()
    assert not raw5().connect5(cid, clean_start=False).session_present
    assert cv5().publish(topic, b"x", 1) == NO_MATCHING_SUBSCRIBERS


def test_session_expiry_raised_from_zero_at_disconnect_is_protocol_error(raw5):
    """[MQTT-3.14.2-2] DISCONNECT may not set a Session Expiry when CONNECT had
    0: the server answers DISCONNECT 0x82, and the session still ends."""
    cid = uid("se2")
    c = raw5()
    c.connect5(cid)
    c.send(gen_disconnect5(0, [(SESSION_EXPIRY_INTERVAL, 30)]))
    c.expect_disconnect(PROTOCOL_ERROR)
    assert not raw5().connect5(cid, clean_start=False).session_present


def test_session_expiry_lowered_to_zero_at_disconnect(raw5, cv5):
    """§3.14.2.2.2: DISCONNECT with Session Expiry 0 ends a persistent session."""
    cid, topic = uid("se3"), uid("se3/t")
    c = raw5()
    c.connect5(cid, props=[(SESSION_EXPIRY_INTERVAL, 60)])
    c.subscribe5(1, [(topic, 1)])
    c.send(gen_disconnect5(0, [(SESSION_EXPIRY_INTERVAL, 0)]))
    c.expect_closed()
    assert not raw5().connect5(cid, clean_start=False).session_present
    assert cv5().publish(topic, b"x", 1) == NO_MATCHING_SUBSCRIBERS


def test_expired_sessions_are_discarded_and_counted(make_node, raw5):
    """A session whose expiry passed is gone (set at CONNECT, or changed at
    DISCONNECT), one that has not is still there; `sessions/expired` counts."""
    n = make_node({"broker.sys_interval": "1s"})
    short, lowered, kept = uid("exp-a"), uid("exp-b"), uid("exp-c")
    for cid, expiry, at_disconnect in [(short, 1, None), (lowered, 60, 1), (kept, 60, None)]:
        c = raw5(target=n)
        c.connect5(cid, props=[(SESSION_EXPIRY_INTERVAL, expiry)])
        props: PropList = [(SESSION_EXPIRY_INTERVAL, at_disconnect)] if at_disconnect else []
        c.send(gen_disconnect5(0, props))
        c.expect_closed()
    time.sleep(2.5)  # time under test: 1 s expiry, checked once a second
    present = {cid: raw5(target=n).connect5(cid, clean_start=False,
                                            props=[(SESSION_EXPIRY_INTERVAL, 60)]).session_present
               for cid in (short, lowered, kept)}
    assert present == {short: False, lowered: False, kept: True}
    sys_metric(n, "sessions/expired", 2)


# == Message Expiry Interval =========================================================================
def test_message_expiry_in_offline_queue(make_node, v5, cv5):
    """§3.3.2.3.3: a queued message whose expiry passed is not delivered (and
    counts in `messages/expired`); one still valid is delivered with the
    remaining interval; one without expiry carries none."""
    n = make_node({"broker.sys_interval": "1s"})
    topic = uid("mx/t")
    sub = v5(target=n)
    sub.connect(props={"SessionExpiryInterval": 60})
    sub.subscribe(topic, 1)
    sub.disconnect()
    pub = cv5(target=n)
    pub.publish(topic, b"short", 1, props={"MessageExpiryInterval": 1})
    pub.publish(topic, b"long", 1, props={"MessageExpiryInterval": 10})
    pub.publish(topic, b"plain", 1)
    time.sleep(2.0)  # time under test: the 1 s message expires
    assert sub.connect(clean_start=False, props={"SessionExpiryInterval": 60})[1]
    long, plain = sub.get(), sub.get()
    assert (long.payload, plain.payload) == (b"long", b"plain")
    assert 0 < long.prop("MessageExpiryInterval") <= 8
    assert plain.prop("MessageExpiryInterval") is None
    sys_metric(n, "messages/expired", 1)


def test_message_expiry_forwarded_live(cv5):
    """[MQTT-3.3.2-6] the forwarded Message Expiry Interval is the remaining
    time: > 0 and <= what the publisher set."""
    topic = uid("mxl/t")
    sub = cv5()
    sub.subscribe(topic, 1)
    cv5().publish(topic, b"x", 1, props={"MessageExpiryInterval": 60})
    assert 0 < sub.get().prop("MessageExpiryInterval") <= 60


def test_message_expiry_interval_setting_caps(make_node, raw):
    """`mqtt.message_expiry_interval` bounds how long any message is held, also
    one without an expiry queued for a 3.1.1 session."""
    n = make_node({"mqtt.message_expiry_interval": "1s"})
    cid, topic = uid("cap"), uid("cap/t")
    sub = raw(target=n)
    sub.connect(cid, clean=False)
    sub.subscribe(1, topic, 1)
    sub.disconnect()
    pub = raw(target=n)
    pub.connect(uid("cap-pub"))
    pub.send(p3.gen_publish(topic, 1, b"old", mid=1))
    pub.expect_packet(p3.gen_puback(1))
    time.sleep(2.0)  # time under test
    again = raw(target=n)
    again.connect(cid, clean=False, session_present=True)
    pub.send(p3.gen_publish(topic, 1, b"barrier", mid=2))
    pub.expect_packet(p3.gen_puback(2))
    assert again.expect_publish().payload == b"barrier"


def test_retained_message_expires(cv5):
    """§3.3.2.3.3: a retained message is not sent to new subscribers once its
    expiry passed; before, it goes out with the remaining interval."""
    base = uid("mxr")
    pub = cv5()
    pub.publish(f"{base}/short", b"short", 1, retain=True, props={"MessageExpiryInterval": 1})
    pub.publish(f"{base}/keep", b"keep", 1, retain=True)
    early = cv5()
    early.subscribe(f"{base}/#", 1)
    got = {m.payload: m for m in (early.get(), early.get())}
    assert set(got) == {b"short", b"keep"}
    assert got[b"short"].prop("MessageExpiryInterval") in (1,)
    time.sleep(2.0)  # time under test
    late = cv5()
    late.subscribe(f"{base}/#", 1)
    pub.publish(f"{base}/barrier", b"barrier", 1)
    assert [m.payload for m in late.get_until(b"barrier")] == [b"keep", b"barrier"]
    pub.publish(f"{base}/keep", b"", 1, retain=True)


# == Topic aliases ===================================================================================
def test_topic_alias_client_to_server(raw5):
    """§3.3.2.3.4: an alias is set by a PUBLISH with topic and alias, used with an
    empty topic, and can be remapped; subscribers see the full topic and no alias."""
    base = uid("ta")
    sub = raw5()
    sub.connect5(uid("ta-sub"))
    sub.subscribe5(1, [(f"{base}/#", 1)])
    pub = raw5()
    pub.connect5(uid("ta-pub"))
    sends = [(f"{base}/one", b"a"), ("", b"b"), (f"{base}/two", b"c"), ("", b"d")]
    for mid, (topic, payload) in enumerate(sends, 1):
        pub.send(gen_publish5(topic, 1, payload, mid=mid, props=[(TOPIC_ALIAS, 1)]))
        assert pub.expect_ack5(PUBACK).rc == 0
    got = [sub.expect_publish5() for _ in sends]
    assert [(m.topic, m.payload) for m in got] == [
        (f"{base}/one", b"a"), (f"{base}/one", b"b"), (f"{base}/two", b"c"),
        (f"{base}/two", b"d")]
    assert all(TOPIC_ALIAS not in m.props for m in got)


@pytest.mark.parametrize("maximum", [3, 0])
def test_topic_alias_above_maximum_is_invalid(make_node, raw5, maximum):
    """[MQTT-3.3.2-9] an alias above the Topic Alias Maximum the server announced
    (`mqtt.max_topic_alias`; 0 = none accepted) gets DISCONNECT 0x94."""
    n = make_node({"mqtt.max_topic_alias": str(maximum)})
    c = raw5(target=n)
    assert c.connect5(uid("tam")).props.get(TOPIC_ALIAS_MAXIMUM, 0) == maximum
    if maximum:
        c.send(gen_publish5(uid("tam/t"), 1, b"x", mid=1, props=[(TOPIC_ALIAS, maximum)]))
        assert c.expect_ack5(PUBACK).mid == 1
    c.send(gen_publish5(uid("tam/t"), 0, b"x", props=[(TOPIC_ALIAS, maximum + 1)]))
    c.expect_disconnect(TOPIC_ALIAS_INVALID)


def test_unknown_topic_alias_with_empty_topic_is_protocol_error(raw5):
    """§3.3.4: an empty topic with an alias never set is a Protocol Error (0x82)."""
    c = raw5()
    c.connect5(uid("tau"))
    c.send(gen_publish5("", 0, b"x", props=[(TOPIC_ALIAS, 5)]))
    c.expect_disconnect(PROTOCOL_ERROR)


def test_server_to_client_aliases_within_client_maximum(raw5, cv5):
    """[MQTT-3.1.2-26, -27] the server never sends a Topic Alias to a client that
    announced none, nor one above the client's Topic Alias Maximum; any alias
    it uses resolves to the right topic."""
    base = uid("tas")
    none_ = raw5()
    none_.connect5(uid("tas-0"))
    none_.subscribe5(1, [(f"{base}/#", 0)])
    two = raw5()
    two.connect5(uid("tas-2"), props=[(TOPIC_ALIAS_MAXIMUM, 2)])
    two.subscribe5(1, [(f"{base}/#", 0)])
    pub = cv5()
    topics = [f"{base}/{x}" for x in "abcabcab"]
    for i, topic in enumerate(topics):
        pub.publish(topic, str(i).encode(), 1)
    for m in publishes(until_pingresp(none_)):
        assert TOPIC_ALIAS not in m.props and m.topic
    aliases: dict[int, str] = {}
    resolved = []
    for m in publishes(until_pingresp(two)):
        alias = m.props.get(TOPIC_ALIAS)
        if alias is not None:
            assert 1 <= alias <= 2, alias
            if m.topic:
                aliases[alias] = m.topic
        resolved.append(m.topic or aliases[alias])
    assert resolved == topics


# == Receive Maximum and Maximum Packet Size, both ways ==============================================
@mosquitto_deviates
def test_client_receive_maximum_limits_inflight(raw5, cv5):
    """[MQTT-3.3.4-9] the server never has more unacknowledged QoS 1 PUBLISHes
    in flight to a client than its Receive Maximum; each PUBACK lets one more go."""
    topic = uid("rm/t")
    sub = raw5()
    sub.connect5(uid("rm"), props=[(RECEIVE_MAXIMUM, 2)])
    sub.subscribe5(1, [(topic, 1)])
    pub = cv5()
    for i in range(5):
        pub.publish(topic, str(i).encode(), 1)
    got = publishes(until_pingresp(sub))
    assert [m.payload for m in got] == [b"0", b"1"]
    sub.send(gen_puback5(got[0].mid or 0))
    more = publishes(until_pingresp(sub))
    assert [m.payload for m in more] == [b"2"]


@mosquitto_deviates
def test_client_receive_maximum_drains_in_order(raw5, cv5):
    """All messages arrive, in order, with never more than 2 unacknowledged."""
    topic = uid("rm2/t")
    sub = raw5()
    sub.connect5(uid("rm2"), props=[(RECEIVE_MAXIMUM, 2)])
    sub.subscribe5(1, [(topic, 1)])
    pub = cv5()
    for i in range(7):
        pub.publish(topic, str(i).encode(), 1)
    payloads: list[bytes] = []
    unacked: list[int] = []
    while len(payloads) < 7:
        batch = publishes(until_pingresp(sub))
        assert batch, f"stalled after {payloads}"
        unacked += [m.mid or 0 for m in batch]
        assert len(unacked) <= 2, unacked
        payloads += [m.payload for m in batch]
        sub.send(gen_puback5(unacked.pop(0)))
    assert payloads == [str(i).encode() for i in range(7)]


def test_client_exceeding_server_receive_maximum(make_node, raw5):
    """§3.3.4: a client with more unacknowledged QoS 2 PUBLISHes (no PUBREL yet)
    than the server's Receive Maximum (`session.max_awaiting_rel`) gets
    DISCONNECT 0x93; a DUP resend does not count twice, PUBREL frees a place."""
    n = make_node({"session.max_awaiting_rel": "2"})
    c = raw5(target=n)
    assert c.connect5(uid("rmx")).props.get(RECEIVE_MAXIMUM) == 2
    topic = uid("rmx/t")
    for mid in (1, 2):
        c.send(gen_publish5(topic, 2, b"x", mid=mid))
        assert c.expect_ack5(PUBREC).mid == mid
    c.send(gen_publish5(topic, 2, b"x", dup=True, mid=2))  # a resend is not a new one
    assert c.expect_ack5(PUBREC).mid == 2
    c.send(gen_pubrel5(1))  # completing one frees its place
    assert c.expect_ack5(PUBCOMP).mid == 1
    c.send(gen_publish5(topic, 2, b"x", mid=3))
    assert c.expect_ack5(PUBREC).mid == 3
    c.send(gen_publish5(topic, 2, b"x", mid=4))
    c.expect_disconnect(RECEIVE_MAXIMUM_EXCEEDED)


@mosquitto_deviates
def test_client_maximum_packet_size(raw5, cv5):
    """[MQTT-3.1.2-24] the server never sends a packet larger than the client's
    Maximum Packet Size: such a message is dropped for that client, while
    packets up to exactly the limit, and later smaller messages, still arrive."""
    topic = uid("mps/t")
    limit = 128
    sub = raw5()
    sub.connect5(uid("mps"), props=[(MAXIMUM_PACKET_SIZE, limit)])
    sub.subscribe5(1, [(topic, 1)])
    pub = cv5()
    exact0 = exact_size_payload(topic, 0, limit)
    exact1 = exact_size_payload(topic, 1, limit)
    pub.publish(topic, b"B" * 300, 1)           # too large: dropped
    pub.publish(topic, exact0, 0)               # QoS 0, exactly the limit
    pub.publish(topic, exact1, 1)               # QoS 1, exactly the limit
    pub.publish(topic, exact1 + b"+", 1)        # one byte over: dropped
    pub.publish(topic, b"small", 1)
    got = publishes(until_pingresp(sub))
    assert [(m.payload, m.size) for m in got] == [
        (exact0, limit), (exact1, limit), (b"small", 1 + 1 + 2 + len(topic) + 2 + 1 + len(b"small"))]


# == Subscription options =============================================================================
def test_no_local(cv5):
    """[MQTT-3.8.3-3] No Local: a client's own messages are not sent back to it."""
    topic = uid("nl/t")
    me = cv5()
    me.subscribe(topic, 1, no_local=True)
    other = cv5()
    other.subscribe(topic, 1)
    me.publish(topic, b"mine", 1)
    assert other.get().payload == b"mine"
    other.publish(topic, b"barrier", 1)
    assert me.get().payload == b"barrier"


def test_retain_as_published(cv5):
    """[MQTT-3.3.1-12, -13] Retain As Published keeps RETAIN on forwarded live
    messages; without it RETAIN is 0; retained messages sent on subscribe have RETAIN 1."""
    topic = uid("rap/t")
    rap = cv5()
    rap.subscribe(topic, 1, retain_as_published=True)
    plain = cv5()
    plain.subscribe(topic, 1)
    cv5().publish(topic, b"r", 1, retain=True)
    assert (rap.get().retain, plain.get().retain) == (True, False)
    late = cv5()
    late.subscribe(topic, 1)
    assert late.get().retain is True
    cv5().publish(topic, b"", 1, retain=True)


def test_retain_handling(cv5):
    """§3.8.3.1 Retain Handling: 0 sends retained messages at every subscribe, 1
    only when the subscription is new, 2 never."""
    topic = uid("rh/t")
    pub = cv5()
    pub.publish(topic, b"retained", 1, retain=True)
    for handling, expected in [(0, [True, True]), (1, [True, False]), (2, [False, False])]:
        c = cv5()
        for i, want in enumerate(expected):
            c.subscribe(topic, 1, retain_handling=handling)
            barrier = f"barrier-{handling}-{i}".encode()
            pub.publish(topic, barrier, 1)
            got = c.get_until(barrier)
            assert [m.payload for m in got] == ([b"retained"] if want else []) + [barrier], (
                handling, i)
            if want:
                assert got[0].retain
    pub.publish(topic, b"", 1, retain=True)


def test_subscription_identifiers(cv5):
    """§3.8.2.1.2 / [MQTT-3.3.4-3, -4]: a PUBLISH carries the Subscription
    Identifiers of every matching subscription that has one (several when
    several match), and none for a subscription without one."""
    base = uid("sid")
    c = cv5()
    c.subscribe(f"{base}/#", 1, sub_id=1)
    c.subscribe(f"{base}/+", 1, sub_id=2)
    c.subscribe(f"{base}/a", 1)
    c.subscribe(f"{base}-plain", 1)
    pub = cv5()
    pub.publish(f"{base}/a", b"both", 1)
    pub.publish(f"{base}/b/c", b"deep", 1)
    pub.publish(f"{base}-plain", b"none", 1)
    got = c.get_until(b"none")
    ids: dict[bytes, set[int]] = {}
    for m in got:
        ids.setdefault(m.payload, set()).update(m.prop("SubscriptionIdentifier") or [])
    assert ids == {b"both": {1, 2}, b"deep": {1}, b"none": set()}


def test_subscription_identifiers_per_copy(raw5, cv5):
    """[MQTT-3.3.4-5] when a client gets several copies of one message (a plain
    and a shared subscription), each copy carries the identifier of its own
    subscription; a copy sent for the plain subscription does not name the
    shared one, and a member of a group gets only its own identifiers."""
    topic, group = uid("sidc/t"), uid("g")
    x = raw5()
    x.connect5(uid("sidc-x"))
    x.subscribe5(1, [(topic, 1)], [(SUBSCRIPTION_IDENTIFIER, 3)])
    x.subscribe5(2, [(f"$share/{group}/{topic}", 1)], [(SUBSCRIPTION_IDENTIFIER, 7)])
    y = raw5()
    y.connect5(uid("sidc-y"))
    y.subscribe5(1, [(f"$share/{group}/{topic}", 1)])
    pub = cv5()
    sent = [f"m{i}".encode() for i in range(4)]
    for payload in sent:
        pub.publish(topic, payload, 1)
    to_x = publishes(until_pingresp(x))
    to_y = publishes(until_pingresp(y))
    assert all(SUBSCRIPTION_IDENTIFIER not in m.props for m in to_y), to_y
    for payload in sent:
        copies = [sorted(m.props.all(SUBSCRIPTION_IDENTIFIER)) for m in to_x
                  if m.payload == payload]
        x_was_picked = not any(m.payload == payload for m in to_y)
        union = sorted({i for ids in copies for i in ids})
        assert union == ([3, 7] if x_was_picked else [3]), (payload, copies)
        if len(copies) > 1:
            assert sorted(copies) == [[3], [7]], (payload, copies)


# == Shared subscriptions ==========================================================================
def _share_members(cv5: Callable[..., V5], shared_filter: str, done_topic: str, n: int,
                   target: Any = None) -> list[V5]:
    members = []
    for _ in range(n):
        m = cv5(target=target)
        assert m.subscribe(shared_filter, 1) == [1]
        assert m.subscribe(done_topic, 1) == [1]
        members.append(m)
    return members


def _collect(members: list[V5]) -> list[list[bytes]]:
    """Each member's shared messages, up to the plain-topic `done` barrier."""
    return [[m.payload for m in member.get_until(b"done")][:-1] for member in members]


@mosquitto_deviates
def test_no_local_on_shared_subscription_is_protocol_error(raw5):
    """[MQTT-3.8.3-4] No Local on a shared subscription is a Protocol Error:
    DISCONNECT 0x82."""
    c = raw5()
    c.connect5(uid("nls"))
    c.send(gen_subscribe5(1, [(f"$share/g/{uid('nls/t')}", sub_options(1, no_local=True))]))
    c.expect_disconnect(PROTOCOL_ERROR)


@pytest.mark.parametrize("form", ["share", "queue"])
def test_shared_subscription_one_member_per_message(cv5, form):
    if form == "queue" and ON_MOSQUITTO:
        pytest.skip("$queue is EMQ X's")
    """§4.8.2: each message published to a shared subscription goes to exactly
    one member of the group (`$share/<group>/<filter>`, EMQ X's `$queue/<filter>`)."""
    topic, done = uid("sh/t"), uid("sh/done")
    shared = f"$share/{uid('g')}/{topic}" if form == "share" else f"$queue/{topic}"
    members = _share_members(cv5, shared, done, 3)
    pub = cv5()
    sent = [f"m{i}".encode() for i in range(30)]
    for payload in sent:
        assert pub.publish(topic, payload, 1) == 0
    pub.publish(done, b"done", 1)
    got = _collect(members)
    flat = [p for member in got for p in member]
    assert sorted(flat) == sorted(sent), got


@pytest.mark.parametrize("strategy", ["round_robin", "hash", "sticky", "random"])
def test_shared_subscription_strategies(make_node, cv5, strategy):
    """`mqtt.shared_subscription_strategy`: round_robin takes members in turn,
    hash keeps each publisher on one member, sticky keeps one member, random
    still gives each message to exactly one member."""
    n = make_node({"mqtt.shared_subscription_strategy": strategy})
    topic, done = uid("st/t"), uid("st/done")
    members = _share_members(cv5, f"$share/g/{topic}", done, 3, target=n)
    pubs = [cv5(target=n), cv5(target=n)]
    sent = []
    for i in range(12):
        payload = f"{i % 2}:{i}".encode()
        pubs[i % 2].publish(topic, payload, 1)
        sent.append(payload)
    pubs[0].publish(done, b"done", 1)
    got = _collect(members)
    owner = {p: k for k, member in enumerate(got) for p in member}
    assert sorted(owner) == sorted(sent) and sum(map(len, got)) == len(sent), got
    sequence = [owner[p] for p in sent]
    if strategy == "round_robin":
        for i in range(len(sequence) - 2):
            assert len(set(sequence[i:i + 3])) == 3, sequence
    elif strategy == "hash":
        assert len({owner[p] for p in sent if p.startswith(b"0:")}) == 1, sequence
        assert len({owner[p] for p in sent if p.startswith(b"1:")}) == 1, sequence
    elif strategy == "sticky":
        assert len(set(sequence)) == 1, sequence


@mosquitto_deviates
def test_shared_subscription_gets_no_retained(cv5):
    """§3.3.1.3: retained messages go to a *non-shared* subscription when it is
    made, so not to a shared one (a plain subscription to the same filter gets them)."""
    topic = uid("shr/t")
    pub = cv5()
    pub.publish(topic, b"retained", 1, retain=True)
    member = cv5()
    member.subscribe(f"$share/{uid('g')}/{topic}", 1)
    plain = cv5()
    plain.subscribe(topic, 1)
    assert plain.get().payload == b"retained"
    pub.publish(topic, b"barrier", 1)
    assert member.get().payload == b"barrier"
    pub.publish(topic, b"", 1, retain=True)


def test_two_share_groups_each_get_a_copy(cv5):
    """§4.8.2: every group gets its own copy (one member of each), as does a
    plain subscriber."""
    topic, done = uid("sh2/t"), uid("sh2/done")
    g1 = _share_members(cv5, f"$share/{uid('g1')}/{topic}", done, 2)
    g2 = _share_members(cv5, f"$share/{uid('g2')}/{topic}", done, 2)
    plain = cv5()
    plain.subscribe(topic, 1)
    plain.subscribe(done, 1)
    pub = cv5()
    pub.publish(topic, b"once", 1)
    pub.publish(done, b"done", 1)
    assert sorted(p for member in _collect(g1) for p in member) == [b"once"]
    assert sorted(p for member in _collect(g2) for p in member) == [b"once"]
    assert [p for member in _collect([plain]) for p in member] == [b"once"]


def test_shared_member_leaving_does_not_lose_inflight(raw5, cv5, require_starling):
    """§4.8.2 (SHOULD) and the issue: a QoS 1 message in flight to a member whose
    session ends before it acknowledged is sent to another member of the group."""
    topic, group = uid("shl/t"), uid("g")
    a = raw5()
    a.connect5(uid("shl-a"))  # Session Expiry 0: the session ends with the socket
    assert a.subscribe5(1, [(f"$share/{group}/{topic}", 1)]) == [1]
    pub = cv5()
    pub.publish(topic, b"inflight", 1)
    assert a.expect_publish5().payload == b"inflight"  # ... and never acknowledged
    b = cv5()
    b.subscribe(f"$share/{group}/{topic}", 1)
    a.close()
    assert b.get().payload == b"inflight"


# == Will Delay Interval and will properties =======================================================
def _will_client(raw5: Callable[..., RawClient5], topic: str, delay: int, expiry: int,
                 cid: str | None = None, payload: bytes = b"will") -> tuple[RawClient5, str]:
    cid = cid or uid("wd")
    c = raw5()
    props: PropList = [(SESSION_EXPIRY_INTERVAL, expiry)] if expiry else []
    c.connect5(cid, props=props, will=Will5(topic, payload, 1, props=[(WILL_DELAY_INTERVAL, delay)]))
    return c, cid


def test_will_delay(raw5, cv5):
    """§3.1.3.2.2: the will goes out when the Will Delay Interval has passed,
    not at the close."""
    topic = uid("wd/t")
    watcher = cv5()
    watcher.subscribe(topic, 1)
    c, _ = _will_client(raw5, topic, delay=2, expiry=30)
    c.close()
    closed = time.monotonic()
    assert watcher.get(timeout=5.0).payload == b"will"
    assert 1.5 <= time.monotonic() - closed <= 4.0


def test_will_delay_cancelled_by_reconnect(raw5, cv5):
    """[MQTT-3.1.3-9] a reconnect to the session before the delay ends: no will."""
    topic = uid("wdc/t")
    watcher = cv5()
    watcher.subscribe(topic, 1)
    c, cid = _will_client(raw5, topic, delay=2, expiry=30)
    c.close()
    back = raw5()
    assert back.connect5(cid, clean_start=False,
                         props=[(SESSION_EXPIRY_INTERVAL, 30)]).session_present
    time.sleep(2.5)  # time under test: past the 2 s delay
    cv5().publish(topic, b"barrier", 1)
    assert watcher.get().payload == b"barrier"
    back.send(gen_disconnect5(0, [(SESSION_EXPIRY_INTERVAL, 0)]))


@mosquitto_deviates
@pytest.mark.parametrize("expiry", [1, 0])
def test_will_sent_at_session_end_if_sooner(raw5, cv5, expiry):
    """§3.1.3.2.2: the will goes out when the session ends, if that comes before
    the Will Delay Interval (a 30 s delay with a 1 s or 0 s session)."""
    topic = uid("wds/t")
    watcher = cv5()
    watcher.subscribe(topic, 1)
    c, _ = _will_client(raw5, topic, delay=30, expiry=expiry)
    c.close()
    closed = time.monotonic()
    assert watcher.get(timeout=5.0).payload == b"will"
    assert time.monotonic() - closed <= expiry + 1.5


def test_will_properties_forwarded(raw5):
    """§3.1.3.2: the will's properties (Payload Format Indicator, Content Type,
    Response Topic, Correlation Data, User Properties in order, Message Expiry)
    are forwarded with it; the Will Delay Interval is not a PUBLISH property."""
    topic = uid("wp/t")
    watcher = raw5()
    watcher.connect5(uid("wp-w"))
    watcher.subscribe5(1, [(topic, 1)])
    users = [("k", "1"), ("k", "2"), ("other", "")]
    c = raw5()
    c.connect5(uid("wp"), will=Will5(topic, b"{}", 1, props=[
        (PAYLOAD_FORMAT_INDICATOR, 1), (CONTENT_TYPE, "application/json"),
        (RESPONSE_TOPIC, "wp/reply"), (CORRELATION_DATA, b"\x00\x01corr"),
        *[(USER_PROPERTY, u) for u in users], (MESSAGE_EXPIRY_INTERVAL, 60),
        (WILL_DELAY_INTERVAL, 0)]))
    c.close()
    m = watcher.expect_publish5()
    assert (m.topic, m.payload, m.qos) == (topic, b"{}", 1)
    p = m.props
    assert p.get(PAYLOAD_FORMAT_INDICATOR) == 1
    assert p.get(CONTENT_TYPE) == "application/json"
    assert p.get(RESPONSE_TOPIC) == "wp/reply"
    assert p.get(CORRELATION_DATA) == b"\x00\x01corr"
    assert p.all(USER_PROPERTY) == users
    assert 0 < p.get(MESSAGE_EXPIRY_INTERVAL) <= 60
    assert WILL_DELAY_INTERVAL not in p


def test_disconnect_with_will_message(raw5, cv5):
    """§3.14.2.1: DISCONNECT 0x04 (Disconnect with Will Message) keeps the will."""
    topic = uid("dww/t")
    watcher = cv5()
    watcher.subscribe(topic, 1)
    c = raw5()
    c.connect5(uid("dww"), will=Will5(topic, b"kept", 1))
    c.send(gen_disconnect5(DISCONNECT_WITH_WILL))
    c.expect_closed()
    assert watcher.get().payload == b"kept"


# == Pass-through of the application properties ======================================================
def test_application_properties_pass_through(raw5, cv5):
    """[MQTT-3.3.2-4, -15, -16, -18] Payload Format Indicator, Content Type,
    Response Topic, Correlation Data and User Properties (in order) reach the
    subscriber unchanged, live and as a retained message."""
    topic = uid("pt/t")
    sub = raw5()
    sub.connect5(uid("pt"))
    sub.subscribe5(1, [(topic, 1)])
    users = [("k", "v1"), ("k", "v2"), ("z", ""), ("a", "ü")]
    props = {"PayloadFormatIndicator": 1, "ContentType": "text/plain; charset=utf-8",
             "ResponseTopic": "pt/reply", "CorrelationData": b"\xff\x00id",
             "UserProperty": users}
    cv5().publish(topic, "héllo".encode(), 1, retain=True, props=props)
    live = sub.expect_publish5()
    late = raw5()  # the retained copy, to a new subscriber
    late.connect5(uid("pt-late"))
    late.subscribe5(1, [(topic, 1)])
    stored = late.expect_publish5()
    assert stored.retain
    for m in (live, stored):
        p = m.props
        assert m.payload == "héllo".encode()
        assert p.get(PAYLOAD_FORMAT_INDICATOR) == 1
        assert p.get(CONTENT_TYPE) == "text/plain; charset=utf-8"
        assert p.get(RESPONSE_TOPIC) == "pt/reply"
        assert p.get(CORRELATION_DATA) == b"\xff\x00id"
        assert p.all(USER_PROPERTY) == users
    cv5().publish(topic, b"", 1, retain=True)


# == Enhanced authentication ========================================================================
def test_unknown_authentication_method_refused(raw5):
    """§4.12: an Authentication Method the server does not support: CONNACK 0x8C."""
    c = raw5()
    c.connect5(uid("auth"), props=[(AUTHENTICATION_METHOD, "SCRAM-SHA-256")],
               expect_rc=BAD_AUTHENTICATION_METHOD)
    c.expect_closed()


def test_auth_packet_without_method_is_protocol_error(raw5, require_starling):
    """§4.12: AUTH from a client that gave no Authentication Method in CONNECT
    is a Protocol Error (DISCONNECT 0x82)."""
    c = raw5()
    c.connect5(uid("auth2"))
    c.send(gen_auth5(0x18, [(AUTHENTICATION_METHOD, "SCRAM-SHA-256")]))
    c.expect_disconnect(PROTOCOL_ERROR)


# == Mixed versions =============================================================================
def test_v311_subscriber_receives_v5_message(raw, raw5):
    """A 3.1.1 subscriber gets a 5.0 client's message as a plain 3.1.1 PUBLISH:
    properties dropped, topic aliases resolved."""
    topic = uid("mix/t")
    sub = raw()
    sub.connect(uid("mix311"))
    sub.subscribe(1, topic, 1)
    pub = raw5()
    pub.connect5(uid("mix5"))
    props: PropList = [(TOPIC_ALIAS, 1), (CONTENT_TYPE, "text/plain"),
                       (USER_PROPERTY, ("k", "v")), (MESSAGE_EXPIRY_INTERVAL, 60)]
    pub.send(gen_publish5(topic, 1, b"first", mid=1, props=props))
    pub.expect_ack5(PUBACK)
    pub.send(gen_publish5("", 1, b"second", mid=2, props=[(TOPIC_ALIAS, 1)]))
    pub.expect_ack5(PUBACK)
    for payload in (b"first", b"second"):
        got = sub.read()
        m = p3.parse_publish(got)
        assert got.raw == p3.gen_publish(topic, 1, payload, mid=m.mid), str(got)


def test_v5_subscriber_receives_v311_message(raw5, connected):
    """A 5.0 subscriber gets a 3.1.1 client's message with an empty property block."""
    topic = uid("mix/t")
    sub = raw5()
    sub.connect5(uid("mix5s"))
    sub.subscribe5(1, [(topic, 1)])
    connected().publish(topic, b"from-311", 1)
    m = sub.expect_publish5()
    assert (m.topic, m.payload, m.qos, m.props.pairs) == (topic, b"from-311", 1, [])
    assert m.size == 1 + 1 + 2 + len(topic) + 2 + 1 + len(b"from-311")


# == Settings in EMQX's later naming ============================================================
def test_emqx_setting_names(make_node, raw5):
    """The issue's settings exist under their `mqtt.*` names and take effect."""
    n = make_node({
        "mqtt.server_keepalive": "45", "mqtt.max_topic_alias": "9",
        "mqtt.max_inflight": "2", "mqtt.max_packet_size": "2048",
        "mqtt.shared_subscription_strategy": "round_robin",
        "mqtt.session_expiry_interval": "1h", "mqtt.message_expiry_interval": "1h",
    })
    c = raw5(target=n)
    props = c.connect5(uid("emqx")).props
    assert (props.get(SERVER_KEEP_ALIVE), props.get(TOPIC_ALIAS_MAXIMUM),
            props.get(MAXIMUM_PACKET_SIZE)) == (45, 9, 2048)
    topic = uid("emqx/t")
    c.subscribe5(1, [(topic, 1)])
    pub = raw5(target=n)
    pub.connect5(uid("emqx-pub"))
    for mid in range(1, 5):
        pub.send(gen_publish5(topic, 1, b"x", mid=mid))
        pub.expect_ack5(PUBACK)
    assert len(publishes(until_pingresp(c))) == 2  # mqtt.max_inflight

