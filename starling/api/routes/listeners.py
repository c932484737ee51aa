"""/listeners: every MQTT and HTTP listener with live connection counts."""

from __future__ import annotations

from typing import Any

from starling.mgmt import QueryError

from ..errors import ApiError, Code, not_found
from ..request import ApiRequest
from ..routing import RouteTable


def register(table: RouteTable) -> None:
    @table.route("list_listeners", "GET", "/listeners/", "A list of listeners in the cluster")
    async def list_listeners(req: ApiRequest) -> Any:
        return await req.ctx.mgmt.cluster_listeners()

    @table.route("list_node_listeners", "GET", "/nodes/:node/listeners",
                 "A list of listeners on the node", node_routed=True)
    async def list_node_listeners(req: ApiRequest) -> Any:
        return await req.ctx.mgmt.listeners(req.params["node"])

    # Beyond EMQ X v3: one listener by name, and stopping/starting it at runtime.
    @table.route("lookup_node_listener", "GET", "/nodes/:node/listeners/:listener",
                 "Lookup a listener on the node, with whether it is running", node_routed=True)
    async def lookup_node_listener(req: ApiRequest) -> Any:
        found = await req.ctx.mgmt.listener(req.params["node"], req.params["listener"])
        if found is None:
            raise not_found(f"listener {req.params['listener']} not found")
        return found

    # The dashboard's Listeners page and MQTT tool need every listener's name (to
    # stop/start it) and a WebSocket listener's path; the EMQ X list has neither.
    @table.route("list_node_listener_details", "GET", "/nodes/:node/listener_details",
                 "A list of listeners on the node, each with its name and whether it runs",
                 node_routed=True)
    async def list_node_listener_details(req: ApiRequest) -> Any:
        return await req.ctx.mgmt.listener_details(req.params["node"])

    async def switch(req: ApiRequest, running: bool) -> Any:
        try:
            await req.ctx.mgmt.switch_listener(req.params["node"], req.params["listener"],
                                               running)
        except QueryError as exc:
            if exc.reason == "not_found":
                raise not_found(exc.detail) from None
            if exc.reason in ("already_started", "not_started"):
                raise ApiError(Code.UNKNOWN_ERROR, exc.reason, 409) from None
            if exc.reason == "bind_failed":
                raise ApiError(Code.UNKNOWN_ERROR, exc.detail, 500) from None
            raise

    @table.route("stop_listener", "PUT", "/nodes/:node/listeners/:listener/stop",
                 "Stop an MQTT listener on the node (its connections are closed)",
                 node_routed=True)
    async def stop_listener(req: ApiRequest) -> Any:
        await switch(req, False)

    @table.route("start_listener", "PUT", "/nodes/:node/listeners/:listener/start",
                 "Start a stopped MQTT listener on the node", node_routed=True)
    async def start_listener(req: ApiRequest) -> Any:
        await switch(req, True)
