"""Config values the gateways share: where a listener binds, text values, and
how the keys of a `$id` family (``mqtt.sn.predefined.topic.<id>``) are read."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starling.transport import parse_bind


def parse_listen(value: str) -> tuple[str, int]:
    """``PORT`` or ``IP:PORT`` (``[::1]:PORT`` for IPv6); port 0 picks a free one."""
    try:
        host, port = parse_bind(value)
    except ValueError as exc:
        raise ValueError(str(exc)) from None
    if not 0 <= port <= 65535:
        raise ValueError(f"a port is 0-65535, got {value!r}")
    return host, port


def text(value: str) -> str:
    """Any string (passwords, file names; empty allowed)."""
    return value


def non_empty(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def family(settings: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The keys set under `prefix` (``"mqtt.sn.client."``), by the rest of their
    name (``"lab.clientid"``)."""
    return {key[len(prefix):]: value for key, value in settings.items()
            if key.startswith(prefix)}
