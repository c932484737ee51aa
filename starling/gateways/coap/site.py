"""emqx_coap's resources on aiocoap: ``/mqtt/{topic}``, ``/ps/{topic}``,
``/.well-known/core``.

Every request first finds (or starts) the session its query names, which
refreshes the session's keepalive; then the method decides.  Observe
relations (GET with Observe 0) are served by `_observe`, which keeps the
request open and sends each matching delivery as a notification, CON or
NON like the request (aiocoap's default); the relation ends when the client
deregisters (Observe 1 or a reset) or its session ends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import aiocoap
import aiocoap.resource
from aiocoap import Code, Message

from .hub import AttachRefused
from .pubsub import PsError, PsTopics, parse_create
from .requests import credentials, observable, publishable, topic_of
from .sessions import CoapClient, CoapClients, Ended
from .transport import is_secure, peer_of

log = logging.getLogger(__name__)

OCTET_STREAM = 42
LINK_FORMAT = 40
#: Observe option values are 24 bits (RFC 7641 §3.4).
OBSERVE_WRAP = 1 << 24
REFUSALS = {"not_authorized": Code.UNAUTHORIZED, "banned": Code.FORBIDDEN,
            "bad_client_id": Code.BAD_REQUEST}


class Answer(Exception):
    """Stop handling a request and answer it with `message`."""

    def __init__(self, code: Code, diagnostic: str = "") -> None:
        super().__init__(diagnostic)
        self.message = Message(code=code, payload=diagnostic.encode())


class CoapSite:
    """The root resource given to aiocoap: routes by the first path segment."""

    def __init__(self, clients: CoapClients, topics: PsTopics,
                 clock: Callable[[], float]) -> None:
        self.clients = clients
        self.topics = topics
        self.clock = clock
        self._plain = _Requests(self)

    async def render_to_pipe(self, pipe: Any) -> None:
        request = pipe.request
        root = request.opt.uri_path[:1]
        if request.code == Code.GET and request.opt.observe == 0 and root in (("mqtt",),
                                                                               ("ps",)):
            await self._observe(pipe)
        else:
            await self._plain.render_to_pipe(pipe)

    async def session(self, request: Message) -> CoapClient:
        found = credentials(request.opt.uri_query)
        if found is None:
            raise Answer(Code.BAD_REQUEST, "missing client id: ?c=<clientid>")
        try:
            return await self.clients.client(found, peer_of(request.remote),
                                             is_secure(request.remote))
        except AttachRefused as refused:
            raise Answer(REFUSALS.get(refused.reason, Code.INTERNAL_SERVER_ERROR),
                         refused.reason) from None

    async def _observe(self, pipe: Any) -> None:
        request = pipe.request
        try:
            client = await self.session(request)
            topic_filter = topic_of(request.opt.uri_path[1:])
            if not observable(topic_filter):
                raise Answer(Code.BAD_REQUEST, "not a topic filter")
            observer = await client.observe(topic_filter)
            if observer is None:
                raise Answer(Code.FORBIDDEN, "subscription denied")
        except Answer as answer:
            pipe.add_response(answer.message, is_last=True)
            return
        try:
            first = Message(code=Code.CONTENT, payload=b"")
            first.opt.observe = 0
            pipe.add_response(first, is_last=False)
            sequence = 0
            while True:
                item = await observer.queue.get()
                if isinstance(item, Ended):
                    code = Code.CONTENT if item.reason == "deregistered" else \
                        Code.SERVICE_UNAVAILABLE
                    pipe.add_response(Message(code=code, payload=item.reason.encode()),
                                      is_last=True)
                    return
                sequence = (sequence + 1) % OBSERVE_WRAP
                notification = Message(code=Code.CONTENT, payload=item,
                                       content_format=OCTET_STREAM)
                notification.opt.observe = sequence
                pipe.add_response(notification, is_last=False)
        finally:
            client.forget(observer)


class _Requests(aiocoap.resource.Resource):  # type: ignore[misc]  # untyped library
    """Every request but an observe registration (aiocoap assembles block-wise ones)."""

    def __init__(self, site: CoapSite) -> None:
        super().__init__()
        self.site = site

    async def render(self, request: Message) -> Message:
        path = request.opt.uri_path
        try:
            if path == (".well-known", "core"):
                return self._well_known(request)
            if path[:1] == ("mqtt",):
                return await self._mqtt(request, topic_of(path[1:]))
            if path[:1] == ("ps",):
                return await self._ps(request, topic_of(path[1:]))
            raise Answer(Code.NOT_FOUND)
        except Answer as answer:
            return answer.message

    @staticmethod
    def _well_known(request: Message) -> Message:
        if request.code != Code.GET:
            raise Answer(Code.METHOD_NOT_ALLOWED)
        return Message(code=Code.CONTENT, payload=b"</mqtt>,</ps>", content_format=LINK_FORMAT)

    async def _mqtt(self, request: Message, topic: str) -> Message:
        client = await self.site.session(request)
        if request.code == Code.GET:
            return self._get_observe(client, request, topic)
        if request.code != Code.PUT:
            raise Answer(Code.METHOD_NOT_ALLOWED)
        await self._publish(client, topic, request.payload)
        return Message(code=Code.CHANGED)

    @staticmethod
    def _get_observe(client: CoapClient, request: Message, topic: str) -> Message:
        """A GET that does not register: a keepalive ping, or a deregistration."""
        if request.opt.observe == 1:
            client.unobserve(topic)
        elif request.opt.observe is not None:
            raise Answer(Code.BAD_OPTION, "Observe must be 0 or 1")
        return Message(code=Code.CONTENT)

    @staticmethod
    async def _publish(client: CoapClient, topic: str, payload: bytes) -> None:
        if not publishable(topic):
            raise Answer(Code.BAD_REQUEST, "not a topic name")
        if not await client.publish(topic, payload):
            raise Answer(Code.FORBIDDEN, "publish denied")

    async def _ps(self, request: Message, topic: str) -> Message:
        client = await self.site.session(request)
        topics = self.site.topics
        if request.code == Code.GET:
            if request.opt.observe is not None:
                return self._get_observe(client, request, topic)
            return self._read(topic)
        if request.code == Code.DELETE:
            if not topic or topics.delete(topic) == 0:
                raise Answer(Code.NOT_FOUND)
            return Message(code=Code.DELETED)
        if request.code not in (Code.POST, Code.PUT):
            raise Answer(Code.METHOD_NOT_ALLOWED)
        content_format = request.opt.content_format
        try:
            if request.code == Code.POST and content_format == LINK_FORMAT:
                name, link_format = parse_create(request.payload)
                full = f"{topic}/{name}" if topic else name
                if not publishable(full):
                    raise Answer(Code.BAD_REQUEST, "not a topic name")
                if not topics.create(full, link_format):
                    raise Answer(Code.FORBIDDEN, "topic exists")
                return self._located(Code.CREATED, full)
            if not publishable(topic):
                raise Answer(Code.BAD_REQUEST, "not a topic name")
            fmt = None if content_format is None else int(content_format)
            topics.check(topic, fmt)
            await self._publish(client, topic, request.payload)
            created = topics.store(topic, request.payload, fmt, request.opt.max_age,
                                   self.site.clock())
        except PsError as exc:
            raise Answer(Code.BAD_REQUEST, str(exc)) from None
        return self._located(Code.CREATED, topic) if created else Message(code=Code.CHANGED)

    def _read(self, topic: str) -> Message:
        if not publishable(topic):
            raise Answer(Code.BAD_REQUEST, "not a topic name")
        stored = self.site.topics.read(topic)
        fresh = 0 if stored is None else stored.fresh_for(self.site.clock())
        if stored is None or stored.payload is None or not fresh:
            raise Answer(Code.NOT_FOUND)
        response = Message(code=Code.CONTENT, payload=stored.payload, max_age=fresh)
        if stored.content_format is not None:
            response.opt.content_format = stored.content_format
        return response

    @staticmethod
    def _located(code: Code, topic: str) -> Message:
        return Message(code=code, location_path=("ps", *topic.split("/")))
