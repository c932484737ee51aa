"""Numbers from the MQTT specifications' tables (3.1, 3.1.1 and 5.0)."""

from __future__ import annotations

from enum import IntEnum


class PacketType(IntEnum):
    """Control packet types, the high nibble of the fixed header [MQTT-2.2.1]."""

    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14
    AUTH = 15  #: MQTT 5.0 only


class ProtocolVersion(IntEnum):
    """The protocol level byte of CONNECT."""

    MQTT_3_1 = 3  #: protocol name "MQIsdp"
    MQTT_3_1_1 = 4  #: protocol name "MQTT"
    MQTT_5 = 5  #: protocol name "MQTT"


PROTOCOL_NAMES: dict[int, str] = {
    ProtocolVersion.MQTT_3_1: "MQIsdp",
    ProtocolVersion.MQTT_3_1_1: "MQTT",
    ProtocolVersion.MQTT_5: "MQTT",
}


class QoS(IntEnum):
    AT_MOST_ONCE = 0
    AT_LEAST_ONCE = 1
    EXACTLY_ONCE = 2


class RetainHandling(IntEnum):
    """Subscription option bits 4-5 (MQTT 5.0 §3.8.3.1)."""

    SEND_ON_SUBSCRIBE = 0
    SEND_IF_NEW_SUBSCRIPTION = 1
    DO_NOT_SEND = 2


#: Largest value a Variable Byte Integer can carry (4 bytes) [MQTT-1.5.5].
MAX_VARIABLE_BYTE_INTEGER = 268_435_455
#: The largest packet MQTT can frame: 1 type byte + 4 length bytes + body.
MAX_PACKET_SIZE = MAX_VARIABLE_BYTE_INTEGER + 5
