"""Serve an ASGI app with uvicorn inside the broker's own event loop.

The socket is bound here (port 0 picks a free one) and handed to uvicorn, so
the real address can be logged and reported.  uvicorn's own signal handling
is switched off: the node owns SIGINT/SIGTERM.  uvicorn runs its h11 protocol
under the listener's `HttpLimits` (http_guard.py): a deadline for each request
and a cap on connections per address, besides `max_connections`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn

from starling.transport import BindError

from .http_guard import HttpGuard, guarded_protocol

startup_log = logging.getLogger("starling.startup")


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """What one HTTP listener allows (`management.*` / `dashboard.*` keys)."""

    max_connections: int = 512
    #: Open connections from one IP address; 0 = no limit.
    max_connections_per_address: int = 64
    #: Seconds a client has to send a complete request; 0 = no limit.
    request_timeout: float = 10.0


class HttpListener:
    def __init__(self, app: Any, name: str, host: str, port: int,
                 limits: HttpLimits | None = None, reuse_port: bool = False) -> None:
        self.app = app
        self.reuse_port = reuse_port
        self.name = name
        self.host = host
        self.port = port
        limits = limits or HttpLimits()
        self.max_connections = limits.max_connections
        #: The request deadline and the per-address cap, and what they refused.
        self.guard = HttpGuard(name, limits.request_timeout,
                               limits.max_connections_per_address)
        self.bound: tuple[str, int] = (host, port)
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._draining: asyncio.Task[None] | None = None  #: see stop()

    @property
    def current_connections(self) -> int:
        server = self._server
        return len(server.server_state.connections) if server is not None else 0

    async def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((self.host, self.port))
            sock.listen(128)
        except OSError as exc:
            sock.close()
            raise BindError.of(self.name, self.host, self.port, exc) from None
        sock.setblocking(False)
        addr = sock.getsockname()
        self.bound = (addr[0], addr[1])
        config = uvicorn.Config(self._limited, interface="asgi3", proxy_headers=False,
                                log_level="warning", access_log=False, lifespan="off",
                                server_header=False, date_header=False,
                                http=guarded_protocol(self.guard))
        self._server = _EmbeddedServer(config)
        self._task = asyncio.get_running_loop().create_task(self._server.serve([sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises the startup error
            await asyncio.sleep(0.01)
        startup_log.info("listener %s on %s:%d", self.name, addr[0], addr[1])

    async def _limited(self, scope: Any, receive: Any, send: Any) -> None:
        """Refuse requests beyond `max_connections` open connections, in the
        API's JSON envelope (uvicorn's own limit answers in plain text)."""
        if scope["type"] == "http" and self.current_connections > self.max_connections:
            await send({"type": "http.response.start", "status": 503,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body",
                        "body": b'{"code":102,"message":"too many connections"}'})
            return
        await self.app(scope, receive, send)

    async def stop(self) -> None:
        server, task = self._server, self._task
        if server is not None and task is not None:
            server.should_exit = True
            if asyncio.current_task() in server.server_state.tasks:
                # Stopped by a request it is serving (e.g. unloading emqx_dashboard
                # through the dashboard): waiting for its requests to end would wait
                # for ourselves.  Stop listening now; the server ends in the background
                # once this request is answered.
                while not task.done() and any(s.is_serving() for s in server.servers):
                    await asyncio.sleep(0.01)
                self._draining = task
            else:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(task, 5)
        self._server = None
        self._task = None
