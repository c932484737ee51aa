"""The Broker facade: the one object the rest of Starling talks to.

It owns the session registry (client id → session, client id → connected
`Client`: an MQTT channel or a gateway's client), the router, the retained
store, the hooks bus, metrics and stats.  Clients call into it for everything
that crosses connections: opening a session (with takeover), publishing,
subscribing.  The REST API, plugins and the rule engine use the same methods
and the readers at the end (snapshots, `ClientInfo`), never a live client or
session.

The publish path (`publish` → `dispatch` → `Session.deliver`) awaits
nothing and logs nothing per message.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from starling.mqtt import (
    SubscriptionOptions,
    is_wildcard,
    matches,
    parse_share,
    topic_levels_ok,
)
from starling.store import (
    MemoryStore,
    SessionMessageRecord,
    SessionRecord,
    SubscriptionRecord,
)

from . import metrics as m
from .acl import AclCache, InternalAcl, acl_topic
from .alarms import AlarmMonitor, Alarms
from .banned import IP_ADDRESS, USERNAME, Ban, Banned, normalize_ip
from .client import CLOSED, CONNECTED, Client
from .clock import Clock, Timer
from .cluster import ClusterLink, GroupKey
from .hooks import HookPoint, Hooks, Points
from .info import ClientInfo
from .journal import Journal, message_of, record_of
from .memory import ConnectionMemory, connection_memory
from .message import Message, reset_message_ids
from .options import BrokerOptions
from .retained import RetainedStore, RetainerSettings
from .router import Router
from .session import InflightEntry, Session
from .shared import SharedGroup
from .snapshots import ConnectionSnapshot, SessionSnapshot, SubscriptionSnapshot
from .stats import Stats
from .sys_topics import SysPublisher
from .timers import TimerWheel

log = logging.getLogger(__name__)

#: `discard_session`'s reason when a clean start or the API discards a session
#: (`session.discarded`); any other reason ends it with `session.terminated`.
DISCARDED = "discarded"

#: Seconds between two log lines about retained messages the retainer refused.
REFUSAL_LOG_INTERVAL = 10.0
#: Raised while the store cannot commit (disk full, I/O error, locked).
STORE_UNAVAILABLE = "store_unavailable"


def _owner(username: str | None, peercert: str | None) -> str:
    """Who a session belongs to, for the log."""
    if username is not None:
        return f"user {username!r}"
    return f"certificate {peercert!r}" if peercert is not None else "an anonymous client"


class Broker:
    def __init__(self, options: BrokerOptions | None = None,
                 journal: Journal | None = None,
                 zones: dict[str, BrokerOptions] | None = None,
                 clock: Clock | None = None) -> None:
        self.options = options or BrokerOptions()
        #: The time and the event loop for everything the core schedules (`clock.py`).
        self.clock = clock or Clock()
        #: Each zone's options (`zone.<name>.*` over the node-wide ones); a zone not
        #: listed uses `options`.
        self.zones: dict[str, BrokerOptions] = zones or {}
        #: Writes durable state to the store; disabled with the memory store.
        self.journal = journal or Journal(MemoryStore())
        self.journal.on_health = self._store_health
        #: Retained topics changed by QoS 0 PUBLISHes while the store could not
        #: write: saved (their latest state) once it can, instead of one write each.
        self._unsaved_retained: set[str] = set()
        self.hooks = Hooks()
        self.counters = m.new_counters()
        self.router: Router[Session] = Router()
        #: Shared subscriptions: a router of groups, and the groups by (name, filter).
        self.shared_router: Router[SharedGroup] = Router()
        self.shared_groups: dict[tuple[str, str], SharedGroup] = {}
        self.retained = RetainedStore()
        #: The retainer's limits while it is on; None: retained messages are neither
        #: stored nor delivered (emqx_retainer unloaded).  `set_retainer` changes it.
        self.retainer: RetainerSettings | None = RetainerSettings()
        #: Store retained PUBLISHes? (retainer on and `mqtt.retain_available`)
        self._retaining = self.options.retain_available
        #: Whether the node's store holds a copy of every retained message.
        self._retained_in_store = True
        self._refusals = 0
        self._refusal_logged = 0.0
        self.sessions: dict[str, Session] = {}
        #: Connected clients by client id (MQTT channels and gateways' clients).  The
        #: core's own: the API and plugins read `connections()`, `client_info()`.
        self.channels: dict[str, Client] = {}
        #: Every connection's idle-timeout / keepalive deadline, on one loop timer.
        self.timers = TimerWheel(clock=self.clock)
        self.stats = Stats(self._core_stats)
        self.sys = SysPublisher(self)
        #: Clients refused at CONNECT; a new ban closes the connections it covers.
        self.banned = Banned(on_ban=self._enforce_ban)
        self.alarms = Alarms(self.publish, self.sys.prefix)
        #: The built-in alarm monitors; the node sets `monitor.connection_usage`.
        self.monitor = AlarmMonitor(self.alarms, lambda: self.options)
        #: The ACL file's rules (emqx_mod_acl_internal); the node loads and attaches them.
        self.acl = InternalAcl()
        #: Bumped when ACL rules change: every connection's ACL cache is then stale.
        self.acl_generation = 0
        #: When the connections' delivery decisions are next forgotten (`acl_cache_ttl`).
        self._deliveries_expire = self.clock.monotonic() + self.options.acl_cache_ttl
        #: TLS-PSK keys by identity, installed by a PSK plugin (emqx_psk_file).
        self.psk_lookup: Callable[[str], bytes | None] | None = None
        self.started_at = time.time()
        self._expiry: list[tuple[float, int, Session]] = []
        self._expiry_seq = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._housekeeping: Timer | None = None
        self.running = False
        #: The cluster this node belongs to; None: a lone node.
        self.cluster: ClusterLink | None = None

    # -- lifecycle -----------------------------------------------------------
    async def start(self) -> None:
        self.journal.start()
        self.running = True
        self.started_at = time.time()
        self._housekeeping = self.clock.call_later(1.0, self._tick)
        self.sys.start()
        self.monitor.start()

    async def stop(self) -> None:
        """Close every connection (wills of 3.x clients are not sent on shutdown)."""
        self.running = False
        self.sys.stop()
        self.monitor.stop()
        if self._housekeeping is not None:
            self._housekeeping.cancel()
        for client in list(self.channels.values()):
            client.will = None
            client.close("shutdown")
        self.timers.close()
        for task in list(self._tasks):
            task.cancel()
        await self.journal.close()

    def zone_options(self, zone: str) -> BrokerOptions:
        """The options for clients of `zone` (a listener's zone)."""
        return self.zones.get(zone, self.options)

    def reconfigure(self, options: BrokerOptions,
                    zones: dict[str, BrokerOptions] | None = None) -> None:
        """Switch to options changed at runtime (PUT /configs), without a restart.

        Clients read `self.options` when they use a value, so most changes apply
        at once; every session adopts the new window and queue limits now; the
        $SYS timers restart if their intervals changed.  What a connection fixed
        at its start (packet size limit, idle timeout, retry interval, a 3.x
        session's expiry) stays until it reconnects (docs/configuration.md).
        """
        old, self.options = self.options, options
        old_zones, self.zones = self.zones, zones if zones is not None else self.zones
        # A session keeps the options of the zone it was made in.
        renewed = {id(old_zone): self.zone_options(name) for name, old_zone in old_zones.items()}
        renewed[id(old)] = options
        self._retaining = self.retainer is not None and options.retain_available
        for session in list(self.sessions.values()):
            session.reconfigure(renewed.get(id(session.options), options))
            if old.acl_deliver_check != options.acl_deliver_check:
                session.acl_wildcards = sum(
                    1 for f in session.subscriptions if self._checked(parse_share(f)[1]))
        for client in list(self.channels.values()):
            client.use_options(self.zone_options(client.zone))
        if self.running and (old.sys_interval, old.sys_heartbeat) != (
                options.sys_interval, options.sys_heartbeat):
            self.sys.stop()
            self.sys.start()

    def restore(self) -> None:
        """Load retained messages and persistent sessions from the store, before
        any listener accepts: routes are live before the first client arrives."""
        store = self.journal.store
        reset_message_ids(store.max_message_id() + 1)
        now = time.time()
        for record in store.load_retained():
            message = message_of(record)
            if message.expires_at is not None and message.expired:
                self.journal.retained_delete(message.topic)
                continue
            self.retained.put(message)
        restored = expired = 0
        for rec in store.load_sessions():
            # A session that was online when the node stopped went offline then.
            gone_at = rec.disconnected_at if rec.disconnected_at is not None else now
            if rec.expiry_interval - (now - gone_at) <= 0:
                self.journal.add(("session_delete", rec.client_id))
                expired += 1
                continue
            self._install_session(rec, gone_at, restoring=True)
            restored += 1
        if restored or expired or len(self.retained):
            log.info("restored %d sessions (%d expired) and %d retained messages",
                     restored, expired, len(self.retained))

    def _install_session(self, rec: SessionRecord, gone_at: float,
                         restoring: bool = False) -> Session:
        """Make an offline session from its record (restored from the store, or
        handed over by another node), with its routes."""
        mono = self.clock.monotonic()
        session = Session(rec.client_id, False, rec.expiry_interval, self.options,
                          self.counters, self.clock)
        session.username, session.peercert = rec.username, rec.peercert
        session.created_at = rec.created_at
        for sub in rec.subscriptions:
            opts = SubscriptionOptions(sub.qos, sub.no_local, sub.retain_as_published,
                                       sub.retain_handling)
            session.put_subscription(sub.topic_filter, opts)
            self._route_add(sub.topic_filter, session, opts)
        for held in rec.messages:
            message = message_of(held.message)
            if restoring:
                self.journal.restored(message.id, held.single)
            if held.packet_id is None:
                session.enqueue_raw((message, held.qos, held.retain, None))
            else:
                session.put_inflight(held.packet_id, InflightEntry(
                    message, held.qos, held.retain, mono, held.released))
        for packet_id in rec.awaiting_rel:
            session.put_awaiting_rel(packet_id, mono)
        if restoring:
            session.journal = self.journal
        session.disconnected_at = mono - (self.clock.time() - gone_at)
        self.sessions[rec.client_id] = session
        self._expire_later(session)
        return session

    def _core_stats(self) -> dict[str, int]:
        """The core's gauges (`stats.STAT_NAMES`), read from the live state."""
        routes = self.router.route_count + self.shared_router.route_count
        subscriptions = self.router.subscription_count
        return {
            "connections": len(self.channels),
            "sessions": len(self.sessions),
            "sessions/persistent": sum(1 for s in self.sessions.values() if s.persistent),
            "topics": routes,
            "routes": routes,
            "subscribers": subscriptions,
            "subscriptions": subscriptions,
            "subscriptions/shared": sum(len(g.members) for g in self.shared_groups.values()),
            "suboptions": subscriptions,
            "retained": len(self.retained),
        }

    def track(self, task: asyncio.Task[Any] | Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Keep a reference to a background task until it ends."""
        if not isinstance(task, asyncio.Task):
            task = self.clock.create_task(task)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _tick(self) -> None:
        """Once a second: expire offline sessions, sample the stats."""
        now = self.clock.monotonic()
        heap = self._expiry
        while heap and heap[0][0] <= now:
            _, _, session = heapq.heappop(heap)
            if (session.outlet is None and self.sessions.get(session.client_id) is session
                    and session.disconnected_at is not None
                    and now - session.disconnected_at >= session.expiry_interval):
                self.counters["sessions/expired"] += 1
                self.discard_session(session, "expired")
        for topic in self.retained.expire(now):
            self._retained_gone(topic)
        if now >= self._deliveries_expire:
            self._forget_deliveries()  # delivery decisions live acl_cache_ttl at most
            self._deliveries_expire = now + self.options.acl_cache_ttl
        self.stats.sample()
        self.banned.sweep()
        self._housekeeping = self.clock.call_later(1.0, self._tick)

    # -- sessions --------------------------------------------------------------
    def open_session(self, client: Client, clean_start: bool,
                     expiry_interval: float) -> tuple[Session, bool]:
        """Bind `client` to a session (it becomes the session's outlet), taking over
        any live connection of the client id.  As EMQ X: a clean start discards the
        old session (`session.discarded`); otherwise it is resumed
        (`session.takeovered` first when another connection held it, then
        `session.resumed`); a new one is `session.created`."""
        client_id = client.client_id
        old = self.channels.get(client_id)
        taken_over = False
        if old is not None and old is not client:
            held = old.session
            old.takeover()  # closed: its session stays if persistent, else terminated
            taken_over = held is not None and self.sessions.get(client_id) is held
        session = self.sessions.get(client_id)
        if session is not None and session.pending_will is not None and \
                not self._expired(session):
            # Back before the Will Delay Interval passed: no will, whether the session
            # is resumed or started clean [MQTT-3.1.3-9, MQTT-3.1.2-8].
            session.pending_will[1].cancel()
            session.pending_will = None
        if session is not None and (clean_start or self._expired(session)):
            if clean_start:
                self.discard_session(session, DISCARDED)
            else:
                self.counters["sessions/expired"] += 1
                self.discard_session(session, "expired")
            session = None
        if session is not None and not self.resumable_by(session, client):
            self._not_resumed(session, client)
            session = None
        present = session is not None
        if session is None:
            session = Session(client_id, clean_start, expiry_interval, client.options,
                              self.counters, self.clock)
            self.sessions[client_id] = session
        else:
            session.clean_start = clean_start
            session.expiry_interval = expiry_interval
            if session.options is not client.options:  # back through another zone
                session.reconfigure(client.options)
        session.outlet = client
        session.username, session.peercert = client.username, client.peercert
        session.disconnected_at = None
        self.channels[client_id] = client
        self._persist(session, None)
        if present and self.options.strict_resume:
            self._recheck_subscriptions(session, client)
        hooks = self.hooks
        if not present:
            if hooks.has(Points.SESSION_CREATED):
                hooks.run(Points.SESSION_CREATED, client_id, SessionSnapshot.of(session))
        else:
            if taken_over and hooks.has(HookPoint.SESSION_TAKEOVERED):
                hooks.run(HookPoint.SESSION_TAKEOVERED, client_id, SessionSnapshot.of(session))
            if hooks.has(HookPoint.SESSION_RESUMED):
                hooks.run(HookPoint.SESSION_RESUMED, client_id, SessionSnapshot.of(session))
        return session, present

    def resumable_by(self, session: Session, client: Client) -> bool:
        """May `client` resume `session`?  With `session.strict_resume` (the default)
        only its owner may: the same user name, or, when neither has one, the same
        client certificate subject (both None: two anonymous clients).  EMQ X v3
        lets any client with the client id resume it.  The one place a session's
        ownership is decided."""
        if not self.options.strict_resume:
            return True
        if session.username is not None or client.username is not None:
            return session.username == client.username
        return session.peercert == client.peercert

    def _not_resumed(self, session: Session, client: Client) -> None:
        """A client that is not its owner asked for a persistent session: it is
        discarded (`session.discarded`) and the client gets a new one."""
        self.counters["sessions/not_resumed"] += 1
        log.warning("client id %r: the session of %s is not resumed by %s from %s; it is "
                    "discarded and a new session starts (session.strict_resume)",
                    session.client_id, _owner(session.username, session.peercert),
                    _owner(client.username, client.peercert), client.peerhost)
        self.discard_session(session, DISCARDED)

    def _recheck_subscriptions(self, session: Session, client: Client) -> None:
        """The subscriptions a resumed session brings back are checked against the
        resuming client's ACL again (rules change); denied ones are removed.  An ACL
        chain that must be awaited answers what its cache does not know shortly
        after, in the background."""
        if not session.subscriptions or not self.hooks.has(Points.CLIENT_CHECK_ACL):
            return
        denied, unknown = [], []
        for topic_filter in list(session.subscriptions):
            if self.acl_is_async:
                allowed = self.acl_known(client, "subscribe", topic_filter)
            else:
                allowed = self.check_acl(client, "subscribe", topic_filter)
            if allowed is None:
                unknown.append(topic_filter)
            elif not allowed:
                denied.append(topic_filter)
        self._drop_subscriptions(session, client, denied)
        if unknown:
            self.track(self._recheck_async(session, client, unknown))

    async def _recheck_async(self, session: Session, client: Client, filters: list[str]) -> None:
        denied = [topic_filter for topic_filter in filters
                  if not await self.check_acl_async(client, "subscribe", topic_filter)]
        if self.sessions.get(session.client_id) is session:
            self._drop_subscriptions(session, client, denied)

    def _drop_subscriptions(self, session: Session, client: Client, denied: list[str]) -> None:
        if not denied:
            return
        for topic_filter in denied:
            self.unsubscribe(session, topic_filter)
            session.subscription_ids.pop(topic_filter, None)
        log.info("client id %r: %d subscription(s) of the resumed session removed, denied "
                 "by the ACL for %s: %s", session.client_id, len(denied),
                 _owner(client.username, client.peercert), ", ".join(denied))

    def _persist(self, session: Session, disconnected_at: float | None) -> None:
        """Keep the store's copy of a session in step with whether it is persistent."""
        journal = self.journal
        if not journal.enabled:
            return
        if session.expiry_interval > 0:
            if session.journal is None:
                session.journal = journal
                journal.session_saved(session, disconnected_at)
                for topic_filter, opts in session.subscriptions.items():
                    journal.subscribed(session, topic_filter, opts)
                for message, qos, retain, _via in session.mqueue:
                    if qos:
                        journal.held(session, message, qos, retain, None)
                for packet_id, entry in session.inflight.items():
                    journal.held(session, entry.message, entry.qos, entry.retain, packet_id)
            else:
                journal.session_saved(session, disconnected_at)
        elif session.journal is not None:
            journal.session_deleted(session)
            session.journal = None

    def _expired(self, session: Session) -> bool:
        """Offline longer than its expiry (the once-a-second sweep may not have run yet)."""
        return (session.outlet is None and session.disconnected_at is not None
                and self.clock.monotonic() - session.disconnected_at
                >= session.expiry_interval)

    def schedule_will(self, session: Session, message: Message, delay: float) -> None:
        handle = self.clock.call_later(delay, self._fire_will, session)
        session.pending_will = (message, handle)

    def _fire_will(self, session: Session) -> None:
        if session.pending_will is not None:
            message, handle = session.pending_will
            session.pending_will = None
            handle.cancel()
            self.publish(message)

    def discard_session(self, session: Session, reason: str = DISCARDED) -> None:
        """End a session: its subscriptions go, its queued messages are dropped,
        and a will still waiting for its delay is published now.  Announced as
        `session.discarded` for `DISCARDED` (a clean start, the API), else as
        `session.terminated` with `reason` ("expired", or why its connection ended)."""
        hooks = self.hooks
        discarded = reason == DISCARDED
        point = Points.SESSION_DISCARDED if discarded else Points.SESSION_TERMINATED
        snapshot = SessionSnapshot.of(session) if hooks.has(point) else None
        self._fire_will(session)
        for topic_filter in list(session.subscriptions):
            self._route_remove(topic_filter, session)
        self._redispatch_shared(session)
        if session.journal is not None:
            self.journal.session_deleted(session)
            session.journal = None
        session.subscriptions.clear()
        session.drop_messages()
        if self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]
            if self.cluster is not None:
                self.cluster.released(session.client_id)
        if snapshot is None:
            return
        if discarded:
            hooks.run(point, session.client_id, snapshot)
        else:
            hooks.run(point, session.client_id, reason, snapshot)

    def channel_connected(self, client: Client) -> None:
        """Called once per client when it is connected (its connect answered)."""
        if self.hooks.has(Points.CLIENT_CONNECTED):
            self.hooks.run(Points.CLIENT_CONNECTED, client.info)
        self.sys.client_connected(client)

    def channel_closed(self, client: Client, reason: str) -> None:
        """Called once per connected client when its connection ends."""
        client_id = client.client_id
        if self.channels.get(client_id) is client:
            del self.channels[client_id]
        if self.hooks.has(Points.CLIENT_DISCONNECTED):  # before its session may end (EMQ X)
            self.hooks.run(Points.CLIENT_DISCONNECTED, client.info, reason)
        session = client.session
        client.session = None
        if session is not None and session.outlet is client:
            session.outlet = None
            if session.expiry_interval <= 0:
                self.discard_session(session, reason)
            else:
                self._persist(session, self.clock.time())
                session.disconnected_at = self.clock.monotonic()
                self._expire_later(session)
        self.sys.client_disconnected(client, reason)

    def _expire_later(self, session: Session) -> None:
        """Put an offline session on the expiry heap.  An entry stays until its deadline
        even when the session comes back or is discarded meanwhile (the sweep skips it),
        so when stale entries outnumber the offline sessions the heap is rebuilt: it
        would otherwise hold every session that went offline in the last expiry
        interval (2 h), discarded ones with them."""
        assert session.disconnected_at is not None
        self._expiry_seq += 1
        heapq.heappush(self._expiry, (session.disconnected_at + session.expiry_interval,
                                      self._expiry_seq, session))
        if len(self._expiry) > 2 * len(self.sessions) + 1024:
            # Keep the latest entry of each session still registered and offline.
            latest: dict[int, tuple[float, int, Session]] = {}
            for entry in self._expiry:
                queued = entry[2]
                if queued.outlet is None and self.sessions.get(queued.client_id) is queued:
                    kept = latest.get(id(queued))
                    if kept is None or kept[1] < entry[1]:
                        latest[id(queued)] = entry
            self._expiry = list(latest.values())
            heapq.heapify(self._expiry)

    def kick(self, client_id: str) -> bool:
        """Close a connected client (REST kickout): its will is published."""
        client = self.channels.get(client_id)
        if client is None:
            return False
        client.kick()
        return True

    def _enforce_ban(self, ban: Ban) -> None:
        """A new ban closes the connections it covers (will published, as a kick)."""
        clients = list(self.channels.values())
        if ban.kind == USERNAME:
            hit = [c for c in clients if c.username == ban.who]
        elif ban.kind == IP_ADDRESS:
            hit = [c for c in clients if normalize_ip(c.peerhost) == ban.who]
        else:
            client = self.channels.get(ban.who)
            hit = [client] if client is not None else []
        for client in hit:
            if client.options.enable_ban:  # zone `enable_ban = off`: not enforced
                self.banned.kicked += 1
                client.kick("banned")

    # -- the cluster (starling.cluster, through the ClusterLink interface) ------------------
    def attach_cluster(self, link: ClusterLink | None) -> None:
        """Join a cluster (or leave it, None): the link learns every route the node
        has now (restored sessions), and from then on every change."""
        self.cluster = link
        if link is None:
            return
        for topic_filter in self.router.filters():
            link.route_changed("", topic_filter, 1)
        for (name, real), group in self.shared_groups.items():
            link.route_changed(name, real, len(group.members))

    def drop_session(self, client_id: str) -> None:
        """Forget an offline session another node owns now (no will, no hooks)."""
        session = self.sessions.get(client_id)
        if session is not None and session.outlet is None:
            self._drop_session(session)

    async def claim_client(self, client_id: str, clean_start: bool) -> None:
        """Before `client_id`'s session opens here: make this node its owner in the
        cluster.  A session another node had is moved here (the other node closed
        its connection), to be resumed by `open_session`."""
        if self.cluster is None:
            return
        record = await self.cluster.claim(client_id, clean_start)
        if record is None or clean_start:
            return
        old = self.sessions.get(client_id)
        if old is not None and old.outlet is None:
            self._drop_session(old)  # an older copy of the same session
        if client_id not in self.sessions:
            session = self._install_session(record, record.disconnected_at or self.clock.time())
            self._persist(session, record.disconnected_at or self.clock.time())

    def dispatch_forwarded(self, records: Sequence[tuple[bool, tuple[GroupKey, ...], Message]],
                           ) -> int:
        """Messages another node forwarded (one batch, in its order): each to this
        node's matching plain subscribers (when `plain`) and to one local member of
        each shared group in `groups` (the other node chose this node for them).
        Returns the deliveries made."""
        match = self.router.match
        delivered_hook = self.hooks.has(Points.MESSAGE_DELIVERED)
        strategy = self.options.shared_subscription_strategy
        total = 0
        for plain, groups, message in records:
            delivered = 0
            msg_qos = message.qos
            if plain:
                subscribers = match(message.topic)
                sender = message.sender
                for session, opts in subscribers.items():
                    if opts.no_local and session.client_id == sender:
                        continue
                    qos = opts.qos if opts.qos < msg_qos else msg_qos
                    session.deliver(message, qos, message.retain and opts.retain_as_published)
                    delivered += 1
                if subscribers and delivered_hook:
                    for session in subscribers:
                        self.hooks.run(Points.MESSAGE_DELIVERED, session.client_id, message)
            for key in groups:
                group = self.shared_groups.get(key)
                picked = group.pick(strategy, message.sender) if group is not None else None
                if picked is None or group is None:
                    continue  # the group's last member here left meanwhile
                session, opts = picked
                qos = opts.qos if opts.qos < msg_qos else msg_qos
                session.deliver(message, qos, message.retain and opts.retain_as_published,
                                group.full_filter)
                delivered += 1
            if not delivered and not message.sys:
                self.counters[m.MESSAGES_DROPPED] += 1
            total += delivered
        return total

    def hand_over(self, client_id: str, keep_session: bool) -> SessionRecord | None:
        """Another node took `client_id` over: close its connection here (as a
        takeover) and give up its session, returned as a record when
        `keep_session` (the new node resumes it) and it is persistent."""
        client = self.channels.get(client_id)
        if client is not None:
            client.takeover()  # closed: its session stays if persistent, else terminated
        session = self.sessions.get(client_id)
        if session is None:
            return None
        if not keep_session or session.expiry_interval <= 0:
            self.discard_session(session, DISCARDED)
            return None
        if self.hooks.has(HookPoint.SESSION_TAKEOVERED):
            self.hooks.run(HookPoint.SESSION_TAKEOVERED, client_id, SessionSnapshot.of(session))
        record = self._session_record(session)
        self._drop_session(session)
        return record

    def _session_record(self, session: Session) -> SessionRecord:
        subs = [SubscriptionRecord(f, o.qos, o.no_local, o.retain_as_published,
                                   o.retain_handling) for f, o in session.subscriptions.items()]
        held: list[SessionMessageRecord] = []
        for packet_id, entry in session.inflight.items():
            held.append(SessionMessageRecord(record_of(entry.message), len(held), entry.qos,
                                             entry.retain, packet_id, entry.released))
        for message, qos, retain, _via in session.mqueue:
            held.append(SessionMessageRecord(record_of(message), len(held), qos, retain))
        return SessionRecord(session.client_id, session.username, session.expiry_interval,
                             session.created_at, self.clock.time(), subs, held,
                             list(session.awaiting_rel), session.peercert)

    def _drop_session(self, session: Session) -> None:
        """Forget a session that lives on elsewhere now: no will, no hooks."""
        if session.pending_will is not None:
            session.pending_will[1].cancel()
            session.pending_will = None
        for topic_filter in list(session.subscriptions):
            self._route_remove(topic_filter, session)
        if session.journal is not None:
            self.journal.session_deleted(session)
            session.journal = None
        if self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]

    def retained_replicated(self, topic: str, message: Message | None) -> None:
        """A retained message stored (None: cleared) by another node: kept here too,
        in memory and in the store, not delivered (it was, where it was published)."""
        if message is None:
            if self.retained.delete(topic) and self._retained_in_store \
                    and self.journal.enabled:
                self.journal.retained_delete(topic)
            return
        self.retained.put(message)
        if self._retained_in_store and self.journal.enabled:
            self.journal.retained_put(message)

    # -- publish -----------------------------------------------------------------
    def publish(self, message: Message) -> int:
        """Route a message to its subscribers; return how many it reached."""
        hooks = self.hooks
        if hooks.has(Points.MESSAGE_PUBLISH):
            result = hooks.run_fold(Points.MESSAGE_PUBLISH, (), message)
            if not isinstance(result, Message):
                return 0  # a plugin took the message (e.g. delayed publish)
            message = result
        if message.retain and self._retaining:
            self._retain(message)
        return self.dispatch(message)

    # -- retained messages (the mechanism; emqx_retainer switches it and sets limits) --
    def set_retainer(self, settings: RetainerSettings | None) -> None:
        """Switch retained-message storage and delivery on with these limits
        (emqx_retainer loaded or reconfigured), or off (None: unloaded).

        Off, a retained PUBLISH is routed like any other and stored nowhere, and
        new subscriptions get no retained messages; what was held stays (in memory
        and, if persisted, in the store) and is served again when switched back on.
        Switching `persist` writes every held message to the store, or removes
        them all from it."""
        was_off, self.retainer = self.retainer is None, settings
        self._retaining = settings is not None and self.options.retain_available
        if settings is None:
            return
        if was_off and self.running and self._retaining:
            self.sys.publish_retained()
        self.retained.set_expiry_interval(settings.expiry_interval)
        if settings.persist != self._retained_in_store:
            self._retained_in_store = settings.persist
            if self.journal.enabled:
                for message in self.retained.messages():
                    if message.sys:
                        continue
                    if settings.persist:
                        self.journal.retained_put(message)
                    else:
                        self.journal.retained_delete(message.topic)

    def _retain(self, message: Message) -> None:
        """Store, replace or (empty payload) clear a retained message, within the
        retainer's limits; a refused one is still routed (as EMQ X does)."""
        settings = self.retainer
        assert settings is not None
        retained = self.retained
        topic = message.topic
        if message.payload:
            limit = settings.max_payload_size
            if limit and len(message.payload) > limit:
                self._refuse_retained(topic, f"payload of {len(message.payload)} bytes is "
                                      f"over retainer.max_payload_size ({limit})")
                return
            limit = settings.max_messages
            if limit and len(retained) >= limit and retained.get(topic) is None:
                self._refuse_retained(topic, f"retainer.max_retained_messages ({limit}) "
                                      "reached")
                return
            retained.put(message)
        elif not retained.delete(topic):
            return
        if self._retained_in_store and self.journal.enabled and not message.sys:
            if not message.qos and self.journal.failing_since is not None:
                self._unsaved_retained.add(topic)  # nobody waits for this write
                return
            if message.payload:
                self.journal.retained_put(message)
            else:
                self.journal.retained_delete(topic)
        if self.cluster is not None and not message.sys:
            self.cluster.retained_changed(topic, message if message.payload else None)

    def needs_store(self, message: Message) -> bool:
        """Would routing `message` write to the store (a persistent session holds
        it, or the retainer stores it)?  Asked only while the store is failing."""
        if message.retain and self._retaining and self._retained_in_store \
                and self.journal.enabled:
            return True
        if any(session.journal is not None for session in self.router.match(message.topic)):
            return True
        return any(session.journal is not None
                   for group in self.shared_router.match(message.topic)
                   for session in group.members)

    def _store_health(self, available: bool, why: str) -> None:
        """The journal's commits failed, or work again: the alarm follows, and the
        retained messages changed meanwhile are saved."""
        if not available:
            self.alarms.raise_alarm(STORE_UNAVAILABLE, f"the store cannot write: {why}")
            return
        self.alarms.clear_alarm(STORE_UNAVAILABLE)
        unsaved, self._unsaved_retained = self._unsaved_retained, set()
        for topic in unsaved:
            message = self.retained.get(topic)
            if message is not None:
                self.journal.retained_put(message)
            else:
                self.journal.retained_delete(topic)

    def _retained_gone(self, topic: str) -> None:
        """An expired retained message was dropped: from the store too."""
        if self._retained_in_store and self.journal.enabled and not topic.startswith("$SYS/"):
            self.journal.retained_delete(topic)

    def _refuse_retained(self, topic: str, why: str) -> None:
        """Log a refused retained message, at most once per REFUSAL_LOG_INTERVAL."""
        self._refusals += 1
        now = time.monotonic()
        if now - self._refusal_logged >= REFUSAL_LOG_INTERVAL:
            self._refusal_logged = now
            log.warning("retained message on %s not stored: %s (%d refused since the "
                        "last such line)", topic, why, self._refusals)
            self._refusals = 0

    def dispatch(self, message: Message) -> int:
        subscribers = self.router.match(message.topic)
        remote = 0
        elsewhere = None
        if self.cluster is not None:  # to the other nodes with a matching route
            remote, elsewhere = self.cluster.forward(message)
        shared = self._dispatch_shared(message, elsewhere) if self.shared_groups else 0
        shared += remote
        if not subscribers:
            if not shared and not message.sys:
                self.counters[m.MESSAGES_DROPPED] += 1
                if self.hooks.has(Points.MESSAGE_DROPPED):
                    self.hooks.run(Points.MESSAGE_DROPPED, message, "no_subscribers")
            return shared
        msg_qos = message.qos
        sender = message.sender
        for session, opts in subscribers.items():
            if opts.no_local and session.client_id == sender:
                continue  # MQTT 5.0 No Local [MQTT-3.8.3-3]
            qos = opts.qos if opts.qos < msg_qos else msg_qos
            # Live messages go out with RETAIN 0 unless Retain As Published [MQTT-3.3.1-9].
            session.deliver(message, qos, message.retain and opts.retain_as_published)
        if self.hooks.has(Points.MESSAGE_DELIVERED):
            for session in subscribers:
                self.hooks.run(Points.MESSAGE_DELIVERED, session.client_id, message)
        return len(subscribers) + shared

    def _dispatch_shared(self, message: Message,
                         elsewhere: frozenset[GroupKey] | None = None) -> int:
        """One member of each matching shared group gets the message (in a cluster,
        groups in `elsewhere` are served by a member on another node)."""
        delivered = 0
        strategy = self.options.shared_subscription_strategy
        for group in self.shared_router.match(message.topic):
            if elsewhere and (group.name, group.topic_filter) in elsewhere:
                continue
            picked = group.pick(strategy, message.sender)
            if picked is None:
                continue
            session, opts = picked
            qos = opts.qos if opts.qos < message.qos else message.qos
            session.deliver(message, qos, message.retain and opts.retain_as_published,
                            group.full_filter)
            delivered += 1
        return delivered

    def _redispatch_shared(self, leaving: Session) -> None:
        """A shared-subscription member's session ended: its unacknowledged QoS 1/2
        messages that only its shared subscriptions explain go to another member
        of the group (as EMQ X does; MQTT 5.0 §4.8.2)."""
        filters = [parse_share(f) for f in leaving.subscriptions]
        shared = [(name, real) for name, real in filters if name is not None]
        if not shared:
            return
        plain = [real for name, real in filters if name is None]
        held = [(e.message, e.qos) for e in leaving.inflight.values()]
        held += [(message, qos) for message, qos, _, _ in leaving.mqueue if qos]
        strategy = self.options.shared_subscription_strategy
        for message, qos in held:
            if any(matches(f, message.topic) for f in plain):
                continue
            for key in shared:
                group = self.shared_groups.get(key)
                if group is None or not matches(key[1], message.topic):
                    continue
                picked = group.pick(strategy, message.sender)
                if picked is not None:
                    session, opts = picked
                    session.deliver(message, min(qos, opts.qos), False, group.full_filter)
                break

    def _route_add(self, topic_filter: str, session: Session, opts: SubscriptionOptions) -> None:
        """Route a subscription; `session.acl_wildcards` counts those whose
        deliveries are checked (`_checked`)."""
        name, real = parse_share(topic_filter)
        cluster = self.cluster
        if name is None:
            if self.router.subscribe(topic_filter, session, opts) and self._checked(real):
                session.acl_wildcards += 1
            if cluster is not None and len(self.router.subscribers(topic_filter)) == 1:
                cluster.route_changed("", topic_filter, 1)
            return
        group = self.shared_groups.get((name, real))
        if group is None:
            group = self.shared_groups[(name, real)] = SharedGroup(name, real)
            self.shared_router.subscribe(real, group, SubscriptionOptions(2))
        count = len(group.members)
        if session not in group.members and self._checked(real):
            session.acl_wildcards += 1
        group.members[session] = opts
        if cluster is not None and len(group.members) != count:
            cluster.route_changed(name, real, len(group.members))

    def _checked(self, real_filter: str) -> bool:
        """Are the deliveries of a subscription to this filter ACL-checked?  Those
        with + or #, while `acl_deliver_check` is on."""
        return self.options.acl_deliver_check and is_wildcard(real_filter)

    def _route_remove(self, topic_filter: str, session: Session) -> None:
        name, real = parse_share(topic_filter)
        cluster = self.cluster
        if name is None:
            if self.router.unsubscribe(topic_filter, session):
                if self._checked(real):
                    session.acl_wildcards -= 1
                if cluster is not None and not self.router.subscribers(topic_filter):
                    cluster.route_changed("", topic_filter, 0)
            return
        group = self.shared_groups.get((name, real))
        if group is None or group.members.pop(session, None) is None:
            return
        if self._checked(real):
            session.acl_wildcards -= 1
        if not group.members:
            del self.shared_groups[(name, real)]
            self.shared_router.unsubscribe(real, group)
        if cluster is not None:
            cluster.route_changed(name, real, len(group.members))

    def deliver_retained(self, session: Session, topic_filter: str, granted_qos: int) -> None:
        """Send retained messages matching a new subscription, RETAIN set [MQTT-3.3.1-8].

        Not for shared subscriptions (MQTT 5.0 §4.8.2)."""
        if self.retainer is None or parse_share(topic_filter)[0] is not None:
            return
        retained = self.retained
        now = time.monotonic()
        for message in retained.match(topic_filter):
            if retained.is_expired(message, now):
                retained.delete(message.topic)
                self._retained_gone(message.topic)
                continue
            session.deliver(message, min(message.qos, granted_qos), True)

    # -- subscriptions -----------------------------------------------------------
    def subscribe(self, session: Session, topic_filter: str, opts: SubscriptionOptions) -> bool:
        """Add a subscription; return True if it is new (not a replacement)."""
        is_new = session.put_subscription(topic_filter, opts)
        self._route_add(topic_filter, session, opts)
        if session.journal is not None:
            self.journal.subscribed(session, topic_filter, opts)
        if self.hooks.has(HookPoint.SESSION_SUBSCRIBED):
            self.hooks.run(HookPoint.SESSION_SUBSCRIBED, session.client_id, topic_filter, opts)
        return is_new

    def unsubscribe(self, session: Session, topic_filter: str) -> bool:
        if session.subscriptions.pop(topic_filter, None) is None:
            return False
        self._route_remove(topic_filter, session)
        if session.journal is not None:
            self.journal.unsubscribed(session, topic_filter)
        if self.hooks.has(HookPoint.SESSION_UNSUBSCRIBED):
            self.hooks.run(HookPoint.SESSION_UNSUBSCRIBED, session.client_id, topic_filter)
        return True

    def topic_levels_ok(self, topic: str) -> bool:
        """`mqtt.max_topic_levels` (node-wide; clients use their zone's)."""
        return topic_levels_ok(topic, self.options.max_topic_levels)

    def check_acl(self, client: Client, action: str, topic: str) -> bool:
        """May this client publish to / subscribe to `topic`?  (EMQ X's
        emqx_access_control:check_acl.)  Superusers and zones with `enable_acl`
        off are not checked; otherwise the connection's ACL cache answers, or the
        `client.check_acl` chain does (ACL plugins, then the ACL file), starting
        from `acl_nomatch`.  A shared subscription is checked by its real filter.
        Coroutine callbacks cannot answer here: callers use `acl_known` and
        `check_acl_async` when `acl_is_async`."""
        topic = acl_topic(action, topic)
        known = self._acl_known(client, action, topic)
        if known is not None:
            return known
        result = self.hooks.run_fold(HookPoint.CLIENT_CHECK_ACL, (client.info, action, topic),
                                     self.options.acl_nomatch)
        return self._acl_decided(client, action, topic, result)

    @property
    def acl_is_async(self) -> bool:
        """Does some ACL source answer only after I/O (HTTP, a database)?"""
        return Points.CLIENT_CHECK_ACL in self.hooks.async_points

    def acl_known(self, client: Client, action: str, topic: str) -> bool | None:
        """The answer when it needs no `client.check_acl` call (superuser, ACL off
        in the zone, a cached decision), else None."""
        return self._acl_known(client, action, acl_topic(action, topic))

    async def check_acl_async(self, client: Client, action: str, topic: str) -> bool:
        """`check_acl` for chains with coroutine callbacks: the chain is awaited."""
        topic = acl_topic(action, topic)
        known = self._acl_known(client, action, topic)
        if known is not None:
            return known
        result = await self.hooks.run_fold_async(
            HookPoint.CLIENT_CHECK_ACL, (client.info, action, topic), self.options.acl_nomatch)
        return self._acl_decided(client, action, topic, result)

    def _acl_known(self, client: Client, action: str, topic: str) -> bool | None:
        options = self.options
        if client.is_superuser or client.zone in options.acl_disabled_zones:
            return True
        if not options.enable_acl_cache:
            return None
        cache = client.acl_cache
        if cache is None:
            cache = client.acl_cache = AclCache(self.acl_generation)
        cached = cache.get(action, topic, time.monotonic(), self.acl_generation)
        if cached is not None:
            counters = self.counters
            counters[m.ACL_CACHE_HIT] += 1
            counters[m.ACL_ALLOW if cached else m.ACL_DENY] += 1
        return cached

    def _acl_counted(self, result: Any) -> bool:
        """The chain's answer as a decision, counted."""
        allowed = bool(result == "allow")
        self.counters[m.ACL_ALLOW if allowed else m.ACL_DENY] += 1
        return allowed

    def _acl_decided(self, client: Client, action: str, topic: str, result: Any) -> bool:
        """Count the chain's answer and remember it in the connection's cache."""
        allowed = self._acl_counted(result)
        options = self.options
        cache = client.acl_cache
        if options.enable_acl_cache and cache is not None:
            cache.put(action, topic, allowed, time.monotonic() + options.acl_cache_ttl,
                      options.acl_cache_max_size)
        return allowed

    def psk_key(self, identity: str) -> bytes | None:
        """The pre-shared key of a TLS-PSK identity, None when unknown."""
        lookup = self.psk_lookup
        return lookup(identity) if lookup is not None else None

    def invalidate_acl_cache(self) -> None:
        """ACL rules changed: every connection's cached decisions are dropped."""
        self.acl_generation += 1
        self._forget_deliveries()

    # -- the delivery-time check (acl_deliver_check) ----------------------------------
    def decide_delivery(self, client: Client, topic: str) -> bool | None:
        """May `client` receive a message on `topic` through a wildcard subscription:
        may it subscribe to the topic itself?  Decided here the first time for a
        (connection, topic) and remembered in its `AclCache`; from then on
        `Session.deliver` finds an allowed topic in `Client.deliverable` itself.
        None while an ACL source that must be awaited decides: the session
        queues, and drains once it has."""
        cache = client.acl_cache
        if cache is None:
            cache = client.acl_cache = AclCache(self.acl_generation)
        allowed = cache.delivery(topic)
        if allowed is not None:
            return allowed  # refused before (the publish path finds allowed ones itself)
        if not self.hooks.has(Points.CLIENT_CHECK_ACL):
            allowed = True  # as SUBSCRIBE: no ACL source, no check
        else:
            allowed = self._acl_known(client, "subscribe", topic)
        if allowed is None:
            if self.acl_is_async:
                deciding = cache.deciding
                if deciding is None:
                    deciding = cache.deciding = set()
                if topic not in deciding:
                    deciding.add(topic)
                    self.track(self._decide_delivery_async(client, cache, topic))
                return None
            result = self.hooks.run_fold(HookPoint.CLIENT_CHECK_ACL,
                                         (client.info, "subscribe", topic),
                                         self.options.acl_nomatch)
            allowed = self._acl_counted(result)
        # The allowed topics, where the publish path looks first from now on.
        client.deliverable = cache.remember_delivery(
            topic, allowed, self.options.acl_deliver_cache_max_size)
        return allowed

    def _forget_deliveries(self) -> None:
        """Every connection's delivery decisions go (rules changed, or they are
        `acl_cache_ttl` old): made again at the next delivery."""
        for client in list(self.channels.values()):
            cache = client.acl_cache
            if cache is not None:
                cache.forget_deliveries()

    async def _decide_delivery_async(self, client: Client, cache: AclCache, topic: str) -> None:
        try:
            result = await self.hooks.run_fold_async(
                HookPoint.CLIENT_CHECK_ACL, (client.info, "subscribe", topic),
                self.options.acl_nomatch)
            client.deliverable = cache.remember_delivery(
                topic, self._acl_counted(result), self.options.acl_deliver_cache_max_size)
        finally:
            if cache.deciding is not None:
                cache.deciding.discard(topic)
        session = client.session
        if session is not None and client.state == CONNECTED:
            session.drain()  # what waited for the decision goes now (or is dropped)

    # -- readers for the API and plugins -------------------------------------------
    def connections(self) -> list[ConnectionSnapshot]:
        return [ConnectionSnapshot.of(c) for c in list(self.channels.values())]

    def connection(self, client_id: str) -> ConnectionSnapshot | None:
        client = self.channels.get(client_id)
        return ConnectionSnapshot.of(client) if client is not None else None

    def connection_count(self) -> int:
        """Connected clients (every protocol)."""
        return len(self.channels)

    def client_ids(self) -> list[str]:
        """The client ids of the connected clients."""
        return list(self.channels)

    def connection_memory(self, client_id: str) -> ConnectionMemory | None:
        """An estimate of what a connected client holds in memory (emqx_recon); None
        when it is not connected."""
        client = self.channels.get(client_id)
        if client is None or client.state == CLOSED:
            return None
        shared = (self, self.options, self.counters, self.journal, self.retained, self.router)
        return connection_memory(client, shared)

    def client_info(self, client_id: str) -> ClientInfo | None:
        """Who the connected client of this id is; None when it is not connected."""
        client = self.channels.get(client_id)
        return client.info if client is not None else None

    def username_of(self, client_id: str) -> str | None:
        """The user name a session's client connected with (online or not)."""
        session = self.sessions.get(client_id)
        return session.username if session is not None else None

    def client_may(self, client_id: str, action: str, topic: str) -> bool | None:
        """`check_acl` for the connected client of this id ("publish" / "subscribe"),
        with its cache; None when it is not connected."""
        client = self.channels.get(client_id)
        return self.check_acl(client, action, topic) if client is not None else None

    def session_list(self) -> list[SessionSnapshot]:
        return [SessionSnapshot.of(s) for s in list(self.sessions.values())]

    def session_info(self, client_id: str) -> SessionSnapshot | None:
        session = self.sessions.get(client_id)
        return SessionSnapshot.of(session) if session is not None else None

    def subscription_list(self, client_id: str | None = None) -> list[SubscriptionSnapshot]:
        if client_id is not None:
            session = self.sessions.get(client_id)
            sessions = [session] if session is not None else []
        else:
            sessions = list(self.sessions.values())
        return [SubscriptionSnapshot(s.client_id, topic_filter, opts.qos)
                for s in sessions for topic_filter, opts in s.subscriptions.items()]

    def route_list(self) -> list[str]:
        return [*self.router.filters(), *self.shared_router.filters()]

    def has_route(self, topic_filter: str) -> bool:
        return bool(self.router.subscribers(topic_filter)
                    or self.shared_router.subscribers(topic_filter))

    def clean_session(self, client_id: str) -> str:
        """Discard an offline persistent session: "ok", "not_found" or "running_session"."""
        session = self.sessions.get(client_id)
        if session is None:
            return "not_found"
        if session.outlet is not None:
            return "running_session"
        self.discard_session(session, DISCARDED)
        return "ok"

    def subscribe_client(self, client_id: str, topic_filter: str, qos: int) -> bool:
        """Subscribe an existing session (online or offline) on its behalf."""
        session = self.sessions.get(client_id)
        if session is None:
            return False
        self.subscribe(session, topic_filter, SubscriptionOptions(qos))
        self.deliver_retained(session, topic_filter, qos)
        return True

    def unsubscribe_client(self, client_id: str, topic_filter: str) -> bool:
        session = self.sessions.get(client_id)
        if session is None:
            return False
        self.unsubscribe(session, topic_filter)
        return True

    def metrics(self) -> dict[str, int]:
        counters = dict(self.counters)
        counters[m.MESSAGES_RETAINED] = len(self.retained)
        return counters

    def uptime(self) -> float:
        return time.time() - self.started_at
