"""Routes across the cluster: which node wants which topics.

A node announces its own routes (a plain filter that gained its first local
subscriber or lost its last; a shared group's member count) as numbered
batches of changes on its routes subject, and answers the whole table on
request.  Every other node keeps a `RemoteRoutes` table of the others'
routes, in the same `Router` the broker uses for its own subscribers, and
forwards a message only to the nodes it matches there: no broadcast.

A change is absolute ("filter f has n members on node N", 0 = gone), so
applying one twice is harmless.  A batch whose number is not the next
expected one means some were missed: the table of that node is asked for
again (`needs_resync`).  Each heartbeat carries the node's latest batch
number too, so a lost last batch is noticed within a heartbeat or two.
"""

from __future__ import annotations

import asyncio
import json
import random
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from starling.broker import Router
from starling.mqtt import SubscriptionOptions

from .wire import GroupKey

#: ("", filter) for a plain route, (group, filter) for a shared group.
RouteKey = tuple[str, str]
_OPTS = SubscriptionOptions(2)
#: What a topic matches on the other nodes: the nodes with a plain route, the
#: shared groups with members elsewhere.
Matches = tuple[tuple[str, ...], tuple[GroupKey, ...]]
NO_MATCH: Matches = ((), ())
#: Topics whose matches are remembered at most (then the memory starts over).
CACHE_SIZE = 4096


class LocalRoutes:
    """This node's routes, and the batches of changes announcing them."""

    def __init__(self, publish: Callable[[bytes], None], node: str, incarnation: str) -> None:
        self._publish = publish
        self.node = node
        self.incarnation = incarnation
        self.table: dict[RouteKey, int] = {}
        self.seq = 0
        self._pending: dict[RouteKey, int] = {}
        self._scheduled = False

    def set(self, key: RouteKey, count: int) -> None:
        """`key` now has `count` local subscribers (0: none); announced at the end of
        this loop iteration, with the other changes made meanwhile."""
        if count:
            self.table[key] = count
        else:
            self.table.pop(key, None)
        self._pending[key] = count
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if not self._pending:
            return
        changes = [[group, topic_filter, count]
                   for (group, topic_filter), count in self._pending.items()]
        self._pending = {}
        self.seq += 1
        self._publish(json.dumps({"node": self.node, "inc": self.incarnation,
                                  "seq": self.seq, "set": changes},
                                 separators=(",", ":")).encode())

    def snapshot(self) -> dict[str, Any]:
        """The whole table and the number of the last batch it includes."""
        self.flush()
        return {"inc": self.incarnation, "seq": self.seq,
                "routes": [[g, f, c] for (g, f), c in self.table.items()]}


@dataclass(slots=True)
class _NodeTable:
    incarnation: str
    seq: int
    routes: dict[RouteKey, int] = field(default_factory=dict)


def _changes(items: Iterable[Any]) -> list[tuple[RouteKey, int]]:
    out = []
    for group, topic_filter, count in items:
        out.append(((str(group), str(topic_filter)), int(count)))
    return out


class RemoteRoutes:
    """The other nodes' routes, for matching published topics."""

    def __init__(self) -> None:
        self.plain: Router[str] = Router()
        self.shared: Router[GroupKey] = Router()
        #: Shared group -> node -> member count, for groups with remote members.
        self.groups: dict[GroupKey, dict[str, int]] = {}
        self._nodes: dict[str, _NodeTable] = {}
        #: Sticky choices and round-robin positions of shared groups.
        self._sticky: dict[GroupKey, str] = {}
        self._turn: dict[GroupKey, int] = {}
        #: `match` answers by topic, forgotten at every route change: a publish whose
        #: topic was seen before costs one dict lookup (most traffic is local-only).
        self.cache: dict[str, Matches] = {}

    def match(self, topic: str) -> Matches:
        """The other nodes with a plain route matching `topic`, and the shared groups
        with members elsewhere that match it."""
        found = self.cache.get(topic)
        if found is None:
            nodes = tuple(self.plain.match(topic)) if self.plain.route_count else ()
            groups = tuple(self.shared.match(topic)) if self.groups else ()
            found = (nodes, groups) if nodes or groups else NO_MATCH
            cache = self.cache
            if len(cache) >= CACHE_SIZE:
                cache.clear()
            cache[topic] = found
        return found

    # -- changes -----------------------------------------------------------------------
    def known(self, node: str) -> tuple[str, int] | None:
        table = self._nodes.get(node)
        return (table.incarnation, table.seq) if table is not None else None

    def replace(self, node: str, snapshot: dict[str, Any]) -> None:
        """`node`'s whole table, as its `LocalRoutes.snapshot` gave it."""
        self.drop(node)
        table = self._nodes[node] = _NodeTable(str(snapshot["inc"]), int(snapshot["seq"]))
        for key, count in _changes(snapshot["routes"]):
            self._set(node, table, key, count)

    def apply(self, node: str, batch: dict[str, Any]) -> bool:
        """A batch of `node`'s changes; False when batches were missed (or the node
        is not known yet): its table must be asked for again."""
        table = self._nodes.get(node)
        seq = int(batch["seq"])
        if table is None or table.incarnation != batch["inc"]:
            return False
        if seq <= table.seq:
            return True  # already in the snapshot
        if seq != table.seq + 1:
            return False
        table.seq = seq
        for key, count in _changes(batch["set"]):
            self._set(node, table, key, count)
        return True

    def drop(self, node: str) -> None:
        """Forget every route of `node` (it stopped)."""
        table = self._nodes.pop(node, None)
        if table is None:
            return
        for key in list(table.routes):
            self._set(node, table, key, 0)

    def _set(self, node: str, table: _NodeTable, key: RouteKey, count: int) -> None:
        if self.cache:
            self.cache.clear()
        group, topic_filter = key
        had = key in table.routes
        if count:
            table.routes[key] = count
        else:
            table.routes.pop(key, None)
        if not group:
            if count and not had:
                self.plain.subscribe(topic_filter, node, _OPTS)
            elif not count and had:
                self.plain.unsubscribe(topic_filter, node)
            return
        members = self.groups.get(key)
        if count:
            if members is None:
                members = self.groups[key] = {}
                self.shared.subscribe(topic_filter, key, _OPTS)
            members[node] = count
        elif members is not None and members.pop(node, None) is not None and not members:
            del self.groups[key]
            self.shared.unsubscribe(topic_filter, key)
            self._sticky.pop(key, None)
            self._turn.pop(key, None)

    # -- lookups ---------------------------------------------------------------------
    def nodes(self) -> list[str]:
        return list(self._nodes)

    def routes_of(self, node: str) -> dict[RouteKey, int]:
        table = self._nodes.get(node)
        return dict(table.routes) if table is not None else {}

    def pick(self, key: GroupKey, strategy: str, sender: str, here: str,
             local_members: int) -> str | None:
        """The node that serves shared group `key` for one message: by `strategy`
        over every node's members (this node, `here`, has `local_members`)."""
        members = self.groups.get(key)
        if not members:
            return here if local_members else None
        weighted = sorted(members.items())
        if local_members:
            weighted.append((here, local_members))
        if strategy == "sticky":
            chosen = self._sticky.get(key)
            if chosen is None or all(node != chosen for node, _ in weighted):
                chosen = self._sticky[key] = _weighted(weighted, random.randrange(
                    sum(c for _, c in weighted)))
            return chosen
        total = sum(count for _, count in weighted)
        if strategy == "round_robin":
            turn = self._turn[key] = (self._turn.get(key, -1) + 1) % total
            return _weighted(weighted, turn)
        if strategy == "hash":
            return _weighted(weighted, zlib.crc32(sender.encode()) % total)
        return _weighted(weighted, random.randrange(total))


def _weighted(weighted: list[tuple[str, int]], position: int) -> str:
    """The node at `position` when each node takes as many places as it has members."""
    for node, count in weighted:
        if position < count:
            return node
        position -= count
    return weighted[-1][0]
