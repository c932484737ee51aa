"""/subscriptions: who is subscribed to what."""

from __future__ import annotations

from typing import Any

from .. import views
from ..request import ApiRequest, paginate
from ..routing import RouteTable


def register(table: RouteTable) -> None:
    async def list_subscriptions(req: ApiRequest) -> Any:
        node = req.ctx.node_name
        rows = [views.subscription(s, node) for s in req.ctx.broker.subscription_list()]
        return paginate(req, rows)

    async def lookup(req: ApiRequest) -> Any:
        node = req.ctx.node_name
        return [views.subscription(s, node)
                for s in req.ctx.broker.subscription_list(req.params["clientid"])]

    table.route("list_subscriptions", "GET", "/subscriptions/",
                "A list of subscriptions in the cluster", paginated=True)(list_subscriptions)
    table.route("list_node_subscriptions", "GET", "/nodes/:node/subscriptions/",
                "A list of subscriptions on a node", paginated=True)(list_subscriptions)
    table.route("lookup_client_subscriptions", "GET", "/subscriptions/:clientid",
                "A list of subscriptions of a client")(lookup)
    table.route("lookup_client_subscriptions_with_node", "GET",
                "/nodes/:node/subscriptions/:clientid",
                "A list of subscriptions of a client on the node")(lookup)
