"""/sessions: online and offline sessions; cleaning a persistent one."""

from __future__ import annotations

from typing import Any

from .. import views
from ..errors import ApiError, Code, not_found
from ..request import ApiRequest, paginate
from ..routing import RouteTable


def register(table: RouteTable) -> None:
    async def list_sessions(req: ApiRequest) -> Any:
        node = req.ctx.node_name
        return paginate(req, [views.session(s, node) for s in req.ctx.broker.session_list()])

    async def lookup(req: ApiRequest) -> Any:
        found = req.ctx.broker.session_info(req.params["clientid"])
        return [views.session(found, req.ctx.node_name)] if found is not None else []

    async def clean(req: ApiRequest) -> Any:
        result = req.ctx.broker.clean_session(req.params["clientid"])
        if result == "not_found":
            raise not_found("not_found", Code.UNKNOWN_ERROR)
        if result == "running_session":
            raise ApiError(Code.UNKNOWN_ERROR, "running_session", 409)
        return None

    table.route("list_sessions", "GET", "/sessions/", "A list of sessions in the cluster",
                paginated=True)(list_sessions)
    table.route("list_node_sessions", "GET", "nodes/:node/sessions/",
                "A list of sessions on a node", paginated=True)(list_sessions)
    table.route("lookup_session", "GET", "/sessions/:clientid",
                "Lookup a session in the cluster")(lookup)
    table.route("lookup_node_session", "GET", "nodes/:node/sessions/:clientid",
                "Lookup a session on the node")(lookup)
    table.route("clean_presisent_session", "DELETE", "/sessions/persistent/:clientid",
                "Clean a persistent session in the cluster")(clean)
    table.route("clean_node_presisent_session", "DELETE",
                "nodes/:node/sessions/persistent/:clientid",
                "Clean a persistent session on the node")(clean)
