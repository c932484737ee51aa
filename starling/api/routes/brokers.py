"""/brokers: what node runs what."""

from __future__ import annotations

from typing import Any

from starling.broker import format_uptime

from .. import system
from ..request import ApiRequest
from ..routing import RouteTable
from ..views import now_string


def broker_info(req: ApiRequest) -> dict[str, Any]:
    ctx = req.ctx
    return {
        "datetime": now_string(),
        "node_status": "Running",
        "otp_release": system.runtime_release(),
        "sysdescr": ctx.broker.options.sysdescr,
        "uptime": format_uptime(ctx.broker.uptime()),
        "version": ctx.version,
    }


def register(table: RouteTable) -> None:
    @table.route("list_brokers", "GET", "/brokers/", "A list of brokers in the cluster")
    async def list_brokers(req: ApiRequest) -> Any:
        return [{"node": req.ctx.node_name, **broker_info(req)}]

    @table.route("get_broker", "GET", "/brokers/:node", "Get broker info of a node")
    async def get_broker(req: ApiRequest) -> Any:
        return broker_info(req)
