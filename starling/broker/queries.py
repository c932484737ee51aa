"""Page-sized, read-only reads of the broker's registries, for the management
facade (`starling.mgmt`).

Everything here answers in time that grows with what is returned, not with
the size of the node: counts are O(1), lookups by client id are dict reads,
and a page ``(offset, limit)`` skips the first `offset` entries inside C
(`itertools.islice` over a dict, `accumulate` over subscription counts) and
builds snapshots for `limit` entries only.  Scans that must look at every
client (a filter on the user name) go through `client_ids` and
`*_users`, so the caller can walk the ids in chunks and let the event loop
run in between.  Nothing here changes the broker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from functools import partial
from itertools import accumulate, chain, compress, islice, takewhile
from operator import attrgetter, ge
from typing import TYPE_CHECKING, Protocol, TypeVar

from starling.mqtt import parse_share

from .snapshots import ConnectionSnapshot, SessionSnapshot, SubscriptionSnapshot

if TYPE_CHECKING:
    from .broker import Broker
    from .session import Session

_subscriptions_of = attrgetter("subscriptions")


class BrokerQueries:
    """The read side the management API needs, over one `Broker`."""

    __slots__ = ("_broker",)

    def __init__(self, broker: Broker) -> None:
        self._broker = broker

    # -- connections ---------------------------------------------------------------------
    def connection_count(self) -> int:
        return len(self._broker.channels)

    def connections_page(self, offset: int, limit: int) -> list[ConnectionSnapshot]:
        return _page(self._broker.channels, offset, limit, ConnectionSnapshot.of)

    def connection(self, client_id: str) -> ConnectionSnapshot | None:
        channel = self._broker.channels.get(client_id)
        return ConnectionSnapshot.of(channel) if channel is not None else None

    def connection_ids(self) -> list[str]:
        """Every connected client id, copied (a C-level copy of the keys) so a scan
        can go on while clients come and go."""
        return list(self._broker.channels)

    def connection_users(self, client_ids: Iterable[str]) -> list[tuple[str, str | None]]:
        """(client id, user name) of those of `client_ids` still connected."""
        return _users(self._broker.channels, client_ids)

    # -- sessions (online and offline) ---------------------------------------------------
    def session_count(self) -> int:
        return len(self._broker.sessions)

    def sessions_page(self, offset: int, limit: int) -> list[SessionSnapshot]:
        return _page(self._broker.sessions, offset, limit, SessionSnapshot.of)

    def session(self, client_id: str) -> SessionSnapshot | None:
        session = self._broker.sessions.get(client_id)
        return SessionSnapshot.of(session) if session is not None else None

    def session_ids(self) -> list[str]:
        return list(self._broker.sessions)

    def session_users(self, client_ids: Iterable[str]) -> list[tuple[str, str | None]]:
        return _users(self._broker.sessions, client_ids)

    # -- subscriptions -------------------------------------------------------------------
    def subscription_count(self) -> int:
        """Every (client, filter) pair, shared subscriptions included."""
        broker = self._broker
        return broker.router.subscription_count + sum(
            len(g.members) for g in broker.shared_groups.values())

    def subscriptions_page(self, offset: int, limit: int) -> list[SubscriptionSnapshot]:
        """Rows ``offset .. offset+limit`` of every session's subscriptions, in session
        order.  Whole sessions before `offset` are skipped by summing their
        subscription counts in C."""
        sessions = self._broker.sessions
        ends = accumulate(map(len, map(_subscriptions_of, sessions.values())))
        before = list(takewhile(partial(ge, offset), ends))  # sessions ending at/before offset
        skip = offset - (before[-1] if before else 0)
        start = len(before)
        # Sessions without subscriptions (most idle clients) are passed over in C too.
        rest = compress(islice(sessions.values(), start, None),
                        map(len, map(_subscriptions_of, islice(sessions.values(), start, None))))
        out: list[SubscriptionSnapshot] = []
        for session in rest:
            for topic_filter, opts in islice(session.subscriptions.items(), skip, None):
                out.append(SubscriptionSnapshot(session.client_id, topic_filter, opts.qos))
                if len(out) >= limit:
                    return out
            skip = 0
        return out

    def subscriptions_of(self, client_id: str) -> list[SubscriptionSnapshot]:
        session = self._broker.sessions.get(client_id)
        if session is None:
            return []
        return [SubscriptionSnapshot(client_id, topic_filter, opts.qos)
                for topic_filter, opts in session.subscriptions.items()]

    def subscribers_of(self, topic_filter: str) -> list[SubscriptionSnapshot]:
        """Who is subscribed to exactly `topic_filter` (a `$share/...` filter: the
        group's members), from the routing tables."""
        broker = self._broker
        name, real = parse_share(topic_filter)
        members: Iterable[tuple[Session, object]]
        if name is None:
            members = broker.router.subscribers(topic_filter).items()
        else:
            group = broker.shared_groups.get((name, real))
            members = group.members.items() if group is not None else ()
        out = []
        for session, _ in members:
            opts = session.subscriptions.get(topic_filter)
            if opts is not None:
                out.append(SubscriptionSnapshot(session.client_id, topic_filter, opts.qos))
        return out

    # -- routes --------------------------------------------------------------------------
    def route_count(self) -> int:
        broker = self._broker
        return broker.router.route_count + broker.shared_router.route_count

    def routes_page(self, offset: int, limit: int) -> list[str]:
        return list(islice(self._filters(), offset, offset + limit))

    def has_route(self, topic_filter: str) -> bool:
        broker = self._broker
        return bool(broker.router.subscribers(topic_filter)
                    or broker.shared_router.subscribers(topic_filter))

    def _filters(self) -> Iterator[str]:
        broker = self._broker
        return chain(broker.router.filters(), broker.shared_router.filters())


class _Client(Protocol):
    @property
    def username(self) -> str | None: ...


C = TypeVar("C", bound=_Client)
S = TypeVar("S")


def _page(registry: dict[str, C], offset: int, limit: int,
          snapshot: Callable[[C], S]) -> list[S]:
    """Snapshots of entries `offset .. offset+limit`; the skipped ones cost a C step."""
    return [snapshot(c) for c in islice(registry.values(), offset, offset + limit)]


def _users(registry: dict[str, C], client_ids: Iterable[str]) -> list[tuple[str, str | None]]:
    return [(cid, c.username) for cid in client_ids if (c := registry.get(cid)) is not None]
