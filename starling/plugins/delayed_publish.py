"""emqx_delayed_publish: ``$delayed/<seconds>/<topic>`` is published later.

A PUBLISH to ``$delayed/60/a/b`` is taken off the publish path (a
``message.publish`` callback that ends the chain) and published to ``a/b``
60 seconds later, with its QoS, retain flag and properties.  Pending messages
are rows of the plugin table ``delayed_publish`` (the node's store, written in
the same commit the PUBACK waits for in durable mode), so they survive a
restart and an unload; one heap and one timer handle publish them, whatever
their number.  Details and the choices made where EMQ X is silent:
docs/feature-plugins.md, "Delayed publish".
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import heapq
import logging
import re
import time
import uuid
from typing import Any

from starling.broker import HookPoint, Message, Stop
from starling.mqtt import decode_properties, encode_properties, is_valid_topic_name

from . import ConfigKey, Plugin, parse_nonnegative_int

log = logging.getLogger(__name__)

PREFIX = "$delayed/"
#: EMQ X's ?MAX_INTERVAL: smaller numbers are a delay in seconds, larger ones a Unix
#: time, which may be at most this far ahead.
MAX_INTERVAL = 4294967
TABLE = "delayed_publish"
#: The metric (EMQ X's messages.delayed) and the stat (delayed/count, delayed/max).
METRIC = "messages/delayed"
STAT = "delayed"
#: Before other message.publish callbacks: they see a delayed message once, when it
#: is published under its real topic.
PRIORITY = 1000
#: The timer is re-armed at least this often, so a wall-clock jump is caught up with.
MAX_SLEEP = 3600.0
#: Seconds between two log lines about refused $delayed/ messages.
REFUSAL_LOG_INTERVAL = 10.0

_INTEGER = re.compile(r"[+-]?[0-9]+")


def parse_delayed(topic: str, now: float) -> tuple[float, str] | None:
    """``$delayed/<n>/<topic>`` → (Unix time to publish at, topic), or None when the
    form is not one EMQ X accepts.  ``n`` below `MAX_INTERVAL` is a delay in seconds
    (0 or negative: at once); a larger one is a Unix time, refused if more than
    `MAX_INTERVAL` seconds ahead (a past one publishes at once)."""
    delay, sep, real = topic[len(PREFIX):].partition("/")
    if not sep or not _INTEGER.fullmatch(delay):
        return None
    n = int(delay)
    if n < MAX_INTERVAL:
        return now + n, real
    if n - now > MAX_INTERVAL:
        return None
    return float(n), real


def row_of(message: Message, topic: str, publish_at: float, node: str) -> dict[str, Any]:
    """A pending message as the JSON row kept in the store; `node` publishes it (in a
    cluster every node lists it, the node that took it publishes it)."""
    expires = None
    if message.expires_at is not None:
        expires = time.time() + (message.expires_at - time.monotonic())
    return {"at": publish_at, "topic": topic,
            "payload": base64.b64encode(message.payload).decode(),
            "qos": message.qos, "retain": message.retain,
            "props": base64.b64encode(encode_properties(message.properties)).decode(),
            "from": message.sender, "username": message.username,
            "peerhost": message.peerhost, "expires": expires, "node": node}


def message_of(row: dict[str, Any]) -> Message:
    """The message to publish now, from its row (a new message id and timestamp)."""
    raw = base64.b64decode(row["props"])
    properties, _ = decode_properties(raw, 0, len(raw))
    message = Message(row["topic"], base64.b64decode(row["payload"]), row["qos"],
                      row["retain"], row["from"], row["username"], row["peerhost"],
                      properties)
    if row["expires"] is not None:
        message.expires_at = time.monotonic() + (row["expires"] - time.time())
    return message


class DelayedPublishPlugin(Plugin):
    SCHEMA = (
        ConfigKey("delayed.max_delayed_messages", "0",
                  "Most messages waiting to be published; beyond it a $delayed/ message "
                  "is dropped. 0 = no limit (Starling's key; EMQ X v3 had none).",
                  parse_nonnegative_int),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.table = self.context.store.table(TABLE)
        #: (Unix time to publish at, row key), earliest first.
        self._heap: list[tuple[float, str]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._armed_for = 0.0
        self._refusals = 0
        self._refusal_logged = 0.0

    async def load(self) -> None:
        """Pick up what is pending (also from before a restart or an unload)."""
        heap = []
        for key, row in self.table.items():
            if not self._mine(row):
                continue
            try:
                heap.append((float(row["at"]), key))
            except (KeyError, TypeError, ValueError):
                log.error("delayed_publish: unreadable row %r dropped", key)
                self.table.delete(key)
        heapq.heapify(heap)
        self._heap = heap
        self.table.watch(self._replicated)
        broker = self.context.broker
        broker.hooks.add(HookPoint.MESSAGE_PUBLISH, self.on_publish, PRIORITY)
        broker.stats.add_gauge(STAT, self.pending)
        if heap:
            log.info("delayed_publish: %d messages pending", len(heap))
        self._arm()

    def _mine(self, row: Any) -> bool:
        """Is this node the one to publish the row's message?"""
        return not isinstance(row, dict) or row.get("node", self.context.node_name) \
            == self.context.node_name

    def _replicated(self, key: str, row: Any) -> None:
        """A row another node of the cluster wrote (ours again after a restore of the
        cluster's copy): scheduled if this node publishes it."""
        if row is not None and self._mine(row):
            with contextlib.suppress(KeyError, TypeError, ValueError):
                heapq.heappush(self._heap, (float(row["at"]), key))
                self._arm()

    async def unload(self) -> None:
        """Stop taking and publishing; pending messages stay stored for the next load."""
        self.table.watch(None)
        broker = self.context.broker
        broker.hooks.remove(HookPoint.MESSAGE_PUBLISH, self.on_publish)
        broker.stats.remove_gauge(STAT)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._heap = []

    def pending(self) -> int:
        return len(self.table)

    # -- taking messages ---------------------------------------------------------------
    def on_publish(self, message: Message) -> Any:
        """A `message.publish` fold callback: take ``$delayed/`` messages."""
        topic = message.topic
        if not topic.startswith(PREFIX):
            return None
        parsed = parse_delayed(topic, message.timestamp)
        if parsed is None:
            # EMQ X's hook fails on such a topic and the message goes on as it is.
            self._refused(topic, "not $delayed/<seconds>/<topic>: published as it is")
            return None
        publish_at, real = parsed
        broker = self.context.broker
        why = None
        if not is_valid_topic_name(real) or not broker.topic_levels_ok(real):
            why = "not a valid topic name"
        elif not self._may_publish(message, real):
            why = "publish not allowed by ACL"
        else:
            limit = self.settings["delayed.max_delayed_messages"]
            if limit and len(self.table) >= limit:
                why = f"delayed.max_delayed_messages ({limit}) reached"
        if why is not None:
            broker.counters["messages/dropped"] += 1
            self._refused(topic, f"{why}: dropped")
            return Stop(None)
        key = uuid.uuid4().hex
        self.table.put(key, row_of(message, real, publish_at, self.context.node_name))
        heapq.heappush(self._heap, (publish_at, key))
        broker.counters[METRIC] += 1
        self._arm()
        return Stop(None)

    def _may_publish(self, message: Message, topic: str) -> bool:
        """The publisher's ACL for the real topic (EMQ X v3 checked only the
        ``$delayed/`` name; a client must not reach a topic it may not publish to
        by delaying).  Messages of the API or the broker have no connection: allowed."""
        if not message.peerhost:
            return True
        allowed = self.context.broker.client_may(message.sender, "publish", topic)
        return allowed is None or allowed

    def _refused(self, topic: str, why: str) -> None:
        self._refusals += 1
        now = time.monotonic()
        if now - self._refusal_logged >= REFUSAL_LOG_INTERVAL:
            self._refusal_logged = now
            log.warning("delayed_publish: %s: %s (%d refused since the last such line)",
                        topic, why, self._refusals)
            self._refusals = 0

    # -- publishing them -----------------------------------------------------------------
    def _arm(self) -> None:
        """One timer, for the earliest pending message."""
        if not self._heap:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            return
        due = self._heap[0][0]
        if self._timer is not None:
            if self._armed_for <= due:
                return
            self._timer.cancel()
        delay = min(max(0.0, due - time.time()), MAX_SLEEP)
        self._armed_for = due
        self._timer = asyncio.get_running_loop().call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        now = time.time()
        heap = self._heap
        broker = self.context.broker
        while heap and heap[0][0] <= now:
            _, key = heapq.heappop(heap)
            row = self.table.get(key)
            if row is None:
                continue
            self.table.delete(key)
            try:
                broker.publish(message_of(row))
            except Exception:
                log.exception("delayed_publish: publishing %s failed", row.get("topic"))
        self._arm()
