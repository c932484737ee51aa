"""Forwarded messages as bytes: one batch per destination node per loop turn.

Every message a node forwards during one loop turn joins that turn's batch
for each node it goes to; when the turn ends (`Batches.close`), each node's
batch becomes one NATS message.  The strings of the turn (topics, client ids,
usernames, shared groups) are written once, in a table at the head of every
batch, and each message names them by index: a message costs its payload and
21 bytes, and decoding one costs a struct unpack, a slice and the `Message`.

    batch   = !BH  FORMAT, n strings
              n x (!H len, utf-8)                       the turn's strings
              records to the end
    record  = !BBHHHId  route, flags, topic, sender, username (0xFFFF: none),
                        len(payload), timestamp
              payload
              [!I len, properties (MQTT 5.0 block)]     flags & PROPS
              [!d expires_at, epoch seconds]            flags & EXPIRES
              [!H n, n x (!HH group, filter)]           route & GROUPS
    route   = PLAIN (deliver to matching plain subscriptions) | GROUPS (serve
              these shared groups: the sending node chose this node for them)
    flags   = qos | retain << 2 | sys << 3 | PROPS | EXPIRES

The module is strictly typed and compiled with mypyc with the rest of the hot
path (starling/compiled.py); it does no I/O (the outbox sends what `close`
returns).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import Final

from starling.broker import Message
from starling.mqtt import decode_properties, encode_properties

# Final: mypyc compiles these as constants, not module lookups.
#: The first byte of every batch: a node of another format refuses the batch.
FORMAT: Final = 0xB2
_HEADER: Final = struct.Struct("!BH")
_STRING: Final = struct.Struct("!H")
_RECORD: Final = struct.Struct("!BBHHHId")  # the route byte, then the body's head
_LENGTH: Final = struct.Struct("!I")
_EXPIRES: Final = struct.Struct("!d")
_GROUP: Final = struct.Struct("!HH")
PLAIN: Final = 1
GROUPS: Final = 2
PROPS: Final = 16
EXPIRES: Final = 32
_NONE: Final = 0xFFFF
_ROUTES: Final = (b"\x00", b"\x01", b"\x02", b"\x03")
#: Strings in one turn's table past which the turn is closed early (an index is
#: 16 bits and 0xFFFF means none: room is left for the strings of one message).
MAX_STRINGS: Final = 0xF000

#: (group name, real filter): a shared group, as `$share/<group>/<filter>`.
GroupKey = tuple[str, str]
#: Where one message goes: (subject of the node, plain route?, shared groups it serves).
Target = tuple[str, bool, tuple[GroupKey, ...]]
#: One decoded record: (plain route?, shared groups to serve, the message).
Forwarded = tuple[bool, tuple[GroupKey, ...], Message]


class WireError(ValueError):
    """Bytes from another node that do not decode (a version mismatch, or damage)."""


class Batches:
    """This loop turn's forwarded messages, by destination subject.

    `add` encodes a message once for all its destinations.  The first message
    of a turn calls `on_start` (the caller closes the turn when the loop turn
    ends); a message that would take the bytes waiting to be sent past `limit`
    is dropped and counted (`on_drop`): `queued` is what the sender still
    holds from earlier turns.  A turn whose string table grows past an eighth
    of `max_payload` is closed early, so that a table always fits in a batch.
    """

    def __init__(self, limit: int, on_start: Callable[[], None],
                 on_drop: Callable[[int], None], max_payload: int = 1024 * 1024) -> None:
        self.limit = limit
        self._on_start = on_start
        self._on_drop = on_drop
        #: Bytes of earlier turns not sent yet (kept up to date by the sender).
        self.queued = 0
        #: Bytes of records of this turn (and of turns closed early, not taken yet).
        self.size = 0
        #: Records added since the last `close`.
        self.count = 0
        self.max_payload = max_payload
        self._index: dict[str, int] = {}
        self._strings: list[bytes] = []
        #: What the string table may still grow by before the turn is closed early.
        self._room = 0
        self._records: dict[str, list[bytes]] = {}
        #: Batches of turns closed early, in order: (subject, payload, records).
        self._ready: list[tuple[str, bytes, int]] = []
        self._reset()

    def _reset(self) -> None:
        self._index = {}
        self._strings = []
        # Each string costs its bytes and 2, counted as 3: the count stays an index.
        self._room = min(self.max_payload // 8, MAX_STRINGS * 3)

    def _string(self, text: str) -> int:
        index = self._index.get(text)
        if index is None:
            raw = text.encode()
            index = self._index[text] = len(self._strings)
            self._strings.append(raw)
            self._room -= 3 + len(raw)
        return index

    def add(self, message: Message, targets: list[Target]) -> None:
        """Add `message` to the batch of each target (or count it dropped there)."""
        if self._room <= 0:
            self._close_turn()
        index = self._index
        topic = index.get(message.topic)
        if topic is None:
            topic = self._string(message.topic)
        sender = index.get(message.sender)
        if sender is None:
            sender = self._string(message.sender)
        username = message.username
        payload = message.payload
        flags = message.qos | (message.retain << 2) | (message.sys << 3)
        extra = b""
        if message.properties:
            props = encode_properties(message.properties)
            extra = _LENGTH.pack(len(props)) + props
            flags |= PROPS
        if message.expires_at is not None:
            extra += _EXPIRES.pack(time.time() + (message.expires_at - time.monotonic()))
            flags |= EXPIRES
        first, plain, groups = targets[0]
        record = _RECORD.pack(PLAIN if plain else 0, flags, topic, sender,
                              _NONE if username is None else self._string(username),
                              len(payload), message.timestamp) + payload
        if extra:
            record += extra
        if len(targets) == 1 and not groups:  # the common case
            if self.queued + self.size + len(record) > self.limit:
                self._on_drop(1)
                return
            records = self._records.get(first)
            if records is None:
                if not self._records and not self._ready:
                    self._on_start()
                records = self._records[first] = []
            records.append(record)
            self.size += len(record)
            self.count += 1
            return
        self._add_routed(record, targets)

    def _add_routed(self, record: bytes, targets: list[Target]) -> None:
        """`record` (routed as the first target) to each target, with its route."""
        dropped = 0
        for subject, plain, groups in targets:
            route = PLAIN if plain else 0
            if groups:
                if len(self._strings) + 2 * len(groups) >= _NONE:
                    dropped += 1  # more groups than one table can name
                    continue
                parts = [_ROUTES[route | GROUPS], record[1:], _STRING.pack(len(groups))]
                for name, topic_filter in groups:
                    parts.append(_GROUP.pack(self._string(name), self._string(topic_filter)))
                routed = b"".join(parts)
            else:
                routed = _ROUTES[route] + record[1:]
            if self.queued + self.size + len(routed) > self.limit:
                dropped += 1
                continue
            records = self._records.get(subject)
            if records is None:
                if not self._records and not self._ready:
                    self._on_start()
                records = self._records[subject] = []
            records.append(routed)
            self.size += len(routed)
            self.count += 1
        if dropped:
            self._on_drop(dropped)

    def _close_turn(self) -> None:
        """This turn's records into batches (`_ready`), and a fresh string table."""
        if not self._records:
            return
        table = _HEADER.pack(FORMAT, len(self._strings)) + b"".join(
            [_STRING.pack(len(raw)) + raw for raw in self._strings])
        room = self.max_payload - len(table)
        ready = self._ready
        dropped = 0
        for subject, records in self._records.items():
            chunk: list[bytes] = [table]
            size = 0
            for record in records:
                if len(record) > room:
                    dropped += 1
                    self.size -= len(record)
                    self.count -= 1
                    continue
                if size + len(record) > room:
                    ready.append((subject, b"".join(chunk), len(chunk) - 1))
                    chunk, size = [table], 0
                chunk.append(record)
                size += len(record)
            if size:
                ready.append((subject, b"".join(chunk), len(chunk) - 1))
        self._records = {}
        self._reset()
        if dropped:
            self._on_drop(dropped)

    def close(self) -> list[tuple[str, bytes, int]]:
        """The turn is over: its batches, in order, as (subject, payload, records in
        it); `count` is the number of records in them (a record larger than a batch
        can hold is dropped and counted)."""
        self._close_turn()
        ready, self._ready = self._ready, []
        self.size = 0
        return ready


def decode(data: bytes) -> list[Forwarded]:
    """Every record of a batch, in order."""
    try:
        return _decode(data)
    except (struct.error, IndexError, UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, WireError):
            raise
        raise WireError(f"undecodable batch: {exc}") from None


def _decode(data: bytes) -> list[Forwarded]:
    version: int
    count: int
    version, count = _HEADER.unpack_from(data, 0)
    if version != FORMAT:
        raise WireError(f"batch format {version:#x}, not {FORMAT:#x} (a node of another "
                        "version?)")
    pos = _HEADER.size
    strings: list[str] = []
    length: int
    for _ in range(count):
        (length,) = _STRING.unpack_from(data, pos)
        pos += 2
        end = pos + length
        if end > len(data):
            raise WireError("truncated string table")
        strings.append(data[pos:end].decode())
        pos = end
    out: list[Forwarded] = []
    record_size = _RECORD.size
    total = len(data)
    route: int
    flags: int
    topic: int
    sender: int
    user: int
    timestamp: float
    while pos < total:
        route, flags, topic, sender, user, length, timestamp = _RECORD.unpack_from(data, pos)
        pos += record_size
        end = pos + length
        if end > total:
            raise WireError("truncated message")
        message = Message(strings[topic], data[pos:end], flags & 3, bool(flags & 4),
                          strings[sender], None if user == _NONE else strings[user], None,
                          None, timestamp, None, bool(flags & 8))
        pos = end
        groups: tuple[GroupKey, ...] = ()
        if flags & (PROPS | EXPIRES) or route & GROUPS:
            pos, groups = _options(data, pos, flags, route, message, strings)
        out.append((bool(route & PLAIN), groups, message))
    return out


def _options(data: bytes, pos: int, flags: int, route: int, message: Message,
             strings: list[str]) -> tuple[int, tuple[GroupKey, ...]]:
    """The optional parts of a record: properties, expiry, shared groups."""
    length: int
    expires_at: float
    name: int
    topic_filter: int
    count: int
    if flags & PROPS:
        (length,) = _LENGTH.unpack_from(data, pos)
        pos += 4
        if pos + length > len(data):
            raise WireError("truncated properties")
        message.properties, _ = decode_properties(data, pos, pos + length)
        pos += length
    if flags & EXPIRES:
        (expires_at,) = _EXPIRES.unpack_from(data, pos)
        pos += 8
        message.expires_at = time.monotonic() + (expires_at - time.time())
    groups: list[GroupKey] = []
    if route & GROUPS:
        (count,) = _STRING.unpack_from(data, pos)
        pos += 2
        for _ in range(count):
            name, topic_filter = _GROUP.unpack_from(data, pos)
            pos += 4
            groups.append((strings[name], strings[topic_filter]))
    return pos, tuple(groups)
