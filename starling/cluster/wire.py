"""What travels between nodes, as bytes.

Forwarded messages: a NATS message on a node's forward subject is a batch of
records, each one message with what the receiving node must do with it:

    record  = route body
    route   = !BH  plain (1: deliver to matching plain subscriptions), n groups
              n x (!HH len(group) len(filter), group, filter)   shared groups to serve
    body    = !BHIHHIdd  flags (qos | retain << 2 | sys << 3), len(topic), len(payload),
              len(sender), len(username) (0xFFFF: none), len(properties),
              timestamp, expires_at (epoch seconds, 0: none)
              topic, payload, sender, username, properties (MQTT 5.0 encoding)

The body is encoded once per message and shared by every node it goes to.
Retained messages in the cluster's bucket use the same body encoding.

Session records (a session moving to another node) travel as JSON, with
payloads and property blocks in base64.
"""

from __future__ import annotations

import base64
import struct
import time
from collections.abc import Iterator
from typing import Any

from starling.broker import Message
from starling.mqtt import Properties, decode_properties, encode_properties
from starling.store import (
    MessageRecord,
    SessionMessageRecord,
    SessionRecord,
    SubscriptionRecord,
)

_ROUTE = struct.Struct("!BH")
_GROUP = struct.Struct("!HH")
_BODY = struct.Struct("!BHIHHIdd")
_NO_USERNAME = 0xFFFF

#: (group name, real filter): a shared group, as `$share/<group>/<filter>`.
GroupKey = tuple[str, str]


class WireError(ValueError):
    """Bytes from another node that do not decode (a version mismatch, or damage)."""


def encode_body(message: Message) -> bytes:
    topic = message.topic.encode()
    sender = message.sender.encode()
    username = message.username.encode() if message.username is not None else None
    props = encode_properties(message.properties) if message.properties else b""
    expires_at = 0.0
    if message.expires_at is not None:
        expires_at = time.time() + (message.expires_at - time.monotonic())
    flags = message.qos | (message.retain << 2) | (message.sys << 3)
    head = _BODY.pack(flags, len(topic), len(message.payload), len(sender),
                      _NO_USERNAME if username is None else len(username), len(props),
                      message.timestamp, expires_at)
    return b"".join((head, topic, message.payload, sender, username or b"", props))


def encode_route(plain: bool, groups: tuple[GroupKey, ...] = ()) -> bytes:
    if not groups:
        return _PLAIN_ROUTE if plain else _ROUTE.pack(0, 0)
    parts = [_ROUTE.pack(plain, len(groups))]
    for name, topic_filter in groups:
        a, b = name.encode(), topic_filter.encode()
        parts += (_GROUP.pack(len(a), len(b)), a, b)
    return b"".join(parts)


_PLAIN_ROUTE = _ROUTE.pack(1, 0)


def decode_body(data: bytes | memoryview, pos: int = 0) -> tuple[Message, int]:
    """The message encoded at `pos`, and the position after it."""
    try:
        (flags, n_topic, n_payload, n_sender, n_user, n_props, timestamp,
         expires_at) = _BODY.unpack_from(data, pos)
    except struct.error as exc:
        raise WireError(f"truncated message: {exc}") from None
    pos += _BODY.size
    end = pos + n_topic + n_payload + n_sender + (0 if n_user == _NO_USERNAME else n_user) \
        + n_props
    if end > len(data):
        raise WireError("truncated message")
    raw = bytes(data[pos:end])
    i = 0
    topic = raw[i:i + n_topic].decode()
    i += n_topic
    payload = raw[i:i + n_payload]
    i += n_payload
    sender = raw[i:i + n_sender].decode()
    i += n_sender
    username = None
    if n_user != _NO_USERNAME:
        username = raw[i:i + n_user].decode()
        i += n_user
    properties: Properties = {}
    if n_props:
        properties, _ = decode_properties(raw, i, i + n_props)
    message = Message(topic, payload, flags & 3, bool(flags & 4), sender, username, None,
                      properties, timestamp, sys=bool(flags & 8))
    if expires_at:
        message.expires_at = time.monotonic() + (expires_at - time.time())
    return message, end


def decode_batch(data: bytes) -> Iterator[tuple[bool, tuple[GroupKey, ...], Message]]:
    """Each record of a forwarded batch: (plain, shared groups, message)."""
    view = memoryview(data)
    pos = 0
    while pos < len(data):
        try:
            plain, n_groups = _ROUTE.unpack_from(view, pos)
        except struct.error as exc:
            raise WireError(f"truncated record: {exc}") from None
        pos += _ROUTE.size
        groups: list[GroupKey] = []
        for _ in range(n_groups):
            a, b = _GROUP.unpack_from(view, pos)
            pos += _GROUP.size
            groups.append((bytes(view[pos:pos + a]).decode(),
                           bytes(view[pos + a:pos + a + b]).decode()))
            pos += a + b
        message, pos = decode_body(view, pos)
        yield bool(plain), tuple(groups), message


# -- session records as JSON ---------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def message_record_json(rec: MessageRecord) -> dict[str, Any]:
    return {"id": rec.id, "topic": rec.topic, "payload": _b64(rec.payload), "qos": rec.qos,
            "retain": rec.retain, "properties": _b64(rec.properties), "sender": rec.sender,
            "username": rec.username, "timestamp": rec.timestamp,
            "expires_at": rec.expires_at}


def message_record_of(obj: dict[str, Any]) -> MessageRecord:
    return MessageRecord(int(obj["id"]), str(obj["topic"]), _unb64(obj["payload"]),
                         int(obj["qos"]), bool(obj["retain"]), _unb64(obj["properties"]),
                         str(obj["sender"]), obj["username"], float(obj["timestamp"]),
                         obj["expires_at"])


def session_record_json(rec: SessionRecord) -> dict[str, Any]:
    return {
        "client_id": rec.client_id, "username": rec.username,
        "expiry_interval": rec.expiry_interval, "created_at": rec.created_at,
        "disconnected_at": rec.disconnected_at,
        "subscriptions": [[s.topic_filter, s.qos, s.no_local, s.retain_as_published,
                           s.retain_handling] for s in rec.subscriptions],
        "messages": [{"message": message_record_json(m.message), "seq": m.seq, "qos": m.qos,
                      "retain": m.retain, "packet_id": m.packet_id, "released": m.released}
                     for m in rec.messages],
        "awaiting_rel": list(rec.awaiting_rel),
        "peercert": rec.peercert,
    }


def session_record_of(obj: dict[str, Any]) -> SessionRecord:
    try:
        return SessionRecord(
            str(obj["client_id"]), obj["username"], float(obj["expiry_interval"]),
            float(obj["created_at"]), obj["disconnected_at"],
            [SubscriptionRecord(str(f), int(q), bool(nl), bool(rap), int(rh))
             for f, q, nl, rap, rh in obj["subscriptions"]],
            [SessionMessageRecord(message_record_of(m["message"]), int(m["seq"]),
                                  int(m["qos"]), bool(m["retain"]), m["packet_id"],
                                  bool(m["released"])) for m in obj["messages"]],
            [int(p) for p in obj["awaiting_rel"]],
            None if obj.get("peercert") is None else str(obj["peercert"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise WireError(f"bad session record: {exc}") from None
