"""Protocol errors.  Each carries the MQTT 5.0 reason code that answers it.

    MQTTError (reason_code)
    ├── MalformedPacket            0x81  bytes that cannot be a valid packet
    ├── ProtocolError              0x82  a valid packet in the wrong place
    │   └── UnsupportedProtocolVersion  0x84  CONNECT with a level we do not speak
    ├── PacketTooLarge             0x95  over the configured maximum
    └── TopicAliasInvalid          0x94  (MQTT 5.0)

Inside the codec anything may be raised; the connection shell is the one place
that turns an error into a CONNACK / DISCONNECT and a close.
"""

from __future__ import annotations

from .reason_codes import ReasonCode


class MQTTError(Exception):
    """Root of every error the protocol layer raises for peer input."""

    reason_code: ReasonCode = ReasonCode.UNSPECIFIED_ERROR

    def __init__(self, message: str, reason_code: ReasonCode | None = None) -> None:
        super().__init__(message)
        if reason_code is not None:
            self.reason_code = reason_code


class MalformedPacket(MQTTError):
    reason_code = ReasonCode.MALFORMED_PACKET


class ProtocolError(MQTTError):
    reason_code = ReasonCode.PROTOCOL_ERROR


class UnsupportedProtocolVersion(ProtocolError):
    """CONNECT named a protocol level we do not speak: answer CONNACK 0x01 / 0x84."""

    reason_code = ReasonCode.UNSUPPORTED_PROTOCOL_VERSION


class PacketTooLarge(MQTTError):
    reason_code = ReasonCode.PACKET_TOO_LARGE


class TopicAliasInvalid(MQTTError):
    reason_code = ReasonCode.TOPIC_ALIAS_INVALID
