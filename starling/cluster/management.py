"""The management facade's other nodes (`starling.mgmt.RemoteNodes`), over the
cluster's calls: every "in the cluster" view of the API asks each node with
the same named query the facade runs locally, and every ``/nodes/:node/...``
route reaches the node named.

A node listed as Stopped is not asked (the facade reports it unreachable at
once); a running node that does not answer within the timeout is reported the
same way.  A query that ran and refused there (`QueryError`) crosses back as
itself, so the answer is the one the node would give to its own API.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from starling.mgmt import LocalNode, QueryError

from .membership import Membership
from .rpc import Refused, RemoteError, Rpc

#: The call other nodes make to run a management query here.
QUERY_CALL = "mgmt"


class NodeStopped(Exception):
    """The node is listed as Stopped: not asked."""


class ClusterNodes:
    def __init__(self, membership: Membership, rpc: Rpc, local: LocalNode) -> None:
        self.membership = membership
        self.rpc = rpc
        self.local = local
        rpc.register(QUERY_CALL, self._serve)

    def names(self) -> Sequence[str]:
        """The other nodes, running or Stopped, by name."""
        return sorted(self.membership.others)

    async def call(self, node: str, query: str, params: Mapping[str, Any],
                   timeout: float) -> Any:
        if not self.membership.is_running(node):
            raise NodeStopped(f"node {node} is stopped")
        try:
            return await self.rpc.call(node, QUERY_CALL, {"query": query, "params": params},
                                       timeout)
        except RemoteError as exc:
            if isinstance(exc.data, dict):
                raise QueryError.from_json(exc.data) from None
            raise

    async def _serve(self, args: Any) -> Any:
        if not isinstance(args, dict) or not isinstance(args.get("params"), dict):
            raise Refused("bad management call", QueryError("bad_request").to_json())
        try:
            return await self.local.execute(str(args.get("query")), args["params"])
        except QueryError as exc:
            raise Refused(str(exc), exc.to_json()) from None
