"""The LwM2M server side on aiocoap: the registration interface (``/rd``) and one
`Device` per registered endpoint.

A registered device is a broker client named by its endpoint: it subscribes
to its command topic, and each command published there becomes a CoAP
request to the device (`commands.translate`); the device's answer, and every
notification of an observation, is published on the response / notify topic
(`replies`).  The device's session ends when it deregisters, its lifetime
runs out, or the broker kicks it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiocoap
import aiocoap.error
from aiocoap import Code, Message

from ..coap.hub import Attachment, AttachRefused, ClientDetails, Hub
from ..coap.transport import is_secure, peer_of
from . import replies
from .commands import Command, CommandError, DeviceRequest, parse_command, translate
from .content import ContentError, decode_content, split_links
from .objectdb import ObjectDatabase
from .paths import PathError, parse_path
from .registration import (
    Registration,
    RegistrationRefused,
    apply_update,
    parse_register,
    parse_update,
)
from .topics import TopicTemplates

log = logging.getLogger(__name__)

#: Commands flushed to a queue-mode device on its next uplink are spaced this far apart (EMQ X).
FLUSH_SPACING = 0.1
#: auto_observe starts this long after registration, one object every FLUSH_SPACING (EMQ X).
AUTO_OBSERVE_DELAY = 2.0
#: Answers read with the object definitions (the others carry no content, or links).
CONTENT_TYPES = ("read", "observe", "cancel-observe")


@dataclass(frozen=True, slots=True)
class Lwm2mSettings:
    objects: ObjectDatabase
    topics: TopicTemplates = field(default_factory=TopicTemplates)
    lifetime_min: int = 1
    lifetime_max: int = 86400
    qmode_time_window: float = 22.0
    auto_observe: bool = False


class Device:
    """One registered endpoint: the broker's `Outlet` for it, and its requests."""

    def __init__(self, server: Lwm2mServer, registration: Registration, remote: Any,
                 context: aiocoap.Context) -> None:
        self.server = server
        self.registration = registration
        self.remote = remote
        #: The listener's aiocoap context the device registered through (UDP or DTLS).
        self.context = context
        self.peer = peer_of(remote)
        self.attachment: Attachment | None = None
        loop = asyncio.get_running_loop()
        self.registered_at = loop.time()
        self.expires_at = self.registered_at + registration.lifetime
        self.queued: list[Command] = []
        self.observations: dict[str, Any] = {}  # path → aiocoap request being observed
        self.tasks: set[asyncio.Task[None]] = set()
        self.ended: str | None = None

    @property
    def endpoint(self) -> str:
        return self.registration.endpoint

    def topic(self, which: str) -> str:
        return self.server.settings.topics.expand(which, self.endpoint, self.peer[0])

    # -- the broker's side (Outlet) ----------------------------------------------------
    def deliver(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        try:
            command = parse_command(payload)
        except CommandError as exc:
            log.warning("LwM2M %s: command on %s dropped: %s", self.endpoint, topic, exc)
            return
        if self._queueing():
            self.queued.append(command)
            return
        self.spawn(self.run_command(command))

    def closed(self, reason: str) -> None:
        """The broker ended the client (kicked, taken over)."""
        self.stop(reason)
        self.server.forget(self)

    # -- the gateway's side ------------------------------------------------------------
    def spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def publish(self, which: str, message: dict[str, Any]) -> None:
        if self.attachment is None or self.ended is not None:
            return
        topic = self.topic(which)
        data = json.dumps(message, separators=(",", ":")).encode()
        if not await self.attachment.publish(topic, data):
            log.warning("LwM2M %s: publish to %s denied by the ACL", self.endpoint, topic)

    def _queueing(self) -> bool:
        loop = asyncio.get_running_loop()
        return (self.registration.queue_mode and loop.time() - self.registered_at
                >= self.server.settings.qmode_time_window)

    def uplink(self) -> None:
        """The device spoke (an update, an answer): send what waited for it."""
        if self.queued:
            waiting, self.queued = self.queued, []
            self.spawn(self._flush(waiting))

    async def _flush(self, commands: Sequence[Command]) -> None:
        for index, command in enumerate(commands):
            if index:
                await asyncio.sleep(FLUSH_SPACING)
            await self.run_command(command)

    async def run_command(self, command: Command) -> None:
        try:
            request = translate(command, self.server.settings.objects,
                                self.registration.alternate_path)
        except ContentError as exc:
            log.info("LwM2M %s: %s command refused: %s", self.endpoint, command.msg_type, exc)
            await self.publish("response", replies.response(command, replies.BAD_REQUEST))
            return
        if command.msg_type == "cancel-observe":
            observed = self.observations.pop(command.req_path.rstrip("/"), None)
            if observed is not None:
                observed.observation.cancel()
        try:
            pending = self.server.request(self, request)
            response = await pending.response
        except aiocoap.error.Error as exc:
            log.info("LwM2M %s: %s %s unanswered: %s", self.endpoint, request.method,
                     "/".join(request.path), exc)
            await self.publish("response", replies.response(command, replies.GATEWAY_TIMEOUT))
            return
        self.uplink()
        if command.msg_type == "observe" and response.opt.observe is not None:
            self.observations[command.req_path.rstrip("/")] = pending
            await self.publish("response", self.answer(command, response))
            await self._notifications(command, pending)
            return
        await self.publish("response", self.answer(command, response))

    async def _notifications(self, command: Command, pending: Any) -> None:
        try:
            async for notification in pending.observation:
                self.uplink()
                sequence = notification.opt.observe
                code, content = self.result(command, notification)
                await self.publish("notify", replies.notification(
                    command, 0 if sequence is None else sequence, code, content))
        except aiocoap.error.Error as exc:
            log.info("LwM2M %s: observation of %s ended: %s", self.endpoint,
                     command.req_path, exc)
        finally:
            if self.observations.get(command.req_path.rstrip("/")) is pending:
                del self.observations[command.req_path.rstrip("/")]

    def answer(self, command: Command, response: Message) -> dict[str, Any]:
        """The ``up/resp`` message for the device's `response` to `command`."""
        code, content = self.result(command, response)
        return replies.response(command, code, content)

    def result(self, command: Command, response: Message) -> tuple[int, list[Any] | None]:
        """(code, content) of a device's answer; an unreadable payload is 4.00 (EMQ X)."""
        code = int(response.code)
        if not response.code.is_successful() or not response.payload:
            return code, None
        if command.msg_type == "discover":
            return code, split_links(response.payload)
        if command.msg_type not in CONTENT_TYPES:
            return code, None
        try:
            path = parse_path(command.req_path)
            content_format = response.opt.content_format
            fmt = None if content_format is None else int(content_format)
            return code, decode_content(fmt, response.payload, path,
                                        self.server.settings.objects)
        except (ContentError, PathError) as exc:
            log.info("LwM2M %s: answer to %s unreadable: %s", self.endpoint, command.req_path,
                     exc)
            return replies.BAD_REQUEST, None

    def stop(self, reason: str) -> None:
        """Cancel everything in flight for the device."""
        if self.ended is not None:
            return
        self.ended = reason
        for pending in self.observations.values():
            with contextlib.suppress(Exception):
                pending.observation.cancel()
        self.observations.clear()
        for task in list(self.tasks):
            task.cancel()

    def end(self, reason: str) -> None:
        """The gateway ends the device's session (deregistered, lifetime, unload)."""
        attachment = self.attachment
        self.stop(reason)
        if attachment is not None:
            attachment.close(reason)

    async def auto_observe(self) -> None:
        await asyncio.sleep(AUTO_OBSERVE_DELAY)
        links = self.registration.links
        for index, path in enumerate(() if links is None else links.objects):
            if index:
                await asyncio.sleep(FLUSH_SPACING)
            self.spawn(self.run_command(Command({"msgType": "observe", "data": {"path": path}},
                                                "observe", {"path": path})))


class Lwm2mServer:
    """The registry of devices and the ``/rd`` resource, for one listener."""

    def __init__(self, hub: Hub, settings: Lwm2mSettings) -> None:
        self.hub = hub
        self.settings = settings
        self.devices: dict[str, Device] = {}
        self._sweeper: asyncio.Task[None] | None = None

    def listener(self) -> Listener:
        """The resource one listener (UDP, DTLS) serves; its `context` is set once
        the listener is up."""
        return Listener(self)

    @staticmethod
    def request(device: Device, spec: DeviceRequest) -> Any:
        """Send `spec` to `device` (aiocoap's request object)."""
        message = Message(code=Code[spec.method], uri_path=spec.path, uri_query=spec.query,
                          payload=spec.payload)
        if spec.content_format is not None:
            message.opt.content_format = spec.content_format
        if spec.accept is not None:
            message.opt.accept = spec.accept
        if spec.observe is not None:
            message.opt.observe = spec.observe
        message.remote = device.remote
        return device.context.request(message)

    def forget(self, device: Device) -> None:
        if self.devices.get(device.endpoint) is device:
            del self.devices[device.endpoint]

    # -- the registration interface ----------------------------------------------------
    async def handle(self, request: Message, context: aiocoap.Context) -> Message:
        path = request.opt.uri_path
        if path[:1] != ("rd",) or len(path) > 2:
            return Message(code=Code.NOT_FOUND)
        if len(path) == 1:
            if request.code != Code.POST:
                return Message(code=Code.METHOD_NOT_ALLOWED)
            return await self.register(request, context)
        device = self.devices.get(path[1])
        if device is None:
            return Message(code=Code.NOT_FOUND)
        if peer_of(request.remote)[0] != device.peer[0]:
            return Message(code=Code.FORBIDDEN, payload=b"not the registered device's address")
        if request.code == Code.POST:
            return await self.update(device, request, context)
        if request.code == Code.DELETE:
            log.info("LwM2M %s deregistered", device.endpoint)
            self.forget(device)
            device.end("deregistered")
            return Message(code=Code.DELETED)
        return Message(code=Code.METHOD_NOT_ALLOWED)

    async def register(self, request: Message, context: aiocoap.Context) -> Message:
        settings = self.settings
        registration = parse_register(request.opt.uri_query, request.payload,
                                      settings.lifetime_min, settings.lifetime_max)
        old = self.devices.pop(registration.endpoint, None)
        if old is not None:
            old.end("re-registered")
        device = Device(self, registration, request.remote, context)
        details = ClientDetails(registration.endpoint, None, None, device.peer, "lwm2m",
                                registration.lifetime, is_secure(request.remote))
        try:
            device.attachment = await self.hub.attach(details, device)
        except AttachRefused as refused:
            log.info("LwM2M %s refused: %s", registration.endpoint, refused.reason)
            return Message(code=Code.FORBIDDEN, payload=refused.reason.encode())
        self.devices[registration.endpoint] = device
        command_topic = device.topic("command")
        if not await device.attachment.subscribe(command_topic, 0):
            log.warning("LwM2M %s: subscription to %s denied by the ACL",
                        registration.endpoint, command_topic)
        await device.publish("register", replies.event("register",
                                                       registration.message_data()))
        self._ensure_sweeper()
        if settings.auto_observe:
            device.spawn(device.auto_observe())
        log.info("LwM2M %s registered from %s:%d, lifetime %ds", registration.endpoint,
                 *device.peer, registration.lifetime)
        return Message(code=Code.CREATED, location_path=("rd", registration.endpoint))

    async def update(self, device: Device, request: Message,
                     context: aiocoap.Context) -> Message:
        settings = self.settings
        change = parse_update(request.opt.uri_query, request.payload, settings.lifetime_min,
                              settings.lifetime_max)
        device.registration = apply_update(device.registration, change)
        device.expires_at = asyncio.get_running_loop().time() + device.registration.lifetime
        peer = peer_of(request.remote)
        # A new source port, or over DTLS a new session from the same address (a
        # device that rebooted): the gateway's requests now go there.
        if request.remote != device.remote:
            device.remote, device.peer = request.remote, peer
            device.context = context
            if device.attachment is not None:
                device.attachment.set_peer(peer)
        if change.links is not None:
            await device.publish("update", replies.event(
                "update", device.registration.message_data()))
        device.uplink()
        return Message(code=Code.CHANGED)

    # -- lifetimes ---------------------------------------------------------------------
    def _ensure_sweeper(self) -> None:
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while self.devices:
            await asyncio.sleep(0.5)
            now = loop.time()
            for device in list(self.devices.values()):
                if now >= device.expires_at:
                    log.info("LwM2M %s: lifetime over, registration ended", device.endpoint)
                    self.forget(device)
                    device.end("lifetime_expired")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        for device in list(self.devices.values()):
            self.forget(device)
            device.end("gateway_stopped")


class Listener:
    """The root resource of one LwM2M listener: requests go to the shared server,
    with the listener's context (devices are answered through the one they used)."""

    def __init__(self, server: Lwm2mServer) -> None:
        self.server = server
        self.context: aiocoap.Context | None = None

    async def render_to_pipe(self, pipe: Any) -> None:
        request = pipe.request
        assert self.context is not None
        try:
            response = await self.server.handle(request, self.context)
        except RegistrationRefused as refused:
            log.info("LwM2M request from %s refused: %s", peer_of(request.remote), refused)
            response = Message(code=Code(refused.code), payload=str(refused).encode())
        pipe.add_response(response, is_last=True)
