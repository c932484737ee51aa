"""/brokers: what node runs what."""

from __future__ import annotations

from typing import Any

from ..request import ApiRequest
from ..routing import RouteTable


def register(table: RouteTable) -> None:
    @table.route("list_brokers", "GET", "/brokers/", "A list of brokers in the cluster")
    async def list_brokers(req: ApiRequest) -> Any:
        return await req.ctx.mgmt.cluster_brokers()

    @table.route("get_broker", "GET", "/brokers/:node", "Get broker info of a node",
                 node_routed=True)
    async def get_broker(req: ApiRequest) -> Any:
        return await req.ctx.mgmt.broker(req.params["node"])
