"""/subscriptions: who is subscribed to what.

Beyond EMQ X v3, the lists take ``clientid`` and ``topic`` filters (``topic``:
a filter exactly as subscribed); `meta.count` then counts the matching rows.
"""

from __future__ import annotations

from typing import Any

from ..request import ApiRequest
from ..routing import RouteTable

FILTERS = {
    "clientid": ("string", False, "only this client's subscriptions (Starling's own)"),
    "topic": ("string", False, "only subscriptions to exactly this filter (Starling's own)"),
}


def register(table: RouteTable) -> None:
    async def list_subscriptions(req: ApiRequest) -> Any:
        return await req.ctx.mgmt.subscriptions(
            req.node, req.page_spec(), client_id=req.str_arg("clientid"),
            topic=req.str_arg("topic"))

    async def lookup(req: ApiRequest) -> Any:
        page = await req.ctx.mgmt.subscriptions(req.node, req.everything(),
                                                client_id=req.params["clientid"])
        return page.rows

    for name, path, descr, handler, paginated in (
            ("list_subscriptions", "/subscriptions/", "A list of subscriptions in the cluster",
             list_subscriptions, True),
            ("list_node_subscriptions", "/nodes/:node/subscriptions/",
             "A list of subscriptions on a node", list_subscriptions, True),
            ("lookup_client_subscriptions", "/subscriptions/:clientid",
             "A list of subscriptions of a client", lookup, False),
            ("lookup_client_subscriptions_with_node", "/nodes/:node/subscriptions/:clientid",
             "A list of subscriptions of a client on the node", lookup, False)):
        table.route(name, "GET", path, descr, paginated=paginated,
                    body=FILTERS if paginated else None, node_routed=True)(handler)
