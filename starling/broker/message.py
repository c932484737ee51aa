"""The broker's internal message, distinct from the wire PUBLISH.

A Message is created once per publish and shared by every subscriber.  It
caches its encoded forms: one (head, tail) pair per (QoS, retain flag,
protocol level) variant, so fan-out to N subscribers encodes at most a
handful of times and patches only the packet identifier in between.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any

from starling.mqtt import Properties, publish_parts

_ids = itertools.count(1)


def next_message_id() -> int:
    return next(_ids)


def reset_message_ids(start: int) -> None:
    """Continue numbering after the highest id the store holds (ids key stored bodies)."""
    global _ids
    _ids = itertools.count(max(start, 1))


@dataclass(slots=True, eq=False)
class Message:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    #: Client id of the publisher ("" for the broker itself and the HTTP API).
    sender: str = ""
    username: str | None = None
    peerhost: str | None = None
    properties: Properties = field(default_factory=dict)
    timestamp: float = field(default_factory=time.time)
    id: int = field(default_factory=next_message_id)
    #: Published by the broker on a $SYS topic: kept out of client metrics.
    sys: bool = False
    #: Absolute `time.monotonic()` deadline after which it is not delivered (MQTT 5.0).
    expires_at: float | None = None
    #: Free-form annotations for plugins (EMQ X "headers").
    headers: dict[str, Any] = field(default_factory=dict)
    _encoded: dict[tuple[int, bool, int], tuple[bytes, bytes]] = field(
        default_factory=dict, repr=False)

    def parts(self, qos: int, retain: bool, level: int) -> tuple[bytes, bytes]:
        """Encoded (head, tail) of this message as a PUBLISH with these flags."""
        key = (qos, retain, level)
        cached = self._encoded.get(key)
        if cached is None:
            cached = publish_parts(self.topic, self.payload, qos, retain, False, level,
                                   self.properties if level == 5 else None)
            self._encoded[key] = cached
        return cached

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and time.monotonic() >= self.expires_at
