"""Fuzzing the decoder: whatever bytes arrive, the only exceptions are MQTTError.

A peer controls every byte we decode; an IndexError, ValueError, KeyError or
UnicodeDecodeError escaping the codec would bypass the connection shell's
error handling (which answers MQTTError with its reason code).
"""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from starling.mqtt import (
    MAX_PACKET_SIZE,
    Connect,
    Decoder,
    Disconnect,
    MQTTError,
    Packet,
    Pingreq,
    PropertyId,
    Puback,
    Publish,
    Pubrel,
    Subscribe,
    SubscriptionOptions,
    Unsubscribe,
    Will,
    encode,
)

LEVELS = st.sampled_from((0, 4, 5))
MAX_SIZES = st.sampled_from((MAX_PACKET_SIZE, 64))
FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


def feed_chunks(decoder: Decoder, data: bytes, sizes: list[int]
                ) -> tuple[list[Packet], MQTTError | None]:
    """Feed `data` cut into `sizes` (the rest in one piece); collect packets and the error."""
    out: list[Packet] = []
    pos = 0
    pieces = []
    for size in sizes:
        pieces.append(data[pos : pos + size])
        pos += size
    pieces.append(data[pos:])
    for piece in pieces:
        try:
            out += decoder.feed(piece)
        except MQTTError as exc:
            assert decoder.pending_error is exc
            return out, exc
        if decoder.pending_error is not None:
            return out, decoder.pending_error
    return out, None


def check_dead(decoder: Decoder, error: MQTTError | None) -> None:
    if error is None:
        return
    try:
        decoder.feed(b"\xc0\x00")
    except MQTTError as again:
        assert again is error
    else:
        raise AssertionError("decoder accepted input after an error")


@FUZZ
@given(data=st.binary(max_size=600), sizes=st.lists(st.integers(1, 64), max_size=20),
       level=LEVELS, max_size=MAX_SIZES)
def test_random_bytes_raise_only_mqtt_errors(data: bytes, sizes: list[int], level: int,
                                             max_size: int) -> None:
    decoder = Decoder(max_size, protocol_level=level)
    packets, error = feed_chunks(decoder, data, sizes)
    assert all(hasattr(p, "type") for p in packets)
    check_dead(decoder, error)


@FUZZ
@given(data=st.binary(max_size=300), sizes=st.lists(st.integers(1, 16), max_size=30),
       level=LEVELS, max_size=MAX_SIZES)
def test_chunked_decoding_equals_one_read(data: bytes, sizes: list[int], level: int,
                                          max_size: int) -> None:
    """Same packets and same error, however the bytes are cut."""
    one = Decoder(max_size, protocol_level=level)
    whole, whole_error = feed_chunks(one, data, [])
    many = Decoder(max_size, protocol_level=level)
    chunked, chunked_error = feed_chunks(many, data, sizes)
    assert chunked == whole
    assert type(chunked_error) is type(whole_error)
    if whole_error is not None and chunked_error is not None:
        assert chunked_error.reason_code == whole_error.reason_code


def _seed_packets(level: int) -> list[bytes]:
    """Valid traffic to mutate: mutations of real packets reach deeper than noise."""
    wire_level = level or 4
    props = {PropertyId.USER_PROPERTY: [("k", "v")], PropertyId.MESSAGE_EXPIRY_INTERVAL: 5}
    packets: list[Packet] = [
        Connect(client_id="fuzz", protocol_level=wire_level, username="u", password=b"p",
                will=Will("w", b"x", 1, True, {PropertyId.WILL_DELAY_INTERVAL: 1}),
                properties={PropertyId.SESSION_EXPIRY_INTERVAL: 10,
                            PropertyId.AUTHENTICATION_METHOD: "m"}),
        Publish("a/b", b"payload", 1, packet_id=1, properties=props),
        Publish("c", b"", 2, True, True, 2, properties={PropertyId.SUBSCRIPTION_IDENTIFIER: [7]}),
        Subscribe(3, [("a/+", SubscriptionOptions(1, True, False, 1)),
                      ("#", SubscriptionOptions(2))],
                  {PropertyId.SUBSCRIPTION_IDENTIFIER: [1]}),
        Unsubscribe(4, ["a/+"]),
        Puback(1, 0x10, {PropertyId.REASON_STRING: "r"}),
        Pubrel(2),
        Pingreq(),
        Disconnect(0x04, {PropertyId.REASON_STRING: "bye"}),
    ]
    return [encode(p, wire_level) for p in packets]


SEEDS = {level: b"".join(_seed_packets(level)) for level in (0, 4, 5)}

mutation = st.tuples(st.sampled_from(("set", "insert", "delete")), st.integers(0, 10_000),
                     st.integers(0, 255))


@FUZZ
@given(level=LEVELS, mutations=st.lists(mutation, min_size=1, max_size=4),
       sizes=st.lists(st.integers(1, 32), max_size=10), max_size=MAX_SIZES)
def test_mutated_valid_traffic_raises_only_mqtt_errors(
        level: int, mutations: list[tuple[str, int, int]], sizes: list[int],
        max_size: int) -> None:
    data = bytearray(SEEDS[level])
    for op, where, value in mutations:
        i = where % (len(data) + 1)
        if op == "insert":
            data.insert(i, value)
        elif data and i < len(data):
            if op == "set":
                data[i] = value
            else:
                del data[i]
    decoder = Decoder(max_size, protocol_level=level)
    _, error = feed_chunks(decoder, bytes(data), sizes)
    check_dead(decoder, error)


def test_seed_streams_are_valid() -> None:
    """The mutation seeds themselves decode cleanly (else the fuzz above proves little)."""
    for level, data in SEEDS.items():
        packets = Decoder(protocol_level=level).feed(data)
        assert len(packets) == 9


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _split_frame(frame: bytes) -> tuple[int, bytes]:
    i, length, shift = 1, 0, 0
    while True:
        length |= (frame[i] & 0x7F) << shift
        shift += 7
        i += 1
        if not frame[i - 1] & 0x80:
            return frame[0], frame[i : i + length]


def test_every_truncated_body_raises_only_mqtt_errors() -> None:
    """Each seed packet cut short at every byte, its Remaining Length fixed up to match:
    every field in turn runs off the end of the packet, of the read, or into the next
    packet's bytes."""
    for level in (4, 5):
        frames = _seed_packets(level)
        connect = frames[0]
        for frame in frames:
            first, body = _split_frame(frame)
            for cut in range(len(body)):
                short = bytes((first,)) + _varint(cut) + body[:cut]
                for data, start in ((short, level), (connect + short, 0),
                                    (short + b"\xc0\x00", level)):
                    # A shorter PUBLISH payload is still valid: success is fine too.
                    with contextlib.suppress(MQTTError):
                        Decoder(protocol_level=start).feed(data)
