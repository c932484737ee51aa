"""/metrics: the counters (the seed's names, or v3.2's with
``management.metric_names = dot``), live."""

from __future__ import annotations

from typing import Any

from ..request import ApiRequest
from ..routing import RouteTable


def register(table: RouteTable) -> None:
    @table.route("list_all_metrics", "GET", "/metrics/",
                 "A list of metrics of all nodes in the cluster")
    async def list_all_metrics(req: ApiRequest) -> Any:
        return await req.ctx.mgmt.cluster_metrics()

    @table.route("list_node_metrics", "GET", "/nodes/:node/metrics/",
                 "A list of metrics of a node", node_routed=True)
    async def list_node_metrics(req: ApiRequest) -> Any:
        return await req.ctx.mgmt.metrics(req.params["node"])
