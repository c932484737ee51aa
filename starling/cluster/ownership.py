"""Which node a client id belongs to: one key per client id in the ``clients``
bucket, written only by compare-and-set.

A node claims a client id before its session opens: `create` when nobody
holds it, `update(last=revision)` over the holder's record otherwise.  Of two
nodes claiming at once exactly one write succeeds; the other reads the new
holder and tries again, so the last claim wins and there is never a moment
with two owners in the bucket.  The previous holder is returned so the
caller can ask it to hand over (kick its connection, move the session).
A node releases an id with a compare-and-set delete of its own revision,
which does nothing if another node has claimed it since.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import nats.errors
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from .connection import NatsConnection
from .names import Names, token

#: Claims given up after this many lost races in a row (a client reconnecting in a
#: tight loop on several nodes at once).
MAX_ATTEMPTS = 20


class ClaimFailed(RuntimeError):
    """The claim could not be decided (NATS unreachable, or endless races)."""


class Ownership:
    def __init__(self, conn: NatsConnection, names: Names, node: str, timeout: float) -> None:
        self.conn = conn
        self.names = names
        self.node = node
        self.timeout = timeout
        self._kv: KeyValue | None = None
        #: Revision of this node's claim of each client id it holds.
        self._revisions: dict[str, int] = {}

    async def start(self) -> None:
        self._kv = await self.conn.bucket(self.names.bucket("clients"))

    def holds(self, client_id: str) -> bool:
        return client_id in self._revisions

    async def claim(self, client_id: str) -> str | None:
        """Make this node the owner of `client_id`; return the node that held it
        before (None: nobody, or this node)."""
        try:
            return await asyncio.wait_for(self._claim(client_id), self.timeout)
        except (nats.errors.Error, TimeoutError, OSError) as exc:
            raise ClaimFailed(f"cannot claim client id {client_id!r}: "
                              f"{str(exc) or type(exc).__name__}") from None

    async def _claim(self, client_id: str) -> str | None:
        kv = self._kv
        assert kv is not None
        name = token(client_id)
        value = json.dumps({"client_id": client_id, "node": self.node}).encode()
        held = self._revisions.get(client_id)
        if held is not None:  # reconnecting here: still ours unless someone claimed it since
            try:
                self._revisions[client_id] = await kv.update(name, value, last=held)
                return None
            except KeyWrongLastSequenceError:
                del self._revisions[client_id]
        for _ in range(MAX_ATTEMPTS):
            try:
                self._revisions[client_id] = await kv.create(name, value)
                return None
            except KeyWrongLastSequenceError:
                pass
            try:
                entry = await kv.get(name)
            except KeyNotFoundError:
                continue
            try:
                holder = str(json.loads(entry.value or b"{}")["node"])
            except (ValueError, KeyError, TypeError):
                holder = None
            try:
                self._revisions[client_id] = await kv.update(name, value, last=entry.revision)
            except KeyWrongLastSequenceError:
                continue
            return holder if holder != self.node else None
        raise ClaimFailed(f"client id {client_id!r} keeps being claimed by other nodes")

    async def reclaim(self, client_id: str) -> str | None:
        """At start, for a session restored from this node's store: None if this node
        may keep it (it held the id, or nobody does now), else the node that holds it."""
        kv = self._kv
        assert kv is not None
        name = token(client_id)
        value = json.dumps({"client_id": client_id, "node": self.node}).encode()
        try:
            entry = await asyncio.wait_for(kv.get(name), self.timeout)
        except KeyNotFoundError:
            try:
                self._revisions[client_id] = await asyncio.wait_for(
                    kv.create(name, value), self.timeout)
                return None
            except KeyWrongLastSequenceError:
                entry = await asyncio.wait_for(kv.get(name), self.timeout)
        try:
            holder = str(json.loads(entry.value or b"{}")["node"])
        except (ValueError, KeyError, TypeError):
            holder = ""
        if holder != self.node:
            return holder or None
        self._revisions[client_id] = int(entry.revision or 0)
        return None

    def lost(self, client_id: str) -> None:
        """Another node took `client_id` over: nothing of ours to release."""
        self._revisions.pop(client_id, None)

    async def release(self, client_id: str) -> None:
        """This node no longer has `client_id` (session ended): delete the record,
        unless another node claimed it since."""
        revision = self._revisions.pop(client_id, None)
        if revision is None or self._kv is None:
            return
        with contextlib.suppress(nats.errors.Error, TimeoutError, OSError):
            await asyncio.wait_for(self._kv.delete(token(client_id), last=revision),
                                   self.timeout)

    def held(self) -> list[str]:
        return list(self._revisions)
