"""Plain TCP without a transport object per socket from the event loop: the
listener accepts the sockets itself and serves them all through one `epoll`
that it registers with the loop once (`loop.add_reader` on the epoll's fd).

Why: uvloop keeps ~1.2 KiB per accepted socket (its `TCPTransport` with two
inline `sockaddr_storage`, the libuv handle, a bound method, a context copy,
the loop's weak map entry); a `LeanTransport` is one object of eight fields
around the socket's file descriptor (~0.1 KiB, no socket object), which is what
brings an idle MQTT connection under 1.5 KiB (benchmarks/README.md, "Memory per
connection").  It implements what `MQTTConnection` uses of `asyncio.Transport`,
with asyncio's semantics:

- `write` sends at once; what the socket does not take is buffered and sent
  when epoll says the socket is writable; past the high-water mark the protocol
  is told `pause_writing`, and `resume_writing` once the buffer is back under
  the low-water mark (a quarter of it, as asyncio);
- `pause_reading` / `resume_reading`; `write_eof` shuts our side down once the
  buffer is sent; `close` stops reading and closes once it is sent; `abort`
  closes at once; `connection_lost` is called soon after, never from inside
  the call that closed.

TLS and WebSocket listeners keep the loop's transports (`listeners.*.*.transport`).
"""

from __future__ import annotations

import _socket
import asyncio
import contextlib
import errno
import logging
import os
import select
import socket
import sys
from collections.abc import Callable
from typing import Any, Final, cast

log = logging.getLogger(__name__)

#: select.EPOLLIN and EPOLLOUT (Linux's values, so that this module imports where
#: there is no epoll: the listener then uses the loop's transports, `AVAILABLE`).
_IN: Final = 1
_OUT: Final = 4
AVAILABLE: Final = hasattr(select, "epoll")
#: Read from a static when compiled, not looked up in `os` per call.
_read: Final = os.read
_write: Final = os.write
#: Bytes read at most per read.  `recv` allocates this much and shrinks it to what
#: came (`recv_into` a shared buffer and a copy of the slice cost ~1,000
#: instructions more); under glibc's mmap threshold (128 KiB).
READ_SIZE: Final = 64 * 1024
#: What a socket reads while its reads are small: the most a bytes object holds
#: and still comes from Python's small-object allocator (512 bytes, less its 33 of
#: header), ~800 instructions cheaper per read than a 64 KiB malloc and realloc.
#: A read that fills it switches the socket to `READ_SIZE` until one returns less.
SMALL_READ: Final = 512 - 33
#: Events taken from the epoll per turn of the loop.
MAX_EVENTS: Final = 1024
#: Seconds accepting stops after running out of file descriptors (as asyncio).
ACCEPT_RETRY_DELAY: Final = 1.0
_TRY_AGAIN = (BlockingIOError, InterruptedError)

# Bits of `LeanTransport._flags`.
_READING: Final = 1  #: reading wanted (EPOLLIN)
_WRITING: Final = 2  #: writing wanted (EPOLLOUT: the buffer holds bytes)
_PAUSED: Final = 4  #: the protocol paused reading
_CLOSING: Final = 8  #: close() called: closes once the buffer is sent
_EOF: Final = 16  #: write_eof() called: shuts down once the buffer is sent
_EOF_SENT: Final = 32
_WRITE_PAUSED: Final = 64  #: protocol.pause_writing() was called
_CLOSED: Final = 128  #: the socket is closed and connection_lost scheduled
_AT_EOF: Final = 256  #: the peer sent EOF: nothing more to read
_REGISTERED: Final = 512  #: the socket is in the epoll (it is not while it waits for nothing:
#: a reset socket would otherwise be reported, EPOLLHUP, on every turn)
# What the epoll has for the socket.  Reading is stopped lazily, as libuv does: a
# pause_reading only clears `_READING`; EPOLLIN is taken out of the epoll when an
# event comes for a socket that does not read.  A pause that ends before the next
# poll (a read of more packets than one turn handles: connection.py's backlog)
# then costs no epoll_ctl at all.
_K_IN: Final = 2048
_K_OUT: Final = 4096
_BIG_READS: Final = 1024  #: the last read filled SMALL_READ: read READ_SIZE


class Poller:
    """One epoll for many sockets, read when the loop sees it readable."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.epoll = select.epoll()
        #: Transports by file descriptor (a list: 8 bytes a socket).
        self.by_fd: list[LeanTransport | None] = []
        loop.add_reader(self.epoll.fileno(), self.poll)

    def close(self) -> None:
        if self.epoll.closed:
            return
        self.loop.remove_reader(self.epoll.fileno())
        self.epoll.close()

    def add(self, transport: LeanTransport, fd: int) -> None:
        by_fd = self.by_fd
        if fd >= len(by_fd):
            by_fd.extend([None] * (fd + 1 - len(by_fd)))
        by_fd[fd] = transport
        self.epoll.register(fd, _IN)

    def remove(self, fd: int, registered: bool) -> None:
        self.by_fd[fd] = None
        if registered and not self.epoll.closed:
            self.epoll.unregister(fd)

    @property
    def open_transports(self) -> list[LeanTransport]:
        return [t for t in self.by_fd if t is not None]

    def poll(self) -> None:
        by_fd = self.by_fd
        for fd, events in self.epoll.poll(0, MAX_EVENTS):
            transport = by_fd[fd]
            if transport is None:
                continue
            try:
                unwanted = False
                if events & _OUT:
                    if transport._flags & _WRITING:
                        transport.write_ready()
                    else:
                        unwanted = True
                if events & ~_OUT:
                    if transport._flags & _READING:
                        transport.read_ready()
                    else:
                        unwanted = True
                if unwanted and not transport._flags & _CLOSED:
                    transport.sync()
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:  # one connection's error must not stop the rest
                log.exception("error on connection from %s", transport._host)
                transport.fail(exc)


#: (low, high): asyncio's default write-buffer limits.
DEFAULT_LIMITS: Final = (16 * 1024, 64 * 1024)


class LeanTransport:
    """One accepted TCP socket: the parts of `asyncio.Transport` a protocol uses
    (duck-typed, not a subclass: compiled, it is a native class)."""

    __slots__ = ("_fd", "_flags", "_host", "_limits", "_out", "_poller", "_port", "_protocol")

    def __init__(self, poller: Poller, fd: int, host: str, port: int,
                 protocol: asyncio.Protocol, limits: tuple[int, int] = DEFAULT_LIMITS) -> None:
        self._poller = poller
        #: The socket's file descriptor, read and written with `os.read` / `os.write`
        #: (no socket object: 48 bytes less, and no `recv` argument parsing per read);
        #: -1 once closed.
        self._fd = fd
        #: The peer's address: the host interned (connections from one host, or one
        #: gateway, share the string), the port an int (compiled, kept in the object:
        #: no int object, and no tuple until `get_extra_info("peername")` asks).
        self._host = host
        self._port = port
        self._protocol = protocol
        self._flags = _READING | _REGISTERED | _K_IN
        #: (low, high) water marks of the write buffer; usually a shared tuple.
        self._limits = limits
        #: Bytes the socket has not taken yet; None while there are none.
        self._out: bytearray | None = None

    # -- reading ---------------------------------------------------------------------
    def read_ready(self) -> None:
        big = self._flags & _BIG_READS
        try:
            data = _read(self._fd, READ_SIZE if big else SMALL_READ)
        except _TRY_AGAIN:
            return
        except OSError as exc:
            self.fail(exc)
            return
        size = len(data)
        if size:
            if big and size < SMALL_READ:
                self._flags &= ~_BIG_READS
            elif not big and size == SMALL_READ:
                self._flags |= _BIG_READS
            self._protocol.data_received(data)
            return
        self._flags |= _AT_EOF
        self._set_reading(False)
        if not self._protocol.eof_received():
            self.close()

    def pause_reading(self) -> None:
        if not self._flags & (_CLOSING | _CLOSED):
            self._flags |= _PAUSED
            self._set_reading(False)

    def resume_reading(self) -> None:
        if not self._flags & (_CLOSING | _CLOSED):
            self._flags &= ~_PAUSED
            if not self._flags & _AT_EOF:
                self._set_reading(True)

    def is_reading(self) -> bool:
        return bool(self._flags & _READING)

    def _set_reading(self, on: bool) -> None:
        flags = self._flags
        if flags & _CLOSED:
            return
        if not on:
            self._flags = flags & ~_READING  # the epoll keeps EPOLLIN until it reports it
            return
        self._flags = flags | _READING
        if not flags & _K_IN:
            self.sync()

    def sync(self) -> None:
        """Make what the epoll has for the socket what it wants."""
        flags = self._flags
        want = (_K_IN if flags & _READING else 0) | (_K_OUT if flags & _WRITING else 0)
        if want == flags & (_K_IN | _K_OUT):
            return
        flags = flags & ~(_K_IN | _K_OUT) | want
        mask = (_IN if want & _K_IN else 0) | (_OUT if want & _K_OUT else 0)
        epoll = self._poller.epoll
        if not mask:
            epoll.unregister(self._fd)
            flags &= ~_REGISTERED
        elif flags & _REGISTERED:
            epoll.modify(self._fd, mask)
        else:
            epoll.register(self._fd, mask)
            flags |= _REGISTERED
        self._flags = flags

    # -- writing ---------------------------------------------------------------------
    def write(self, data: bytes | bytearray | memoryview) -> None:
        flags = self._flags
        if flags & (_CLOSING | _EOF | _CLOSED) or not data:
            return
        out = self._out
        if out is None:
            try:
                sent = _write(self._fd, data)
            except _TRY_AGAIN:
                sent = 0
            except OSError as exc:
                self.fail(exc)
                return
            if sent == len(data):
                return
            self._out = bytearray(memoryview(data)[sent:])
            self._flags = flags | _WRITING
            self.sync()
        else:
            out += data
        self._check_high()

    def write_ready(self) -> None:
        out = self._out
        if out is None:
            return
        try:
            sent = _write(self._fd, out)
        except _TRY_AGAIN:
            return
        except OSError as exc:
            self.fail(exc)
            return
        del out[:sent]
        if out:
            self._check_low()
            return
        self._out = None
        self._flags &= ~_WRITING
        self.sync()
        self._check_low()
        if self._flags & _CLOSING:
            self._finish(None)
        elif self._flags & _EOF:
            self._shutdown()

    def _check_high(self) -> None:
        if (not self._flags & _WRITE_PAUSED and self._out is not None
                and len(self._out) > self._limits[1]):
            self._flags |= _WRITE_PAUSED
            self._protocol.pause_writing()

    def _check_low(self) -> None:
        if self._flags & _WRITE_PAUSED and self.get_write_buffer_size() <= self._limits[0]:
            self._flags &= ~_WRITE_PAUSED
            self._protocol.resume_writing()

    def writelines(self, chunks: Any) -> None:
        self.write(b"".join(chunks))

    def get_write_buffer_size(self) -> int:
        return len(self._out) if self._out is not None else 0

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._limits

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """As asyncio's: `low` defaults to a quarter of `high`.  The server makes its
        transports with the limits its protocols set, so this usually keeps them."""
        if high is None:
            high = DEFAULT_LIMITS[1] if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high}) must be >= low ({low}) must be >= 0")
        if (low, high) != self._limits:
            self._limits = (low, high)
        self._check_high()

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if self._flags & (_CLOSING | _EOF | _CLOSED):
            return
        self._flags |= _EOF
        if self._out is None:
            self._shutdown()

    def _shutdown(self) -> None:
        self._flags |= _EOF_SENT
        with contextlib.suppress(OSError):  # reset meanwhile: the read side finds out
            sock = _socket_of(self._fd)
            try:
                sock.shutdown(socket.SHUT_WR)
            finally:
                sock.detach()

    # -- closing ---------------------------------------------------------------------
    def is_closing(self) -> bool:
        return bool(self._flags & (_CLOSING | _CLOSED))

    def close(self) -> None:
        """Stop reading; close once what is buffered is sent."""
        if self._flags & (_CLOSING | _CLOSED):
            return
        self._set_reading(False)
        self._flags |= _CLOSING
        if self._out is None:
            self._finish(None)

    def abort(self) -> None:
        self._finish(None)

    def fail(self, exc: BaseException) -> None:
        """A socket error (a reset peer, ...): close at once, the protocol told why."""
        self._finish(exc if isinstance(exc, Exception) else None)

    def _finish(self, exc: Exception | None) -> None:
        if self._flags & _CLOSED:
            return
        flags = self._flags
        self._flags = (flags | _CLOSED) & ~(_READING | _WRITING | _REGISTERED | _K_IN | _K_OUT)
        self._out = None
        fd, self._fd = self._fd, -1
        self._poller.remove(fd, bool(flags & _REGISTERED))
        os.close(fd)
        self._poller.loop.call_soon(self._protocol.connection_lost, exc)

    # -- what it is ------------------------------------------------------------------
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """`peername` ((host, port), also for IPv6, where asyncio gives four) and
        `sockname`; nothing else (no `socket`: there is no socket object)."""
        if name == "peername":
            return (self._host, self._port)
        if name == "sockname" and self._fd >= 0:
            sock = _socket_of(self._fd)
            try:
                return sock.getsockname()
            except OSError:
                return default
            finally:
                sock.detach()
        return default

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def set_protocol(self, protocol: asyncio.Protocol) -> None:
        self._protocol = protocol


class LeanServer:
    """Listening sockets whose connections are `LeanTransport`s; the parts of
    `asyncio.Server` a listener uses (`sockets`, `close`, `wait_closed`)."""

    def __init__(self, loop: asyncio.AbstractEventLoop,
                 factory: Callable[[], asyncio.Protocol], sockets: list[socket.socket],
                 backlog: int, high_water: int | None = None) -> None:
        self.loop = loop
        self.factory = factory
        self.sockets = sockets
        self.backlog = backlog
        self.poller = Poller(loop)
        self._limits = (DEFAULT_LIMITS if high_water is None
                        else (high_water // 4, high_water))
        for sock in sockets:
            sock.listen(backlog)
            sock.setblocking(False)
            loop.add_reader(sock.fileno(), self._accept, sock)

    def _accept(self, listening: socket.socket) -> None:
        poller, limits = self.poller, self._limits
        family, kind, proto = listening.family, listening.type, listening.proto
        accept = cast(Any, listening)._accept  # a file descriptor, no socket.socket
        for _ in range(self.backlog):
            try:
                fd, peer = accept()
            except _TRY_AGAIN:
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.error("listener on %s: cannot accept (%s); again in %.0f s",
                              listening.getsockname(), exc.strerror, ACCEPT_RETRY_DELAY)
                    self.loop.remove_reader(listening.fileno())
                    self.loop.call_later(ACCEPT_RETRY_DELAY, self._resume_accepting, listening)
                    return
                raise
            sock = _socket.socket(family, kind, proto, fd)
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.detach()  # the transport keeps the file descriptor only
            host: str = sys.intern(peer[0])
            transport: LeanTransport | None = None
            try:
                protocol = self.factory()
                transport = LeanTransport(poller, fd, host, peer[1], protocol, limits)
                poller.add(transport, fd)
                protocol.connection_made(cast(asyncio.Transport, transport))
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                log.exception("error setting up a connection from %s", peer)
                if transport is None:
                    os.close(fd)
                else:
                    transport.abort()

    def _resume_accepting(self, listening: socket.socket) -> None:
        if listening.fileno() >= 0:
            self.loop.add_reader(listening.fileno(), self._accept, listening)

    def close(self) -> None:
        for sock in self.sockets:
            if sock.fileno() >= 0:
                self.loop.remove_reader(sock.fileno())
                sock.close()

    async def wait_closed(self, timeout: float = 1.0) -> None:
        """Once every connection is gone; those still sending what they buffered
        (to a peer that does not read) are aborted after `timeout` seconds."""
        deadline = self.loop.time() + timeout
        while self.poller.open_transports and self.loop.time() < deadline:
            await asyncio.sleep(0.01)
        for transport in self.poller.open_transports:
            transport.abort()
        await asyncio.sleep(0)  # their connection_lost
        self.poller.close()


def _socket_of(fd: int) -> _socket.socket:
    """A socket object for a transport's file descriptor, to call what `os` has no
    function for; `detach()` it after (or it would close the descriptor)."""
    return _socket.socket(fileno=fd)


def bind(host: str, port: int, *, reuse_port: bool = False) -> list[socket.socket]:
    """Listening sockets for `host:port` as `loop.create_server` makes them: every
    address the host resolves to (IPv6 ones v6-only), `SO_REUSEADDR`."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    seen = set()
    try:
        for family, kind, proto, _, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets
