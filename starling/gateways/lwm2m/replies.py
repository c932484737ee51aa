"""Uplink JSON: what emqx_lwm2m publishes on ``up/resp`` and ``up/notify``.

An answer is the command it answers with ``data`` replaced by
``{reqPath, code, codeMsg[, content]}`` (and ``msgType`` changed where EMQ X
changes it: ``ack``, ``observe``, ``notify``).  Code names are gen_coap's
atoms, the misspelt ``uauthorized`` included, so consumers written for EMQ X
keep matching.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .commands import Command

#: CoAP response codes (class << 5 | detail) → gen_coap's names.
CODE_NAMES: dict[int, str] = {
    0x41: "created", 0x42: "deleted", 0x43: "valid", 0x44: "changed", 0x45: "content",
    0x5F: "continue",
    0x80: "bad_request", 0x81: "uauthorized", 0x82: "bad_option", 0x83: "forbidden",
    0x84: "not_found", 0x85: "method_not_allowed", 0x86: "not_acceptable",
    0x88: "request_entity_incomplete", 0x8C: "precondition_failed",
    0x8D: "request_entity_too_large", 0x8F: "unsupported_content_format",
    0xA0: "internal_server_error", 0xA1: "not_implemented", 0xA2: "bad_gateway",
    0xA3: "service_unavailable", 0xA4: "gateway_timeout", 0xA5: "proxying_not_supported",
}
BAD_REQUEST = 0x80
GATEWAY_TIMEOUT = 0xA4


def code_string(code: int) -> str:
    """``0x45`` → ``"2.05"``."""
    return f"{code >> 5}.{code & 0x1F:02d}"


def code_message(code: int) -> str:
    return CODE_NAMES.get(code, "unknown")


def response(command: Command, code: int, content: list[Any] | None = None,
             msg_type: str | None = None) -> dict[str, Any]:
    """The answer to `command` (``content`` only when given)."""
    data: dict[str, Any] = {"reqPath": command.req_path, "code": code_string(code),
                            "codeMsg": code_message(code)}
    if content is not None:
        data["content"] = content
    return {**command.envelope, "msgType": msg_type or command.msg_type, "data": data}


def notification(command: Command, seq_num: int, code: int,
                 content: list[Any] | None) -> dict[str, Any]:
    """A later notification of an observed path (``up/notify``)."""
    message = response(command, code, content, msg_type="notify")
    return {**message, "seqNum": seq_num}


def separate_ack(command: Command) -> dict[str, Any]:
    """The device acknowledged but will answer later (a separate response)."""
    return {**command.envelope, "msgType": "ack", "data": dict(command.data)}


def event(msg_type: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """A ``register`` or ``update`` message."""
    return {"msgType": msg_type, "data": dict(data)}
