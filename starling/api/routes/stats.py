"""/stats: the seed's gauges (`*/count`, `*/max`), live."""

from __future__ import annotations

from typing import Any

from ..request import ApiRequest
from ..routing import RouteTable


def register(table: RouteTable) -> None:
    @table.route("list_stats", "GET", "/stats/",
                 "A list of stats of all nodes in the cluster")
    async def list_stats(req: ApiRequest) -> Any:
        return [{"node": req.ctx.node_name, **req.ctx.broker.stats.sample()}]

    @table.route("lookup_node_stats", "GET", "/nodes/:node/stats/",
                 "A list of stats of a node")
    async def lookup_node_stats(req: ApiRequest) -> Any:
        return req.ctx.broker.stats.sample()
