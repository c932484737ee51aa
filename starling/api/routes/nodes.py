"""/nodes: node health (load, memory, file descriptors, connections)."""

from __future__ import annotations

from typing import Any

from starling.broker import format_uptime

from .. import system
from ..request import ApiRequest
from ..routing import RouteTable


def node_info(req: ApiRequest) -> dict[str, Any]:
    ctx = req.ctx
    load1, load5, load15 = system.load_averages()
    fds = system.max_fds()
    return {
        "name": ctx.node_name,
        "node_status": "Running",
        "otp_release": system.runtime_release(),
        "version": ctx.version,
        "uptime": format_uptime(ctx.broker.uptime()),
        "load1": load1,
        "load5": load5,
        "load15": load15,
        "memory_total": system.machine_memory(),
        "memory_used": system.process_rss(),
        "process_available": fds,
        "process_used": len(ctx.broker.channels) + system.task_count(),
        "max_fds": fds,
        "connections": len(ctx.broker.channels),
    }


def register(table: RouteTable) -> None:
    @table.route("list_nodes", "GET", "/nodes/", "A list of nodes in the cluster")
    async def list_nodes(req: ApiRequest) -> Any:
        info = node_info(req)
        info["memory_total"] = system.human_bytes(info["memory_total"])
        info["memory_used"] = system.human_bytes(info["memory_used"])
        return [{"node": req.ctx.node_name, **info}]

    @table.route("get_node", "GET", "/nodes/:node", "Lookup a node in the cluster")
    async def get_node(req: ApiRequest) -> Any:
        return node_info(req)
