"""Who is in the cluster: one record per node in the ``nodes`` bucket,
refreshed every `heartbeat_interval`.

Debian's nats-server 2.9.10 has no per-key TTL, so liveness is judged by each
node on its own clock: a node whose record has not changed for
`node_timeout` is Stopped (its routes are dropped), as is one whose record
says it stopped cleanly.  A Stopped node stays listed until `autoclean` has
passed, then any node deletes its record (compare-and-set, so a node that
came back in the meantime is not deleted).

Node names are unique: a node claims its record with a compare-and-set at
start, and a record held by a node that still answers a ping is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import nats.errors
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from .connection import NatsConnection
from .errors import NameTaken
from .names import Names, token
from .settings import ClusterSettings
from .watch import open_watcher

log = logging.getLogger(__name__)

RUNNING = "running"
STOPPED = "stopped"


@dataclass(slots=True)
class Member:
    """A node as this node sees it."""

    name: str
    incarnation: str
    started_at: float
    version: str
    #: The record's own status: "running", or "stopped" after a clean stop.
    status: str
    #: Epoch seconds of the record's last heartbeat.
    heartbeat: float
    #: The node's count of route changes sent so far (to notice missed ones).
    routes_seq: int
    revision: int
    #: `time.monotonic()` when this node last saw the record change.
    seen_at: float = field(default_factory=time.monotonic)
    #: `time.monotonic()` since when this node considers it Stopped.
    down_since: float | None = None

    @property
    def running(self) -> bool:
        return self.down_since is None


def _record(value: bytes, revision: int) -> Member | None:
    try:
        obj = json.loads(value)
        return Member(str(obj["name"]), str(obj["incarnation"]), float(obj["started_at"]),
                      str(obj.get("version", "")), str(obj["status"]),
                      float(obj["heartbeat"]), int(obj.get("routes_seq", 0)), revision)
    except (ValueError, KeyError, TypeError):
        return None


class Membership:
    def __init__(self, conn: NatsConnection, names: Names, settings: ClusterSettings,
                 incarnation: str, version: str, routes_seq: Callable[[], int],
                 on_up: Callable[[Member], None], on_down: Callable[[str], None],
                 on_heartbeat: Callable[[Member], None]) -> None:
        self.conn = conn
        self.names = names
        self.settings = settings
        self.name = settings.node_name
        self.incarnation = incarnation
        self.version = version
        self.started_at = time.time()
        self._routes_seq = routes_seq
        self._on_up = on_up
        self._on_down = on_down
        self._on_heartbeat = on_heartbeat
        self._key = token(self.name)
        self._kv: KeyValue | None = None
        self._revision = 0
        #: The other nodes, by name.
        self.others: dict[str, Member] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._watch_task: asyncio.Task[None] | None = None
        self._synced = asyncio.Event()
        self.stopping = False

    # -- start: claim the name ---------------------------------------------------------
    def _value(self, status: str = RUNNING) -> bytes:
        return json.dumps({"name": self.name, "incarnation": self.incarnation,
                           "started_at": self.started_at, "version": self.version,
                           "status": status, "heartbeat": time.time(),
                           "routes_seq": self._routes_seq()}).encode()

    async def join(self, ping: Callable[[str], Awaitable[bool]]) -> None:
        """Claim this node's name; raise NameTaken if a running node holds it."""
        kv = self._kv = await self.conn.bucket(self.names.bucket("nodes"))
        while True:
            try:
                self._revision = await kv.create(self._key, self._value())
                return
            except KeyWrongLastSequenceError:
                pass
            try:
                entry = await kv.get(self._key)
            except KeyNotFoundError:
                continue  # deleted in between: create again
            held = _record(entry.value or b"", entry.revision or 0)
            if held is not None and held.status == RUNNING and await ping(self.name):
                raise NameTaken(
                    f"node.name {self.name!r} is already used by a running node of cluster "
                    f"{self.settings.name!r} (started {time.ctime(held.started_at)}); give "
                    "each node its own name")
            try:
                self._revision = await kv.update(self._key, self._value(),
                                                 last=entry.revision)
                return
            except KeyWrongLastSequenceError:
                continue

    async def start(self) -> None:
        """Watch the other nodes (returns once the current ones are known), beat."""
        await self.watch()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._beat()), loop.create_task(self._sweep())]

    async def watch(self) -> None:
        """(Re)start watching the bucket; after a NATS reconnect too."""
        if self._watch_task is not None:
            self._watch_task.cancel()
        self._synced.clear()
        self._watch_task = asyncio.get_running_loop().create_task(self._watch())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._synced.wait(), self.settings.rpc_timeout * 2)

    async def stop(self, leave: bool = False) -> None:
        """A clean stop: the record says Stopped (or, leaving, is deleted)."""
        self.stopping = True
        for task in [*self._tasks, self._watch_task]:
            if task is not None:
                task.cancel()
        if self._kv is None or not self.conn.connected:
            return
        try:
            if leave:
                await self._kv.delete(self._key, last=self._revision)
            else:
                await self._kv.update(self._key, self._value(STOPPED), last=self._revision)
        except nats.errors.Error:
            pass  # someone else holds the name now, or NATS is going: nothing to undo

    # -- the record, kept alive ------------------------------------------------------
    async def _beat(self) -> None:
        interval = self.settings.heartbeat_interval
        while True:
            await asyncio.sleep(interval)
            if self.conn.connected and not await self._put_heartbeat():
                return

    async def _put_heartbeat(self) -> bool:
        """Refresh the record; False if another node took the name."""
        kv = self._kv
        assert kv is not None
        try:
            self._revision = await kv.update(self._key, self._value(), last=self._revision)
            return True
        except KeyWrongLastSequenceError:
            pass
        except (nats.errors.Error, TimeoutError):
            return True  # link down or slow: the next beat tries again
        # The record changed under us: a lost answer to our own write, an autoclean
        # while we were cut off, or another node that took the name.
        try:
            entry = await kv.get(self._key)
        except KeyNotFoundError:
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                self._revision = await kv.create(self._key, self._value())
            return True
        except (nats.errors.Error, TimeoutError):
            return True
        held = _record(entry.value or b"", entry.revision or 0)
        if held is None or held.incarnation == self.incarnation or held.status != RUNNING:
            self._revision = entry.revision or 0
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                self._revision = await kv.update(self._key, self._value(), last=self._revision)
            return True
        log.error("cluster: another node took the name %s while this one was cut off "
                  "from NATS; this node no longer heartbeats", self.name)
        self.stopping = True
        return False

    # -- the others ------------------------------------------------------------------
    async def _watch(self) -> None:
        kv = self._kv
        assert kv is not None
        watcher = await open_watcher(kv, "the node list")
        initial = True
        seen: set[str] = set()
        try:
            async for entry in watcher:
                if entry is None:  # the current records are all in
                    if initial:
                        initial = False
                        self._forget_absent(seen)
                        self._synced.set()
                    continue
                if entry.key == self._key:
                    continue
                if entry.operation in ("DEL", "PURGE"):
                    self._forget(entry.key)
                    continue
                member = _record(entry.value or b"", entry.revision or 0)
                if member is None or member.name == self.name:
                    continue
                seen.add(member.name)
                self._update(member)
        finally:
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                await watcher.stop()  # type: ignore[no-untyped-call]

    def _update(self, member: Member) -> None:
        old = self.others.get(member.name)
        self.others[member.name] = member
        if member.status != RUNNING:
            member.down_since = time.monotonic() if old is None or old.running \
                else old.down_since
            if old is not None and old.running:
                self._on_down(member.name)
            return
        if old is None or not old.running or old.incarnation != member.incarnation:
            if old is not None and old.running:
                self._on_down(member.name)  # restarted: the old routes are gone
            log.info("cluster: node %s is up", member.name)
            self._on_up(member)
        else:
            self._on_heartbeat(member)

    def _forget(self, key: str) -> None:
        for name, member in list(self.others.items()):
            if token(name) == key:
                del self.others[name]
                if member.running:
                    self._on_down(name)

    def _forget_absent(self, seen: set[str]) -> None:
        """After a re-watch: nodes whose records were deleted meanwhile."""
        for name in [n for n in self.others if n not in seen]:
            member = self.others.pop(name)
            if member.running:
                self._on_down(name)

    async def _sweep(self) -> None:
        """Mark silent nodes Stopped; forget those Stopped longer than autoclean."""
        settings = self.settings
        while True:
            await asyncio.sleep(settings.heartbeat_interval)
            now = time.monotonic()
            for member in list(self.others.values()):
                if member.running and now - member.seen_at > settings.node_timeout:
                    member.down_since = now
                    log.warning("cluster: node %s stopped answering (no heartbeat for %.1fs)",
                                member.name, now - member.seen_at)
                    self._on_down(member.name)
                elif (not member.running and settings.autoclean > 0 and self.conn.connected
                      and member.down_since is not None
                      and (now - member.down_since >= settings.autoclean
                           or time.time() - member.heartbeat
                           >= settings.autoclean + settings.node_timeout)):
                    await self._clean(member)

    async def _clean(self, member: Member) -> None:
        assert self._kv is not None
        log.info("cluster: forgetting node %s (stopped for %gs, cluster.autoclean)",
                 member.name, self.settings.autoclean)
        with contextlib.suppress(nats.errors.Error, TimeoutError):
            await self._kv.delete(token(member.name), last=member.revision)
        self.others.pop(member.name, None)

    # -- views ---------------------------------------------------------------------------
    def running_nodes(self) -> list[str]:
        """The other nodes now running, by name."""
        return sorted(n for n, m in self.others.items() if m.running)

    def is_running(self, name: str) -> bool:
        member = self.others.get(name)
        return member is not None and member.running

    def listing(self) -> list[dict[str, Any]]:
        """Every node, this one first: name, status ("Running" / "Stopped")."""
        out = [{"name": self.name, "status": "Running", "started_at": self.started_at,
                "version": self.version}]
        for name in sorted(self.others):
            m = self.others[name]
            out.append({"name": name, "status": "Running" if m.running else "Stopped",
                        "started_at": m.started_at, "version": m.version})
        return out
