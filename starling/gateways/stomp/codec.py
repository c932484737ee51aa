"""STOMP 1.0/1.1/1.2 frames, sans I/O: a byte stream in, frames out, and back.

A frame is a command line, header lines, a blank line, a body and a NUL
(STOMP 1.2 "Augmented BNF").  `FrameParser.feed` returns every frame the
bytes complete; a stream split at any byte boundary parses the same as one
piece.  End-of-line between frames (heart-beats) is skipped; CRLF is
accepted as end-of-line.  The body is `content-length` bytes when that
header is present (so it may hold NULs), else everything up to the first NUL.

Header escapes (``\\r \\n \\c \\\\``) apply from STOMP 1.1 on and never to
CONNECT / CONNECTED frames; a parser starts in 1.0 mode (no escapes) and the
protocol switches it once the version is negotiated.  An undefined escape is
an error, as the spec requires.  The first of repeated headers wins.

Limits (EMQ X's `stomp.frame.*`, which v3 did not enforce) bound what one
frame can make the parser hold: header count, header line length, body size.
Any violation raises `FrameError`; the connection answers ERROR and closes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Frames whose headers are never escaped (STOMP 1.2 "Value Encoding").
UNESCAPED_COMMANDS = frozenset({"CONNECT", "CONNECTED"})
_LONGEST_COMMAND = len("UNSUBSCRIBE")

_DECODE_ESCAPES = {ord("r"): "\r", ord("n"): "\n", ord("c"): ":", ord("\\"): "\\"}
_ENCODE_ESCAPES = str.maketrans({"\\": "\\\\", "\r": "\\r", "\n": "\\n", ":": "\\c"})
#: STOMP 1.0 has no escapes: end-of-line in a value would end the header.
_STRIP_EOL = str.maketrans({"\r": " ", "\n": " "})


class FrameError(Exception):
    """The bytes are not a frame this parser accepts (the message says why)."""


@dataclass(frozen=True, slots=True)
class FrameLimits:
    max_headers: int = 10
    max_header_length: int = 1024
    max_body_length: int = 8192


@dataclass(slots=True)
class Frame:
    command: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of a header (STOMP 1.2: the first one wins)."""
        for key, value in self.headers:
            if key == name:
                return value
        return default


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    out: list[str] = []
    i, size = 0, len(text)
    while i < size:
        ch = text[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        if i + 1 >= size:
            raise FrameError("header ends inside an escape sequence")
        decoded = _DECODE_ESCAPES.get(ord(text[i + 1]))
        if decoded is None:
            raise FrameError(f"undefined escape sequence \\{text[i + 1]} in a header")
        out.append(decoded)
        i += 2
    return "".join(out)


class FrameParser:
    """Frames from a client's byte stream."""

    def __init__(self, limits: FrameLimits | None = None) -> None:
        self.limits = limits or FrameLimits()
        #: Header escapes decoded (STOMP 1.1 and 1.2); False for 1.0.
        self.escapes = False
        self._buf = bytearray()
        #: Command and headers of the frame whose body is awaited.
        self._head: tuple[str, list[tuple[str, str]]] | None = None
        self._content_length: int | None = None
        #: Where the search for the body's NUL resumes.
        self._scan = 0

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames: list[Frame] = []
        while True:
            frame = self._next()
            if frame is None:
                return frames
            frames.append(frame)

    def _next(self) -> Frame | None:
        if self._head is None and not self._read_head():
            return None
        return self._read_body()

    def _read_head(self) -> bool:
        buf = self._buf
        # Heart-beats and the optional EOLs after a frame's NUL.
        skip = 0
        while skip < len(buf) and buf[skip] in (0x0A, 0x0D):
            if buf[skip] == 0x0D and (skip + 1 >= len(buf) or buf[skip + 1] != 0x0A):
                if skip + 1 >= len(buf):
                    break  # a CR whose LF has not arrived yet
                raise FrameError("CR not followed by LF")
            skip += 1
        if skip:
            del buf[:skip]
        limits = self.limits
        head_limit = _LONGEST_COMMAND + 2 + limits.max_headers * (limits.max_header_length + 2) + 2
        end = buf.find(b"\n\n")
        crlf = buf.find(b"\n\r\n")
        if crlf != -1 and (end == -1 or crlf < end):
            end, sep = crlf, 3
        else:
            sep = 2
        if end == -1:
            if len(buf) > head_limit:
                raise FrameError("frame headers exceed stomp.frame limits")
            first = buf.find(b"\n")
            if (first == -1 and len(buf) > _LONGEST_COMMAND + 1) or (
                    first != -1 and first > _LONGEST_COMMAND + 1):
                raise FrameError("no frame command")
            return False
        if end > head_limit:
            raise FrameError("frame headers exceed stomp.frame limits")
        try:
            text = bytes(buf[:end]).decode("utf-8")
        except UnicodeDecodeError:
            raise FrameError("frame headers are not UTF-8") from None
        del buf[:end + sep]
        lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
        command = lines[0]
        if not command or not command.isalpha() or not command.isupper():
            raise FrameError(f"bad frame command {command[:32]!r}")
        header_lines = lines[1:]
        if len(header_lines) > limits.max_headers:
            raise FrameError(f"more than {limits.max_headers} headers (stomp.frame.max_headers)")
        escaped = self.escapes and command not in UNESCAPED_COMMANDS
        headers: list[tuple[str, str]] = []
        for line in header_lines:
            if len(line) > limits.max_header_length:
                raise FrameError(f"header longer than {limits.max_header_length} "
                                 "(stomp.frame.max_header_length)")
            name, colon, value = line.partition(":")
            if not colon:
                raise FrameError(f"header line without ':' {line[:32]!r}")
            if escaped:
                name, value = _unescape(name), _unescape(value)
            headers.append((name, value))
        self._head = (command, headers)
        self._scan = 0
        self._content_length = None
        length = next((v for k, v in headers if k == "content-length"), None)
        if length is not None:
            if not length.strip().isdigit():
                raise FrameError(f"bad content-length {length[:32]!r}")
            self._content_length = int(length)
            if self._content_length > limits.max_body_length:
                raise FrameError(f"body longer than {limits.max_body_length} "
                                 "(stomp.frame.max_body_length)")
        return True

    def _read_body(self) -> Frame | None:
        assert self._head is not None
        buf = self._buf
        length = self._content_length
        if length is not None:
            if len(buf) < length + 1:
                return None
            if buf[length] != 0:
                raise FrameError("frame body is not followed by NUL (content-length)")
        else:
            nul = buf.find(b"\x00", self._scan)
            if nul == -1:
                if len(buf) > self.limits.max_body_length:
                    raise FrameError(f"body longer than {self.limits.max_body_length} "
                                     "(stomp.frame.max_body_length)")
                self._scan = len(buf)
                return None
            length = nul
            if length > self.limits.max_body_length:
                raise FrameError(f"body longer than {self.limits.max_body_length} "
                                 "(stomp.frame.max_body_length)")
        body = bytes(buf[:length])
        del buf[:length + 1]
        command, headers = self._head
        self._head = None
        return Frame(command, headers, body)


def encode(frame: Frame, escapes: bool = True) -> bytes:
    """The bytes of a frame; `escapes` for STOMP 1.1 and 1.2 (never applied to
    CONNECTED).  A frame with a body gets `content-length` if it has none, so a
    body may hold NULs."""
    escaped = escapes and frame.command not in UNESCAPED_COMMANDS
    table = _ENCODE_ESCAPES if escaped else _STRIP_EOL
    lines = [frame.command]
    lines += [f"{name.translate(table)}:{value.translate(table)}"
              for name, value in frame.headers]
    if frame.body and frame.get("content-length") is None:
        lines.append(f"content-length:{len(frame.body)}")
    return ("\n".join(lines) + "\n\n").encode() + frame.body + b"\x00"
