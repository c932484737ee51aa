"""What travels between nodes, as bytes, besides forwarded messages (those are
`forwards`, batched per loop turn).

Retained messages in the cluster's bucket are each one message body:

    body    = !BHIHHIdd  flags (qos | retain << 2 | sys << 3), len(topic), len(payload),
              len(sender), len(username) (0xFFFF: none), len(properties),
              timestamp, expires_at (epoch seconds, 0: none)
              topic, payload, sender, username, properties (MQTT 5.0 encoding)

Session records (a session moving to another node) travel as JSON, with
payloads and property blocks in base64.
"""

from __future__ import annotations

import base64
import struct
import time
from typing import Any

from starling.broker import Message
from starling.mqtt import Properties, decode_properties, encode_properties
from starling.store import (
    MessageRecord,
    SessionMessageRecord,
    SessionRecord,
    SubscriptionRecord,
)

from .forwards import GroupKey, WireError

__all__ = ["GroupKey", "WireError", "decode_body", "encode_body", "session_record_json",
           "session_record_of"]

_BODY = struct.Struct("!BHIHHIdd")
_NO_USERNAME = 0xFFFF


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
