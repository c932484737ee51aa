"""/nodes/:node/recon: emqx_recon's runtime views (docs/feature-plugins.md, "Recon").

Served only while emqx_recon is loaded; otherwise every route answers 404
``{"code": 404, "message": "Not Found: plugin emqx_recon is not loaded"}``.
A bad ``by`` or ``limit`` is a 400 with code 108.
"""

from __future__ import annotations

from typing import Any

from starling.api import ApiRequest, RouteTable, bad_type, loaded_instance
from starling.mgmt import system

from .plugin import TALKER_KEYS, ReconPlugin, parse_limit

PLUGIN = "emqx_recon"


def _recon(req: ApiRequest) -> ReconPlugin:
    return loaded_instance(req, PLUGIN, ReconPlugin)


def _limit(req: ApiRequest) -> int | None:
    value = req.arg("limit")
    if value is None or value == "":
        return None
    try:
        return parse_limit(str(value))
    except ValueError as exc:
        raise bad_type(f"'limit': {exc}") from None


def register(table: RouteTable) -> None:
    limit = {"limit": ("integer", False, "rows to show (1-10000; default recon.top_limit)")}

    @table.route("recon", "GET", "/nodes/:node/recon",
                 "Runtime summary: event-loop lag, tasks, memory, connections", plugin=PLUGIN)
    async def summary(req: ApiRequest) -> Any:
        data = _recon(req).summary()
        data["memory"]["rss"] = system.process_rss()
        return data

    @table.route("recon_tasks", "GET", "/nodes/:node/recon/tasks",
                 "asyncio tasks grouped by coroutine", plugin=PLUGIN, body=limit)
    async def tasks(req: ApiRequest) -> Any:
        return _recon(req).tasks(_limit(req))

    @table.route("recon_memory", "GET", "/nodes/:node/recon/memory",
                 "Process memory and per-connection memory estimates", plugin=PLUGIN,
                 body={**limit, "clientid": ("string", False, "estimate one client only")})
    async def memory(req: ApiRequest) -> Any:
        data = await _recon(req).memory(_limit(req), req.str_arg("clientid"))
        data["rss"] = system.process_rss()
        return data

    @table.route("recon_top", "GET", "/nodes/:node/recon/top",
                 "Top talkers: connections ranked by messages or bytes", plugin=PLUGIN,
                 body={**limit, "by": ("string", False, f"one of {', '.join(TALKER_KEYS)} "
                                                         "(default recv_msg)")})
    async def top(req: ApiRequest) -> Any:
        by = req.str_arg("by", "recv_msg") or "recv_msg"
        try:
            return _recon(req).top(by, _limit(req))
        except ValueError as exc:
            raise bad_type(str(exc)) from None
