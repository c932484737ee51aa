"""/listeners: every MQTT and HTTP listener with live connection counts."""

from __future__ import annotations

from typing import Any

from ..context import ListenerInfo
from ..request import ApiRequest
from ..routing import RouteTable


def listener_view(info: ListenerInfo) -> dict[str, Any]:
    return {
        "protocol": info.protocol,
        "listen_on": f"{info.host}:{info.port}",
        "acceptors": info.acceptors,
        "max_conns": info.max_conns,
        "current_conns": info.current_conns,
        # EMQ X renders an empty reason table as [] (facts §5.6).
        "shutdown_count": dict(info.shutdown_count) or [],
    }


def register(table: RouteTable) -> None:
    @table.route("list_listeners", "GET", "/listeners/", "A list of listeners in the cluster")
    async def list_listeners(req: ApiRequest) -> Any:
        return [{"node": req.ctx.node_name,
                 "listeners": [listener_view(i) for i in req.ctx.listeners()]}]

    @table.route("list_node_listeners", "GET", "/nodes/:node/listeners",
                 "A list of listeners on the node")
    async def list_node_listeners(req: ApiRequest) -> Any:
        return [listener_view(i) for i in req.ctx.listeners()]
