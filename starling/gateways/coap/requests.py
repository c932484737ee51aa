"""emqx_coap's URL scheme, sans-IO.

``coap://host/mqtt/{topic}?c={clientid}&u={username}&p={password}``: the
topic is the Uri-Path after ``mqtt`` joined with ``/`` (so ``/mqtt/a/b`` is
topic ``a/b``); the client's identity is the query.  Query items are matched
by their exact ``c=``, ``u=``, ``p=`` prefixes, as EMQ X does; others are
ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from starling.mqtt import is_valid_topic_filter, is_valid_topic_name


@dataclass(frozen=True, slots=True)
class Credentials:
    """The key of one CoAP client session: EMQ X keeps one per (c, u, p)."""

    client_id: str
    username: str | None
    password: str | None


def credentials(query: Sequence[str]) -> Credentials | None:
    """The client named by the query, or None when ``c`` is missing or empty (4.00)."""
    found: dict[str, str] = {}
    for item in query:
        for key in ("c", "u", "p"):
            if item.startswith(key + "=") and key not in found:
                found[key] = item[2:]
    client_id = found.get("c", "")
    if not client_id:
        return None
    return Credentials(client_id, found.get("u"), found.get("p"))


def topic_of(path: Sequence[str]) -> str:
    """The topic a ``/mqtt/...`` or ``/ps/...`` path names ('' when there is none)."""
    return "/".join(path)


def publishable(topic: str) -> bool:
    return bool(topic) and is_valid_topic_name(topic)


def observable(topic_filter: str) -> bool:
    return bool(topic_filter) and is_valid_topic_filter(topic_filter)
