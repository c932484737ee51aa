"""A whole API request run on another node: how a `/nodes/:node/...` route that has
no query of its own (recon, configs, the Lua hooks, ...) reaches a remote node.

The origin node checked the credentials; the node named runs the request
through its own route table (`LocalNode.forwarder`, set by the API layer) and
answers the status and the JSON body it would have sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .local import LocalNode
from .query import JSON, Params, QueryError, query


@dataclass(frozen=True, slots=True)
class ApiCall(Params):
    method: str
    #: The path under /api/v3, decoded, one item per segment.
    segments: list[str]
    query: dict[str, str]
    body: Any = None


@query("api.call", ApiCall)
async def api_call(node: LocalNode, p: ApiCall) -> JSON:
    """``{"status": HTTP status, "body": the JSON envelope}``."""
    if node.forwarder is None:
        raise QueryError("not_available", "this node serves no API")
    return await node.forwarder(p.method, list(p.segments), dict(p.query), p.body)
