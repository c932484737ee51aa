"""Queries about clients on one node: connections, sessions, subscriptions, routes,
and the two client actions (kick, clean a persistent session).

A slice query answers ``{"count": N, "rows": [...]}``: rows `offset .. offset+limit`
of the node's list after the filters, and how many rows the filtered list has.
Unfiltered, the count is O(1) and the rows cost O(limit); a client id filter is a
dict lookup; a user name filter scans the client ids in chunks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from . import fields
from .local import LocalNode
from .paging import build_rows, render_rows, scan
from .query import JSON, Params, query

S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class ClientSlice(Params):
    offset: int = 0
    limit: int = 10000
    client_id: str | None = None
    username: str | None = None


@dataclass(frozen=True, slots=True)
class SubscriptionSlice(Params):
    offset: int = 0
    limit: int = 10000
    client_id: str | None = None
    #: A topic filter exactly as subscribed (``$share/g/t`` for a shared one).
    topic: str | None = None


@dataclass(frozen=True, slots=True)
class RouteSlice(Params):
    offset: int = 0
    limit: int = 10000
    topic: str | None = None


@dataclass(frozen=True, slots=True)
class ClientId(Params):
    client_id: str


def _slice(count: int, rows: list[fields.Row]) -> JSON:
    return {"count": count, "rows": rows}


async def _client_slice(p: ClientSlice, *, count: Callable[[], int],
                        page: Callable[[int, int], Sequence[S]],
                        one: Callable[[str], S | None],
                        ids: Callable[[], list[str]],
                        users: Callable[[Sequence[str]], Sequence[tuple[str, str | None]]],
                        username_of: Callable[[S], str | None],
                        render: Callable[[S], fields.Row]) -> JSON:
    """Connections and sessions alike: by client id (O(1)), by user name (a chunked
    scan), or a plain page."""
    if p.client_id is not None:
        found = one(p.client_id)
        matches = [found] if found is not None and (
            p.username is None or username_of(found) == p.username) else []
        return _slice(len(matches), [render(s) for s in matches[p.offset:p.offset + p.limit]])
    if p.username is not None:
        wanted = p.username
        matched = await scan(ids(), users, lambda name: name == wanted)
        chosen = [s for cid in matched[p.offset:p.offset + p.limit]
                  if (s := one(cid)) is not None]
        return _slice(len(matched), await render_rows(chosen, render))
    return _slice(count(), await build_rows(page, render, p.offset, p.limit))


# -- connections -----------------------------------------------------------------------------

@query("connections.slice", ClientSlice)
async def connections_slice(node: LocalNode, p: ClientSlice) -> JSON:
    reads = node.reads
    return await _client_slice(
        p, count=reads.connection_count, page=reads.connections_page, one=reads.connection,
        ids=reads.connection_ids, users=reads.connection_users,
        username_of=lambda c: c.username, render=lambda c: fields.connection(c, node.name))


@query("connections.kick", ClientId)
async def kick(node: LocalNode, p: ClientId) -> JSON:
    """True if the client was connected here (and now is not)."""
    return node.broker.kick(p.client_id)


# -- sessions --------------------------------------------------------------------------------

@query("sessions.slice", ClientSlice)
async def sessions_slice(node: LocalNode, p: ClientSlice) -> JSON:
    reads = node.reads
    return await _client_slice(
        p, count=reads.session_count, page=reads.sessions_page, one=reads.session,
        ids=reads.session_ids, users=reads.session_users,
        username_of=lambda s: s.username, render=lambda s: fields.session(s, node.name))


@query("sessions.clean", ClientId)
async def clean_session(node: LocalNode, p: ClientId) -> JSON:
    """Discard an offline persistent session: "ok", "not_found" or "running_session"."""
    return node.broker.clean_session(p.client_id)


# -- subscriptions ---------------------------------------------------------------------------

@query("subscriptions.slice", SubscriptionSlice)
async def subscriptions_slice(node: LocalNode, p: SubscriptionSlice) -> JSON:
    reads = node.reads

    def render(s: Any) -> fields.Row:
        return fields.subscription(s, node.name)

    if p.client_id is not None or p.topic is not None:
        found = (reads.subscriptions_of(p.client_id) if p.client_id is not None
                 else reads.subscribers_of(p.topic or ""))
        found = [s for s in found if (p.topic is None or s.topic == p.topic)]
        chosen = found[p.offset:p.offset + p.limit]
        return _slice(len(found), await render_rows(chosen, render))
    return _slice(reads.subscription_count(),
                  await build_rows(reads.subscriptions_page, render, p.offset, p.limit))


# -- routes ----------------------------------------------------------------------------------

@query("routes.slice", RouteSlice)
async def routes_slice(node: LocalNode, p: RouteSlice) -> JSON:
    """This node's routes: the topic filters its clients subscribed to."""
    reads = node.reads

    def render(topic: str) -> fields.Row:
        return fields.route(topic, node.name)

    if p.topic is not None:
        found = [p.topic] if reads.has_route(p.topic) else []
        return _slice(len(found), [render(t) for t in found[p.offset:p.offset + p.limit]])
    return _slice(reads.route_count(),
                  await build_rows(reads.routes_page, render, p.offset, p.limit))
