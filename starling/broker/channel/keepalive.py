"""Keepalive: the idle timeout before CONNECT, the keepalive window after it
(1.5 x keepalive without a packet closes the connection [MQTT-3.1.2-24]), and
PINGREQ.  The deadlines are entries in the broker's timer wheel (`timers.py`),
not a loop timer per connection; the transport sets `last_seen` on each read.
"""

from __future__ import annotations

from starling.mqtt import PINGRESP_BYTES, Packet, ReasonCode

from ..client import CONNECTED, CONNECTING, NEW
from .acks import Replies


class KeepaliveFlow(Replies):
    __slots__ = ()

    def _reset_keepalive_timer(self) -> None:
        timers = self.broker.timers
        if self.keepalive:
            timers.add(self, self.broker.clock.monotonic()
                       + self.keepalive * self.options.keepalive_multiplier)
        elif self.timer_bucket is not None:
            timers.remove(self)

    def on_deadline(self, now: float) -> None:
        """`broker.timers`: the idle timeout (no CONNECT handled in time), or the
        keepalive window: close if nothing arrived for 1.5 x keepalive [MQTT-3.1.2-24]."""
        state = self.state
        if state in (NEW, CONNECTING):
            self.close("idle_timeout")
            return
        if state != CONNECTED or not self.keepalive:
            return
        window = self.keepalive * self.options.keepalive_multiplier
        # last_seen may be up to 1 ms early (reads share their time: transport).
        window += 0.001
        if now - self.last_seen >= window:
            if self.protocol_level == 5:
                self._send_disconnect(ReasonCode.KEEP_ALIVE_TIMEOUT)
            self.close("keepalive_timeout")
        else:
            self.broker.timers.add(self, self.last_seen + window)

    def _on_pingreq(self, p: Packet) -> None:
        self.counters["packets/pingreq"] += 1
        self.counters["packets/pingresp"] += 1
        self._send(PINGRESP_BYTES)
