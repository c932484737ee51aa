"""`LeanServer` / `LeanTransport` (starling/transport/lean.py) keep asyncio's
transport contract: every test here runs the same protocol over a lean server
and over the event loop's own `create_server` (uvloop, as the node runs), with
real sockets on loopback, and expects the same observable behaviour.

- `write` of more than the socket takes: `pause_writing` past the high-water
  mark, `resume_writing` once the peer has read it down, every byte in order;
- `pause_reading` / `resume_reading`: nothing read while paused, all of it after;
- the peer's half-close: `eof_received`, our answer still delivered, then closed;
- `write_eof` with bytes still buffered: they all arrive before the EOF;
- a peer that resets: `connection_lost` with the error, once;
- `close` with bytes buffered waits for them; `abort` does not;
- `peername` / `sockname`; `connection_lost` never called from inside `close`.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import uvloop

from starling.compiled import COMPILED
from starling.transport.lean import LeanServer, bind

KINDS = ["lean", "loop"]


class Recorder(asyncio.Protocol):
    """Records what the transport tells it; `on_data` may answer."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.events: list[str] = []
        self.data = bytearray()
        self.lost: list[Exception | None] = []
        self.made = asyncio.Event()
        self.gone = asyncio.Event()
        self.eof = asyncio.Event()
        self.resumed = asyncio.Event()
        self.on_data: Callable[[Recorder, bytes], None] | None = None
        self.keep_open_at_eof = False
        self.in_close = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.events.append("made")
        self.made.set()

    def data_received(self, data: bytes) -> None:
        self.data += data
        if self.on_data is not None:
            self.on_data(self, data)

    def eof_received(self) -> bool:
        self.events.append("eof")
        self.eof.set()
        return self.keep_open_at_eof

    def pause_writing(self) -> None:
        self.events.append("pause_writing")

    def resume_writing(self) -> None:
        self.events.append("resume_writing")
        self.resumed.set()

    def connection_lost(self, exc: Exception | None) -> None:
        assert not self.in_close, "connection_lost called from inside close()"
        self.events.append("lost")
        self.lost.append(exc)
        self.gone.set()


async def serve(kind: str, protocols: list[Recorder], high_water: int | None = None) -> Any:
    loop = asyncio.get_running_loop()

    def factory() -> Recorder:
        protocol = Recorder()
        protocols.append(protocol)
        return protocol

    if kind == "lean":
        return LeanServer(loop, factory, bind("127.0.0.1", 0), 100, high_water)
    return await loop.create_server(factory, "127.0.0.1", 0)


async def connect(server: Any, protocols: list[Recorder],
                  rcvbuf: int | None = None) -> tuple[socket.socket, Recorder]:
    """A client socket (non-blocking, used with the loop's sock_* calls) and the
    server side's protocol."""
    loop = asyncio.get_running_loop()
    client = socket.socket()
    if rcvbuf is not None:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    client.setblocking(False)
    await loop.sock_connect(client, server.sockets[0].getsockname())
    for _ in range(500):
        if protocols and protocols[-1].made.is_set():
            break
        await asyncio.sleep(0.01)
    protocol = protocols[-1]
    if protocol.transport.get_write_buffer_limits() != (16384, 65536):
        protocol.transport.set_write_buffer_limits(65536)  # the same for both kinds
    return client, protocol


async def read_all(client: socket.socket, size: int | None = None,
                   timeout: float = 10.0) -> bytes:
    """Read until EOF (or `size` bytes)."""
    loop = asyncio.get_running_loop()
    got = bytearray()
    async with asyncio.timeout(timeout):
        while size is None or len(got) < size:
            chunk = await loop.sock_recv(client, 65536)
            if not chunk:
                break
            got += chunk
    return bytes(got)


def run(kind: str, test: Callable[..., Awaitable[None]]) -> None:
    async def main() -> None:
        protocols: list[Recorder] = []
        server = await serve(kind, protocols)
        try:
            await test(server, protocols)
        finally:
            server.close()
            for protocol in protocols:
                if not protocol.transport.is_closing():
                    protocol.transport.abort()
            await server.wait_closed()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())


def pattern(size: int) -> bytes:
    """`size` bytes in numbered 1 KiB blocks (a lost, repeated or reordered block shows)."""
    fill = bytes(range(256)) * 4
    return b"".join(struct.pack(">I", i) + fill[4:] for i in range(size // 1024))


@pytest.mark.parametrize("kind", KINDS)
def test_write_over_high_water_pauses_then_resumes_in_order(kind: str) -> None:
    async def test(server: Any, protocols: list[Recorder]) -> None:
        client, protocol = await connect(server, protocols, rcvbuf=4096)
        payload = pattern(8 * 1024 * 1024)
        for i in range(0, len(payload), 256 * 1024):
            protocol.transport.write(payload[i:i + 256 * 1024])
        assert protocol.events == ["made", "pause_writing"]
        assert protocol.transport.get_write_buffer_size() > 65536
        got = await read_all(client, len(payload))
        await asyncio.wait_for(protocol.resumed.wait(), 5)
        assert got == payload
        assert protocol.events == ["made", "pause_writing", "resume_writing"]
        assert protocol.transport.get_write_buffer_size() == 0
        client.close()

    run(kind, test)


@pytest.mark.parametrize("kind", KINDS)
def test_pause_reading_holds_input_until_resumed(kind: str) -> None:
    async def test(server: Any, protocols: list[Recorder]) -> None:
        loop = asyncio.get_running_loop()
        client, protocol = await connect(server, protocols)
        protocol.transport.pause_reading()
        await loop.sock_sendall(client, b"held back")
        await asyncio.sleep(0.2)
        assert protocol.data == b""
        protocol.transport.resume_reading()
        for _ in range(200):
            if protocol.data == b"held back":
                break
            await asyncio.sleep(0.01)
        assert protocol.data == b"held back"
        client.close()

    run(kind, test)


@pytest.mark.parametrize("kind", KINDS)
def test_peer_half_close_gets_answer_then_eof(kind: str) -> None:
    """The peer sends, shuts its side down and reads: the answer written from
    `data_received` and after `eof_received` arrives, then our EOF."""
    async def test(server: Any, protocols: list[Recorder]) -> None:
        loop = asyncio.get_running_loop()
        client, protocol = await connect(server, protocols)
        protocol.on_data = lambda p, data: p.transport.write(data.upper())
        await loop.sock_sendall(client, b"ping")
        client.shutdown(socket.SHUT_WR)
        assert await read_all(client) == b"PING"
        await asyncio.wait_for(protocol.gone.wait(), 5)
        assert protocol.events == ["made", "eof", "lost"]
        assert protocol.lost == [None]
        client.close()

    run(kind, test)


@pytest.mark.parametrize("kind", KINDS)
def test_write_eof_sends_what_is_buffered_first(kind: str) -> None:
    async def test(server: Any, protocols: list[Recorder]) -> None:
        client, protocol = await connect(server, protocols, rcvbuf=4096)
        payload = pattern(2 * 1024 * 1024)
        protocol.transport.write(payload)
        assert protocol.transport.can_write_eof()
        protocol.transport.write_eof()
        assert await read_all(client) == payload  # then EOF
        client.close()
        await asyncio.wait_for(protocol.gone.wait(), 5)

    run(kind, test)


@pytest.mark.parametrize("kind", KINDS)
def test_reset_by_peer_is_connection_lost_once(kind: str) -> None:
    async def test(server: Any, protocols: list[Recorder]) -> None:
        loop = asyncio.get_running_loop()
        client, protocol = await connect(server, protocols)
        await loop.sock_sendall(client, b"x")
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()  # RST
        await asyncio.wait_for(protocol.gone.wait(), 5)
        await asyncio.sleep(0.05)
        assert protocol.events.count("lost") == 1
        assert protocol.transport.is_closing()

    run(kind, test)


@pytest.mark.parametrize("kind", KINDS)
def test_close_waits_for_buffer_abort_does_not(kind: str) -> None:
    async def test(server: Any, protocols: list[Recorder]) -> None:
        client, protocol = await connect(server, protocols, rcvbuf=4096)
        payload = pattern(1024 * 1024)
        protocol.transport.write(payload)
        protocol.in_close = True
        protocol.transport.close()
        protocol.in_close = False
        assert protocol.transport.is_closing()
        assert await read_all(client) == payload
        await asyncio.wait_for(protocol.gone.wait(), 5)
        assert protocol.lost == [None]
        client.close()

        client2, protocol2 = await connect(server, protocols, rcvbuf=4096)
        payload = pattern(32 * 1024 * 1024)  # more than the kernel's buffers hold
        protocol2.transport.write(payload)
        protocol2.in_close = True
        protocol2.transport.abort()
        protocol2.in_close = False
        got = await read_all(client2)
        assert len(got) < len(payload)
        await asyncio.wait_for(protocol2.gone.wait(), 5)
        client2.close()

    run(kind, test)


@pytest.mark.parametrize("kind", KINDS)
def test_addresses(kind: str) -> None:
    async def test(server: Any, protocols: list[Recorder]) -> None:
        client, protocol = await connect(server, protocols)
        peer = protocol.transport.get_extra_info("peername")
        assert tuple(peer[:2]) == client.getsockname()
        assert protocol.transport.get_extra_info("sockname") == client.getpeername()
        assert protocol.transport.get_extra_info("no such thing", 7) == 7
        client.close()
        await asyncio.wait_for(protocol.gone.wait(), 5)
        # The peer's address is still known once the connection is gone.
        assert protocol.transport.get_extra_info("peername")[:2] == peer[:2]

    run(kind, test)


def test_many_connections_one_epoll() -> None:
    """200 sockets through one lean server at once: each gets its own answer."""
    async def test(server: Any, protocols: list[Recorder]) -> None:
        loop = asyncio.get_running_loop()
        pairs = [await connect(server, protocols) for _ in range(200)]
        for _, protocol in pairs:
            protocol.on_data = lambda p, data: p.transport.write(
                data + str(id(p)).encode())
        for i, (client, _) in enumerate(pairs):
            await loop.sock_sendall(client, b"%d:" % i)
        for i, (client, protocol) in enumerate(pairs):
            want = b"%d:%d" % (i, id(protocol))
            assert await read_all(client, len(want)) == want
            client.close()

    run("lean", test)


def test_stopping_aborts_connections_still_sending() -> None:
    """`wait_closed` does not wait forever for a peer that never reads."""
    async def main() -> None:
        protocols: list[Recorder] = []
        server = await serve("lean", protocols)
        client, protocol = await connect(server, protocols, rcvbuf=4096)
        protocol.transport.write(pattern(4 * 1024 * 1024))
        protocol.transport.close()
        server.close()
        await asyncio.wait_for(server.wait_closed(timeout=0.2), 5)
        await asyncio.sleep(0.05)
        assert protocol.events[-1] == "lost"
        client.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())


def test_bind_refuses_a_port_in_use() -> None:
    taken = bind("127.0.0.1", 0)
    port = taken[0].getsockname()[1]
    taken[0].listen(1)
    try:
        with pytest.raises(OSError):
            bind("127.0.0.1", port)
    finally:
        taken[0].close()


@pytest.mark.parametrize(("setting", "lean"), [(None, COMPILED), ("auto", COMPILED),
                                               ("lean", True), ("loop", False)])
def test_which_transport_a_node_uses(tmp_path: Path, setting: str | None, lean: bool) -> None:
    """Plain TCP is lean with `listeners.tcp.<name>.transport = "lean"`, and with "auto"
    (the default) when the hot path runs compiled; WebSocket always uses the loop's."""
    from starling.config import Config
    from starling.node import Node

    settings = ["listeners.tcp.default.bind=127.0.0.1:0", "listeners.tcp.internal.bind=off",
                "listeners.ws.default.bind=127.0.0.1:0", "management.bind=off",
                "dashboard.bind=off"]
    if setting is not None:
        settings.append(f"listeners.tcp.default.transport={setting}")

    async def main() -> None:
        node = Node(Config.load(None, settings, {"node.data_dir": str(tmp_path)}))
        await node.start()
        try:
            kinds = {listener.name: isinstance(listener.server, LeanServer)
                     for listener in node.listeners}
        finally:
            await node.stop()
        assert kinds == {"mqtt:tcp:default": lean, "mqtt:ws:default": False}

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
