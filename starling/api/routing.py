"""The route table: the one list that routing, `GET /api/v3/` and the
OpenAPI document are all made from, so they cannot drift apart.

Paths are written as EMQ X lists them (``/nodes/:node/connections/``).
Matching follows EMQ X's minirest: the request path is split on ``/`` with
empty segments ignored (so trailing slashes do not matter), each segment is
percent-decoded on its own (so ``a%2Fb`` is one segment ``a/b``), the method
must match, and the first matching route in table order wins.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

if TYPE_CHECKING:
    from .request import ApiRequest

Handler = Callable[["ApiRequest"], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    method: str
    path: str
    descr: str
    handler: Handler
    paginated: bool = False
    #: Parameters read from the query string or JSON body, for docs and OpenAPI:
    #: name → (type, required, description).
    body: dict[str, tuple[str, bool, str]] = field(default_factory=dict)
    segments: tuple[str, ...] = ()
    #: The plugin the route belongs to ("" = the API itself).  Listed always, but
    #: answered 404 while that plugin is not loaded (EMQ X's minirest filter).
    plugin: str = ""
    #: The handler sends its work to `:node` itself, through the management facade.
    #: Other `/nodes/:node/...` routes naming another node are forwarded to it whole.
    node_routed: bool = False

    def match(self, segments: list[str]) -> dict[str, str] | None:
        if len(segments) != len(self.segments):
            return None
        params: dict[str, str] = {}
        for pattern, value in zip(self.segments, segments, strict=True):
            if pattern.startswith(":"):
                params[pattern[1:]] = value
            elif pattern != value:
                return None
        return params


def split_path(raw_path: str) -> list[str]:
    """Split a raw (still percent-encoded) path into decoded segments."""
    return [unquote(part) for part in raw_path.split("/") if part]


class RouteTable:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def route(self, name: str, method: str, path: str, descr: str, *, paginated: bool = False,
              body: dict[str, tuple[str, bool, str]] | None = None, plugin: str = "",
              node_routed: bool = False) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            segments = tuple(p for p in path.split("/") if p)
            self.routes.append(Route(name, method, path, descr, handler, paginated,
                                     body or {}, segments, plugin, node_routed))
            return handler
        return register

    def find(self, method: str, segments: list[str]) -> tuple[Route, dict[str, str]] | None:
        for route in self.routes:
            if route.method == method:
                params = route.match(segments)
                if params is not None:
                    return route, params
        return None

    def path_exists(self, segments: list[str]) -> bool:
        return any(route.match(segments) is not None for route in self.routes)

    def listing(self) -> list[dict[str, str]]:
        return [{"name": r.name, "method": r.method, "path": r.path, "descr": r.descr}
                for r in self.routes]
