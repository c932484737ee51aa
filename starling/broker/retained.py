"""Retained messages: one per topic, found by filter on subscribe.

A dict keeps them by topic; a trie of topic levels answers wildcard filters
without scanning every retained message.  A heap of deadlines lets the
broker's once-a-second housekeeping drop expired ones without a scan.

The store is the core's mechanism; the emqx_retainer plugin switches it on
and off and sets its limits (`RetainerSettings`, `Broker.set_retainer`).
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .message import Message


@dataclass(frozen=True, slots=True)
class RetainerSettings:
    """How retained messages are kept while the retainer is on (emqx_retainer's config)."""

    #: 0 = no limit.  When reached, retained messages on new topics are not stored;
    #: those on topics already held still replace (or clear) them.
    max_messages: int = 0
    #: Bytes; 0 = no limit.  A larger retained message is routed but not stored.
    max_payload_size: int = 0
    #: Seconds a retained message without its own Message Expiry Interval is kept,
    #: counted from when it was published; 0 = until replaced or cleared.
    expiry_interval: float = 0.0
    #: Also keep them in the node's store, so they survive a restart.
    persist: bool = True


class _Node:
    __slots__ = ("children", "message")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.message: Message | None = None


class RetainedStore:
    def __init__(self) -> None:
        self._by_topic: dict[str, Message] = {}
        self._root = _Node()
        #: Seconds a message without its own expiry is kept (0 = forever); set it
        #: with `set_expiry_interval`.
        self.expiry_interval = 0.0
        #: (monotonic deadline, seq, message): stale entries (replaced or deleted
        #: messages) are skipped when popped.
        self._deadlines: list[tuple[float, int, Message]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._by_topic)

    def messages(self) -> Iterator[Message]:
        return iter(list(self._by_topic.values()))

    # -- expiry --------------------------------------------------------------------
    def deadline(self, message: Message) -> float | None:
        """When `message` expires (`time.monotonic()` clock), or None: its own
        Message Expiry Interval, else the store's `expiry_interval` from its
        publication ($SYS messages never expire)."""
        if message.expires_at is not None:
            return message.expires_at
        if self.expiry_interval and not message.sys:
            return time.monotonic() + (message.timestamp + self.expiry_interval - time.time())
        return None

    def is_expired(self, message: Message, now: float) -> bool:
        deadline = self.deadline(message)
        return deadline is not None and now >= deadline

    def set_expiry_interval(self, seconds: float) -> None:
        """A new expiry interval applies to every message held (counted from when
        each was published)."""
        if seconds == self.expiry_interval:
            return
        self.expiry_interval = seconds
        self._deadlines = []
        for message in self._by_topic.values():
            self._track(message)

    def _track(self, message: Message) -> None:
        deadline = self.deadline(message)
        if deadline is None:
            return
        heap = self._deadlines
        heapq.heappush(heap, (deadline, next(self._seq), message))
        if len(heap) > 2 * len(self._by_topic) + 1024:
            # Mostly entries of replaced messages (a topic retained over and over):
            # keep the live ones only, so the heap stays proportional to the store.
            by_topic = self._by_topic
            heap[:] = [e for e in heap if by_topic.get(e[2].topic) is e[2]]
            heapq.heapify(heap)

    def expire(self, now: float) -> list[str]:
        """Delete the messages whose deadline passed; return their topics."""
        heap = self._deadlines
        gone: list[str] = []
        while heap and heap[0][0] <= now:
            message = heapq.heappop(heap)[2]
            if self._by_topic.get(message.topic) is message:
                self.delete(message.topic)
                gone.append(message.topic)
        return gone

    def get(self, topic: str) -> Message | None:
        return self._by_topic.get(topic)

    def topics(self) -> list[str]:
        return list(self._by_topic)

    def put(self, message: Message) -> None:
        """Store, replace, or (empty payload) delete [MQTT-3.3.1-10, -11]."""
        if not message.payload:
            self.delete(message.topic)
            return
        node = self._root
        for level in message.topic.split("/"):
            node = node.children.setdefault(level, _Node())
        node.message = message
        self._by_topic[message.topic] = message
        if message.expires_at is not None or self.expiry_interval:
            self._track(message)

    def delete(self, topic: str) -> bool:
        if self._by_topic.pop(topic, None) is None:
            return False
        levels = topic.split("/")
        path = [self._root]
        for level in levels:
            path.append(path[-1].children[level])
        path[-1].message = None
        for depth in range(len(levels), 0, -1):
            node = path[depth]
            if node.message is not None or node.children:
                break
            del path[depth - 1].children[levels[depth - 1]]
        return True

    def match(self, topic_filter: str) -> list[Message]:
        """Retained messages whose topic the filter matches."""
        if "+" not in topic_filter and "#" not in topic_filter:
            found = self._by_topic.get(topic_filter)
            return [found] if found is not None else []
        out: list[Message] = []
        self._walk(self._root, topic_filter.split("/"), 0, out)
        return out

    def _walk(self, node: _Node, levels: list[str], i: int, out: list[Message]) -> None:
        if i == len(levels):
            if node.message is not None:
                out.append(node.message)
            return
        level = levels[i]
        if level == "#":
            if node.message is not None and i > 0:
                out.append(node.message)  # "a/#" matches "a" itself
            self._all(node, out, skip_dollar=(i == 0))
            return
        if level == "+":
            for name, child in node.children.items():
                if i == 0 and name.startswith("$"):
                    continue  # [MQTT-4.7.2-1]
                self._walk(child, levels, i + 1, out)
            return
        exact = node.children.get(level)
        if exact is not None:
            self._walk(exact, levels, i + 1, out)

    def _all(self, node: _Node, out: list[Message], skip_dollar: bool) -> None:
        for name, child in node.children.items():
            if skip_dollar and name.startswith("$"):
                continue
            if child.message is not None:
                out.append(child.message)
            self._all(child, out, False)
