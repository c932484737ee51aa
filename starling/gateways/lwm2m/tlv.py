"""OMA-TLV (LwM2M 1.0 §6.4.3, content format 11542): framing and value encodings.

Sans-IO: bytes in, `Tlv` records out, and back.  A TLV record is one type
byte (what it is, how wide its identifier and length are), the identifier,
an optional length field, then the value: raw bytes for a resource or a
resource instance, nested records for an object instance or a multiple
resource.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass


class TlvError(ValueError):
    """Bytes that are not well-formed TLV, or a value that cannot be encoded."""


class TlvKind(enum.IntEnum):
    """Bits 7-6 of the type byte."""

    OBJECT_INSTANCE = 0b00
    RESOURCE_INSTANCE = 0b01
    MULTIPLE_RESOURCE = 0b10
    RESOURCE = 0b11

    @property
    def nested(self) -> bool:
        return self in (TlvKind.OBJECT_INSTANCE, TlvKind.MULTIPLE_RESOURCE)


@dataclass(frozen=True, slots=True)
class Tlv:
    """One record: `value` is bytes for a leaf, a tuple of records when `kind.nested`."""

    kind: TlvKind
    ident: int
    value: bytes | tuple[Tlv, ...]

    @property
    def children(self) -> tuple[Tlv, ...]:
        if isinstance(self.value, bytes):
            raise TlvError(f"{self.kind.name} {self.ident} holds a value, not records")
        return self.value

    @property
    def data(self) -> bytes:
        if not isinstance(self.value, bytes):
            raise TlvError(f"{self.kind.name} {self.ident} holds records, not a value")
        return self.value


def decode(data: bytes) -> list[Tlv]:
    """All records of `data` (a well-formed TLV payload) or `TlvError`."""
    records: list[Tlv] = []
    pos = 0
    while pos < len(data):
        record, pos = _decode_one(data, pos)
        records.append(record)
    return records


def _decode_one(data: bytes, pos: int) -> tuple[Tlv, int]:
    end = len(data)
    if pos >= end:
        raise TlvError("truncated TLV: missing type byte")
    head = data[pos]
    pos += 1
    kind = TlvKind(head >> 6)
    id_width = 2 if head & 0x20 else 1
    length_width = (head >> 3) & 0x03
    if pos + id_width + length_width > end:
        raise TlvError("truncated TLV header")
    ident = int.from_bytes(data[pos:pos + id_width], "big")
    pos += id_width
    if length_width:
        length = int.from_bytes(data[pos:pos + length_width], "big")
        pos += length_width
    else:
        length = head & 0x07
    if pos + length > end:
        raise TlvError(f"truncated TLV value: {length} bytes announced, {end - pos} left")
    body = data[pos:pos + length]
    value: bytes | tuple[Tlv, ...] = tuple(decode(body)) if kind.nested else bytes(body)
    return Tlv(kind, ident, value), pos + length


def encode(records: list[Tlv] | tuple[Tlv, ...]) -> bytes:
    return b"".join(_encode_one(record) for record in records)


def _encode_one(record: Tlv) -> bytes:
    if not 0 <= record.ident <= 0xFFFF:
        raise TlvError(f"TLV identifier out of range: {record.ident}")
    body = encode(record.children) if record.kind.nested else record.data
    length = len(body)
    head = record.kind << 6
    ident = record.ident.to_bytes(2 if record.ident > 0xFF else 1, "big")
    if record.ident > 0xFF:
        head |= 0x20
    if length <= 7:
        head |= length
        size = b""
    elif length <= 0xFF:
        head |= 0x08
        size = length.to_bytes(1, "big")
    elif length <= 0xFFFF:
        head |= 0x10
        size = length.to_bytes(2, "big")
    elif length <= 0xFFFFFF:
        head |= 0x18
        size = length.to_bytes(3, "big")
    else:
        raise TlvError(f"TLV value too long: {length} bytes")
    return bytes([head]) + ident + size + body


# -- value encodings (§6.4.3 table 20; the same for plain values in text form) ---------

def encode_integer(number: int) -> bytes:
    """Two's complement, big-endian, in 1, 2, 4 or 8 bytes (the sizes the spec allows)."""
    for width in (1, 2, 4, 8):
        low = -(1 << (8 * width - 1))
        if low <= number < -low:
            return number.to_bytes(width, "big", signed=True)
    raise TlvError(f"integer out of the 64-bit range: {number}")


def decode_integer(data: bytes) -> int:
    if len(data) not in (1, 2, 4, 8):
        raise TlvError(f"an integer is 1, 2, 4 or 8 bytes, not {len(data)}")
    return int.from_bytes(data, "big", signed=True)


def encode_float(number: float) -> bytes:
    return struct.pack(">d", number)


def decode_float(data: bytes) -> float:
    if len(data) == 4:
        return float(struct.unpack(">f", data)[0])
    if len(data) == 8:
        return float(struct.unpack(">d", data)[0])
    raise TlvError(f"a float is 4 or 8 bytes, not {len(data)}")


def encode_boolean(flag: bool) -> bytes:
    return b"\x01" if flag else b"\x00"


def decode_boolean(data: bytes) -> bool:
    if data not in (b"\x00", b"\x01"):
        raise TlvError(f"a boolean is one byte 0 or 1, not {data.hex()}")
    return data == b"\x01"


def encode_objlnk(object_id: int, instance_id: int) -> bytes:
    if not (0 <= object_id <= 0xFFFF and 0 <= instance_id <= 0xFFFF):
        raise TlvError(f"object link out of range: {object_id}:{instance_id}")
    return struct.pack(">HH", object_id, instance_id)


def decode_objlnk(data: bytes) -> tuple[int, int]:
    if len(data) != 4:
        raise TlvError(f"an object link is 4 bytes, not {len(data)}")
    object_id, instance_id = struct.unpack(">HH", data)
    return int(object_id), int(instance_id)
