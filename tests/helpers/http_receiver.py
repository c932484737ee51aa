"""Local HTTP servers for tests of outgoing HTTP (web hooks, HTTP sinks).

`HttpReceiver` records every request it gets (method, path, headers, body)
and answers with a status the test chooses.  `HangingServer` accepts TCP
connections and never answers: the endpoint that stalled EMQ X's web hook.
Both run in a thread of the test process, on a free port (or a given one, so
a test can bring an endpoint "back" on the port it was down on).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class HttpReceiver:
    """An HTTP server that records requests; `status` (or `statuses`, one per
    request, then 200) decides the answer."""

    def __init__(self, port: int = 0, status: int = 200) -> None:
        self.requests: list[Request] = []
        self.status = status
        self.statuses: list[int] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                with receiver._lock:
                    receiver.requests.append(Request(
                        self.command, self.path,
                        {k.lower(): v for k, v in self.headers.items()}, body))
                    status = receiver.statuses.pop(0) if receiver.statuses else receiver.status
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_POST = do_PUT = do_GET = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HttpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def bodies(self) -> list[Any]:
        with self._lock:
            return [r.json() for r in self.requests]

    def wait_for(self, predicate: Callable[[list[Request]], bool],
                 timeout: float = 20.0) -> list[Request]:
        """Poll until `predicate(requests)` holds; the requests seen by then."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                seen = list(self.requests)
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
