"""/alarms: present alarms and the last clearing of each (facts §5.11).

Cluster form ``[{"node": ..., "alarms": [...]}]``, node form the array.
Present items are ``{id, desc}``; history items add ``clear_at``, local time
``YYYY-MM-DD HH:MM:SS`` as in the seed document.  The history of a node is
served at ``/alarms/history/:node`` (the seed's text names the present path
by mistake, facts §13 #8).
"""

from __future__ import annotations

from typing import Any

from ..request import ApiRequest
from ..routing import RouteTable


def register(table: RouteTable) -> None:
    @table.route("list_all_alarms", "GET", "/alarms/present", "List all alarms")
    async def list_all_alarms(req: ApiRequest) -> Any:
        return await req.ctx.mgmt.cluster_alarms()

    @table.route("list_node_alarms", "GET", "/alarms/present/:node", "List alarms of a node",
                 node_routed=True)
    async def list_node_alarms(req: ApiRequest) -> Any:
        return await req.ctx.mgmt.alarms(req.params["node"])

    @table.route("list_all_alarm_history", "GET", "/alarms/history",
                 "List all alarm history")
    async def list_all_alarm_history(req: ApiRequest) -> Any:
        return await req.ctx.mgmt.cluster_alarms(history=True)

    @table.route("list_node_alarm_history", "GET", "/alarms/history/:node",
                 "List alarm history of a node", node_routed=True)
    async def list_node_alarm_history(req: ApiRequest) -> Any:
        return await req.ctx.mgmt.alarms(req.params["node"], history=True)
