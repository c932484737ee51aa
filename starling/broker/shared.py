"""Shared subscriptions: `$share/<group>/<filter>` and EMQ X's `$queue/<filter>`.

Each (group, filter) pair is one `SharedGroup`, routed like a single
subscriber in a router of its own; when a message matches, the group picks
one member by the configured strategy (EMQ X's names):

- ``random``: any member;
- ``round_robin``: members in turn;
- ``sticky``: the same member until it leaves or goes offline;
- ``hash``: by the publisher's client id, so one publisher's messages keep
  going to the same member (and stay in order).

Online members are preferred; a group whose members are all offline queues
the message in one of their sessions.  Retained messages are not sent on a
shared subscription [MQTT-4.8.2-?: "the Server MUST NOT send retained
messages"] (MQTT 5.0 §4.8.2).
"""

from __future__ import annotations

import random
import zlib
from typing import TYPE_CHECKING

from starling.mqtt import SubscriptionOptions

if TYPE_CHECKING:
    from .session import Session

STRATEGIES = ("random", "round_robin", "sticky", "hash")


class SharedGroup:
    __slots__ = ("_next", "_sticky", "full_filter", "members", "name", "topic_filter")

    def __init__(self, name: str, topic_filter: str) -> None:
        self.name = name
        self.topic_filter = topic_filter
        #: As members subscribed: `$share/<name>/<filter>` (or `$queue/<filter>`).
        self.full_filter = (f"$queue/{topic_filter}" if name == "$queue"
                            else f"$share/{name}/{topic_filter}")
        self.members: dict[Session, SubscriptionOptions] = {}
        self._next = 0
        self._sticky: Session | None = None

    def pick(self, strategy: str, sender: str) -> tuple[Session, SubscriptionOptions] | None:
        members = self.members
        if not members:
            return None
        online = [s for s in members if s.outlet is not None]
        pool = online or list(members)
        if strategy == "sticky":
            chosen = self._sticky
            if chosen is None or chosen not in members or (online and chosen.outlet is None):
                chosen = self._sticky = random.choice(pool)
        elif strategy == "round_robin":
            self._next = (self._next + 1) % len(pool)
            chosen = pool[self._next]
        elif strategy == "hash":
            chosen = pool[zlib.crc32(sender.encode()) % len(pool)]
        else:
            chosen = random.choice(pool)
        return chosen, members[chosen]
