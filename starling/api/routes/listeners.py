"""/listeners: every MQTT and HTTP listener with live connection counts."""

from __future__ import annotations

from typing import Any

from ..context import ListenerInfo
from ..errors import ApiError, Code, not_found
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


def detail_view(info: ListenerInfo) -> dict[str, Any]:
    """A listener with its `name`, `running` and (WebSocket) `path`."""
    view = {**listener_view(info), "name": info.name, "running": info.running}
    if info.path:
        view["path"] = info.path
    return view


def register(table: RouteTable) -> None:
    @table.route("list_listeners", "GET", "/listeners/", "A list of listeners in the cluster")
    async def list_listeners(req: ApiRequest) -> Any:
        return [{"node": req.ctx.node_name,
                 "listeners": [listener_view(i) for i in req.ctx.listeners()]}]

    @table.route("list_node_listeners", "GET", "/nodes/:node/listeners",
                 "A list of listeners on the node")
    async def list_node_listeners(req: ApiRequest) -> Any:
        return [listener_view(i) for i in req.ctx.listeners()]

    # Beyond EMQ X v3: one listener by name, and stopping/starting it at runtime.
    @table.route("lookup_node_listener", "GET", "/nodes/:node/listeners/:listener",
                 "Lookup a listener on the node, with whether it is running")
    async def lookup_node_listener(req: ApiRequest) -> Any:
        for info in req.ctx.listeners():
            if info.name == req.params["listener"]:
                return detail_view(info)
        raise not_found(f"listener {req.params['listener']} not found")

    # The dashboard's Listeners page and MQTT tool need every listener's name (to
    # stop/start it) and a WebSocket listener's path; the EMQ X list has neither.
    @table.route("list_node_listener_details", "GET", "/nodes/:node/listener_details",
                 "A list of listeners on the node, each with its name and whether it runs")
    async def list_node_listener_details(req: ApiRequest) -> Any:
        return [detail_view(i) for i in req.ctx.listeners()]

    async def switch(req: ApiRequest, running: bool) -> Any:
        control = req.ctx.services.get("listener_control")
        name = req.params["listener"]
        if control is None or not control.listener_known(name):
            raise not_found(f"listener {name} not found")
        if control.listener_running(name) == running:
            raise ApiError(Code.UNKNOWN_ERROR,
                           "already_started" if running else "not_started", 409)
        if running:
            await control.start_listener(name)
        else:
            await control.stop_listener(name)

    @table.route("stop_listener", "PUT", "/nodes/:node/listeners/:listener/stop",
                 "Stop an MQTT listener on the node (its connections are closed)")
    async def stop_listener(req: ApiRequest) -> Any:
        await switch(req, False)

    @table.route("start_listener", "PUT", "/nodes/:node/listeners/:listener/start",
                 "Start a stopped MQTT listener on the node")
    async def start_listener(req: ApiRequest) -> Any:
        await switch(req, True)
