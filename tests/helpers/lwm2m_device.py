"""A test LwM2M device built on aiocoap: it serves OMA objects 1 (Server),
3 (Device) and 4 (Connectivity Monitoring), answers reads in TLV (or LwM2M
JSON / plain text when asked with Accept), takes TLV writes, executes,
write-attributes, discover and observe, and registers, updates and
deregisters with a LwM2M server from the socket it serves on.

Its TLV writer is its own (a dozen lines below), not the gateway's, so a
codec bug cannot hide by agreeing with itself.
"""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any

import aiocoap
import aiocoap.resource
from aiocoap import Code, Message

from helpers.coap_tools import LoopThread

TLV, JSON, TEXT, LINKS = 11542, 11543, 0, 40


def tlv_record(kind: int, ident: int, value: bytes) -> bytes:
    """kind: 0 object instance, 1 resource instance, 2 multiple resource, 3 resource."""
    head = kind << 6
    ident_bytes = bytes([ident]) if ident < 256 else struct.pack(">H", ident)
    if ident >= 256:
        head |= 0x20
    if len(value) < 8:
        return bytes([head | len(value)]) + ident_bytes + value
    if len(value) < 256:
        return bytes([head | 0x08]) + ident_bytes + bytes([len(value)]) + value
    return bytes([head | 0x10]) + ident_bytes + struct.pack(">H", len(value)) + value


def tlv_value(value: Any) -> bytes:
    if isinstance(value, bool):
        return b"\x01" if value else b"\x00"
    if isinstance(value, int):
        for width in (1, 2, 4, 8):
            if -(1 << (8 * width - 1)) <= value < 1 << (8 * width - 1):
                return value.to_bytes(width, "big", signed=True)
    if isinstance(value, float):
        return struct.pack(">d", value)
    return str(value).encode()


def read_tlv(data: bytes) -> dict[int, bytes]:
    """Resource id → value bytes of a flat TLV payload (what the gateway writes)."""
    out: dict[int, bytes] = {}
    pos = 0
    while pos < len(data):
        head = data[pos]
        pos += 1
        wide = head & 0x20
        ident = int.from_bytes(data[pos:pos + (2 if wide else 1)], "big")
        pos += 2 if wide else 1
        size_len = (head >> 3) & 3
        size = int.from_bytes(data[pos:pos + size_len], "big") if size_len else head & 7
        pos += size_len
        out[ident] = data[pos:pos + size]
        pos += size
    return out


class ObjectInstance(aiocoap.resource.ObservableResource):  # type: ignore[misc]
    """/{object}/0 and its resources; `values` maps resource id → value (a list for
    a multiple resource)."""

    def __init__(self, device: TestDevice, object_id: int, values: dict[int, Any],
                 executable: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.device = device
        self.object_id = object_id
        self.values = values
        self.executable = executable

    def tlv(self, ids: list[int]) -> bytes:
        out = b""
        for rid in ids:
            value = self.values[rid]
            if isinstance(value, list):
                inner = b"".join(tlv_record(1, i, tlv_value(v)) for i, v in enumerate(value))
                out += tlv_record(2, rid, inner)
            else:
                out += tlv_record(3, rid, tlv_value(value))
        return out

    def json(self, ids: list[int], base: str, single: bool) -> bytes:
        """LwM2M JSON: names relative to `base` (none for a single resource's value)."""
        entries: list[dict[str, Any]] = []
        for rid in ids:
            value = self.values[rid]
            prefix = "" if single else f"{rid}"
            for name, item in ([(f"{prefix}/{i}".lstrip("/"), v) for i, v in enumerate(value)]
                               if isinstance(value, list) else [(prefix, value)]):
                key = "bv" if isinstance(item, bool) else "v" if isinstance(
                    item, (int, float)) else "sv"
                entries.append({"n": name, key: item} if name else {key: item})
        return json.dumps({"bn": base, "e": entries}).encode()


class DeviceSite(aiocoap.resource.Resource):  # type: ignore[misc]
    """Routes /{object}/{instance}[/{resource}] to the object instances."""

    def __init__(self, device: TestDevice) -> None:
        super().__init__()
        self.device = device

    async def render_to_pipe(self, pipe: Any) -> None:
        request = pipe.request
        path = request.opt.uri_path
        if request.opt.observe == 0 and request.code == Code.GET:
            found = self.device.find(path)
            if found is not None:
                await self._observe(pipe, found, path)
                return
        await super().render_to_pipe(pipe)

    async def _observe(self, pipe: Any, instance: ObjectInstance, path: tuple[str, ...]) -> None:
        self.device.observed.append("/" + "/".join(path))
        first = self.read(pipe.request, instance, path)
        first.opt.observe = 0
        pipe.add_response(first, is_last=False)
        changes = self.device.changes.setdefault(tuple(path), asyncio.Queue())
        sequence = 0
        try:
            while True:
                await changes.get()
                sequence += 1
                update = self.read(pipe.request, instance, path)
                update.opt.observe = sequence
                pipe.add_response(update, is_last=False)
        finally:
            self.device.cancelled.append("/" + "/".join(path))

    async def render(self, request: Message) -> Message:
        path = request.opt.uri_path
        instance = self.device.find(path)
        self.device.requests.append((str(request.code), "/" + "/".join(path),
                                     tuple(request.opt.uri_query), request.payload))
        if instance is None:
            return Message(code=Code.NOT_FOUND)
        if request.code == Code.GET:
            if request.opt.accept == LINKS:
                links = ",".join(f"</{instance.object_id}/0/{rid}>" for rid in instance.values)
                return Message(code=Code.CONTENT, content_format=LINKS,
                               payload=f"</{instance.object_id}/0>,{links}".encode())
            return self.read(request, instance, path)
        if request.code == Code.DELETE:
            return Message(code=Code.METHOD_NOT_ALLOWED)
        if request.code == Code.PUT and request.opt.uri_query:
            return Message(code=Code.CHANGED)  # write-attributes
        if request.code in (Code.PUT, Code.POST) and request.opt.content_format == TLV:
            for rid, raw in read_tlv(request.payload).items():
                current = instance.values.get(rid)
                instance.values[rid] = (int.from_bytes(raw, "big", signed=True)
                                        if isinstance(current, int) else raw.decode())
            return Message(code=Code.CHANGED)
        if request.code == Code.POST and len(path) == 3:
            if int(path[2]) not in instance.executable:
                return Message(code=Code.METHOD_NOT_ALLOWED)
            self.device.executed.append((int(path[2]), request.payload.decode()))
            return Message(code=Code.CHANGED)
        return Message(code=Code.METHOD_NOT_ALLOWED)

    def read(self, request: Message, instance: ObjectInstance,
             path: tuple[str, ...]) -> Message:
        ids = sorted(instance.values) if len(path) == 2 else [int(path[2])]
        if any(rid not in instance.values for rid in ids):
            return Message(code=Code.NOT_FOUND)
        wanted = self.device.format if request.opt.accept is None else request.opt.accept
        if wanted == JSON:
            base = "/" + "/".join(path) + "/"
            return Message(code=Code.CONTENT, content_format=JSON,
                           payload=instance.json(ids, base, single=len(path) == 3))
        if wanted == TEXT and len(ids) == 1:
            return Message(code=Code.CONTENT, content_format=TEXT,
                           payload=str(instance.values[ids[0]]).encode())
        return Message(code=Code.CONTENT, content_format=TLV, payload=instance.tlv(ids))


class TestDevice:
    """The device, in its own loop thread; `server` is ``(host, port)`` of the gateway."""

    __test__ = False

    def __init__(self, endpoint: str, server: tuple[str, int], lifetime: int = 300,
                 binding: str = "U") -> None:
        self.endpoint = endpoint
        self.server = server
        self.lifetime = lifetime
        self.binding = binding
        self.location: str | None = None
        #: The format of reads that ask for none (TLV, JSON or TEXT).
        self.format = TLV
        self.requests: list[tuple[str, str, tuple[str, ...], bytes]] = []
        self.executed: list[tuple[int, str]] = []
        self.observed: list[str] = []
        self.cancelled: list[str] = []
        self.changes: dict[tuple[str, ...], asyncio.Queue[None]] = {}
        self.objects = {
            "1": ObjectInstance(self, 1, {0: 101, 1: lifetime, 6: False, 7: binding}, (8,)),
            "3": ObjectInstance(self, 3, {0: "Starling Test Devices", 1: "TD-1", 2: "0001",
                                          6: [1, 5], 9: 87, 11: [0], 13: 1_700_000_000,
                                          16: "U"}, (4, 5)),
            "4": ObjectInstance(self, 4, {0: 0, 1: [0, 21], 2: -73, 4: ["192.0.2.10"]}),
            # an IPSO temperature sensor the gateway has no definition of
            "3303": ObjectInstance(self, 3303, {5700: 21.5, 5701: "Cel"}),
        }
        self.thread = LoopThread()
        self.thread.run(self._start())

    async def _start(self) -> None:
        self.context = await aiocoap.Context.create_server_context(
            DeviceSite(self), bind=("127.0.0.1", 0), transports=["udp6"])

    def find(self, path: tuple[str, ...]) -> ObjectInstance | None:
        if len(path) in (2, 3) and path[1] == "0":
            return self.objects.get(path[0])
        return None

    def _url(self, path: str, query: str) -> str:
        host, port = self.server
        return f"coap://{host}:{port}{path}?{query}" if query else f"coap://{host}:{port}{path}"

    def _send(self, method: Code, path: str, query: str = "", payload: bytes = b"") -> Message:
        async def send() -> Message:
            request = Message(code=method, uri=self._url(path, query), payload=payload)
            if payload:
                request.opt.content_format = LINKS
            return await self.context.request(request).response
        return self.thread.run(send())

    def register(self, extra: str = "", links: bytes = b"</1/0>,</3/0>,</4/0>",
                 version: str = "1.0") -> Message:
        query = f"ep={self.endpoint}&lt={self.lifetime}&lwm2m={version}&b={self.binding}"
        response = self._send(Code.POST, "/rd", query + extra, links)
        if response.code == Code.CREATED:
            self.location = "/" + "/".join(response.opt.location_path)
        return response

    def update(self, query: str = "", links: bytes = b"") -> Message:
        assert self.location is not None
        return self._send(Code.POST, self.location, query, links)

    def deregister(self) -> Message:
        assert self.location is not None
        return self._send(Code.DELETE, self.location)

    def change(self, object_id: str, resource: int, value: Any) -> None:
        """Change a value and notify the observers of it and of its instance."""
        def apply() -> None:
            self.objects[object_id].values[resource] = value
            for key in ((object_id, "0", str(resource)), (object_id, "0")):
                queue = self.changes.get(key)
                if queue is not None:
                    queue.put_nowait(None)
        self.thread.call(apply)

    def close(self) -> None:
        self.thread.run(self.context.shutdown())
        self.thread.stop()
