"""The node dimension: which nodes exist, and asking one of them a query.

Today a node knows only itself.  The cluster gives the facade a `RemoteNodes`:
the other nodes' names and a way to run a named query on one of them.  Nothing
else in the facade changes when it does: node-directed calls go to the node
named, cluster-wide views ask every node at once, and a node that does not
answer in time is reported as such (`NodeAnswer.error`) instead of holding the
request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .query import JSON


class RemoteNodes(Protocol):
    """What the cluster implements for the management facade."""

    def names(self) -> Sequence[str]:
        """The cluster's other nodes (never this one), in a stable order, including
        those that are down: every cluster-wide view lists them."""
        ...

    async def call(self, node: str, query: str, params: Mapping[str, Any],
                   timeout: float) -> JSON:
        """Run the named query with these JSON parameters on `node`, which answers
        with ``await local_node.execute(query, params)``, and return that JSON
        result.  When the query refused there, raise the `QueryError` it raised
        (`QueryError.from_json(error.to_json())` crosses the wire).  Any other
        exception, or no answer within `timeout` seconds, means the node did not
        answer; the facade also gives up after `timeout` itself."""
        ...


class UnknownNode(Exception):
    """No node of that name in the cluster (the API's 404)."""

    def __init__(self, node: str) -> None:
        super().__init__(f"node {node} not found")
        self.node = node


class NodeUnavailable(Exception):
    """A known node that did not answer (down, unreachable, too slow)."""

    def __init__(self, node: str, reason: str) -> None:
        super().__init__(f"node {node} did not answer: {reason}")
        self.node = node
        self.reason = reason


@dataclass(frozen=True, slots=True)
class NodeAnswer:
    """One node's part of a cluster-wide view: its result, or why there is none."""

    node: str
    value: JSON = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None
