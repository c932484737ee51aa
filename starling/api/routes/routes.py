"""/routes: topic filters with subscribers on this node."""

from __future__ import annotations

from typing import Any

from .. import views
from ..request import ApiRequest, paginate
from ..routing import RouteTable


def register(table: RouteTable) -> None:
    @table.route("list_routes", "GET", "/routes/", "List routes", paginated=True)
    async def list_routes(req: ApiRequest) -> Any:
        node = req.ctx.node_name
        return paginate(req, [views.route(t, node) for t in req.ctx.broker.route_list()])

    @table.route("lookup_routes", "GET", "/routes/:topic", "Lookup routes to a topic")
    async def lookup_routes(req: ApiRequest) -> Any:
        topic = req.params["topic"]
        if req.ctx.broker.has_route(topic):
            return [views.route(topic, req.ctx.node_name)]
        return []
