"""/alarms: present alarms and the last clearing of each (facts §5.11).

Cluster form ``[{"node": ..., "alarms": [...]}]``, node form the array.
Present items are ``{id, desc}``; history items add ``clear_at``, local time
``YYYY-MM-DD HH:MM:SS`` as in the seed document.  The history of a node is
served at ``/alarms/history/:node`` (the seed's text names the present path
by mistake, facts §13 #8).
"""

from __future__ import annotations

from typing import Any

from starling.broker import Alarm

from ..request import ApiRequest
from ..routing import RouteTable
from ..views import local_time


def present_view(alarm: Alarm) -> dict[str, Any]:
    return {"id": alarm.id, "desc": alarm.desc}


def history_view(alarm: Alarm) -> dict[str, Any]:
    return {"id": alarm.id, "desc": alarm.desc, "clear_at": local_time(alarm.cleared_at)}


def register(table: RouteTable) -> None:
    def present(req: ApiRequest) -> list[dict[str, Any]]:
        return [present_view(a) for a in req.ctx.broker.alarms.present()]

    def history(req: ApiRequest) -> list[dict[str, Any]]:
        return [history_view(a) for a in req.ctx.broker.alarms.history()]

    @table.route("list_all_alarms", "GET", "/alarms/present", "List all alarms")
    async def list_all_alarms(req: ApiRequest) -> Any:
        return [{"node": req.ctx.node_name, "alarms": present(req)}]

    @table.route("list_node_alarms", "GET", "/alarms/present/:node", "List alarms of a node")
    async def list_node_alarms(req: ApiRequest) -> Any:
        return present(req)

    @table.route("list_all_alarm_history", "GET", "/alarms/history",
                 "List all alarm history")
    async def list_all_alarm_history(req: ApiRequest) -> Any:
        return [{"node": req.ctx.node_name, "alarms": history(req)}]

    @table.route("list_node_alarm_history", "GET", "/alarms/history/:node",
                 "List alarm history of a node")
    async def list_node_alarm_history(req: ApiRequest) -> Any:
        return history(req)
