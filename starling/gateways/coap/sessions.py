"""CoAP client sessions: one broker client per (c, u, p), as EMQ X keeps them.

A session starts with the first request naming it, is refreshed by every
later request, and ends `keepalive` seconds after the last one (observing
alone does not keep it: EMQ X's README asks devices to GET now and then).
Each observe relation is an `Observer`: the broker's deliveries that match
its filter wait in its queue until the resource sends them as notifications.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from starling.mqtt import matches

from .hub import Attachment, ClientDetails, Hub
from .requests import Credentials

log = logging.getLogger(__name__)

#: Notifications an observer holds while the client is slow; past it the oldest go.
OBSERVER_QUEUE = 1000
#: CoAP subscriptions are QoS 1 (EMQ X), their publishes QoS 0.
SUBSCRIBE_QOS = 1


@dataclass(frozen=True, slots=True)
class Ended:
    """The last item of an observer's queue: its session is gone, and why."""

    reason: str


class Observer:
    def __init__(self, topic_filter: str) -> None:
        self.topic_filter = topic_filter
        self.queue: asyncio.Queue[bytes | Ended] = asyncio.Queue(OBSERVER_QUEUE + 1)
        self.dropped = 0

    def offer(self, payload: bytes) -> None:
        if self.queue.qsize() >= OBSERVER_QUEUE:
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(payload)

    def end(self, reason: str) -> None:
        self.queue.put_nowait(Ended(reason))


class CoapClient:
    """One session: the broker's `Outlet` for it, and its observers."""

    def __init__(self, credentials: Credentials, peer: tuple[str, int],
                 on_close: Callable[[CoapClient], None], secure: bool = False) -> None:
        self.credentials = credentials
        self.peer = peer
        #: Started by a request over DTLS (the listener /listeners counts it on).
        self.secure = secure
        self.attachment: Attachment | None = None
        self.observers: dict[str, list[Observer]] = {}
        self.last_seen = asyncio.get_running_loop().time()
        self.closed_reason: str | None = None
        self._on_close = on_close

    # -- the broker's side (Outlet) ----------------------------------------------------
    def deliver(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        for topic_filter, observers in self.observers.items():
            if matches(topic_filter, topic):
                for observer in observers:
                    observer.offer(payload)

    def closed(self, reason: str) -> None:
        if self.closed_reason is not None:
            return
        self.closed_reason = reason
        for observers in self.observers.values():
            for observer in observers:
                observer.end(reason)
        self.observers.clear()
        self._on_close(self)

    # -- the gateway's side ------------------------------------------------------------
    def touch(self, peer: tuple[str, int]) -> None:
        self.last_seen = asyncio.get_running_loop().time()
        if peer != self.peer and self.attachment is not None:
            self.peer = peer
            self.attachment.set_peer(peer)

    async def publish(self, topic: str, payload: bytes) -> bool:
        assert self.attachment is not None
        return await self.attachment.publish(topic, payload)

    async def observe(self, topic_filter: str) -> Observer | None:
        """A new observer of `topic_filter` (None when the ACL denies the subscription)."""
        assert self.attachment is not None
        if topic_filter not in self.observers:
            if not await self.attachment.subscribe(topic_filter, SUBSCRIBE_QOS):
                return None
            self.observers.setdefault(topic_filter, [])
        observer = Observer(topic_filter)
        self.observers[topic_filter].append(observer)
        return observer

    def forget(self, observer: Observer) -> None:
        """The observation ended (deregistered, reset, replaced)."""
        observers = self.observers.get(observer.topic_filter)
        if observers is None or observer not in observers:
            return
        observers.remove(observer)
        if not observers:
            del self.observers[observer.topic_filter]
            if self.attachment is not None and self.closed_reason is None:
                self.attachment.unsubscribe(observer.topic_filter)

    def unobserve(self, topic_filter: str) -> None:
        """GET with Observe 1 on a filter: every observer of it ends, and the subscription."""
        for observer in list(self.observers.get(topic_filter, ())):
            observer.end("deregistered")
            self.forget(observer)

    def end(self, reason: str) -> None:
        """The gateway ends the session (keepalive, plugin unload)."""
        attachment = self.attachment
        self.closed(reason)
        if attachment is not None:
            attachment.close(reason)


class CoapClients:
    """The live sessions, their start (through the hub) and their keepalive."""

    def __init__(self, hub: Hub, keepalive: float, protocol: str = "coap") -> None:
        self.hub = hub
        self.keepalive = keepalive
        self.protocol = protocol
        self._clients: dict[Credentials, CoapClient] = {}
        self._starting: dict[Credentials, asyncio.Future[CoapClient]] = {}
        self._sweeper: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._clients)

    def count(self, secure: bool) -> int:
        """Sessions started over DTLS (`secure`) or plain UDP."""
        return sum(1 for client in self._clients.values() if client.secure == secure)

    async def client(self, credentials: Credentials, peer: tuple[str, int],
                     secure: bool = False) -> CoapClient:
        """The session `credentials` name, started if needed (`secure`: by a request
        over DTLS); `AttachRefused` when the broker refuses it."""
        current = self._clients.get(credentials)
        if current is not None:
            current.touch(peer)
            return current
        pending = self._starting.get(credentials)
        if pending is not None:
            client = await asyncio.shield(pending)
            client.touch(peer)
            return client
        future: asyncio.Future[CoapClient] = asyncio.get_running_loop().create_future()
        self._starting[credentials] = future
        try:
            client = await self._start(credentials, peer, secure)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters get it, nobody else must
            raise
        finally:
            del self._starting[credentials]
        future.set_result(client)
        return client

    async def _start(self, credentials: Credentials, peer: tuple[str, int],
                     secure: bool) -> CoapClient:
        client = CoapClient(credentials, peer, self._closed, secure)
        password = None if credentials.password is None else credentials.password.encode()
        details = ClientDetails(credentials.client_id, credentials.username, password, peer,
                                self.protocol, int(self.keepalive), secure)
        client.attachment = await self.hub.attach(details, client)
        self._clients[credentials] = client
        self._ensure_sweeper()
        return client

    def _closed(self, client: CoapClient) -> None:
        if self._clients.get(client.credentials) is client:
            del self._clients[client.credentials]

    def _ensure_sweeper(self) -> None:
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        """End the sessions idle for `keepalive` seconds (checked a few times per period)."""
        loop = asyncio.get_running_loop()
        while self._clients:
            await asyncio.sleep(min(1.0, self.keepalive / 4))
            now = loop.time()
            for client in list(self._clients.values()):
                if now - client.last_seen >= self.keepalive:
                    log.info("CoAP client %s: no request for %ss, session ended",
                             client.credentials.client_id, self.keepalive)
                    client.end("keepalive_timeout")

    async def close(self) -> None:
        """End every session (plugin unload)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        for client in list(self._clients.values()):
            client.end("gateway_stopped")
