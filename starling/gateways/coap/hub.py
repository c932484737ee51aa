"""How a CoAP or LwM2M client meets the broker: the few calls the gateways need.

A gateway attaches each of its clients as an ordinary broker client
(`Hub.attach`), then publishes, subscribes and unsubscribes through the
`Attachment` it gets back; the broker delivers to, and closes, the client
through the `Outlet` the gateway gave it.  The node's implementation sits on
the broker's client seam (docs/architecture.md); tests of the resource tree
use a small in-memory one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class AttachRefused(Exception):
    """The broker refused the client: `reason` is "not_authorized", "banned" or
    "bad_client_id" (answered 4.01 / 4.03 / 4.00)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ClientDetails:
    client_id: str
    username: str | None
    password: bytes | None
    peer: tuple[str, int]
    protocol: str  #: "coap" or "lwm2m", as the connection list shows it
    keepalive: int
    #: Came over DTLS: the connection list shows the DTLS listener.
    secure: bool = False


class Outlet(Protocol):
    """What the broker calls on a gateway client."""

    def deliver(self, topic: str, payload: bytes, qos: int, retain: bool) -> None: ...

    def closed(self, reason: str) -> None:
        """The broker ended the client (kicked, taken over, banned)."""


class Attachment(Protocol):
    """What a gateway client calls on the broker."""

    async def publish(self, topic: str, payload: bytes, qos: int = 0,
                      retain: bool = False) -> bool:
        """False when it was refused (the ACL, an invalid topic): nothing was published."""

    async def subscribe(self, topic_filter: str, qos: int) -> bool:
        """False when it was refused (the ACL, an invalid filter)."""

    def unsubscribe(self, topic_filter: str) -> None: ...

    def set_peer(self, peer: tuple[str, int]) -> None:
        """The client's address changed (a new source port)."""

    def close(self, reason: str) -> None:
        """The client went away (deregistered, keepalive, plugin unload)."""


class Hub(Protocol):
    async def attach(self, details: ClientDetails, outlet: Outlet) -> Attachment:
        """Authenticate and open the client's session; `AttachRefused` if refused."""
