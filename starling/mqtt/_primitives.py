"""Data representations of MQTT §1.5: integers, strings, binary data.

Decoders take ``(data, pos[, end])`` and return ``(value, new_pos)`` so a
packet body is read in one pass without slicing copies.  Every read is
bounded: running past `end` is a MalformedPacket, never an IndexError.
"""

from __future__ import annotations

from .errors import MalformedPacket


def decode_varint(data: bytes, pos: int) -> tuple[int, int]:
    """Variable Byte Integer: at most 4 bytes [MQTT-1.5.5-1]."""
    value = 0
    shift = 0
    for i in range(4):
        try:
            byte = data[pos + i]
        except IndexError:
            raise MalformedPacket("truncated variable byte integer") from None
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos + i + 1
        shift += 7
    raise MalformedPacket("variable byte integer longer than 4 bytes")


def encode_varint(value: int) -> bytes:
    if value < 128:
        return bytes((value,))
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_u16(data: bytes, pos: int, end: int) -> tuple[int, int]:
    if pos + 2 > end:
        raise MalformedPacket("truncated two byte integer")
    return (data[pos] << 8) | data[pos + 1], pos + 2


def decode_binary(data: bytes, pos: int, end: int) -> tuple[bytes, int]:
    if pos + 2 > end:
        raise MalformedPacket("truncated length prefix")
    stop = pos + 2 + ((data[pos] << 8) | data[pos + 1])
    if stop > end:
        raise MalformedPacket("field runs past the end of the packet")
    return bytes(data[pos + 2 : stop]), stop


def decode_string(data: bytes, pos: int, end: int) -> tuple[str, int]:
    """UTF-8 Encoded String: well-formed, no U+0000 [MQTT-1.5.3-1, -2]."""
    if pos + 2 > end:
        raise MalformedPacket("truncated length prefix")
    stop = pos + 2 + ((data[pos] << 8) | data[pos + 1])
    if stop > end:
        raise MalformedPacket("string runs past the end of the packet")
    raw = data[pos + 2 : stop]
    try:
        text = str(raw, "utf-8")
    except UnicodeDecodeError:
        raise MalformedPacket("string is not valid UTF-8") from None
    if "\x00" in text:
        raise MalformedPacket("string contains U+0000")
    return text, stop


def encode_string(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def encode_binary(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data
