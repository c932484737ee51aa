"""The management API as an ASGI application.

Order of processing, as EMQ X's minirest: credentials first (so unknown paths
also need them), then `GET /api/v3/` (the route listing), then the route
table.  Every answer is JSON in the EMQ X envelope; errors carry a non-zero
`code` and a `message` with a fitting HTTP status (docs/api.md).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from starling.mgmt import NodeUnavailable, Page, QueryError, UnknownNode

from .context import ApiContext
from .errors import ApiError, Code, not_found
from .openapi import openapi_document
from .request import ApiRequest, with_query
from .routing import RouteTable, split_path

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
#: Checks HTTP Basic credentials (user, password) of a listener that does not take
#: apps (the dashboard's: dashboard users).
Authenticate = Callable[[str, str], Awaitable[bool]]

PREFIX = ("api", "v3")


@dataclass(frozen=True, slots=True)
class RawRoute:
    """A GET endpoint outside the route table whose answer is not a JSON envelope
    (the Prometheus scrape): `handler` returns (body, content type); `public`
    says, at each request, whether it is answered without credentials."""

    handler: Callable[[], Awaitable[tuple[bytes, str]]]
    public: Callable[[], bool] = lambda: False

MAX_BODY = 4 * 1024 * 1024


def peer_address(scope: Scope) -> str:
    """The HTTP client's IP address ("" when the server does not know it)."""
    client = scope.get("client")
    return str(client[0]) if client else ""


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


class RouteDispatcher:
    """Runs an authorized request (path under /api/v3) against the route table and
    returns (HTTP status, JSON envelope).  Both listeners use it, and so does a
    request another node forwards here (`forwarded`), which was authorized there.

    A `/nodes/:node/...` route names a node through the management facade: an
    unknown one is a 404; a remote one gets the request forwarded whole, unless
    the route sends its work to the node itself (`Route.node_routed`)."""

    def __init__(self, ctx: ApiContext, table: RouteTable) -> None:
        self.ctx = ctx
        self.table = table

    async def dispatch(self, method: str, segments: list[str], query: dict[str, str],
                       body: Callable[[], Awaitable[Any]], peer: str = "",
                       ) -> tuple[int, dict[str, Any]]:
        """`peer`: the HTTP client's address, when the request came over HTTP here."""
        try:
            return 200, self._envelope(await self._run(method, segments, query, body, peer))
        except ApiError as exc:
            return exc.status, {"code": exc.code, "message": exc.message}
        except Forwarded as answer:
            return answer.status, answer.body
        except UnknownNode as exc:
            return 404, {"code": Code.NOT_FOUND, "message": str(exc)}
        except NodeUnavailable as exc:
            return 503, {"code": Code.BADRPC, "message": str(exc)}
        except QueryError as exc:
            code = Code.PARAMETER_TYPE_ERROR if exc.reason == "bad_params" else Code.UNKNOWN_ERROR
            return 400, {"code": code, "message": str(exc)}
        except Exception:
            log.exception("API handler failed: %s /api/v3/%s", method, "/".join(segments))
            return 500, {"code": Code.UNKNOWN_ERROR, "message": "internal_error"}

    async def forwarded(self, method: str, segments: list[str], query: dict[str, str],
                        body: Any) -> Any:
        """What `LocalNode.forwarder` runs: ``{"status", "body"}``."""
        async def given() -> Any:
            return body
        status, envelope = await self.dispatch(method, segments, query, given)
        return {"status": status, "body": envelope}

    async def _run(self, method: str, segments: list[str], query: dict[str, str],
                   body: Callable[[], Awaitable[Any]], peer: str) -> Any:
        if not segments:
            if method != "GET":
                raise ApiError(Code.UNKNOWN_ERROR, "Method Not Allowed", 405)
            return self.table.listing()
        found = self.table.find(method, segments)
        if found is None:
            if self.table.path_exists(segments):
                raise ApiError(Code.UNKNOWN_ERROR, "Method Not Allowed", 405)
            raise ApiError(Code.NOT_FOUND, "Not Found", 404)
        route, params = found
        if route.plugin and not self._plugin_active(route.plugin):
            raise ApiError(Code.NOT_FOUND, f"Not Found: plugin {route.plugin} is not loaded",
                           404)
        request = ApiRequest(self.ctx, method, params, query,
                             with_query(method, query, await body()), peer)
        node = params.get("node")
        if node is not None:
            mgmt = self.ctx.mgmt
            if not mgmt.knows(node):
                raise not_found(f"node {node} not found", Code.NOT_FOUND)
            if not mgmt.is_local(node) and not route.node_routed:
                answer = await mgmt.forward(node, method, segments, query, request.body)
                raise Forwarded(answer["status"], answer["body"])
        return await route.handler(request)

    @staticmethod
    def _envelope(result: Any) -> dict[str, Any]:
        if result is None:
            return {"code": 0}
        if isinstance(result, Page):
            meta: dict[str, Any] = {"page": result.page, "limit": result.limit,
                                    "count": result.count}
            if result.failed:
                meta["failed_nodes"] = result.failed
            return {"code": 0, "data": result.rows, "meta": meta}
        return {"code": 0, "data": result}

    def _plugin_active(self, name: str) -> bool:
        plugins = self.ctx.services.get("plugins")
        return plugins is not None and name in plugins.active_names()


class Forwarded(Exception):
    """The answer of the node a request was forwarded to, passed on as it is."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


#: Rows of a list encoded between two yields to the event loop.
ENCODE_CHUNK = 100


async def encode_json(envelope: dict[str, Any]) -> bytes:
    """The envelope as JSON; a long `data` list is encoded in chunks with the event
    loop let run in between (10,000 connection rows take over 100 ms to encode and
    tens to free).  The list is consumed from its end as it is encoded, so its rows
    are freed chunk by chunk too, not all at once when the answer is dropped."""
    data = envelope.get("data")
    if not isinstance(data, list) or len(data) <= ENCODE_CHUNK:
        return _json_bytes(envelope)
    parts: list[bytes] = []
    while data:
        start = max(0, len(data) - ENCODE_CHUNK)
        parts.append(_json_bytes(data[start:])[1:-1])
        del data[start:]
        if data:
            await asyncio.sleep(0)
    parts.reverse()
    items = b"[" + b",".join(parts) + b"]"
    return b"{" + b",".join(
        _json_bytes(key) + b":" + (items if key == "data" else _json_bytes(value))
        for key, value in envelope.items()) + b"}"


class ManagementApp:
    """`authenticate` replaces the apps check (None: apps, the management listener);
    `open_routes` are ``(method, "/api/v3/...")`` answered without credentials;
    `raw_routes` are `RawRoute`s by path."""

    def __init__(self, ctx: ApiContext, table: RouteTable, *, realm: str = "starling",
                 authenticate: Authenticate | None = None,
                 open_routes: Collection[tuple[str, str]] = (),
                 raw_routes: Mapping[str, RawRoute] | None = None) -> None:
        self.ctx = ctx
        self.table = table
        self.realm = realm
        self.authenticate = authenticate
        self.open_routes = frozenset(open_routes)
        self.raw_routes = dict(raw_routes or {})
        self.dispatcher = RouteDispatcher(ctx, table)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if scope["path"].rstrip("/") == "/status":
            await self._send_status(scope, send)
            return
        raw = self.raw_routes.get(scope["path"].rstrip("/"))
        if raw is not None:
            status, body, headers = await self._handle_raw(scope, raw)
        else:
            status, body, headers = await self._handle(scope, receive)
        if not any(name == b"content-type" for name, _ in headers):
            headers = [(b"content-type", b"application/json; charset=utf-8"), *headers]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _handle_raw(self, scope: Scope, raw: RawRoute,
                          ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        if not raw.public() and not await self._authorized(scope):
            return self._unauthorized()
        if scope["method"] != "GET":
            return 405, _json_bytes({"code": Code.UNKNOWN_ERROR,
                                     "message": "Method Not Allowed"}), []
        try:
            body, content_type = await raw.handler()
        except Exception:
            log.exception("API handler failed: GET %s", scope["path"])
            return 500, _json_bytes({"code": Code.UNKNOWN_ERROR,
                                     "message": "internal_error"}), []
        return 200, body, [(b"content-type", content_type.encode())]

    def _unauthorized(self) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        return 401, _json_bytes({"code": Code.USERNAME_OR_PASSWORD_ERROR,
                                 "message": "UNAUTHORIZED"}), [
            (b"www-authenticate", f'Basic realm="{self.realm}"'.encode())]

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _handle(self, scope: Scope, receive: Receive,
                      ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        method: str = scope["method"]
        raw_path = scope.get("raw_path") or scope["path"].encode()
        segments = split_path(raw_path.decode("latin-1").split("?", 1)[0])
        try:
            if segments == ["api", "v3", "openapi.json"]:
                if method != "GET":
                    raise ApiError(Code.UNKNOWN_ERROR, "Method Not Allowed", 405)
                return 200, _json_bytes(openapi_document(self.table, self.ctx)), []
            open_route = (method, "/" + "/".join(segments)) in self.open_routes
            if not open_route and not await self._authorized(scope):
                return self._unauthorized()
            if tuple(segments[:2]) != PREFIX:
                raise ApiError(Code.NOT_FOUND, "Not Found", 404)
        except ApiError as exc:
            return exc.status, _json_bytes({"code": exc.code, "message": exc.message}), []
        query = dict(reversed(parse_qsl(scope.get("query_string", b"").decode("latin-1"),
                                        keep_blank_values=True)))

        async def body() -> Any:
            return await self._read_json(receive)

        status, envelope = await self.dispatcher.dispatch(method, segments[2:], query, body,
                                                          peer_address(scope))
        return status, await encode_json(envelope), []

    async def _send_status(self, scope: Scope, send: Send) -> None:
        """EMQ X's health check, outside /api/v3 and without credentials (facts §1.1)."""
        if scope["method"] == "GET":
            status = 200
            running = "running" if self.ctx.broker.running else "not_running"
            text = f"Node {self.ctx.node_name} is started\nstarling is {running}\n"
            journal = self.ctx.broker.journal
            if journal.failing_since is not None:
                # Still 200: the node serves what needs no store; restarting it
                # (a liveness probe's answer to non-200) would not free the disk.
                text += f"store is unavailable: {journal.last_error}\n"
        else:
            status, text = 400, "Not found.\n"
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
        await send({"type": "http.response.body", "body": text.encode()})

    async def _authorized(self, scope: Scope) -> bool:
        header = b""
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                header = value
                break
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"basic":
            return False
        try:
            decoded = base64.b64decode(token.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        app_id, sep, secret = decoded.partition(":")
        if not sep:
            return False

        async def check() -> bool:
            if self.authenticate is not None:
                return await self.authenticate(app_id, secret)
            return self.ctx.apps.check(app_id, secret)

        kind = "app" if self.authenticate is None else "dashboard user"
        return await self.ctx.login_throttle.guard(
            f"{self.realm} API", peer_address(scope), kind, app_id, check)

    @staticmethod
    async def _read_json(receive: Receive) -> Any:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY:
                raise ApiError(Code.BAD_REQUEST, "request body too large", 413)
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        raw = b"".join(chunks)
        if not raw.strip():
            return None
        try:
            value = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            # RecursionError: nesting too deep to parse; still the client's bad JSON.
            raise ApiError(Code.BODY_NOT_JSON, "request body is not valid JSON", 400) from None
        if b"\\u" in raw:
            # `\ud800` is JSON syntax but not text: refuse lone surrogates here, so no
            # handler ever stores or encodes a string that cannot be written back as UTF-8.
            try:
                json.dumps(value, ensure_ascii=False).encode()
            except UnicodeEncodeError:
                raise ApiError(Code.BODY_NOT_JSON,
                               "request body is not valid JSON: lone surrogate in a string",
                               400) from None
        return value
