"""/metrics: the seed's counters, live."""

from __future__ import annotations

from typing import Any

from ..request import ApiRequest
from ..routing import RouteTable


def register(table: RouteTable) -> None:
    @table.route("list_all_metrics", "GET", "/metrics/",
                 "A list of metrics of all nodes in the cluster")
    async def list_all_metrics(req: ApiRequest) -> Any:
        return [{"node": req.ctx.node_name, "metrics": req.ctx.broker.metrics()}]

    @table.route("list_node_metrics", "GET", "/nodes/:node/metrics/",
                 "A list of metrics of a node")
    async def list_node_metrics(req: ApiRequest) -> Any:
        return req.ctx.broker.metrics()
