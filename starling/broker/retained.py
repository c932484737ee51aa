"""Retained messages: one per topic, found by filter on subscribe.

A dict keeps them by topic; a trie of topic levels answers wildcard filters
without scanning every retained message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .message import Message


class _Node:
    __slots__ = ("children", "message")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.message: Message | None = None


class RetainedStore:
    def __init__(self) -> None:
        self._by_topic: dict[str, Message] = {}
        self._root = _Node()

    def __len__(self) -> int:
        return len(self._by_topic)

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
