"""The MQTT-SN codec against the specification's layouts and a real third-party
encoder/decoder: the `mqtt-sn-12` client's packet classes (`mqttsn12.packets`)
write datagrams our decoder must read, and read the datagrams our encoder
writes.  Malformed datagrams raise the codec's own errors, nothing else."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mqttsn12 import packets as third

from starling.gateways.mqttsn.codec import (
    MalformedMessage,
    MqttSnError,
    UnsupportedMessage,
    decode,
    encode,
)
from starling.gateways.mqttsn.messages import (
    Advertise,
    Connack,
    Connect,
    Disconnect,
    GwInfo,
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
    SearchGw,
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
    short_name,
)

EVERY_MESSAGE: list[Message] = [
    Advertise(7, 900),
    SearchGw(1),
    GwInfo(3),
    GwInfo(3, b"\x0a\x00\x00\x01"),
    Connect("sensor-1", 30, clean_session=True, will=True),
    Connect("s", 0, clean_session=False),
    Connack(ReturnCode.CONGESTION),
    WillTopicReq(),
    WillTopic("dev/will", 1, True),
    WillTopic(None),
    WillMsgReq(),
    WillMsg(b"gone"),
    Register(0, 5, "a/b/c"),
    Regack(17, 5, ReturnCode.ACCEPTED),
    Publish(TopicIdType.NORMAL, 17, 9, b"\x00\x01payload", qos=1, retain=True, dup=True),
    Publish(TopicIdType.SHORT, short_id("ab") or 0, 0, b"x", qos=-1),
    Publish(TopicIdType.PREDEFINED, 1, 0, b"", qos=0),
    Puback(17, 9, ReturnCode.INVALID_TOPIC_ID),
    Pubrec(9),
    Pubrel(9),
    Pubcomp(9),
    Subscribe(TopicIdType.NORMAL, 4, "a/+/c", qos=2),
    Subscribe(TopicIdType.PREDEFINED, 4, topic_id=2, qos=1, dup=True),
    Subscribe(TopicIdType.SHORT, 4, topic_id=short_id("xy") or 0),
    Suback(1, 17, 4, ReturnCode.ACCEPTED),
    Unsubscribe(TopicIdType.NORMAL, 6, "a/#"),
    Unsubscribe(TopicIdType.PREDEFINED, 6, topic_id=2),
    Unsuback(6),
    Pingreq(),
    Pingreq("sleepy"),
    Pingresp(),
    Disconnect(),
    Disconnect(600),
    WillTopicUpd("dev/will2", 0, False),
    WillTopicUpd(None),
    WillTopicResp(ReturnCode.ACCEPTED),
    WillMsgUpd(b"bye"),
    WillMsgResp(ReturnCode.NOT_SUPPORTED),
]


@pytest.mark.parametrize("message", EVERY_MESSAGE, ids=lambda m: type(m).__name__)
def test_every_message_round_trips(message: Message) -> None:
    datagram = encode(message)
    assert datagram[0] == len(datagram)
    assert decode(datagram) == message


def test_hand_written_vectors_from_the_specification() -> None:
    # CONNECT (§5.4.4): length, type 0x04, flags (will, clean), protocol id 1, duration, id
    assert decode(bytes.fromhex("0c 04 0c 01 003c 73656e736f72".replace(" ", ""))) == \
        Connect("sensor", 60, clean_session=True, will=True)
    # PUBLISH (§5.4.12): QoS 1 (0x20), topic id 0x0102, msg id 0x0304, data "hi"
    assert decode(bytes.fromhex("09 0c 20 0102 0304 6869".replace(" ", ""))) == \
        Publish(TopicIdType.NORMAL, 0x0102, 0x0304, b"hi", qos=1)
    # QoS -1 is the wire value 3 (0x60), short topic "ab"
    assert decode(bytes.fromhex("08 0c 62 6162 0000 21".replace(" ", ""))) == \
        Publish(TopicIdType.SHORT, 0x6162, 0, b"!", qos=-1)
    assert encode(Connack(ReturnCode.ACCEPTED)) == b"\x03\x05\x00"
    assert encode(Pingresp()) == b"\x02\x17"


def test_long_messages_use_the_three_octet_length() -> None:
    data = bytes(range(256)) * 4
    message = Publish(TopicIdType.NORMAL, 1, 2, data, qos=1)
    datagram = encode(message)
    assert datagram[0] == 0x01
    assert int.from_bytes(datagram[1:3], "big") == len(datagram) == 1024 + 9
    assert decode(datagram) == message
    # A message of exactly 255 octets still fits the one-octet form.
    edge = Publish(TopicIdType.NORMAL, 1, 2, b"x" * (255 - 7))
    assert encode(edge)[0] == 255
    assert len(encode(Publish(TopicIdType.NORMAL, 1, 2, b"x" * (256 - 7)))) == 256 + 2


def test_too_large_to_encode() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        encode(Publish(TopicIdType.NORMAL, 1, 2, b"x" * 70000))


def test_short_topic_names() -> None:
    assert short_id("ab") == 0x6162
    assert short_name(0x6162) == "ab"
    assert short_id("abc") is None and short_id("a") is None
    assert short_id("é") == 0xC3A9  # two UTF-8 octets
    assert short_name(0xFFFF) is None  # not UTF-8


# -- interoperability with mqtt-sn-12's own packet classes --------------------------------
def test_reads_what_the_mqtt_sn_12_client_writes() -> None:
    connect = third.ConnectPacket()
    connect.set_flags(0x0C)
    connect.set_protocol_id(1)
    connect.set_duration(30)
    connect.set_client_id("device-7")
    assert decode(connect.encode()) == Connect("device-7", 30, clean_session=True, will=True)

    publish = third.PublishPacket()
    publish.set_flags(0x40 | 0x10 | 0x01)  # QoS 2, retain, predefined
    publish.set_topic_id(3)
    publish.set_message_id(77)
    publish.set_data("x" * 300)  # long: the client switches to the 3-octet length
    assert decode(publish.encode()) == Publish(TopicIdType.PREDEFINED, 3, 77, b"x" * 300,
                                               qos=2, retain=True)

    sub = third.SubPacket()
    sub.set_flags(0x20)
    sub.set_message_id(5)
    sub.set_topic_name("room/+/temp")
    assert decode(sub.encode()) == Subscribe(TopicIdType.NORMAL, 5, "room/+/temp", qos=1)

    register = third.RegisterPacket()
    register.set_topic_id(0)
    register.set_message_id(8)
    register.set_topic_name("room/1/temp")
    assert decode(register.encode()) == Register(0, 8, "room/1/temp")

    sleep = third.DisconnectReqPacket()
    sleep.set_duration(120)
    assert decode(sleep.encode()) == Disconnect(120)

    ping = third.PingReqPacket()
    ping.client_id = "device-7"
    assert decode(ping.encode()) == Pingreq("device-7")

    will_topic = third.WillTopicPacket()
    will_topic.set_flags(0x20)
    will_topic.set_topic_name("dev/7/status")
    assert decode(will_topic.encode()) == WillTopic("dev/7/status", 1, False)


def test_the_mqtt_sn_12_client_reads_what_we_write() -> None:
    connack = third.ConnackPacket()
    connack.decode(encode(Connack(ReturnCode.NOT_SUPPORTED)))
    assert connack.get_return_code() == 3

    suback = third.SubAckPacket()
    suback.decode(encode(Suback(1, 42, 5, ReturnCode.ACCEPTED)))
    assert (suback.get_topic_id(), suback.get_message_id(), suback.get_return_code()) == (42, 5, 0)

    regack = third.RegackPacket()
    regack.decode(encode(Regack(42, 8, ReturnCode.ACCEPTED)))
    assert (regack.get_topic_id(), regack.get_message_id()) == (42, 8)

    publish = third.PublishPacket()
    publish.decode(encode(Publish(TopicIdType.NORMAL, 42, 9, b"y" * 400, qos=1)))
    assert (publish.get_topic_id(), publish.get_message_id(), publish.get_qos()) == (42, 9, 1)
    assert publish.get_data() == b"y" * 400

    register = third.RegisterPacket()
    register.decode(encode(Register(42, 3, "a/b")))
    assert (register.get_topic_id(), register.get_topic_name()) == (42, "a/b")


# -- malformed datagrams ------------------------------------------------------------------
@pytest.mark.parametrize("datagram, error", [
    (b"", MalformedMessage),
    (b"\x02", MalformedMessage),
    (b"\x05\x17", MalformedMessage),  # length says 5, datagram has 2
    (b"\x02\x17\x00", MalformedMessage),  # one byte more than the length says
    (b"\x01\x00", MalformedMessage),  # 3-octet form without its length
    (b"\x01\x00\x05\x17", MalformedMessage),  # 3-octet length says 5, datagram has 4
    (b"\x03\x0c\x00", MalformedMessage),  # PUBLISH without topic id and msg id
    (b"\x04\x0b\x00\x01", MalformedMessage),  # REGACK cut short
    (b"\x06\x05\x00\x00\x00\x00", MalformedMessage),  # CONNACK with extra bytes
    (b"\x03\x05\x09", MalformedMessage),  # CONNACK with an undefined return code
    (b"\x08\x04\x04\x01\x00\x1e\xff\xfe", MalformedMessage),  # client id not UTF-8
    (b"\x05\x18\x00\x01\x02", MalformedMessage),  # DISCONNECT duration of 3 bytes
    (b"\x07\x12\x21\x00\x01\xaa", MalformedMessage),  # SUBSCRIBE predefined id of 1 byte
    (b"\x02\x03", UnsupportedMessage),  # type 0x03 is not defined
    (b"\x05\xfe\x01\x02\x03", UnsupportedMessage),  # forwarder encapsulation
])
def test_malformed_datagrams(datagram: bytes, error: type[MqttSnError]) -> None:
    with pytest.raises(error):
        decode(datagram)


@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_the_codecs_error(data: bytes) -> None:
    try:
        message = decode(data)
    except MqttSnError:
        return
    assert decode(encode(message)) == message


@given(st.sampled_from(EVERY_MESSAGE), st.integers(min_value=1, max_value=40))
def test_truncated_datagrams_are_refused(message: Message, cut: int) -> None:
    datagram = encode(message)
    if cut >= len(datagram):
        return
    with pytest.raises(MqttSnError):
        decode(datagram[:-cut])
