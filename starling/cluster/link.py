"""A node's membership of a cluster: the object the broker talks to when
`cluster.discovery = nats` (the broker's `ClusterLink`).

It ties the parts together: the NATS connection, the node list
(`Membership`), this node's routes and the other nodes' (`LocalRoutes`,
`RemoteRoutes`), forwarding (`Outbox`, the forward subscription), calls
between nodes (`Rpc`), client-id ownership (`Ownership`) and the replicated
retained messages (`Replica`).  It also reacts to faults: a node that
stops answering loses its routes; a NATS outage raises the
``cluster_nats_down`` alarm, and when NATS is back the node reads every
table again and tells the others to do the same for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from starling.broker import Broker, Message
from starling.store import SessionRecord

from .connection import NatsConnection
from .errors import ClusterUnavailable, NameTaken
from .forwards import Target, WireError
from .forwards import decode as decode_forwards
from .membership import Member, Membership
from .names import Names
from .outbox import Outbox
from .ownership import ClaimFailed, Ownership
from .replica import Replica
from .routes import NO_MATCH, LocalRoutes, RemoteRoutes
from .rpc import RemoteError, Rpc, Unreachable
from .settings import ClusterSettings
from .tables import SharedTables
from .wire import (
    GroupKey,
    decode_body,
    encode_body,
    session_record_json,
    session_record_of,
)

log = logging.getLogger(__name__)

NATS_DOWN_ALARM = "cluster_nats_down"
FORWARDED = "messages/forward"
FORWARD_DROPPED = "messages/forward/dropped"
FORWARD_RECEIVED = "messages/forward/received"
_NO_GROUPS: frozenset[GroupKey] = frozenset()
_NOTHING: tuple[int, frozenset[GroupKey]] = (0, _NO_GROUPS)

__all__ = ["Cluster", "ClusterUnavailable", "NameTaken"]


def _nothing(*args: str) -> None:
    return None


def _no_rows(table: str) -> Mapping[str, str]:
    return {}


class Cluster:
    def __init__(self, settings: ClusterSettings, broker: Broker, version: str,
                 store_save: Callable[[str, str, str], None] | None = None,
                 store_delete: Callable[[str, str], None] | None = None,
                 store_load: Callable[[str], Mapping[str, str]] | None = None) -> None:
        self.settings = settings
        self.broker = broker
        self.node = settings.node_name
        self.incarnation = uuid.uuid4().hex
        self.names = Names(settings.name)
        self.conn = NatsConnection(settings.nats, f"starling {self.node}", self._link_down,
                                   self._link_up, self._slow_consumer)
        self.rpc = Rpc(self.conn, self.names, self.node, settings.rpc_timeout)
        self.outbox = Outbox(self.conn, settings.forward_buffer, self._dropped,
                             self._forwarded)
        self._add_forward = self.outbox.batches.add
        self.local = LocalRoutes(self._announce, self.node, self.incarnation)
        self.remote = RemoteRoutes()
        self.membership = Membership(self.conn, self.names, settings, self.incarnation,
                                     version, lambda: self.local.seq, self._node_up,
                                     self._node_down, self._heartbeat)
        self.ownership = Ownership(self.conn, self.names, self.node, settings.rpc_timeout)
        self.retained = Replica(self.conn, self.names.bucket("retained"), self.node,
                                self._apply_retained, self._local_retained)
        #: The store tables every node shares (apps, users, banned, auth, rules, ...).
        self.tables = SharedTables(self.conn, self.names.bucket("tables"), self.node,
                                   store_save or _nothing, store_delete or _nothing,
                                   store_load or _no_rows)
        self._forward_subject = {self.node: self.names.forward(self.node)}
        #: Where a message matching only plain routes goes, by the nodes it matched.
        self._plain_targets: dict[tuple[str, ...], list[Target]] = {}
        self._subs: list[Subscription] = []
        self._resyncing: dict[str, asyncio.Task[None]] = {}
        #: Nodes whose heartbeat showed a route batch we had not seen: resync if still so.
        self._behind: set[str] = set()
        #: Client ids connected while NATS was away: claimed when it is back.
        self._unclaimed: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.running = False

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Join: connect, claim the node name, learn the others' routes and the
        replicated state.  Raises ClusterUnavailable / NameTaken (nothing left running)."""
        await self.conn.connect()
        try:
            await self.membership.join(self._ping)
            await self.ownership.start()
            await self._reclaim_sessions()
            self._register_calls()
            await self.rpc.start()
            nc = self.conn.nc
            self._subs = [
                await nc.subscribe(self.names.forward(self.node), cb=self._on_forward,
                                   pending_bytes_limit=256 * 1024 * 1024),
                await nc.subscribe(self.names.all_routes, cb=self._on_routes),
            ]
            self.outbox.start()
            self.running = True
            await self.membership.start()
            await self.retained.start(self.settings.rpc_timeout * 2)
            await self.tables.replica.start(self.settings.rpc_timeout * 2)
        except BaseException:
            await self.stop()
            raise
        log.info("cluster: node %s joined cluster %s (%d other nodes running)", self.node,
                 self.settings.name, len(self.membership.running_nodes()))

    async def _reclaim_sessions(self) -> None:
        """Sessions restored from this node's store that moved to another node while
        it was down are forgotten here."""
        for client_id in list(self.broker.sessions):
            try:
                holder = await self.ownership.reclaim(client_id)
            except (nats.errors.Error, TimeoutError) as exc:
                log.warning("cluster: cannot check the owner of client %r: %s", client_id, exc)
                continue
            if holder is not None:
                log.info("cluster: session of %r lives on %s now; dropped here", client_id,
                         holder)
                self.broker.drop_session(client_id)

    async def stop(self, leave: bool = False) -> None:
        self.running = False
        if self._tasks:  # client ids released by the sessions that just ended
            await asyncio.wait(list(self._tasks), timeout=1.0)
        for task in [*self._tasks, *self._resyncing.values()]:
            task.cancel()
        await self.membership.stop(leave)
        await self.retained.stop()
        await self.tables.replica.stop()
        await self.rpc.stop()
        # Let what is queued for the others go out, briefly.
        with contextlib.suppress(TimeoutError, nats.errors.Error):
            self.local.flush()
            await asyncio.sleep(0)
            await asyncio.wait_for(self.conn.nc.flush(), 1.0)
        await self.outbox.stop()
        await self.conn.close()

    def _track(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- ClusterLink: what the broker calls ------------------------------------------------
    def route_changed(self, group: str, topic_filter: str, count: int) -> None:
        """A local route gained or lost subscribers: ("", filter) plain, else a shared
        group with `count` local members (0: gone)."""
        self.local.set((group, topic_filter), count)

    def forward(self, message: Message) -> tuple[int, frozenset[GroupKey]]:
        """Send `message` to every other node with a matching route; return how many
        nodes it went to and the shared groups served elsewhere (the broker skips
        those)."""
        remote = self.remote
        found = remote.cache.get(message.topic)
        if found is None:
            found = remote.match(message.topic)
        if found is NO_MATCH:
            return _NOTHING
        nodes, groups = found
        if not groups:  # the common case: plain routes, targets made once per node set
            targets = self._plain_targets.get(nodes)
            if targets is None:
                if len(self._plain_targets) >= 1024:
                    self._plain_targets.clear()
                targets = self._plain_targets[nodes] = [
                    (self._subject(node), True, ()) for node in nodes]
            self._add_forward(message, targets)
            return len(targets), _NO_GROUPS
        taken: set[GroupKey] = set()
        per_node: dict[str, list[GroupKey]] = {}
        strategy = self.broker.options.shared_subscription_strategy
        here = self.node
        for key in groups:
            chosen = remote.pick(key, strategy, message.sender, here,
                                 self.local.table.get(key, 0))
            if chosen is not None and chosen != here:
                per_node.setdefault(chosen, []).append(key)
                taken.add(key)
        targets = [(self._subject(node), True, tuple(per_node.pop(node, ()))) for node in nodes]
        targets += [(self._subject(node), False, tuple(shared))
                    for node, shared in per_node.items()]
        if targets:
            self._add_forward(message, targets)
        return len(targets), frozenset(taken)

    def _subject(self, node: str) -> str:
        subject = self._forward_subject.get(node)
        if subject is None:
            subject = self._forward_subject[node] = self.names.forward(node)
        return subject

    async def claim(self, client_id: str, clean_start: bool) -> SessionRecord | None:
        """Before `client_id`'s session opens here: own the id cluster-wide; if another
        node had it, that node kicks its connection and (unless `clean_start`) hands
        over the session, which is returned."""
        if not self.conn.connected:
            self._unclaimed.add(client_id)
            return None
        try:
            previous = await self.ownership.claim(client_id)
        except ClaimFailed as exc:
            log.warning("cluster: %s; connecting it on this node alone", exc)
            self._unclaimed.add(client_id)
            return None
        if previous is None or not self.membership.is_running(previous):
            return None
        try:
            data = await self.rpc.call(previous, "takeover", {
                "client_id": client_id, "clean_start": clean_start})
        except (Unreachable, RemoteError) as exc:
            log.warning("cluster: client %r: takeover from %s failed: %s", client_id,
                        previous, exc)
            return None
        return session_record_of(data) if data else None

    def released(self, client_id: str) -> None:
        """`client_id`'s session ended on this node."""
        self._unclaimed.discard(client_id)
        if self.ownership.holds(client_id):
            self._track(self.ownership.release(client_id))

    def retained_changed(self, topic: str, message: Message | None) -> None:
        """A retained message was stored (or cleared, None) on this node."""
        if message is None:
            self.retained.delete(topic)
        else:
            self.retained.put(topic, encode_body(message))

    # -- inbound ---------------------------------------------------------------------------
    async def _on_forward(self, msg: Msg) -> None:
        try:
            records = decode_forwards(msg.data)
        except WireError as exc:
            log.warning("cluster: undecodable batch of forwarded messages: %s", exc)
            return
        self.broker.counters[FORWARD_RECEIVED] += len(records)
        self.broker.dispatch_forwarded(records)

    def _apply_retained(self, topic: str, body: bytes | None) -> None:
        if body is None:
            self.broker.retained_replicated(topic, None)
            return
        try:
            message, _ = decode_body(body)
        except WireError as exc:
            log.warning("cluster: undecodable retained message for %r: %s", topic, exc)
            return
        if not message.expired:
            self.broker.retained_replicated(topic, message)

    def _local_retained(self) -> dict[str, bytes]:
        return {m.topic: encode_body(m) for m in self.broker.retained.messages() if not m.sys}

    # -- routes ----------------------------------------------------------------------------
    def _announce(self, batch: bytes) -> None:
        self.outbox.send(self.names.routes(self.node), batch)

    async def _on_routes(self, msg: Msg) -> None:
        try:
            batch = json.loads(msg.data)
            node = str(batch["node"])
        except (ValueError, KeyError, TypeError):
            return
        if node == self.node:
            return
        if not self.remote.apply(node, batch) and self.membership.is_running(node):
            self._resync(node)

    def _resync(self, node: str) -> None:
        """Ask `node` for its whole route table (once at a time)."""
        if node in self._resyncing or not self.running:
            return
        task = asyncio.get_running_loop().create_task(self._fetch_routes(node))
        self._resyncing[node] = task
        task.add_done_callback(lambda _: self._resyncing.pop(node, None))

    async def _fetch_routes(self, node: str) -> None:
        for attempt in range(5):
            try:
                snapshot = await self.rpc.call(node, "routes")
            except (Unreachable, RemoteError) as exc:
                log.debug("cluster: routes of %s: %s", node, exc)
                await asyncio.sleep(0.2 * (attempt + 1))
                continue
            if self.membership.is_running(node):
                self.remote.replace(node, snapshot)
                self._behind.discard(node)
            return

    # -- membership ------------------------------------------------------------------------
    def _node_up(self, member: Member) -> None:
        self._resync(member.name)

    def _node_down(self, node: str) -> None:
        self.remote.drop(node)
        self._behind.discard(node)
        task = self._resyncing.pop(node, None)
        if task is not None:
            task.cancel()

    def _heartbeat(self, member: Member) -> None:
        known = self.remote.known(member.name)
        if known is None or known[0] != member.incarnation:
            self._resync(member.name)
        elif known[1] < member.routes_seq:
            if member.name in self._behind:
                self._resync(member.name)
            else:
                self._behind.add(member.name)
        else:
            self._behind.discard(member.name)

    async def _ping(self, node: str) -> bool:
        try:
            await self.rpc.call(node, "ping", timeout=1.0)
        except Unreachable:
            return False
        except RemoteError:
            return True
        return True

    # -- faults ----------------------------------------------------------------------------
    def _link_down(self) -> None:
        if self.running:
            self.broker.alarms.raise_alarm(
                NATS_DOWN_ALARM, f"NATS is unreachable ({', '.join(self.settings.nats.servers)});"
                " serving local clients only")

    async def _link_up(self) -> None:
        if not self.running:
            return
        self.broker.alarms.clear_alarm(NATS_DOWN_ALARM)
        self._track(self._rejoin())

    async def _rejoin(self) -> None:
        """NATS is back: read the node list, routes and replicated state again, and
        claim the client ids that connected meanwhile."""
        await self.membership.watch()
        for node in self.membership.running_nodes():
            self._resync(node)
        await self.retained.resync(self.settings.rpc_timeout * 2)
        await self.tables.replica.resync(self.settings.rpc_timeout * 2)
        for client_id in list(self._unclaimed):
            if self.broker.client_info(client_id) is None:
                self._unclaimed.discard(client_id)
                continue
            try:
                previous = await self.ownership.claim(client_id)
            except ClaimFailed:
                continue
            self._unclaimed.discard(client_id)
            if previous is not None and self.membership.is_running(previous):
                log.info("cluster: client %r connected on %s and here while NATS was away; "
                         "the connection on %s is closed", client_id, previous, previous)
                self._track(self.rpc.call(previous, "takeover", {
                    "client_id": client_id, "clean_start": True}))

    def _dropped(self, count: int) -> None:
        self.broker.counters[FORWARD_DROPPED] += count

    def _forwarded(self, count: int) -> None:
        self.broker.counters[FORWARDED] += count

    def _slow_consumer(self) -> None:
        self.broker.counters[FORWARD_DROPPED] += 1

    # -- calls from other nodes ----------------------------------------------------------
    def _register_calls(self) -> None:
        register = self.rpc.register
        register("ping", self._call_ping)
        register("routes", self._call_routes)
        register("takeover", self._call_takeover)

    async def handle(self, op: str, handler: Callable[[Any], Awaitable[Any]]) -> None:
        """Serve another call (the management views register theirs)."""
        self.rpc.register(op, handler)

    async def _call_ping(self, args: Any) -> Any:
        return {"node": self.node, "incarnation": self.incarnation, "time": time.time()}

    async def _call_routes(self, args: Any) -> Any:
        return self.local.snapshot()

    async def _call_takeover(self, args: Any) -> Any:
        client_id = str(args["client_id"])
        self.ownership.lost(client_id)
        self._unclaimed.discard(client_id)
        record = self.broker.hand_over(client_id, keep_session=not args["clean_start"])
        return session_record_json(record) if record is not None else None

    # -- views -------------------------------------------------------------------------------
    def nodes(self) -> list[dict[str, Any]]:
        return self.membership.listing()

    def running_nodes(self) -> list[str]:
        return self.membership.running_nodes()
