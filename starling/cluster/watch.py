"""Opening a key-value watcher that keeps trying: right after NATS comes back,
JetStream may not answer for a moment (it is reading its files), and a watch
that gave up then would leave the node deaf to the bucket."""

from __future__ import annotations

import asyncio
import logging
import time

import nats.errors
from nats.js.kv import KeyValue

log = logging.getLogger(__name__)

#: Seconds between two log lines about one bucket that cannot be watched.
LOG_INTERVAL = 10.0


async def open_watcher(kv: KeyValue, what: str) -> KeyValue.KeyWatcher:
    """`kv.watchall()`, retried (0.2 s, doubling up to 2 s) until it works."""
    delay = 0.2
    logged = -LOG_INTERVAL
    while True:
        try:
            return await kv.watchall()
        except (nats.errors.Error, TimeoutError) as exc:
            now = time.monotonic()
            if now - logged >= LOG_INTERVAL:
                logged = now
                log.warning("cluster: cannot watch %s yet (%s); trying again", what,
                            str(exc) or type(exc).__name__)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)
