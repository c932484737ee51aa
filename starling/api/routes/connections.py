"""/connections: live MQTT connections; kickout."""

from __future__ import annotations

from typing import Any

from .. import views
from ..errors import Code, not_found
from ..request import ApiRequest, paginate
from ..routing import RouteTable


def register(table: RouteTable) -> None:
    async def list_connections(req: ApiRequest) -> Any:
        node = req.ctx.node_name
        return paginate(req, [views.connection(c, node) for c in req.ctx.broker.connections()])

    async def lookup(req: ApiRequest) -> Any:
        found = req.ctx.broker.connection(req.params["clientid"])
        return [views.connection(found, req.ctx.node_name)] if found is not None else []

    async def lookup_via_username(req: ApiRequest) -> Any:
        username = req.params["username"]
        node = req.ctx.node_name
        return [views.connection(c, node) for c in req.ctx.broker.connections()
                if c.username == username]

    table.route("list_connections", "GET", "/connections/",
                "A list of connections in the cluster", paginated=True)(list_connections)
    table.route("list_node_connections", "GET", "nodes/:node/connections/",
                "A list of connections on a node", paginated=True)(list_connections)
    table.route("lookup_node_connections", "GET", "nodes/:node/connections/:clientid",
                "Lookup a connection on node")(lookup)
    table.route("lookup_connections", "GET", "/connections/:clientid",
                "Lookup a connection in the cluster")(lookup)
    table.route("lookup_node_connection_via_username", "GET",
                "/nodes/:node/connection/username/:username",
                "Lookup a connection via username in the cluster")(lookup_via_username)
    table.route("lookup_connection_via_username", "GET", "/connection/username/:username",
                "Lookup a connection via username on a node")(lookup_via_username)

    @table.route("kickout_connection", "DELETE", "/connections/:clientid",
                 "Kick out a connection")
    async def kickout(req: ApiRequest) -> Any:
        if not req.ctx.broker.kick(req.params["clientid"]):
            raise not_found("not_found", Code.CLIENT_NOT_ONLINE)
        return None
