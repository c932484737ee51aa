"""A small in-memory stand-in for the broker behind a gateway's `Hub`, for the
tests of a resource tree on its own (the node tests use the real broker).

It authenticates against a dict of passwords, denies what its deny sets
list, records what its clients publish and (un)subscribe, and delivers
what a test publishes to the clients whose subscriptions match.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from starling.gateways.coap.hub import AttachRefused, ClientDetails, Outlet
from starling.mqtt import matches


@dataclass
class MemoryAttachment:
    hub: MemoryHub
    details: ClientDetails
    outlet: Outlet
    filters: set[str] = field(default_factory=set)
    closed: str | None = None

    async def publish(self, topic: str, payload: bytes, qos: int = 0,
                      retain: bool = False) -> bool:
        if topic in self.hub.deny_publish:
            return False
        self.hub.published.append((self.details.client_id, topic, payload))
        self.hub.deliver(topic, payload)
        return True

    async def subscribe(self, topic_filter: str, qos: int) -> bool:
        if topic_filter in self.hub.deny_subscribe:
            return False
        self.filters.add(topic_filter)
        self.hub.events.append(("subscribe", self.details.client_id, topic_filter))
        return True

    def unsubscribe(self, topic_filter: str) -> None:
        self.filters.discard(topic_filter)
        self.hub.events.append(("unsubscribe", self.details.client_id, topic_filter))

    def set_peer(self, peer: tuple[str, int]) -> None:
        self.details = ClientDetails(self.details.client_id, self.details.username,
                                     self.details.password, peer, self.details.protocol,
                                     self.details.keepalive)

    def close(self, reason: str) -> None:
        self.closed = reason
        self.hub.events.append(("closed", self.details.client_id, reason))
        if self.hub.clients.get(self.details.client_id) is self:
            del self.hub.clients[self.details.client_id]


class MemoryHub:
    def __init__(self) -> None:
        self.passwords: dict[str, str] = {}
        self.deny_publish: set[str] = set()
        self.deny_subscribe: set[str] = set()
        self.published: list[tuple[str, str, bytes]] = []
        self.events: list[tuple[str, str, str]] = []
        self.clients: dict[str, MemoryAttachment] = {}

    async def attach(self, details: ClientDetails, outlet: Outlet) -> MemoryAttachment:
        if details.username in self.passwords and (
                details.password is None
                or details.password.decode() != self.passwords[details.username]):
            raise AttachRefused("not_authorized")
        old = self.clients.get(details.client_id)
        if old is not None:  # the broker's takeover
            old.outlet.closed("takeovered")
        attachment = MemoryAttachment(self, details, outlet)
        self.clients[details.client_id] = attachment
        self.events.append(("attached", details.client_id, details.protocol))
        return attachment

    def deliver(self, topic: str, payload: bytes) -> int:
        sent = 0
        for attachment in list(self.clients.values()):
            if any(matches(f, topic) for f in attachment.filters):
                attachment.outlet.deliver(topic, payload, 1, False)
                sent += 1
        return sent

    def kick(self, client_id: str) -> None:
        attachment = self.clients.pop(client_id)
        attachment.outlet.closed("kicked")
