"""Which sessions want a topic: an exact-match dict plus a wildcard trie.

Filters without wildcards live in a dict (one lookup per publish).  Filters
with ``+``/``#`` live in a trie keyed by level, so matching a topic costs
O(levels x branching), never O(subscriptions).  What a topic matched is kept
(up to `MATCH_CACHE` topics) while any wildcard filter exists: devices publish
to the same topics over and over, and a dict lookup is a small part of a walk of
the trie.  Every change of a subscription empties that cache, so nothing in it
can go stale.

A session subscribed through several overlapping filters gets one copy, with
the highest granted QoS among them.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

from starling.mqtt import SubscriptionOptions

#: What the router routes to: sessions, or shared-subscription groups.
K = TypeVar("K", bound=Hashable)
Subscribers = dict[K, SubscriptionOptions]
#: Topics whose match results are kept; past it the cache starts over.
MATCH_CACHE = 4096


class _Node(Generic[K]):
    __slots__ = ("children", "subs")

    def __init__(self) -> None:
        self.children: dict[str, _Node[K]] = {}
        self.subs: Subscribers[K] = {}


def _merge(out: Subscribers[K], subs: Subscribers[K]) -> None:
    for session, opts in subs.items():
        have = out.get(session)
        if have is None or opts.qos > have.qos:
            out[session] = opts


def _collect(node: _Node[K], levels: list[str], i: int, out: Subscribers[K]) -> None:
    children = node.children
    if i == len(levels):
        if node.subs:
            _merge(out, node.subs)
        multi = children.get("#")  # "a/#" also matches "a" [MQTT-4.7.1-2]
        if multi is not None and multi.subs:
            _merge(out, multi.subs)
        return
    multi = children.get("#")
    if multi is not None and multi.subs:
        _merge(out, multi.subs)
    single = children.get("+")
    if single is not None:
        _collect(single, levels, i + 1, out)
    child = children.get(levels[i])
    if child is not None:
        _collect(child, levels, i + 1, out)


class Router(Generic[K]):
    def __init__(self) -> None:
        self._exact: dict[str, Subscribers[K]] = {}
        self._root: _Node[K] = _Node()
        self._wild_filters: dict[str, Subscribers[K]] = {}
        self._empty: Subscribers[K] = {}
        #: topic -> what `match` returned for it (only while wildcard filters exist).
        self._matched: dict[str, Subscribers[K]] = {}
        #: (filter, session) pairs: the `subscriptions/count` stat.
        self.subscription_count = 0
        #: Filters starting with "$": only they can match a "$SYS/..." topic
        #: [MQTT-4.7.2-1], so with none a $SYS message reaches nobody.
        self.dollar_filters = 0

    # -- changes -----------------------------------------------------------
    def subscribe(self, topic_filter: str, session: K, opts: SubscriptionOptions) -> bool:
        """Add or replace; return True if the pair is new."""
        self._matched.clear()
        if "+" in topic_filter or "#" in topic_filter:
            subs = self._wild_filters.get(topic_filter)
            if subs is None:
                node = self._root
                for level in topic_filter.split("/"):
                    node = node.children.setdefault(level, _Node())
                subs = self._wild_filters[topic_filter] = node.subs
                if topic_filter.startswith("$"):
                    self.dollar_filters += 1
        else:
            subs = self._exact.get(topic_filter)
            if subs is None:
                subs = self._exact[topic_filter] = {}
                if topic_filter.startswith("$"):
                    self.dollar_filters += 1
        new = session not in subs
        subs[session] = opts
        if new:
            self.subscription_count += 1
        return new

    def unsubscribe(self, topic_filter: str, session: K) -> bool:
        self._matched.clear()
        if "+" in topic_filter or "#" in topic_filter:
            subs = self._wild_filters.get(topic_filter)
            if subs is None or session not in subs:
                return False
            del subs[session]
            if not subs:
                del self._wild_filters[topic_filter]
                if topic_filter.startswith("$"):
                    self.dollar_filters -= 1
                self._prune(topic_filter.split("/"))
        else:
            subs = self._exact.get(topic_filter)
            if subs is None or session not in subs:
                return False
            del subs[session]
            if not subs:
                del self._exact[topic_filter]
                if topic_filter.startswith("$"):
                    self.dollar_filters -= 1
        self.subscription_count -= 1
        return True

    def _prune(self, levels: list[str]) -> None:
        path: list[_Node[K]] = [self._root]
        for level in levels:
            path.append(path[-1].children[level])
        for depth in range(len(levels), 0, -1):
            node = path[depth]
            if node.subs or node.children:
                break
            del path[depth - 1].children[levels[depth - 1]]

    # -- lookups -----------------------------------------------------------
    def match(self, topic: str) -> Subscribers[K]:
        """Sessions subscribed to `topic` with their (best) options.

        The result may be an internal dict: iterate it, never change it.
        """
        if not self._wild_filters:
            return self._exact.get(topic, self._empty)
        out = self._matched.get(topic)
        if out is not None:
            return out
        if len(self._matched) >= MATCH_CACHE:
            self._matched.clear()
        out = self._matched[topic] = dict(self._exact.get(topic, self._empty))
        levels = topic.split("/")
        root = self._root
        if topic.startswith("$"):
            # Wildcards in the first level never match "$" topics [MQTT-4.7.2-1].
            child = root.children.get(levels[0])
            if child is not None:
                _collect(child, levels, 1, out)
        else:
            _collect(root, levels, 0, out)
        return out

    def filters(self) -> Iterator[str]:
        """Every topic filter with at least one subscriber (the route table)."""
        yield from self._exact
        yield from self._wild_filters

    def subscribers(self, topic_filter: str) -> Subscribers[K]:
        table = self._wild_filters if ("+" in topic_filter or "#" in topic_filter) else self._exact
        return table.get(topic_filter, self._empty)

    @property
    def route_count(self) -> int:
        return len(self._exact) + len(self._wild_filters)
