"""Downlink commands: the JSON published on ``lwm2m/{ep}/dn/#`` → the CoAP request
the gateway sends to the device (EMQ X's ``emqx_lwm2m_cmd_handler``).

``{"reqID": 1, "msgType": "read", "data": {"path": "/3/0/0"}}`` becomes a GET of
``/3/0/0``.  Every top-level field of the command is copied into the answer
(`replies`), so callers may correlate with any field they like.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .content import LINK_FORMAT, LWM2M_TLV, TEXT_PLAIN, ContentError, WriteItem, encode_write
from .objectdb import ObjectDatabase
from .paths import Path, PathError, parse_path

MSG_TYPES = frozenset({"read", "discover", "write", "write-attr", "execute", "create",
                       "delete", "observe", "cancel-observe"})
#: The attributes of Write-Attributes, in the order they are sent.
ATTRIBUTES = ("pmin", "pmax", "gt", "lt", "st")


class CommandError(ValueError):
    """A publish that is not a command (not JSON, no known msgType): logged and dropped,
    as EMQ X does, since there is nothing to correlate an answer with."""


@dataclass(frozen=True, slots=True)
class Command:
    envelope: Mapping[str, Any]  #: the whole JSON object, echoed in the answer
    msg_type: str
    data: Mapping[str, Any]

    @property
    def req_path(self) -> str:
        """EMQ X's ``reqPath``: ``data.path``, else ``data.basePath``."""
        value = self.data.get("path", self.data.get("basePath", ""))
        return value if isinstance(value, str) else str(value)


@dataclass(frozen=True, slots=True)
class DeviceRequest:
    """A CoAP request to send to the device (aiocoap builds the message from it)."""

    method: str  #: "GET", "PUT", "POST" or "DELETE"
    path: tuple[str, ...]
    query: tuple[str, ...] = ()
    content_format: int | None = None
    accept: int | None = None
    payload: bytes = b""
    observe: int | None = None


def parse_command(payload: bytes) -> Command:
    try:
        document = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise CommandError("command is not JSON") from None
    if not isinstance(document, dict):
        raise CommandError("command is not a JSON object")
    msg_type = document.get("msgType")
    if msg_type not in MSG_TYPES:
        raise CommandError(f"unknown msgType {msg_type!r}")
    data = document.get("data", {})
    if not isinstance(data, dict):
        raise CommandError("command 'data' is not a JSON object")
    return Command(document, msg_type, data)


def translate(command: Command, objects: ObjectDatabase,
              alternate_path: str = "/") -> DeviceRequest:
    """The request for `command`; `ContentError` (answered 4.00 bad_request) when its
    path or values are wrong."""
    try:
        request = _translate(command, objects)
    except PathError as exc:
        raise ContentError(str(exc)) from None
    prefix = tuple(part for part in alternate_path.split("/") if part)
    if prefix:
        request = DeviceRequest(request.method, prefix + request.path, request.query,
                                request.content_format, request.accept, request.payload,
                                request.observe)
    return request


def _translate(command: Command, objects: ObjectDatabase) -> DeviceRequest:
    data, kind = command.data, command.msg_type
    if kind == "write" and "basePath" in data:
        base = _path(data, "basePath")
        if len(base) not in (2, 3):
            raise ContentError("a batch write's basePath names an instance or a resource")
        payload = encode_write(base, _items(data), objects)
        return DeviceRequest("POST" if len(base) == 2 else "PUT", _segments(base),
                             content_format=LWM2M_TLV, payload=payload)
    if kind == "create":
        base = _path(data, "basePath")
        if len(base) != 1:
            raise ContentError("create's basePath names an object")
        return DeviceRequest("POST", _segments(base), content_format=LWM2M_TLV,
                             payload=encode_write(base, _items(data), objects))
    path = _path(data, "path")
    if kind == "write":
        if len(path) != 3:
            raise ContentError("a single write's path names a resource")
        item = WriteItem((), _type(data), data.get("value"))
        return DeviceRequest("PUT", _segments(path), content_format=LWM2M_TLV,
                             payload=encode_write(path, [item], objects))
    if kind == "read":
        return DeviceRequest("GET", _segments(path))
    if kind == "discover":
        return DeviceRequest("GET", _segments(path), accept=LINK_FORMAT)
    if kind == "observe":
        return DeviceRequest("GET", _segments(path), observe=0)
    if kind == "cancel-observe":
        return DeviceRequest("GET", _segments(path), observe=1)
    if kind == "delete":
        return DeviceRequest("DELETE", _segments(path))
    if kind == "execute":
        args = data.get("args")
        body = b"" if args in (None, "undefined") else str(args).encode("utf-8")
        return DeviceRequest("POST", _segments(path), payload=body,
                             content_format=TEXT_PLAIN if body else None)
    # write-attr
    query = tuple(f"{name}={_attribute(data[name])}" for name in ATTRIBUTES
                  if data.get(name) is not None)
    return DeviceRequest("PUT", _segments(path), query=query)


def _path(data: Mapping[str, Any], key: str) -> Path:
    value = data.get(key)
    if not isinstance(value, str):
        raise ContentError(f"command data has no {key!r}")
    return parse_path(value)


def _segments(path: Path) -> tuple[str, ...]:
    return tuple(str(i) for i in path)


def _type(item: Mapping[str, Any]) -> str | None:
    kind = item.get("type")
    return kind if isinstance(kind, str) and kind else None


def _items(data: Mapping[str, Any]) -> list[WriteItem]:
    content = data.get("content")
    if not isinstance(content, list) or not content:
        raise ContentError("command data has no 'content' list")
    items = []
    for entry in content:
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise ContentError("each content entry has a 'path'")
        items.append(WriteItem(parse_path(entry["path"]), _type(entry), entry.get("value")))
    return items


def _attribute(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ContentError(f"an attribute value is a number, not {value!r}")
    text = str(value).strip()
    try:
        float(text)
    except ValueError:
        raise ContentError(f"an attribute value is a number, not {value!r}") from None
    return text
