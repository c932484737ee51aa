"""What the broker asks of a cluster: the one narrow interface between the core
and `starling.cluster` (`Broker.cluster`; None for a lone node, where none of
this costs anything).

The broker tells the link when a route gains its first or loses its last
local subscriber (`route_changed`), hands it each message it dispatches
(`forward`, which sends it to the other nodes with a matching route and says
which shared groups another node serves), asks it to claim a client id before
a session opens (`claim`, which may bring the session back from the node
that held it), and tells it about retained messages and ended sessions.
Messages from other nodes come back through `Broker.dispatch_forwarded` (a
batch at a time), and sessions leave through `Broker.hand_over`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from starling.store import SessionRecord

    from .message import Message

#: (group name, real filter): one shared group, as `$share/<group>/<filter>`.
GroupKey = tuple[str, str]


class ClusterLink(Protocol):
    def route_changed(self, group: str, topic_filter: str, count: int) -> None:
        """A plain filter (`group` "") now has local subscribers (`count` 1) or none
        (0); a shared group has `count` local members (0: none)."""
        ...

    def forward(self, message: Message) -> tuple[int, frozenset[GroupKey]]:
        """Send `message` to the other nodes that want it; return how many nodes it
        went to and the shared groups another node serves (this node must not
        deliver to them)."""
        ...

    async def claim(self, client_id: str, clean_start: bool) -> SessionRecord | None:
        """Own `client_id` cluster-wide before its session opens here; the session
        another node handed over, if any."""
        ...

    def released(self, client_id: str) -> None:
        """`client_id`'s session ended on this node."""
        ...

    def retained_changed(self, topic: str, message: Message | None) -> None:
        """A retained message was stored on this node (None: cleared)."""
        ...
