"""The MQTT protocol, sans I/O: packets, codec, properties, reason codes, topics.

Nothing here imports asyncio, sockets or the rest of Starling; bytes go in,
packet objects come out, and back (model: python-hyper/h11).
"""

from __future__ import annotations

from .constants import (
    MAX_PACKET_SIZE,
    PROTOCOL_NAMES,
    PacketType,
    ProtocolVersion,
    QoS,
    RetainHandling,
)
from .decoder import Decoder, settle_decoder, shared_decoder
from .encoder import (
    PINGRESP_BYTES,
    ack_bytes,
    connack_bytes,
    encode,
    encode_publish,
    publish_parts,
)
from .errors import (
    MalformedPacket,
    MQTTError,
    PacketTooLarge,
    ProtocolError,
    TopicAliasInvalid,
    UnsupportedProtocolVersion,
)
from .packets import (
    Auth,
    Connack,
    Connect,
    Disconnect,
    Packet,
    Pingreq,
    Pingresp,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    SubscriptionOptions,
    Unsuback,
    Unsubscribe,
    Will,
)
from .properties import Properties, PropertyId, decode_properties, encode_properties
from .reason_codes import ConnackReturnCode, ReasonCode, connack_code_for
from .topics import (
    is_valid_topic_filter,
    is_valid_topic_name,
    is_wildcard,
    matches,
    parse_share,
    topic_levels_ok,
)

__all__ = [
    "MAX_PACKET_SIZE",
    "PINGRESP_BYTES",
    "PROTOCOL_NAMES",
    "Auth",
    "Connack",
    "ConnackReturnCode",
    "Connect",
    "Decoder",
    "Disconnect",
    "MQTTError",
    "MalformedPacket",
    "Packet",
    "PacketTooLarge",
    "PacketType",
    "Pingreq",
    "Pingresp",
    "Properties",
    "PropertyId",
    "ProtocolError",
    "ProtocolVersion",
    "Puback",
    "Pubcomp",
    "Publish",
    "Pubrec",
    "Pubrel",
    "QoS",
    "ReasonCode",
    "RetainHandling",
    "Suback",
    "Subscribe",
    "SubscriptionOptions",
    "TopicAliasInvalid",
    "Unsuback",
    "Unsubscribe",
    "UnsupportedProtocolVersion",
    "Will",
    "ack_bytes",
    "connack_bytes",
    "connack_code_for",
    "decode_properties",
    "encode",
    "encode_properties",
    "encode_publish",
    "is_valid_topic_filter",
    "is_valid_topic_name",
    "is_wildcard",
    "matches",
    "parse_share",
    "publish_parts",
    "settle_decoder",
    "shared_decoder",
    "topic_levels_ok",
]
