"""What a session delivers through: a `Client` is one (the MQTT `Channel`, a
gateway's client), and so can be anything else that takes deliveries (a
remote node).
"""

from __future__ import annotations

from collections.abc import Set
from typing import Protocol

from .info import ClientInfo
from .message import Message


class Outlet(Protocol):
    """What a session delivers through, and what the broker asks of the other end.

    `send_publish` writes one message (`packet_id` 0 for QoS 0; `dup` on a resend;
    `via` the shared subscription it is for) and answers False if it was dropped
    (too large for the client: the flow counts as done).  While `writable` is
    False the session queues (bounded); it sends at most `receive_maximum`
    unacknowledged QoS 1/2 messages.  The acknowledgements come back through the
    `Client` (`puback`, `pubrec`, `pubcomp`)."""

    writable: bool
    #: Topics it may receive through wildcard subscriptions (`acl_deliver_check`),
    #: as decided so far: the session asks `may_receive` about any other.
    deliverable: Set[str]

    @property
    def receive_maximum(self) -> int: ...

    @property
    def info(self) -> ClientInfo: ...

    def send_publish(self, message: Message, qos: int, retain: bool, packet_id: int,
                     dup: bool, via: str | None = None) -> bool: ...

    def send_pubrel(self, packet_id: int, wait: bool = False) -> None: ...

    def may_receive(self, topic: str) -> bool | None:
        """May a message on `topic` go out through a wildcard subscription
        (`acl_deliver_check`)?  Asked when `topic` is not in `deliverable`.  None: not
        decided yet (the session queues it and drains again once decided).  An
        outlet that checks elsewhere answers True."""
        ...

    def close(self, reason: str) -> None:
        """End the connection (the will is published, unless it was a normal
        disconnect)."""
        ...

    def kick(self, reason: str = "kicked") -> None:
        """An administrative close (REST kickout, a new ban)."""
        ...

    def takeover(self) -> None:
        """A newer connection claimed the client id."""
        ...
