"""/sessions: online and offline sessions; cleaning a persistent one.

Beyond EMQ X v3, the lists take ``clientid`` and ``username`` filters;
`meta.count` then counts the matching rows.
"""

from __future__ import annotations

from typing import Any

from ..errors import ApiError, Code, not_found
from ..request import ApiRequest
from ..routing import RouteTable

FILTERS = {
    "clientid": ("string", False, "only this client id's session (Starling's own)"),
    "username": ("string", False, "only sessions with this user name (Starling's own)"),
}


def register(table: RouteTable) -> None:
    async def list_sessions(req: ApiRequest) -> Any:
        return await req.ctx.mgmt.sessions(
            req.node, req.page_spec(), client_id=req.str_arg("clientid"),
            username=req.str_arg("username"))

    async def lookup(req: ApiRequest) -> Any:
        page = await req.ctx.mgmt.sessions(req.node, req.everything(),
                                           client_id=req.params["clientid"])
        return page.rows

    async def clean(req: ApiRequest) -> Any:
        result = await req.ctx.mgmt.clean_session(req.node, req.params["clientid"])
        if result == "not_found":
            raise not_found("not_found", Code.UNKNOWN_ERROR)
        if result == "running_session":
            raise ApiError(Code.UNKNOWN_ERROR, "running_session", 409)
        return None

    def route(name: str, method: str, path: str, descr: str, handler: Any,
              paginated: bool = False) -> None:
        table.route(name, method, path, descr, paginated=paginated,
                    body=FILTERS if paginated else None, node_routed=True)(handler)

    route("list_sessions", "GET", "/sessions/", "A list of sessions in the cluster",
          list_sessions, True)
    route("list_node_sessions", "GET", "nodes/:node/sessions/", "A list of sessions on a node",
          list_sessions, True)
    route("lookup_session", "GET", "/sessions/:clientid", "Lookup a session in the cluster",
          lookup)
    route("lookup_node_session", "GET", "nodes/:node/sessions/:clientid",
          "Lookup a session on the node", lookup)
    route("clean_presisent_session", "DELETE", "/sessions/persistent/:clientid",
          "Clean a persistent session in the cluster", clean)
    route("clean_node_presisent_session", "DELETE", "nodes/:node/sessions/persistent/:clientid",
          "Clean a persistent session on the node", clean)
