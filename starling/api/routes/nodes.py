"""/nodes: node health (load, memory, file descriptors, connections)."""

from __future__ import annotations

from typing import Any

from ..request import ApiRequest
from ..routing import RouteTable


def register(table: RouteTable) -> None:
    @table.route("list_nodes", "GET", "/nodes/", "A list of nodes in the cluster")
    async def list_nodes(req: ApiRequest) -> Any:
        return await req.ctx.mgmt.cluster_nodes()

    @table.route("get_node", "GET", "/nodes/:node", "Lookup a node in the cluster",
                 node_routed=True)
    async def get_node(req: ApiRequest) -> Any:
        return await req.ctx.mgmt.node(req.params["node"])
