"""/stats: the gauges (`*/count`, `*/max`, or v3.2's dotted names with
``management.metric_names = dot``), live."""

from __future__ import annotations

from typing import Any

from ..request import ApiRequest
from ..routing import RouteTable


def register(table: RouteTable) -> None:
    @table.route("list_stats", "GET", "/stats/",
                 "A list of stats of all nodes in the cluster")
    async def list_stats(req: ApiRequest) -> Any:
        return await req.ctx.mgmt.cluster_stats()

    @table.route("lookup_node_stats", "GET", "/nodes/:node/stats/",
                 "A list of stats of a node", node_routed=True)
    async def lookup_node_stats(req: ApiRequest) -> Any:
        return await req.ctx.mgmt.stats(req.params["node"])
