"""/nodes: node health (load, memory, file descriptors, connections)."""

from __future__ import annotations

from typing import Any

from ..errors import ApiError, Code
from ..request import ApiRequest
from ..routing import RouteTable

#: `ApiContext.services` key of what makes the node leave its cluster.
CLUSTER_SERVICE = "cluster"


def register(table: RouteTable) -> None:
    @table.route("list_nodes", "GET", "/nodes/", "A list of nodes in the cluster")
    async def list_nodes(req: ApiRequest) -> Any:
        return await req.ctx.mgmt.cluster_nodes()

    @table.route("get_node", "GET", "/nodes/:node", "Lookup a node in the cluster",
                 node_routed=True)
    async def get_node(req: ApiRequest) -> Any:
        return await req.ctx.mgmt.node(req.params["node"])

    @table.route("leave_cluster", "PUT", "/nodes/:node/leave",
                 "The node leaves its cluster and goes on alone (Starling)")
    async def leave_cluster(req: ApiRequest) -> Any:
        cluster = req.ctx.services.get(CLUSTER_SERVICE)
        if cluster is None or not await cluster.leave_cluster():
            raise ApiError(Code.UNKNOWN_ERROR, "not_in_a_cluster", 400)
