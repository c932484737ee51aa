"""/connections: live MQTT connections; kickout.

Beyond EMQ X v3, the lists take ``clientid`` and ``username`` filters (EMQ X
v4's names); `meta.count` then counts the matching rows.
"""

from __future__ import annotations

from typing import Any

from ..errors import Code, not_found
from ..request import ApiRequest
from ..routing import RouteTable

FILTERS = {
    "clientid": ("string", False, "only this client id's connection (Starling's own)"),
    "username": ("string", False, "only connections with this user name (Starling's own)"),
}


def register(table: RouteTable) -> None:
    async def list_connections(req: ApiRequest) -> Any:
        return await req.ctx.mgmt.connections(
            req.node, req.page_spec(), client_id=req.str_arg("clientid"),
            username=req.str_arg("username"))

    async def lookup(req: ApiRequest) -> Any:
        page = await req.ctx.mgmt.connections(req.node, req.everything(),
                                              client_id=req.params["clientid"])
        return page.rows

    async def lookup_via_username(req: ApiRequest) -> Any:
        page = await req.ctx.mgmt.connections(req.node, req.everything(),
                                              username=req.params["username"])
        return page.rows

    def route(name: str, path: str, descr: str, handler: Any, paginated: bool = False) -> None:
        table.route(name, "GET", path, descr, paginated=paginated,
                    body=FILTERS if paginated else None, node_routed=True)(handler)

    route("list_connections", "/connections/", "A list of connections in the cluster",
          list_connections, True)
    route("list_node_connections", "nodes/:node/connections/",
          "A list of connections on a node", list_connections, True)
    route("lookup_node_connections", "nodes/:node/connections/:clientid",
          "Lookup a connection on node", lookup)
    route("lookup_connections", "/connections/:clientid",
          "Lookup a connection in the cluster", lookup)
    route("lookup_node_connection_via_username", "/nodes/:node/connection/username/:username",
          "Lookup a connection via username in the cluster", lookup_via_username)
    route("lookup_connection_via_username", "/connection/username/:username",
          "Lookup a connection via username on a node", lookup_via_username)

    @table.route("kickout_connection", "DELETE", "/connections/:clientid",
                 "Kick out a connection")
    async def kickout(req: ApiRequest) -> Any:
        if not await req.ctx.mgmt.kick(None, req.params["clientid"]):
            raise not_found("not_found", Code.CLIENT_NOT_ONLINE)
        return None
