"""What every gateway's client of the broker shares.

`GatewayClient` is the `starling.broker.Client` a gateway subclasses for its
devices: the peer address and listener name the API shows, bytes and packets
in `io_stats()` and the broker's metrics, the count of a delivery it wrote.
`GatewayLink` is the start of a protocol conversation's way to the broker:
the calls every gateway makes the same way (subscriptions, QoS 1
acknowledgements, flow control, counts); each protocol adds its own.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from starling.broker import Broker, Client


class GatewayClient(Client):
    __slots__ = ("_listener", "_peer", "recv_oct", "send_oct")

    def __init__(self, broker: Broker, zone: str, peer: tuple[str, int], listener: str) -> None:
        super().__init__(broker, zone)
        self._peer = peer
        self._listener = listener
        self.recv_oct = self.send_oct = 0

    @property
    def peername(self) -> tuple[str, int]:
        return self._peer

    @property
    def listener(self) -> str:
        return self._listener

    def io_stats(self) -> dict[str, int]:
        return {"recv_oct": self.recv_oct, "recv_cnt": self.recv_pkt,
                "send_oct": self.send_oct, "send_cnt": self.send_pkt, "send_pend": 0}

    def count_in(self, size: int, packets: int = 1) -> None:
        """`size` bytes from the device, carrying `packets` messages or frames."""
        self.recv_oct += size
        self.recv_pkt += packets
        self.counters["packets/received"] += packets

    def count_out(self, size: int) -> None:
        """One message or frame of `size` bytes to the device."""
        self.send_oct += size
        self.send_pkt += 1
        self.counters["packets/sent"] += 1

    def count_delivery(self, qos: int) -> None:
        """A message from the session went out (its PUBLISH or MESSAGE)."""
        self.send_msg += 1
        counters = self.counters
        counters["packets/publish/sent"] += 1
        counters["messages/sent"] += 1
        counters[f"messages/qos{qos}/sent"] += 1


C = TypeVar("C", bound=GatewayClient)


class GatewayLink(Generic[C]):
    __slots__ = ("client",)

    def __init__(self, client: C) -> None:
        self.client = client

    @property
    def live(self) -> bool:
        """Connected to the broker (acknowledgements and unsubscribes mean something)."""
        return self.client.session is not None

    def received(self, size: int, packets: int = 1) -> None:
        self.client.count_in(size, packets)

    def sent(self, size: int) -> None:
        self.client.count_out(size)

    def set_writable(self, writable: bool) -> None:
        self.client.set_writable(writable)

    async def subscribe(self, topic_filter: str, qos: int) -> int | None:
        """The granted QoS, None when refused (filter, ACL)."""
        granted = await self.client.subscribe(topic_filter, qos)
        return granted if granted < 0x80 else None

    async def unsubscribe(self, topic_filter: str) -> None:
        if self.live:
            self.client.unsubscribe(topic_filter)

    def puback(self, packet_id: int) -> None:
        if self.live:
            self.client.puback(packet_id)
