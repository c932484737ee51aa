"""Incremental MQTT decoder: bytes in, packets out, no I/O.

Theory of operation: `feed()` appends bytes and returns every packet that is
now complete.  The fixed header is read first so that an oversized packet is
refused as soon as its length is known, before its body arrives.  A stream
split at any byte boundary decodes exactly as the same bytes in one piece.

The decoder starts knowing no protocol level; decoding CONNECT sets it, so
MQTT 5.0 packets that follow in the same read already parse with properties.

What the specification puts on a packet itself is checked here, so every
transport (and the fuzzers) gets it: zero-length topic filters, the values of
PUBLISH and will properties a client must send well-formed, control characters
in topics and filters (unless `allow_control_characters`), and the looser forms
MQTT 3.1 (`MQIsdp`) allowed.  Rules that depend on the connection's state
(topic aliases in use, flow control) are the broker's.

Errors: if a read holds good packets followed by a bad one, `feed()` returns
the good ones and keeps the error in `pending_error` for the caller to raise
after handling them (packets a client sent before its mistake still count).
After an error the decoder refuses further input.
"""

from __future__ import annotations

from collections.abc import Callable

from ._primitives import decode_binary, decode_string, decode_u16
from .constants import MAX_PACKET_SIZE, PacketType
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
from .properties import (
    NO_PROPERTIES,
    WILL_PROPERTIES,
    Properties,
    PropertyId,
    decode_properties,
)
from .topics import has_control_characters, is_empty_filter, is_valid_topic_name

#: Fixed-header flag bits each packet type must carry [MQTT-2.2.2-1, -2], by type
#: (a tuple: one index on the hot path). PUBLISH's flags carry DUP/QoS/RETAIN and
#: are checked apart; type 0 is reserved. MQTT 3.1 did not fix them (a resent
#: PUBREL, SUBSCRIBE or UNSUBSCRIBE carried DUP; CONNECT's were "not used"), so a
#: 3.1 connection's are not checked, and CONNECT's are checked with its body, once
#: its protocol name is known.
REQUIRED_FLAGS: tuple[int, ...] = tuple(
    0b0010 if t in (PacketType.PUBREL, PacketType.SUBSCRIBE, PacketType.UNSUBSCRIBE) else 0
    for t in range(16))


def _props(level: int, data: bytes, pos: int, end: int,
           packet: int) -> tuple[Properties, int]:
    if level == 5:
        return decode_properties(data, pos, end, packet)
    return {}, pos


def _packet_id(data: bytes, pos: int, end: int) -> tuple[int, int]:
    packet_id, pos = decode_u16(data, pos, end)
    if packet_id == 0:
        raise MalformedPacket("packet identifier 0")  # [MQTT-2.3.1-1]
    return packet_id, pos


def _check_end(pos: int, end: int) -> None:
    if pos != end:
        raise MalformedPacket("bytes left over at the end of the packet")


def _check_message_properties(props: Properties) -> None:
    """The properties of a PUBLISH (or a will) whose values a sender must keep
    well-formed: Payload Format Indicator 0 or 1 (§3.3.2.3.2), a Response Topic
    that is a topic name [MQTT-3.3.2-14], no Topic Alias 0 [MQTT-3.3.2-8]."""
    indicator = props.get(PropertyId.PAYLOAD_FORMAT_INDICATOR)
    if indicator is not None and indicator > 1:
        raise ProtocolError(f"Payload Format Indicator {indicator}")
    response_topic = props.get(PropertyId.RESPONSE_TOPIC)
    if response_topic is not None and not is_valid_topic_name(response_topic):
        raise ProtocolError("Response Topic is not a topic name")  # [MQTT-3.3.2-14]
    if props.get(PropertyId.TOPIC_ALIAS) == 0:
        raise TopicAliasInvalid("topic alias 0")  # [MQTT-3.3.2-8]


class Decoder:
    """Turns a byte stream from one peer into packets."""

    __slots__ = ("_buffer", "_need", "_pool_key", "allow_control_characters",
                 "max_packet_size", "pending_error", "protocol_level")

    def __init__(self, max_packet_size: int = MAX_PACKET_SIZE, protocol_level: int = 0,
                 allow_control_characters: bool = False) -> None:
        #: Set while the decoder is `shared_decoder`'s for this (size, level, allow).
        self._pool_key: tuple[int, int, bool] | None = None
        self.max_packet_size = max_packet_size
        #: 0 until a CONNECT is decoded; then 3, 4 or 5.
        self.protocol_level = protocol_level
        #: Accept U+0001-U+001F and U+007F-U+009F in topics, filters and will
        #: topics; refused by default, as Mosquitto does (MQTT 5.0 §1.5.4).
        self.allow_control_characters = allow_control_characters
        self.pending_error: MQTTError | None = None
        #: Bytes of an incomplete packet; a bytearray only while there are some.
        self._buffer: bytes | bytearray = b""
        self._need = 0

    @property
    def buffered(self) -> int:
        """Bytes held back waiting for the rest of a packet."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Packet]:
        """Consume `data`; return the packets it completes (maybe none)."""
        if self.pending_error is not None:
            raise self.pending_error
        if self._buffer:
            self._buffer += data
            if len(self._buffer) < self._need:
                return []
            buf = bytes(self._buffer)
            self._buffer = b""
        else:
            buf = data
        packets: list[Packet] = []
        pos = 0
        size = len(buf)
        need = 0
        try:
            while size - pos >= 2:
                first = buf[pos]
                # Check type and flags before waiting for the body: a peer that
                # is not speaking MQTT is refused at its first byte.
                ptype = first >> 4
                if ptype != 3 and (ptype == 0 or (first & 0x0F) != REQUIRED_FLAGS[ptype]) and (
                        ptype == 0 or (ptype != 1 and self.protocol_level != 3)):
                    raise MalformedPacket(
                        f"invalid packet type {ptype} with flags 0x{first & 0x0F:x}")
                # Remaining Length, inlined: at most 4 bytes [MQTT-2.2.3].
                length = 0
                shift = 0
                i = pos + 1
                while True:
                    if i >= size:
                        length = -1
                        break
                    byte = buf[i]
                    i += 1
                    length |= (byte & 0x7F) << shift
                    if not byte & 0x80:
                        break
                    shift += 7
                    if shift >= 28:
                        raise MalformedPacket("remaining length longer than 4 bytes")
                if length < 0:
                    break
                end = i + length
                if end - pos > self.max_packet_size:
                    raise PacketTooLarge(f"packet of {end - pos} bytes exceeds maximum")
                if end > size:
                    need = end - pos
                    break
                if ptype == 3:  # PUBLISH: the hot path, kept out of the table lookup
                    packets.append(self._publish(first, buf, i, end))
                elif ptype == 1:  # its flags are checked once its protocol is known
                    packets.append(self._connect(first & 0x0F, buf, i, end))
                else:  # type and flags were checked above
                    packets.append(_READERS[ptype](self, buf, i, end))
                pos = end
        except MQTTError as exc:
            if not packets:
                self.pending_error = exc
                raise
            self.pending_error = exc
            return packets
        if pos < size:
            self._buffer = bytearray(memoryview(buf)[pos:])
        self._need = need
        return packets

    # -- one reader per packet type ----------------------------------------
    def _publish(self, first: int, data: bytes, pos: int, end: int) -> Publish:
        """The hot path: one per message.  The topic is read inline (what
        `decode_string` does), the payload is one slice of the read."""
        qos = (first >> 1) & 3
        if qos == 3:
            raise MalformedPacket("PUBLISH with QoS 3")  # [MQTT-3.3.1-4]
        dup = (first & 8) != 0
        if dup and not qos:
            raise MalformedPacket("DUP set on a QoS 0 PUBLISH")  # [MQTT-3.3.1-2]
        if pos + 2 > end:
            raise MalformedPacket("truncated length prefix")
        stop = pos + 2 + ((data[pos] << 8) | data[pos + 1])
        if stop > end:
            raise MalformedPacket("string runs past the end of the packet")
        try:
            topic = data[pos + 2:stop].decode()
        except UnicodeDecodeError:
            raise MalformedPacket("string is not valid UTF-8") from None
        if "+" in topic or "#" in topic:
            raise MalformedPacket("wildcard in PUBLISH topic")  # [MQTT-3.3.2-2]
        # `isprintable` first: one C call settles the usual topic (~35 instructions a
        # character; benchmarks/README.md, "Control characters").
        if not topic.isprintable():
            if "\x00" in topic:
                raise MalformedPacket("string contains U+0000")  # [MQTT-1.5.4-2]
            if not self.allow_control_characters and has_control_characters(topic):
                raise MalformedPacket("control character in PUBLISH topic")  # §1.5.4
        pos = stop
        packet_id = None
        if qos:
            if pos + 2 > end:
                raise MalformedPacket("truncated two byte integer")
            packet_id = (data[pos] << 8) | data[pos + 1]
            if packet_id == 0:
                raise MalformedPacket("packet identifier 0")  # [MQTT-2.3.1-1]
            pos += 2
        props = None
        if self.protocol_level == 5:
            props, pos = decode_properties(data, pos, end, 3)
            if props:
                _check_message_properties(props)
        elif not topic:
            raise MalformedPacket("empty PUBLISH topic")  # [MQTT-4.7.3-1]
        return Publish(topic, data[pos:end], qos, (first & 1) != 0, dup, packet_id, props)

    def _connect(self, header_flags: int, data: bytes, pos: int, end: int) -> Connect:
        name, pos = decode_string(data, pos, end)
        if pos >= end:
            raise MalformedPacket("CONNECT without protocol level")
        level = data[pos]
        pos += 1
        if name not in ("MQTT", "MQIsdp"):
            raise ProtocolError(f"unknown protocol name {name!r}")  # [MQTT-3.1.2-1]
        name = "MQTT" if name == "MQTT" else "MQIsdp"  # the constants: no copy per connection
        if (name == "MQIsdp") != (level == 3) or level not in (3, 4, 5):
            raise UnsupportedProtocolVersion(f"unsupported protocol level {level}")
        if header_flags and level != 3:
            raise MalformedPacket(f"CONNECT with flags 0x{header_flags:x}")  # [MQTT-2.2.2-2]
        if pos + 3 > end:
            raise MalformedPacket("truncated CONNECT")
        flags = data[pos]
        keepalive = (data[pos + 1] << 8) | data[pos + 2]
        pos += 3
        if flags & 0x01 and level != 3:  # MQTT 3.1 left the bit unused, unchecked
            raise MalformedPacket("CONNECT reserved flag set")  # [MQTT-3.1.2-3]
        will_flag = bool(flags & 0x04)
        will_qos = (flags >> 3) & 3
        will_retain = bool(flags & 0x20)
        has_password = bool(flags & 0x40)
        has_username = bool(flags & 0x80)
        if will_qos == 3:
            raise MalformedPacket("will QoS 3")  # [MQTT-3.1.2-14]
        if not will_flag and (will_qos or will_retain):
            raise MalformedPacket("will QoS/retain without will flag")  # [MQTT-3.1.2-11]
        if level < 5 and has_password and not has_username:
            raise MalformedPacket("password without user name")  # [MQTT-3.1.2-22]
        self.protocol_level = level
        props, pos = _props(level, data, pos, end, 1)
        client_id, pos = decode_string(data, pos, end)
        will = None
        if will_flag:
            will_props, pos = _props(level, data, pos, end, WILL_PROPERTIES)
            if will_props:
                _check_message_properties(will_props)
            will_topic, pos = decode_string(data, pos, end)
            if not will_topic or "+" in will_topic or "#" in will_topic:
                raise MalformedPacket("invalid will topic")  # [MQTT-3.1.3-11]
            self._check_controls(will_topic, "will topic")
            will_payload, pos = decode_binary(data, pos, end)
            will = Will(will_topic, will_payload, will_qos, will_retain, will_props)
        username = password = None
        if has_username:
            username, pos = decode_string(data, pos, end)
        if has_password:
            password, pos = decode_binary(data, pos, end)
        _check_end(pos, end)
        return Connect(client_id, level, name, bool(flags & 0x02), keepalive, will,
                       username, password, props)

    def _connack(self, data: bytes, pos: int, end: int) -> Connack:
        if pos + 2 > end:
            raise MalformedPacket("truncated CONNACK")
        ack_flags, code = data[pos], data[pos + 1]
        if ack_flags & 0xFE:
            raise MalformedPacket("CONNACK reserved flags set")
        props, pos = _props(self.protocol_level, data, pos + 2, end, 2)
        _check_end(pos, end)
        return Connack(bool(ack_flags & 1), code, props)

    def _ack(self, ptype: int, data: bytes, pos: int,
             end: int) -> tuple[int, int, Properties | None]:
        """(packet id, reason code, properties) of PUBACK/PUBREC/PUBREL/PUBCOMP:
        one per QoS 1/2 message and hop, so read inline."""
        if pos + 2 > end:
            raise MalformedPacket("truncated two byte integer")
        packet_id = (data[pos] << 8) | data[pos + 1]
        if packet_id == 0:
            raise MalformedPacket("packet identifier 0")  # [MQTT-2.3.1-1]
        pos += 2
        if pos == end:
            return packet_id, 0, NO_PROPERTIES
        if self.protocol_level != 5:
            raise MalformedPacket("bytes left over at the end of the packet")
        code = data[pos]
        props: Properties | None = NO_PROPERTIES
        if pos + 1 < end:
            props, pos = decode_properties(data, pos + 1, end, ptype)
        else:
            pos += 1
        _check_end(pos, end)
        return packet_id, code, props

    def _puback(self, data: bytes, pos: int, end: int) -> Packet:
        packet_id, code, props = self._ack(4, data, pos, end)
        return Puback(packet_id, code, props)

    def _pubrec(self, data: bytes, pos: int, end: int) -> Packet:
        packet_id, code, props = self._ack(5, data, pos, end)
        return Pubrec(packet_id, code, props)

    def _pubrel(self, data: bytes, pos: int, end: int) -> Packet:
        packet_id, code, props = self._ack(6, data, pos, end)
        return Pubrel(packet_id, code, props)

    def _pubcomp(self, data: bytes, pos: int, end: int) -> Packet:
        packet_id, code, props = self._ack(7, data, pos, end)
        return Pubcomp(packet_id, code, props)

    def _subscribe(self, data: bytes, pos: int, end: int) -> Subscribe:
        packet_id, pos = _packet_id(data, pos, end)
        props, pos = _props(self.protocol_level, data, pos, end, 8)
        v5 = self.protocol_level == 5
        entries: list[tuple[str, SubscriptionOptions]] = []
        while pos < end:
            topic_filter, pos = decode_string(data, pos, end)
            self._check_filter(topic_filter)
            if pos >= end:
                raise MalformedPacket("SUBSCRIBE entry without options")
            options = data[pos]
            pos += 1
            qos = options & 3
            if v5:
                handling = (options >> 4) & 3
                if options & 0xC0:
                    raise MalformedPacket("reserved subscription option bits set")
                if qos == 3 or handling == 3:
                    raise ProtocolError("maximum QoS or retain handling 3")  # §3.8.3.1
                opts = SubscriptionOptions(qos, bool(options & 4), bool(options & 8), handling)
            else:
                if options & 0xFC or qos == 3:
                    raise MalformedPacket("reserved subscription option bits set")  # [MQTT-3.8.3-4]
                opts = SubscriptionOptions(qos)
            entries.append((topic_filter, opts))
        if not entries:
            raise ProtocolError("SUBSCRIBE without topic filters")  # [MQTT-3.8.3-3]
        return Subscribe(packet_id, entries, props)

    def _check_filter(self, topic_filter: str) -> None:
        """A SUBSCRIBE or UNSUBSCRIBE filter: one the spec does not make invalid per
        entry (``a/#/b`` is answered 0x80 / 0x8F by the broker) but not a filter at all."""
        if is_empty_filter(topic_filter):
            raise ProtocolError(f"zero-length topic filter {topic_filter!r}")  # [MQTT-4.7.3-1]
        self._check_controls(topic_filter, "topic filter")

    def _check_controls(self, text: str, what: str) -> None:
        if not self.allow_control_characters and has_control_characters(text):
            raise MalformedPacket(f"control character in {what}")  # §1.5.4

    def _suback(self, data: bytes, pos: int, end: int) -> Suback:
        packet_id, pos = _packet_id(data, pos, end)
        props, pos = _props(self.protocol_level, data, pos, end, 9)
        return Suback(packet_id, list(data[pos:end]), props)

    def _unsubscribe(self, data: bytes, pos: int, end: int) -> Unsubscribe:
        packet_id, pos = _packet_id(data, pos, end)
        props, pos = _props(self.protocol_level, data, pos, end, 10)
        filters: list[str] = []
        while pos < end:
            topic_filter, pos = decode_string(data, pos, end)
            self._check_filter(topic_filter)
            filters.append(topic_filter)
        if not filters:
            raise ProtocolError("UNSUBSCRIBE without topic filters")  # [MQTT-3.10.3-2]
        return Unsubscribe(packet_id, filters, props)

    def _unsuback(self, data: bytes, pos: int, end: int) -> Unsuback:
        packet_id, pos = _packet_id(data, pos, end)
        if self.protocol_level == 5:
            props, pos = decode_properties(data, pos, end, 11)
            return Unsuback(packet_id, list(data[pos:end]), props)
        _check_end(pos, end)
        return Unsuback(packet_id)

    def _pingreq(self, data: bytes, pos: int, end: int) -> Packet:
        _check_end(pos, end)
        return Pingreq()

    def _pingresp(self, data: bytes, pos: int, end: int) -> Packet:
        _check_end(pos, end)
        return Pingresp()

    def _reason_and_props(self, data: bytes, pos: int, end: int,
                          packet: int) -> tuple[int, Properties]:
        if self.protocol_level != 5 or pos == end:
            _check_end(pos, end)
            return 0, {}
        code = data[pos]
        props: Properties = {}
        pos += 1
        if pos < end:
            props, pos = decode_properties(data, pos, end, packet)
        _check_end(pos, end)
        return code, props

    def _disconnect(self, data: bytes, pos: int, end: int) -> Disconnect:
        return Disconnect(*self._reason_and_props(data, pos, end, 14))

    def _auth(self, data: bytes, pos: int, end: int) -> Auth:
        if self.protocol_level != 5:
            raise MalformedPacket("AUTH before MQTT 5.0")
        return Auth(*self._reason_and_props(data, pos, end, 15))


_READERS: dict[int, Callable[[Decoder, bytes, int, int], Packet]] = {
    PacketType.CONNACK: Decoder._connack,
    PacketType.PUBACK: Decoder._puback,
    PacketType.PUBREC: Decoder._pubrec,
    PacketType.PUBREL: Decoder._pubrel,
    PacketType.PUBCOMP: Decoder._pubcomp,
    PacketType.SUBSCRIBE: Decoder._subscribe,
    PacketType.SUBACK: Decoder._suback,
    PacketType.UNSUBSCRIBE: Decoder._unsubscribe,
    PacketType.UNSUBACK: Decoder._unsuback,
    PacketType.PINGREQ: Decoder._pingreq,
    PacketType.PINGRESP: Decoder._pingresp,
    PacketType.DISCONNECT: Decoder._disconnect,
    PacketType.AUTH: Decoder._auth,
}


# -- decoders shared between packets ---------------------------------------------
# Between packets a decoder holds nothing but its size limit and protocol level,
# so connections share one per (limit, level, leniency) instead of keeping 72 bytes each.
# A connection left with state of its own after `feed` (part of a packet, an
# error) gets a decoder of its own holding that state, and the shared one is
# emptied again; an own decoder that holds nothing any more goes back to sharing.
_SHARED: dict[tuple[int, int, bool], Decoder] = {}


def shared_decoder(max_packet_size: int, protocol_level: int = 0,
                   allow_control_characters: bool = False) -> Decoder:
    """The decoder connections with this limit, level and leniency use between packets."""
    key = (max_packet_size, protocol_level, allow_control_characters)
    decoder = _SHARED.get(key)
    if decoder is None:
        decoder = _SHARED[key] = Decoder(*key)
        decoder._pool_key = key
    return decoder


def settle_decoder(decoder: Decoder) -> Decoder:
    """After `feed` (returned or raised): the decoder the connection goes on with."""
    key = decoder._pool_key
    level = decoder.protocol_level
    allow = decoder.allow_control_characters
    stateless = not decoder._buffer and decoder.pending_error is None
    if key is None:  # the connection's own
        return (shared_decoder(decoder.max_packet_size, level, allow) if stateless
                else decoder)
    if stateless and level == key[1]:
        return decoder
    # The shared decoder took on this connection's state (a CONNECT sets the level):
    # the state moves to a decoder of the connection's own, the shared one is reset.
    if stateless:
        own = shared_decoder(decoder.max_packet_size, level, allow)
    else:
        own = Decoder(decoder.max_packet_size, level, allow)
        own._buffer, own._need, own.pending_error = (
            decoder._buffer, decoder._need, decoder.pending_error)
        decoder._buffer, decoder._need, decoder.pending_error = b"", 0, None
    decoder.protocol_level = key[1]
    return own
