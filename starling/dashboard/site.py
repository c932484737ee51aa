"""The web dashboard's pages on the dashboard listener, in front of the API.

`DashboardSite` is an ASGI app: ``GET /`` is the page and ``GET /static/…``
its scripts and styles, read once from the package data (`static/`) through
`importlib.resources`, so an installed wheel serves them as a source tree
does; every other request goes to the management API app unchanged.

Every response of the listener carries a Content-Security-Policy that allows
the dashboard's own scripts and styles only, connections to this origin and
to the node's MQTT WebSocket listeners (for the page's MQTT client), and no
framing; API answers are also marked ``no-store``.  The page sends
``X-Requested-With: XMLHttpRequest``: for such requests a 401 loses its
``WWW-Authenticate`` header, so that an expired sign-in brings back the
dashboard's own login form instead of the browser's password prompt.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]
#: The (scheme, port) of each running MQTT WebSocket listener: ("ws", 8083).
WebSocketPorts = Callable[[], Iterable[tuple[str, int]]]

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
}
#: A host name or address as the browser sends it in `Host` (port stripped).
HOST_NAME = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)$")
SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
)


@dataclass(frozen=True, slots=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: bytes


def load_static(root: Traversable | None = None) -> dict[str, StaticFile]:
    """Every file under the package's `static/` by URL path (``/static/js/api.js``),
    but `index.html`, which is ``/``."""
    root = root if root is not None else resources.files(__package__) / "static"
    files: dict[str, StaticFile] = {}

    def walk(folder: Traversable, prefix: str) -> None:
        for entry in folder.iterdir():
            if entry.is_dir():
                walk(entry, f"{prefix}{entry.name}/")
                continue
            suffix = entry.name[entry.name.rfind("."):] if "." in entry.name else ""
            kind = CONTENT_TYPES.get(suffix)
            if kind is None:
                continue
            body = entry.read_bytes()
            etag = b'"' + hashlib.sha256(body).hexdigest()[:20].encode() + b'"'
            files[f"/static/{prefix}{entry.name}"] = StaticFile(body, kind, etag)

    walk(root, "")
    index = files.pop("/static/index.html", None)  # only at "/": its URLs are relative
    if index is None:
        raise RuntimeError("the dashboard's static/index.html is missing from the package")
    files["/"] = index
    return files


def content_security_policy(host_header: str, ws_ports: Iterable[tuple[str, int]]) -> str:
    """The page's CSP: its own scripts and styles; fetch to itself; WebSocket to the
    node's MQTT WebSocket listeners on the host the page was loaded from."""
    connect = ["'self'"]
    host = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
    if HOST_NAME.match(host):
        connect += [f"{scheme}://{host}:{port}" for scheme, port in ws_ports]
    return "; ".join((
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        f"connect-src {' '.join(connect)}",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ))


def _header(scope: Scope, name: bytes) -> bytes:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value)
    return b""


class DashboardSite:
    """`api` answers everything but the page and its static files."""

    def __init__(self, api: App, ws_ports: WebSocketPorts,
                 files: dict[str, StaticFile] | None = None) -> None:
        self.api = api
        self.ws_ports = ws_ports
        self.files = files if files is not None else load_static()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.api(scope, receive, send)
            return
        csp = content_security_policy(_header(scope, b"host").decode("latin-1"),
                                      self.ws_ports())
        headers = [(b"content-security-policy", csp.encode()), *SECURITY_HEADERS]
        path: str = scope["path"]
        if path == "/" or path.startswith("/static/"):
            await self._static(scope, send, headers)
            return
        from_page = _header(scope, b"x-requested-with") == b"XMLHttpRequest"

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", ())
                        if not (from_page and k.lower() == b"www-authenticate")]
                message = {**message, "headers": [*kept, *headers,
                                                  (b"cache-control", b"no-store")]}
            await send(message)

        await self.api(scope, receive, send_secured)

    async def _static(self, scope: Scope, send: Send,
                      headers: list[tuple[bytes, bytes]]) -> None:
        found = self.files.get(scope["path"])
        method = scope["method"]
        if found is None or method not in ("GET", "HEAD"):
            status = 404 if found is None else 405
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                    *headers]})
            await send({"type": "http.response.body",
                        "body": b"Not Found\n" if status == 404 else b"Method Not Allowed\n"})
            return
        headers = [*headers, (b"etag", found.etag), (b"cache-control", b"no-cache")]
        if _header(scope, b"if-none-match") == found.etag:
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", found.content_type.encode()),
                                (b"content-length", str(len(found.body)).encode()), *headers]})
        await send({"type": "http.response.body",
                    "body": b"" if method == "HEAD" else found.body})
