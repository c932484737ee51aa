"""The broker's internal message, distinct from the wire PUBLISH.

A Message is created once per publish and shared by every subscriber.  It
caches its encoded forms: one (head, tail) pair per (QoS, retain flag,
protocol level) variant, so fan-out to N subscribers encodes at most a
handful of times and patches only the packet identifier in between.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

from starling.mqtt import Properties, publish_parts

_ids = itertools.count(1)


def next_message_id() -> int:
    return next(_ids)


def reset_message_ids(start: int) -> None:
    """Continue numbering after the highest id the store holds (ids key stored bodies)."""
    global _ids
    _ids = itertools.count(max(start, 1))


class Message:
    """One message as the broker routes it (created once per publish).

    A plain class rather than a dataclass: one is made per message received, and
    mypyc (which compiles this module) runs a dataclass's generated ``__init__`` as
    interpreted code.  Compared by identity, as before (`eq=False`).
    """

    __slots__ = ("_encoded", "expires_at", "headers", "id", "payload", "peerhost",
                 "properties", "qos", "retain", "sender", "sys", "timestamp", "topic",
                 "username")

    def __init__(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False,
                 sender: str = "", username: str | None = None, peerhost: str | None = None,
                 properties: Properties | None = None, timestamp: float | None = None,
                 id: int | None = None, sys: bool = False, expires_at: float | None = None,
                 headers: dict[str, Any] | None = None) -> None:
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        #: Client id of the publisher ("" for the broker itself and the HTTP API).
        self.sender = sender
        self.username = username
        self.peerhost = peerhost
        self.properties: Properties = {} if properties is None else properties
        self.timestamp = time.time() if timestamp is None else timestamp
        self.id = next(_ids) if id is None else id
        #: Published by the broker on a $SYS topic: kept out of client metrics.
        self.sys = sys
        #: Absolute `time.monotonic()` deadline after which it is not delivered (MQTT 5.0).
        self.expires_at = expires_at
        #: Free-form annotations for plugins (EMQ X "headers").
        self.headers: dict[str, Any] = {} if headers is None else headers
        #: Encoded PUBLISH (head, tail) by (QoS, retain, level); made by the first `parts`.
        self._encoded: dict[tuple[int, bool, int], tuple[bytes, bytes]] | None = None

    def __repr__(self) -> str:
        return (f"Message(topic={self.topic!r}, payload={self.payload!r}, qos={self.qos!r}, "
                f"retain={self.retain!r}, sender={self.sender!r}, id={self.id!r})")

    def replace(self, topic: str | None = None, payload: bytes | None = None,
                qos: int | None = None, retain: bool | None = None) -> Message:
        """A new message with these fields changed and everything else kept (its
        id and timestamp too); the cached encodings are not carried over."""
        return Message(self.topic if topic is None else topic,
                       self.payload if payload is None else payload,
                       self.qos if qos is None else qos,
                       self.retain if retain is None else retain,
                       self.sender, self.username, self.peerhost, self.properties,
                       self.timestamp, self.id, self.sys, self.expires_at, self.headers)

    def parts(self, qos: int, retain: bool, level: int) -> tuple[bytes, bytes]:
        """Encoded (head, tail) of this message as a PUBLISH with these flags."""
        key = (qos, retain, level)
        encoded = self._encoded
        if encoded is None:
            encoded = self._encoded = {}
        else:
            cached = encoded.get(key)
            if cached is not None:
                return cached
        cached = encoded[key] = publish_parts(self.topic, self.payload, qos, retain, False,
                                              level, self.properties if level == 5 else None)
        return cached

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and time.monotonic() >= self.expires_at
