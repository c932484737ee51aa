"""The STOMP frame parser and writer (STOMP 1.2 "Frames and Headers"), checked
against hand-written frames and a real third-party codec: stomp.py's own
frame writer (`stomp.utils.convert_frame`) and reader (`parse_frame`)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from stomp import utils as stomp_utils

from starling.gateways.stomp.codec import Frame, FrameError, FrameLimits, FrameParser, encode

BIG = FrameLimits(max_headers=50, max_header_length=4096, max_body_length=1 << 20)


def parse(data: bytes, *, escapes: bool = True, limits: FrameLimits = BIG) -> list[Frame]:
    parser = FrameParser(limits)
    parser.escapes = escapes
    return parser.feed(data)


def test_a_frame_with_headers_and_body() -> None:
    [frame] = parse(b"SEND\ndestination:a/b\nreceipt:7\n\nhello\x00")
    assert frame == Frame("SEND", [("destination", "a/b"), ("receipt", "7")], b"hello")


def test_split_at_every_byte_boundary_parses_the_same() -> None:
    stream = (b"\n\nCONNECT\naccept-version:1.2\nhost:x\n\n\x00\n"
              b"SEND\r\ndestination:a\r\ncontent-length:5\r\n\r\na\x00b\x00c\x00\r\n"
              b"SUBSCRIBE\nid:0\ndestination:a/#\n\n\x00")
    whole = parse(stream)
    assert [f.command for f in whole] == ["CONNECT", "SEND", "SUBSCRIBE"]
    assert whole[1].body == b"a\x00b\x00c"
    for cut in range(1, len(stream)):
        parser = FrameParser(BIG)
        parser.escapes = True
        assert parser.feed(stream[:cut]) + parser.feed(stream[cut:]) == whole, cut
    one_by_one = FrameParser(BIG)
    one_by_one.escapes = True
    assert [f for i in range(len(stream)) for f in one_by_one.feed(stream[i:i + 1])] == whole


def test_heart_beats_between_frames_are_skipped() -> None:
    parser = FrameParser(BIG)
    assert parser.feed(b"\n\r\n\n") == []
    assert parser.buffered == 0
    assert parser.feed(b"\r") == []  # a CR waiting for its LF
    assert parser.feed(b"\nDISCONNECT\n\n\x00") == [Frame("DISCONNECT")]


def test_escapes_from_1_1_on_but_never_in_connect() -> None:
    raw = b"SEND\ndestination:a\\cb\\nc\\\\d\\re\n\n\x00"
    assert parse(raw)[0].get("destination") == "a:b\nc\\d\re"
    # STOMP 1.0 has no escapes: the bytes are the value.
    assert parse(raw, escapes=False)[0].get("destination") == "a\\cb\\nc\\\\d\\re"
    connect = parse(b"CONNECT\nlogin:a\\cb\n\n\x00")[0]
    assert connect.get("login") == "a\\cb"


def test_undefined_escape_is_an_error() -> None:
    with pytest.raises(FrameError, match="undefined escape"):
        parse(b"SEND\ndestination:a\\tb\n\n\x00")


def test_first_of_repeated_headers_wins_and_colons_in_values_are_kept() -> None:
    frame = parse(b"MESSAGE\nfoo:1\nfoo:2\nurl:http://x\n\n\x00", escapes=False)[0]
    assert frame.get("foo") == "1" and frame.get("url") == "http://x"
    assert frame.headers == [("foo", "1"), ("foo", "2"), ("url", "http://x")]


@pytest.mark.parametrize("data, why", [
    (b"send\n\n\x00", "bad frame command"),
    (b"SEND\nno-colon\n\n\x00", "without ':'"),
    (b"SEND\ncontent-length:abc\n\n\x00", "bad content-length"),
    (b"SEND\ncontent-length:2\n\nabc\x00", "not followed by NUL"),
    (b"SEND\nh:\xff\n\n\x00", "not UTF-8"),
    (b"\r\rSEND\n\n\x00", "CR not followed by LF"),
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "bad frame command"),
    (b"X" * 40, "no frame command"),
])
def test_malformed_frames(data: bytes, why: str) -> None:
    with pytest.raises(FrameError, match=why):
        parse(data)


def test_limits_are_enforced() -> None:
    limits = FrameLimits(max_headers=2, max_header_length=20, max_body_length=10)
    with pytest.raises(FrameError, match="max_headers"):
        parse(b"SEND\na:1\nb:2\nc:3\n\n\x00", limits=limits)
    with pytest.raises(FrameError, match="max_header_length"):
        parse(b"SEND\na:" + b"x" * 30 + b"\n\n\x00", limits=limits)
    with pytest.raises(FrameError, match="max_body_length"):
        parse(b"SEND\ncontent-length:11\n\n", limits=limits)
    # Without content-length the parser refuses once it holds more than the limit.
    parser = FrameParser(limits)
    parser.feed(b"SEND\n\n0123456789")
    with pytest.raises(FrameError, match="max_body_length"):
        parser.feed(b"A")
    # Headers that never end are refused once longer than the limits allow.
    parser = FrameParser(limits)
    with pytest.raises(FrameError, match="limits"):
        parser.feed(b"SEND\n" + b"h:v\n" * 40)
    assert parse(b"SEND\na:1\nb:2\ncontent-length:10\n\n0123456789\x00",
                 limits=FrameLimits(3, 20, 10))[0].body == b"0123456789"


def test_encode_escapes_and_content_length() -> None:
    frame = Frame("MESSAGE", [("destination", "a:b\nc"), ("subscription", "0")], b"x\x00y")
    data = encode(frame, escapes=True)
    assert data == b"MESSAGE\ndestination:a\\cb\\nc\nsubscription:0\ncontent-length:3\n\nx\x00y\x00"
    assert parse(data) == [Frame("MESSAGE", [*frame.headers, ("content-length", "3")], b"x\x00y")]
    assert encode(Frame("CONNECTED", [("version", "1.2")])) == b"CONNECTED\nversion:1.2\n\n\x00"
    # STOMP 1.0: no escapes; an end-of-line inside a value must not end the header.
    assert encode(Frame("MESSAGE", [("destination", "a\nb")]), escapes=False) == \
        b"MESSAGE\ndestination:a b\n\n\x00"


def test_we_read_what_stomp_py_writes() -> None:
    frame = stomp_utils.Frame("SEND", {"destination": "sensors/1", "content-length": 3,
                                       "x-trace": "abc"}, "a\x00b")
    data = b"".join(stomp_utils.convert_frame(frame))
    [parsed] = parse(data)
    assert parsed.command == "SEND" and parsed.body == b"a\x00b"
    assert parsed.get("destination") == "sensors/1" and parsed.get("x-trace") == "abc"


def test_stomp_py_reads_what_we_write() -> None:
    data = encode(Frame("MESSAGE", [("subscription", "s-1"), ("message-id", "7"),
                                    ("destination", "a:b/c"), ("x", "line\nbreak")], b"body"))
    parsed = stomp_utils.parse_frame(data[:-1])  # stomp.py splits frames at the NUL first
    assert parsed.cmd == "MESSAGE"
    assert parsed.headers["destination"] == "a:b/c"
    assert parsed.headers["x"] == "line\nbreak"
    assert parsed.headers["content-length"] == "4"
    assert parsed.body == b"body"


header_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)


@given(st.lists(st.tuples(header_text.filter(lambda n: n not in ("", "content-length")),
                          header_text), max_size=5),
       st.binary(max_size=50), st.integers(min_value=1, max_value=60))
def test_round_trip_with_any_headers_and_body(headers: list[tuple[str, str]], body: bytes,
                                              cut: int) -> None:
    frame = Frame("SEND", headers, body)
    data = encode(frame)
    parser = FrameParser(BIG)
    parser.escapes = True
    out = parser.feed(data[:cut]) + parser.feed(data[cut:])
    expected = headers + ([("content-length", str(len(body)))] if body else [])
    assert out == [Frame("SEND", expected, body)]


@given(st.binary(max_size=200))
def test_any_bytes_parse_or_raise_frame_error(data: bytes) -> None:
    with contextlib.suppress(FrameError):
        parse(data, limits=FrameLimits())
