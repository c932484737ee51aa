"""/routes: topic filters with subscribers, one row per filter and node."""

from __future__ import annotations

from typing import Any

from ..request import ApiRequest
from ..routing import RouteTable


def register(table: RouteTable) -> None:
    @table.route("list_routes", "GET", "/routes/", "List routes", paginated=True)
    async def list_routes(req: ApiRequest) -> Any:
        return await req.ctx.mgmt.routes(req.page_spec())

    @table.route("lookup_routes", "GET", "/routes/:topic", "Lookup routes to a topic")
    async def lookup_routes(req: ApiRequest) -> Any:
        return (await req.ctx.mgmt.routes(req.everything(), topic=req.params["topic"])).rows
