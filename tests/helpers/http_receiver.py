"""Local HTTP servers for tests of outgoing HTTP (web hooks, HTTP sinks, rule
engine web hooks, emqx_auth_http, JWKS over HTTP).

`HttpReceiver` records every request it gets (method, path, headers, body; its
`params` read from the query string and a form or JSON body) and answers with
``respond(request) -> (status, text)``, or by default with `status` (or
`statuses`, one per request, then `status`) and "ok".  It can hold its answers
back (`delay`, or `gate` cleared), serve https (`tls`), and be stopped and
started again on the same port (an endpoint going away and coming back).
`HangingServer` accepts TCP connections and never answers: the endpoint that
stalled EMQ X's web hook.  Both run in a thread of the test process, on a free
port (or a given one).
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass(frozen=True)
class Request:
    method: str
    path: str  #: without the query string
    headers: dict[str, str]  #: names in lower case
    body: bytes
    query: str = field(default="")

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    @property
    def params(self) -> dict[str, str]:
        """The query string, and a form or JSON object body (values as text)."""
        params = dict(parse_qsl(self.query, keep_blank_values=True))
        if self.body and self.content_type.startswith("application/json"):
            params.update({k: str(v) for k, v in self.json().items()})
        elif self.body:
            params.update(parse_qsl(self.body.decode(), keep_blank_values=True))
        return params


Respond = Callable[[Request], tuple[int, str]]


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (timed out) before the answer is no error here."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class HttpReceiver:
    """An HTTP server that records requests and answers them; ``with`` starts
    and stops it (or `start()` / `stop()`)."""

    def __init__(self, respond: Respond | None = None, *, port: int = 0, status: int = 200,
                 tls: ssl.SSLContext | None = None) -> None:
        self.respond = respond
        self.port = port
        self.status = status
        self.statuses: list[int] = []
        self.tls = tls
        self.requests: list[Request] = []
        #: Seconds each answer is held back (to test time limits).
        self.delay = 0.0
        #: Answers wait (up to 30 s) while this is cleared.
        self.gate = threading.Event()
        self.gate.set()
        self._taken = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def _answer(self, request: Request) -> tuple[int, str]:
        with self._lock:
            self.requests.append(request)
            status = self.statuses.pop(0) if self.statuses else self.status
        if self.delay:
            time.sleep(self.delay)
        self.gate.wait(30)
        return self.respond(request) if self.respond is not None else (status, "ok")

    def start(self) -> HttpReceiver:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return None

            def setup(self) -> None:
                super().setup()
                owner._connections.add(self.request)

            def finish(self) -> None:
                owner._connections.discard(self.request)
                super().finish()

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                status, text = owner._answer(Request(
                    self.command, parts.path, {k.lower(): v for k, v in self.headers.items()},
                    body, parts.query))
                data = text.encode()
                self.send_response(status)
                self.send_header("content-type", "text/plain")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        server = _Server(("127.0.0.1", self.port), Handler)
        self.port = int(server.server_address[1])
        if self.tls is not None:
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listening socket and every open connection (clients then get
        connection refused); `start()` opens it again on the same port."""
        self.gate.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for conn in list(self._connections):  # kept-alive connections die too
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> HttpReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def seen(self) -> list[Request]:
        with self._lock:
            return list(self.requests)

    def bodies(self) -> list[Any]:
        return [r.json() for r in self.seen()]

    def last(self, path: str) -> Request:
        return next(r for r in reversed(self.seen()) if r.path == path)

    def take(self, timeout: float = 10.0) -> Request:
        """The first request not yet taken (waiting for it)."""
        seen = self.wait_for(lambda requests: len(requests) > self._taken, timeout)
        self._taken += 1
        return seen[self._taken - 1]

    def untaken(self) -> list[Request]:
        """Every request not taken yet (taking them all)."""
        seen = self.seen()
        rest, self._taken = seen[self._taken:], len(seen)
        return rest

    def wait_for(self, predicate: Callable[[list[Request]], bool],
                 timeout: float = 20.0) -> list[Request]:
        """Poll until `predicate(requests)` holds; the requests seen by then."""
        deadline = time.monotonic() + timeout
        while True:
            seen = self.seen()
            if predicate(seen):
                return seen
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met after {timeout}s; got {seen!r}")
            time.sleep(0.05)


class HangingServer:
    """Accepts connections, reads what comes, never answers."""

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(128)
        self.port = int(self.sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.accepted = 0
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            self._conns.append(conn)  # held open, never read from or written to

    def __enter__(self) -> HangingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self._conns:
            conn.close()
        self.sock.close()
