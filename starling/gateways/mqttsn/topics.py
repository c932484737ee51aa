"""Topic ids (MQTT-SN §3, §6.7, §6.9): the gateway-wide predefined ones, and each
client's own, registered by REGISTER in either direction.

Lookups by id try the predefined table first, then the client's own (as EMQ X
does, so a client that sends a normal-type id that is in fact predefined is
understood).  A client's ids are allocated from just above the largest
predefined id, at most `limit` of them: a client cannot grow the gateway's
memory without bound by registering names.
"""

from __future__ import annotations

from collections.abc import Mapping

from .messages import TopicIdType, short_id

#: Ids 0x0000 and 0xFFFF are reserved (spec §5.3.11).
FIRST_ID, LAST_ID = 0x0001, 0xFFFE


class PredefinedTopics:
    """``mqtt.sn.predefined.topic.<id> = <name>``: shared by every client."""

    def __init__(self, topics: Mapping[int, str]) -> None:
        for topic_id in topics:
            if not FIRST_ID <= topic_id <= LAST_ID:
                raise ValueError(f"predefined topic id {topic_id} is outside 1..65534")
        self.names: dict[int, str] = dict(topics)
        self.ids: dict[str, int] = {name: topic_id for topic_id, name in self.names.items()}
        self.first_free = max(self.names, default=0) + 1


class TopicRegistry:
    """One client's topic ids."""

    __slots__ = ("_ids", "_limit", "_names", "_next", "predefined")

    def __init__(self, predefined: PredefinedTopics, limit: int) -> None:
        self.predefined = predefined
        self._limit = limit
        self._names: dict[int, str] = {}
        self._ids: dict[str, int] = {}
        self._next = predefined.first_free

    def __len__(self) -> int:
        return len(self._names)

    def name_of(self, topic_id: int) -> str | None:
        """The topic a normal or predefined id stands for, None if unknown."""
        name = self.predefined.names.get(topic_id)
        return name if name is not None else self._names.get(topic_id)

    def register(self, name: str) -> int | None:
        """The id of `name` (the predefined one, or this client's, allocated now);
        None when the client's table is full."""
        known = self.predefined.ids.get(name)
        if known is None:
            known = self._ids.get(name)
        if known is not None:
            return known
        if len(self._names) >= self._limit or self._next > LAST_ID:
            return None
        topic_id = self._next
        self._next += 1
        self._names[topic_id] = name
        self._ids[name] = topic_id
        return topic_id

    def forget(self, topic_id: int) -> None:
        """The client refused an id the gateway registered (REGACK with an error)."""
        name = self._names.pop(topic_id, None)
        if name is not None:
            del self._ids[name]

    def clear(self) -> None:
        self._names.clear()
        self._ids.clear()
        self._next = self.predefined.first_free

    def address(self, topic: str) -> tuple[TopicIdType, int] | None:
        """How to name `topic` in a PUBLISH to the client without registering it:
        predefined id, the client's id, or a two-character short name; None if
        it has to be registered first."""
        known = self.predefined.ids.get(topic)
        if known is not None:
            return TopicIdType.PREDEFINED, known
        known = self._ids.get(topic)
        if known is not None:
            return TopicIdType.NORMAL, known
        packed = short_id(topic)
        if packed is not None:
            return TopicIdType.SHORT, packed
        return None
