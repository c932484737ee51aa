"""A real HTTP server for tests of plugins that call out over HTTP (emqx_auth_http,
JWKS files served over HTTP ...): `http.server` in a thread on a free port.

`LocalHTTPServer(respond)` calls ``respond(request) -> (status, body)`` for each
request and keeps every `Request` it saw in `requests`.  `stop()` closes the
listening socket and every open connection (clients then get connection refused); `start()` opens it
again on the same port.
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


@dataclass
class Request:
    method: str
    path: str
    content_type: str
    params: dict[str, str]  #: query string (GET) or body (form or JSON object)
    headers: dict[str, str] = field(default_factory=dict)


Respond = Callable[[Request], tuple[int, str]]


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (timed out) before the answer is no error here."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class LocalHTTPServer:
    def __init__(self, respond: Respond, port: int = 0,
                 tls: ssl.SSLContext | None = None) -> None:
        """`tls`: serve https with this (server side) context."""
        self.respond = respond
        self.port = port
        self.tls = tls
        self.requests: list[Request] = []
        #: Seconds each answer is held back (to test time limits).
        self.delay = 0.0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> LocalHTTPServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                owner._connections.add(self.request)

            def finish(self) -> None:
                owner._connections.discard(self.request)
                super().finish()

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                ctype = self.headers.get("Content-Type") or ""
                params = dict(parse_qsl(parts.query, keep_blank_values=True))
                if body and ctype.startswith("application/json"):
                    params.update({k: str(v) for k, v in json.loads(body).items()})
                elif body:
                    params.update(parse_qsl(body.decode(), keep_blank_values=True))
                request = Request(self.command, parts.path, ctype, params,
                                  {k.lower(): v for k, v in self.headers.items()})
                owner.requests.append(request)
                if owner.delay:
                    time.sleep(owner.delay)
                status, text = owner.respond(request)
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _handle

        server = _Server(("127.0.0.1", self.port), Handler)
        self.port = server.server_address[1]
        if self.tls is not None:
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
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

    def last(self, path: str) -> Request:
        return next(r for r in reversed(self.requests) if r.path == path)
