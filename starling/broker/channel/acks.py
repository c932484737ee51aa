"""Replies in order, each after the store commit it confirms (docs/durability.md).

In durable mode a PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK or CONNACK
that confirms a change to the store leaves only once the journal has committed
it; every reply after it on the connection queues behind it, so replies leave
in the order their packets came [MQTT-4.6.0-2, -3].  Past `HOLD_LIMIT` waiting
replies (a store that cannot write) the socket is not read until they leave.
A CONNACK that waits for its commit holds the client's deliveries too, until
it has left (`_connack_sent`).
"""

from __future__ import annotations

from collections import deque

from ..client import CLOSED
from .base import HOLD_LIMIT, ChannelBase


class Replies(ChannelBase):
    """Writes replies in order, holding those that wait for a commit."""

    __slots__ = ()

    def _send(self, data: bytes) -> None:
        """Write a reply; behind the acknowledgements waiting for a commit, if any
        (replies leave in the order their packets came)."""
        if self._held_acks:
            self._held_acks.append((0, data))
            return
        self._write(data)

    def _send_ordered(self, data: bytes, wait: bool, ahead_of: int = 0) -> None:
        """Send now, or after the commit holding what the packet confirms.  Sent
        now, it goes before the last `ahead_of` packets written (the copies of a
        PUBLISH to its own publisher, which the acknowledgement answers first).

        Past `HOLD_LIMIT` acknowledgements waiting (a store that cannot write),
        the socket is not read until they leave: the client's packets wait in
        TCP, not in our memory."""
        held = self._held_acks
        if not wait and not held:
            self._write(data, ahead_of)
            return
        journal = self.broker.journal
        if wait and not journal.uncommitted:
            wait = False  # committed already
            if not held:
                self._write(data, ahead_of)
                return
        if held is None:
            held = self._held_acks = deque()
        flush_id = journal.flush_id if wait else 0
        # One callback per commit and connection: a reply still held for the same
        # commit registered it already (it releases every reply up to that commit).
        registered = wait and bool(held) and held[-1][0] == flush_id
        held.append((flush_id, data))
        if len(held) == HOLD_LIMIT:
            self.conn.pause_reading()
        if wait and not registered:
            journal.after_commit(self._release_acks)

    def _release_acks(self) -> None:
        held = self._held_acks
        if held is None:
            return
        committed = self.broker.journal.committed_id
        was_full = len(held) >= HOLD_LIMIT
        wrote = False
        while held and held[0][0] <= committed:
            self._write(held.popleft()[1])
            wrote = True
        if self.state == CLOSED:
            return
        if wrote and self._connack_pending:  # nothing is ever held before a CONNACK
            self._connack_sent()
        if was_full and len(held) < HOLD_LIMIT and not self._busy:
            self.conn.resume_reading()

    def _connack_sent(self) -> None:
        """The CONNACK that waited for its commit has left: the client is connected
        for everyone else now, and what its session holds goes out."""
        self._connack_pending = False
        self.writable = not self._blocked
        session = self.session
        self._connected(session is not None and bool(session.inflight))
