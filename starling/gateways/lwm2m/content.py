"""LwM2M payloads ⇄ the JSON values emqx_lwm2m publishes and accepts.

Uplink: a device's answer (TLV, plain text, opaque, LwM2M JSON or link
format) becomes ``[{"path": "/3/0/0", "value": ...}]``.  TLV and plain text
carry no types, so their resources are read with the object definitions;
an object without one is an error (EMQ X answers 4.00 bad_request).

Downlink: values of a write or create command become a TLV payload, each
value encoded by its command ``type`` (or, when absent, its definition).
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import tlv
from .objectdb import ObjectDatabase
from .paths import Path, PathError, format_path, parse_path
from .tlv import Tlv, TlvError, TlvKind

# Content-Format numbers (CoAP registry; the 15xx ones are LwM2M 1.0's pre-registration values).
TEXT_PLAIN = 0
LINK_FORMAT = 40
OCTET_STREAM = 42
LWM2M_TLV = 11542
LWM2M_JSON = 11543
OLD_TLV = 1542
OLD_JSON = 1543


class ContentError(ValueError):
    """A payload or value that cannot be read or written; answered as 4.00 bad_request."""


@dataclass(frozen=True, slots=True)
class WriteItem:
    """One value of a write or create command, its path relative to the command's."""

    path: Path
    type: str | None
    value: Any


# -- uplink ------------------------------------------------------------------------------

def decode_content(content_format: int | None, payload: bytes, req_path: Path,
                   objects: ObjectDatabase) -> list[dict[str, Any]]:
    """The ``content`` list of a response to a read / observe / notify."""
    try:
        if content_format in (None, TEXT_PLAIN):
            return [_decode_text(payload, req_path, objects)]
        if content_format == OCTET_STREAM:
            return [{"path": format_path(req_path),
                     "value": base64.b64encode(payload).decode("ascii")}]
        if content_format in (LWM2M_TLV, OLD_TLV):
            return _decode_tlv(payload, req_path, objects)
        if content_format in (LWM2M_JSON, OLD_JSON):
            return _decode_json(payload)
    except (TlvError, PathError, UnicodeDecodeError) as exc:
        raise ContentError(str(exc)) from None
    raise ContentError(f"unsupported content format {content_format}")


def split_links(payload: bytes) -> list[str]:
    """A discover answer: one entry per link of the link-format payload."""
    text = payload.decode("utf-8", "replace")
    return [link for link in (part.strip() for part in text.split(",")) if link]


def _decode_text(payload: bytes, req_path: Path, objects: ObjectDatabase) -> dict[str, Any]:
    if len(req_path) < 3:
        raise ContentError("plain text carries a single resource, the path names an object")
    kind = _resource_type(objects, req_path)
    text = payload.decode("utf-8")
    value: Any
    if kind in ("Integer", "Time"):
        value = _text_number(text, int)
    elif kind == "Float":
        value = _text_number(text, float)
    elif kind == "Boolean":
        if text not in ("0", "1"):
            raise ContentError(f"a plain text boolean is 0 or 1, not {text!r}")
        value = text == "1"
    elif kind == "Opaque":
        value = base64.b64encode(payload).decode("ascii")
    else:  # String, Objlnk ("3:0" as it comes)
        value = text
    return {"path": format_path(req_path), "value": value}


def _text_number(text: str, kind: type[int] | type[float]) -> int | float:
    try:
        return kind(text.strip())
    except ValueError:
        raise ContentError(f"expected a number in plain text, got {text!r}") from None


def _decode_tlv(payload: bytes, req_path: Path, objects: ObjectDatabase) -> list[dict[str, Any]]:
    if objects.get(req_path[0]) is None:
        raise ContentError(f"no definition of object {req_path[0]}")
    out: list[dict[str, Any]] = []
    for record in tlv.decode(payload):
        _walk(record, _record_parent(record, req_path), objects, out)
    return out


def _record_parent(record: Tlv, req_path: Path) -> Path:
    """The path the first-level records of a payload hang under."""
    if record.kind is TlvKind.OBJECT_INSTANCE:
        return req_path[:1]
    if record.kind is TlvKind.RESOURCE_INSTANCE:
        return req_path[:3]
    return req_path[:2]  # a resource, single or multiple


def _walk(record: Tlv, parent: Path, objects: ObjectDatabase, out: list[dict[str, Any]]) -> None:
    path = (*parent, record.ident)
    if record.kind.nested:
        for child in record.children:
            _walk(child, path, objects, out)
        return
    kind = _resource_type(objects, path)
    out.append({"path": format_path(path), "value": _tlv_value(kind, record.data)})


def _tlv_value(kind: str, data: bytes) -> Any:
    if kind in ("Integer", "Time"):
        return tlv.decode_integer(data)
    if kind == "Float":
        return tlv.decode_float(data)
    if kind == "Boolean":
        return tlv.decode_boolean(data)
    if kind == "Objlnk":
        object_id, instance_id = tlv.decode_objlnk(data)
        return f"{object_id}:{instance_id}"
    if kind == "String":
        return data.decode("utf-8")
    return base64.b64encode(data).decode("ascii")  # Opaque, or a resource not defined


def _resource_type(objects: ObjectDatabase, path: Path) -> str:
    obj = objects.get(path[0])
    if obj is None:
        raise ContentError(f"no definition of object {path[0]}")
    resource = obj.resources.get(path[2]) if len(path) > 2 else None
    return "Opaque" if resource is None else resource.type


def _decode_json(payload: bytes) -> list[dict[str, Any]]:
    try:
        document = json.loads(payload)
    except ValueError:
        raise ContentError("LwM2M JSON payload is not JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("e"), list):
        raise ContentError("LwM2M JSON payload has no 'e' array")
    base = document.get("bn", "")
    if not isinstance(base, str):
        raise ContentError("LwM2M JSON 'bn' must be a string")
    out = []
    for entry in document["e"]:
        if not isinstance(entry, dict):
            raise ContentError("LwM2M JSON entries are objects")
        name = entry.get("n", "")
        path = parse_path(base + "/" + name if isinstance(name, str) and name else base)
        for key in ("v", "sv", "bv", "ov"):
            if key in entry:
                out.append({"path": format_path(path), "value": entry[key]})
                break
        else:
            raise ContentError(f"LwM2M JSON entry {format_path(path)} has no value")
    return out


# -- downlink ----------------------------------------------------------------------------

def encode_write(base: Path, items: Sequence[WriteItem], objects: ObjectDatabase) -> bytes:
    """The TLV payload writing `items` (paths relative to `base`)."""
    if not items:
        raise ContentError("nothing to write")
    start = 1 if len(base) == 1 else 2  # records begin at the instance or the resource
    tree: dict[int, Any] = {}
    for item in items:
        full = (*base, *item.path)
        if not 3 <= len(full) <= 4:
            raise ContentError(f"write path {format_path(full)} does not name a resource")
        kind = item.type or _defined_type(objects, full)
        node = tree
        for ident in full[start:-1]:
            node = node.setdefault(ident, {})
            if not isinstance(node, dict):
                raise ContentError(f"write path {format_path(full)} given twice")
        if isinstance(node.get(full[-1]), dict):
            raise ContentError(f"write path {format_path(full)} given twice")
        node[full[-1]] = encode_value(kind, item.value)
    return tlv.encode(_records(tree, level=start))


def _records(tree: dict[int, Any], level: int) -> list[Tlv]:
    records = []
    for ident, node in sorted(tree.items()):
        if level == 1:
            records.append(Tlv(TlvKind.OBJECT_INSTANCE, ident, tuple(_records(node, 2))))
        elif isinstance(node, dict):
            records.append(Tlv(TlvKind.MULTIPLE_RESOURCE, ident, tuple(_records(node, 3))))
        else:
            kind = TlvKind.RESOURCE_INSTANCE if level == 3 else TlvKind.RESOURCE
            records.append(Tlv(kind, ident, node))
    return records


def _defined_type(objects: ObjectDatabase, path: Path) -> str:
    resource = objects.resource(path[0], path[2])
    if resource is None:
        raise ContentError(f"no type given for {format_path(path)} and no definition of it")
    return resource.type


def encode_value(kind: str, value: Any) -> bytes:
    """One command value as TLV value bytes, by LwM2M data type."""
    if kind in ("Integer", "Time"):
        return tlv.encode_integer(_integer(value))
    if kind == "Float":
        return tlv.encode_float(_float(value))
    if kind == "Boolean":
        if value in ("true", True):
            return tlv.encode_boolean(True)
        if value in ("false", False):
            return tlv.encode_boolean(False)
        raise ContentError(f"a Boolean value is true or false, not {value!r}")
    if kind == "Objlnk":
        try:
            object_id, instance_id = (int(part) for part in str(value).split(":"))
            return tlv.encode_objlnk(object_id, instance_id)
        except (ValueError, TlvError):
            raise ContentError(f"an Objlnk value is \"object:instance\", not {value!r}") from None
    if kind in ("String", "Opaque"):
        if not isinstance(value, str):
            raise ContentError(f"a {kind} value is a string, not {value!r}")
        return value.encode("utf-8")
    raise ContentError(f"unknown value type {kind!r}")


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        raise ContentError(f"expected an integer, not {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ContentError(f"expected an integer, not {value!r}")


def _float(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise ContentError(f"expected a number, not {value!r}") from None
    else:
        raise ContentError(f"expected a number, not {value!r}")
    if not math.isfinite(number):
        raise ContentError(f"expected a finite number, not {value!r}")
    return number
