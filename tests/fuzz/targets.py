"""Fuzz targets: one function per input surface, taking the fuzzer's bytes.

Each target raises (an AssertionError, or whatever escaped the code under
test) only when it finds a bug; anything the code is allowed to answer with
(an MQTTError for bad bytes, an SqlError for bad SQL, a 4xx for a bad request)
is caught here.  `run.py` drives them with atheris (coverage-guided), and
`test_corpus.py` replays every file of `corpus/<target>/` and `crashers/<target>/`
through them in the normal suite, without atheris.

The bytes are split into parts with `Cursor` (a tiny FuzzedDataProvider), so a
corpus file replays the same way with or without atheris.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import tempfile
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
from helpers.channels import FakeConnection

from starling.mqtt import MAX_PACKET_SIZE, Connect, Decoder, MQTTError, Packet, encode
from starling.rules import SqlError, SqlRuntimeError, parse_sql


class Cursor:
    """Takes choices and pieces from the front of the fuzzer's bytes."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def choice(self, options: list[Any] | tuple[Any, ...]) -> Any:
        return options[self.byte() % len(options)]

    def rest(self) -> bytes:
        rest = self.data[self.pos:]
        self.pos = len(self.data)
        return rest

    def chunks(self, data: bytes, count: int) -> list[bytes]:
        """`data` cut in up to `count` pieces at places the next bytes choose."""
        pieces = []
        pos = 0
        for _ in range(count):
            size = self.byte() % 32 + 1
            pieces.append(data[pos:pos + size])
            pos += size
        pieces.append(data[pos:])
        return [p for p in pieces if p]


# -- the MQTT decoder ------------------------------------------------------------------

def mqtt_decoder(data: bytes) -> None:
    """Bytes from a peer: only MQTTError may come out; a stream cut anywhere decodes
    to the same packets and the same error; whatever decodes re-encodes to a packet
    that decodes equal (the encoder can write everything the decoder accepts)."""
    cursor = Cursor(data)
    level = cursor.choice((0, 3, 4, 5))
    max_size = cursor.choice((MAX_PACKET_SIZE, 64, 300))
    cuts = cursor.byte() % 8
    stream = cursor.rest()

    whole, whole_error = _decode(Decoder(max_size, level), [stream])
    chunked, chunked_error = _decode(Decoder(max_size, level), cursor.chunks(stream, cuts)
                                     if cuts else [stream])
    assert chunked == whole, "chunked decoding differs from one read"
    assert type(chunked_error) is type(whole_error), (chunked_error, whole_error)

    current = level  # a CONNECT sets the level the packets after it are read at
    for packet in whole:
        if isinstance(packet, Connect):
            current = packet.protocol_level
        encoded = encode(packet, current or 4)
        again, error = _decode(Decoder(MAX_PACKET_SIZE, current), [encoded])
        assert error is None, f"re-encoded {packet!r} does not decode: {error!r}"
        assert again == [packet], f"{packet!r} re-encoded decodes as {again!r}"


def _decode(decoder: Decoder, pieces: list[bytes]) -> tuple[list[Packet], MQTTError | None]:
    packets: list[Packet] = []
    for piece in pieces:
        try:
            packets += decoder.feed(piece)
        except MQTTError as exc:
            return packets, exc
        if decoder.pending_error is not None:
            return packets, decoder.pending_error
    return packets, None


# -- the rule SQL ----------------------------------------------------------------------

#: Payloads the statements that parse are evaluated against (the fuzzer picks one,
#: or uses its own bytes after the statement).
PAYLOADS = (b"", b'{"a": 1, "b": {"c": [1, 2, {"d": "x"}]}, "s": "t"}', b"hello",
            b'{"list": [1, "2", null, true, 3.5], "n": -1}', b"\xff\xfe", b"[1,2,3]",
            b'{"x": 1e308, "y": "9999999999999999999999"}')


def _publish_columns(payload: bytes, topic: str) -> dict[str, Any]:
    return {
        "id": "0005A7C9F0B1C2D3", "client_id": "c1", "username": "u1",
        "event": "message.publish", "payload": payload, "peername": "127.0.0.1:50001",
        "qos": 1, "timestamp": 1556263150688, "topic": topic, "node": "starling@127.0.0.1",
        "retain": 0, "flags": {"dup": False, "retain": False},
    }


def rule_sql(data: bytes) -> None:
    """A statement (up to the first NUL) and, after it, a payload: parsing answers
    only SqlError; a statement that parses evaluates to a dict, a list (FOREACH) or
    None, or fails with SqlRuntimeError, on any message."""
    text, sep, tail = data.partition(b"\x00")
    sql = text.decode("utf-8", "replace")
    try:
        rule = parse_sql(sql)
    except SqlError:
        return
    payloads = [tail] if sep else list(PAYLOADS)
    for payload in payloads:
        for topic in ("t/a", "a/b/c"):
            try:
                out = rule.apply(_publish_columns(payload, topic))
            except SqlRuntimeError:
                continue
            assert out is None or isinstance(out, (dict, list)), out
            json.dumps(out, default=_bytes_default)  # the API shows it as JSON


def _bytes_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode()
    raise TypeError(f"{type(value).__name__} in a rule's output")


# -- the management API's JSON bodies --------------------------------------------------

#: Routes that take a JSON body, with a path parameter filled in where they have one.
API_BODIES: tuple[tuple[str, str], ...] = (
    ("POST", "/api/v3/mqtt/publish"),
    ("POST", "/api/v3/mqtt/publish_batch"),
    ("POST", "/api/v3/mqtt/subscribe"),
    ("POST", "/api/v3/mqtt/subscribe_batch"),
    ("POST", "/api/v3/mqtt/unsubscribe"),
    ("POST", "/api/v3/mqtt/unsubscribe_batch"),
    ("POST", "/api/v3/rules"),
    ("POST", "/api/v3/rules?test=true"),
    ("PUT", "/api/v3/rules/rule:fuzz"),
    ("POST", "/api/v3/resources"),
    ("POST", "/api/v3/resources?test=true"),
    ("POST", "/api/v3/banned"),
    ("POST", "/api/v3/apps"),
    ("PUT", "/api/v3/apps/fuzzapp"),
    ("PUT", "/api/v3/configs"),
    ("PUT", "/api/v3/nodes/starling@127.0.0.1/plugin_configs/emqx_web_hook"),
    ("POST", "/api/v3/users"),
    ("PUT", "/api/v3/change_pwd/admin"),
    ("PUT", "/api/v3/acl"),
    ("POST", "/api/v3/acl"),
)


class ApiHarness:
    """One node in this process with the management API on, its ASGI app called
    directly (no socket) on a loop the harness owns: real routes, a real broker."""

    def __init__(self) -> None:
        from starling.config import Config
        from starling.node import Node

        self._dir = tempfile.TemporaryDirectory(prefix="starling-fuzz-")
        config = Config()
        for key, value in {
            "node.data_dir": self._dir.name, "store.backend": "memory",
            "management.bind": "127.0.0.1:0", "dashboard.bind": "off",
            "api.default_app_id": "admin", "api.default_app_secret": "fuzz-secret",
            "listeners.tcp.default.bind": "off", "listeners.tcp.internal.bind": "off",
            "listeners.ws.default.bind": "off", "listeners.ssl.default.bind": "off",
            "listeners.wss.default.bind": "off", "log.level": "error",
        }.items():
            config.set(key, value)
        self.loop = asyncio.new_event_loop()
        self.node = Node(config)
        self.loop.run_until_complete(self.node.start())
        self.app = self.node.http_listeners[0].app
        self.auth = b"Basic " + base64.b64encode(b"admin:fuzz-secret")

    def request(self, method: str, target: str, body: bytes) -> tuple[int, bytes]:
        return self.loop.run_until_complete(self._request(method, target, body))

    async def _request(self, method: str, target: str, body: bytes) -> tuple[int, bytes]:
        path, _, query = target.partition("?")
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
            "query_string": query.encode(), "root_path": "",
            "headers": [(b"authorization", self.auth), (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode())],
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8081),
        }
        sent = False
        status = 0
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.sleep(3600)
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await asyncio.wait_for(self.app(scope, receive, send), 30)
        return status, b"".join(chunks)

    def close(self) -> None:
        self.loop.run_until_complete(self.node.stop())
        self.loop.close()
        self._dir.cleanup()


_api: list[ApiHarness] = []


def api_harness() -> ApiHarness:
    if not _api:
        _api.append(ApiHarness())
    return _api[0]


def api_json(data: bytes) -> None:
    """A JSON body (well formed or not) to a route that takes one: the answer is JSON,
    never an internal error (an exception the route did not expect) or a stack trace.
    (A 500 that EMQ X also gives, e.g. "Test Creating Resource Failed", is fine.)"""
    cursor = Cursor(data)
    method, target = cursor.choice(API_BODIES)
    body = cursor.rest()
    if not only_loopback_urls(body):
        return  # a web hook or resource would connect out: this sandbox has no network
    status, answer = api_harness().request(method, target, body)
    what = f"{method} {target} {body[:200]!r} -> {status} {answer[:300]!r}"
    assert 200 <= status < 600, what
    assert not (status >= 500 and b"internal_error" in answer), what
    assert b"Traceback" not in answer, what
    if answer:
        json.loads(answer)


def only_loopback_urls(body: bytes) -> bool:
    """Every string in the JSON body that names a host names 127.0.0.1 (or the body is
    not JSON, which no route acts on): the node then connects nowhere else."""
    try:
        value = json.loads(body)
    except ValueError:
        return True
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack += list(item.keys()) + list(item.values())
        elif isinstance(item, list):
            stack += item
        elif isinstance(item, str) and re.search(r":[/\\]", item):
            # A URL (web hooks and resources take http(s) URLs only), read by both
            # parsers the node uses; a backslash read as a slash, as browsers do.
            try:
                hosts = {urlsplit(item.replace("\\", "/")).hostname, httpx.URL(item).host}
            except (ValueError, httpx.InvalidURL):
                return False
            if not hosts <= {None, "", "127.0.0.1"}:
                return False
    return True


# -- the channel state machine -----------------------------------------------------------

#: Separates the two clients' byte streams in a `channel` input.
CHANNEL_SPLIT = b"\xff\xfe\xfd"


class MemoryConnection(FakeConnection):
    """`helpers.channels.FakeConnection`, but closing ends the connection on the next
    loop turn (as a socket's would), so the channel's whole close path runs."""

    def __init__(self, name: str) -> None:
        super().__init__(listener="mqtt:tcp:fuzz")
        self.name = name
        self.channel: Any = None

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            asyncio.get_running_loop().call_soon(self.channel.connection_lost)


_loop: list[asyncio.AbstractEventLoop] = []


def _channel_loop() -> asyncio.AbstractEventLoop:
    if not _loop:
        _loop.append(asyncio.new_event_loop())
    return _loop[0]


def channel(data: bytes) -> None:
    """Two clients' byte streams (split at CHANNEL_SPLIT), decoded and handed packet
    by packet, in turn, to two `Channel`s of one real `Broker`: nothing raises out of
    the channel or its tasks, everything the channels write is well-formed MQTT at
    their protocol level, and once both connections are gone no channel is left
    registered and no session still points at one."""
    loop = _channel_loop()
    loop.run_until_complete(_channel_run(data))


async def _channel_run(data: bytes) -> None:
    from starling.broker import Broker, BrokerOptions, Channel

    loop = asyncio.get_running_loop()
    errors: list[Any] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    broker = Broker(BrokerOptions(retry_interval=0, max_inflight=4, max_mqueue_len=8,
                                  max_mqueue_bytes=4096, idle_timeout=60))
    streams = [*data.split(CHANNEL_SPLIT, 1), b""]
    conns = [MemoryConnection("a"), MemoryConnection("b")]
    packets: list[list[Packet | MQTTError]] = []
    for conn, stream in zip(conns, streams, strict=False):
        conn.channel = Channel(broker, conn)
        decoded, error = _decode(Decoder(MAX_PACKET_SIZE, 0), [stream])
        packets.append([*decoded, *([error] if error is not None else [])])
    for turn in range(max(len(p) for p in packets)):
        for conn, queue in zip(conns, packets, strict=True):
            if turn < len(queue) and not conn.closed:
                item = queue[turn]
                if isinstance(item, MQTTError):
                    conn.channel.handle_error(item)
                else:
                    conn.channel.handle(item)
                for _ in range(3):
                    await asyncio.sleep(0)
    for conn in conns:
        conn.channel.close("fuzz_done")
    for _ in range(10):
        await asyncio.sleep(0)
    tasks = [t for t in broker._tasks if not t.done()]
    if tasks:
        await asyncio.wait(tasks, timeout=5)
    broker.timers.close()
    assert not errors, errors[0]
    for conn in conns:
        level = 5 if conn.channel.protocol_level == 5 else 4
        _, error = _decode(Decoder(MAX_PACKET_SIZE, level), [bytes(conn.out)])
        assert error is None, f"{conn.name} wrote bad MQTT ({error!r}): {bytes(conn.out)!r}"
    assert not broker.channels, broker.channels
    for session in broker.sessions.values():
        assert session.outlet is None, session.client_id
    assert all(isinstance(c.channel, Channel) for c in conns)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "mqtt_decoder": mqtt_decoder,
    "rule_sql": rule_sql,
    "api_json": api_json,
    "channel": channel,
}
