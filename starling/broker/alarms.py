"""Alarms: what is wrong right now, and when each alarm was last cleared
(EMQ X v3 `emqx_alarm_handler`, facts §5.11).

`Alarms` is the registry: `raise_alarm(id, desc)` and `clear_alarm(id)`.
Each change is published on ``$SYS/brokers/<node>/alarms/alert`` (JSON
``{"id", "desc"}``) or ``.../alarms/clear`` (JSON ``{"id"}``), and logged.
The history keeps only the last clearing of each alarm id, as EMQ X's keyed
table does.  Plugins raise their own alarms through ``broker.alarms``.

`AlarmMonitor` is the set of built-in monitors, one check every
`alarm_check_interval` seconds on the event loop:

================================  =====================================  ==================
alarm id                          raised when                            cleared when
================================  =====================================  ==================
cpu_high_watermark                CPU busy ≥ cpu_high_watermark          < cpu_low_watermark
system_memory_high_watermark      memory used ≥ sysmem_high_watermark    below it again
process_memory_high_watermark     broker RSS ≥ procmem_high_watermark    below it again
too_many_connections              a listener ≥ connections_high_...      all < ..._low_...
================================  =====================================  ==================

CPU busy is the higher of the machine's CPU use over the interval (all
cores) and this process's use of one core (its event loop runs on one, so a
saturated loop shows as 100 % on a machine that is otherwise idle).  Memory
is read from /proc, or from the cgroup (v2) when the broker runs in a
container with a memory limit below the machine's.  The readings come from
`SystemSampler`, which reads a few small /proc files and nothing else; on
a system without /proc the CPU and memory checks are skipped.  Connection
counts per listener come from the transport, through `connection_usage`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from .message import Message

if TYPE_CHECKING:
    from .options import BrokerOptions

log = logging.getLogger(__name__)

CPU_HIGH_WATERMARK = "cpu_high_watermark"
SYSTEM_MEMORY_HIGH_WATERMARK = "system_memory_high_watermark"
PROCESS_MEMORY_HIGH_WATERMARK = "process_memory_high_watermark"
TOO_MANY_CONNECTIONS = "too_many_connections"


@dataclass(frozen=True, slots=True)
class Alarm:
    """A present alarm, or (with `cleared_at` set) the last clearing of one."""

    id: str
    desc: str
    raised_at: float  #: epoch seconds
    cleared_at: float | None = None


class Alarms:
    def __init__(self, publish: Callable[[Message], object] | None = None,
                 sys_prefix: str = "") -> None:
        """`publish` sends the $SYS notifications; `sys_prefix` is
        ``$SYS/brokers/<node>/``."""
        self._publish = publish
        self._prefix = sys_prefix
        self._present: dict[str, Alarm] = {}
        self._history: dict[str, Alarm] = {}

    def raise_alarm(self, alarm_id: str, desc: str) -> bool:
        """Raise an alarm; True if it was not raised already.  Raising a present
        alarm again only updates its `desc` (no second notification)."""
        current = self._present.get(alarm_id)
        if current is not None:
            if current.desc != desc:
                self._present[alarm_id] = replace(current, desc=desc)
            return False
        self._present[alarm_id] = Alarm(alarm_id, desc, time.time())
        log.warning("alarm raised: %s (%s)", alarm_id, desc)
        self._notify("alert", {"id": alarm_id, "desc": desc})
        return True

    def clear_alarm(self, alarm_id: str) -> bool:
        """Clear an alarm; False if it was not raised."""
        alarm = self._present.pop(alarm_id, None)
        if alarm is None:
            return False
        self._history.pop(alarm_id, None)  # keep the last clearing only, newest last
        self._history[alarm_id] = replace(alarm, cleared_at=time.time())
        log.info("alarm cleared: %s", alarm_id)
        self._notify("clear", {"id": alarm_id})
        return True

    def is_raised(self, alarm_id: str) -> bool:
        return alarm_id in self._present

    def present(self) -> list[Alarm]:
        """Raised alarms, oldest first."""
        return list(self._present.values())

    def history(self) -> list[Alarm]:
        """The last clearing of each alarm id, oldest first."""
        return list(self._history.values())

    def _notify(self, event: str, payload: dict[str, str]) -> None:
        if self._publish is None:
            return
        self._publish(Message(f"{self._prefix}alarms/{event}", json.dumps(payload).encode(),
                              sys=True))


# -- readings --------------------------------------------------------------------------

def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except (OSError, ValueError):
        return None


def _read_int(path: str) -> int | None:
    text = _read(path)
    if text is None:
        return None
    text = text.strip()
    return int(text) if text.isdigit() else None


class SystemSampler:
    """CPU and memory readings from /proc (and cgroup v2 files), Linux only.
    Every method returns None when the value cannot be read."""

    def __init__(self, proc: str = "/proc", cgroup: str = "/sys/fs/cgroup") -> None:
        self._proc = proc
        self._cgroup = cgroup
        self._last_stat: tuple[int, int] | None = None  # (busy, total) jiffies
        self._last_process: tuple[float, float] | None = None  # (cpu seconds, wall)

    def cpu_busy(self) -> float | None:
        """Percent busy since the previous call: the higher of the machine (all
        cores) and this process (of one core).  None on the first call."""
        machine = self._machine_busy()
        process = self._process_busy()
        readings = [v for v in (machine, process) if v is not None]
        return max(readings) if readings else None

    def _machine_busy(self) -> float | None:
        text = _read(f"{self._proc}/stat")
        if text is None or not text.startswith("cpu "):
            return None
        try:
            # user nice system idle iowait irq softirq steal (guest time is in user)
            values = [int(v) for v in text.split("\n", 1)[0].split()[1:9]]
        except ValueError:
            return None
        total = sum(values)
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        last, self._last_stat = self._last_stat, (total - idle, total)
        if last is None or total <= last[1]:
            return None
        return 100.0 * ((total - idle) - last[0]) / (total - last[1])

    def _process_busy(self) -> float | None:
        now = (time.process_time(), time.monotonic())
        last, self._last_process = self._last_process, now
        if last is None or now[1] <= last[1]:
            return None
        return min(100.0, 100.0 * (now[0] - last[0]) / (now[1] - last[1]))

    def memory(self) -> tuple[int, int] | None:
        """(used, total) bytes of the machine, or of the container when its
        cgroup memory limit is lower than the machine's memory."""
        total = used = None
        text = _read(f"{self._proc}/meminfo")
        if text is not None:
            fields: dict[str, int] = {}
            for line in text.splitlines():
                name, _, rest = line.partition(":")
                parts = rest.split()
                if parts and parts[0].isdigit():
                    fields[name] = int(parts[0]) * 1024
            if "MemTotal" in fields:
                total = fields["MemTotal"]
                available = fields.get("MemAvailable", fields.get("MemFree", 0))
                used = total - available
        limit = _read_int(f"{self._cgroup}/memory.max")  # None when "max" (no limit)
        current = _read_int(f"{self._cgroup}/memory.current")
        if limit is not None and current is not None and (total is None or limit < total):
            # As `docker stats` counts it: page cache that can be dropped is not "used".
            inactive = 0
            stat = _read(f"{self._cgroup}/memory.stat") or ""
            for line in stat.splitlines():
                name, _, value = line.partition(" ")
                if name == "inactive_file" and value.strip().isdigit():
                    inactive = int(value)
            return max(0, current - inactive), limit
        if total is None or used is None or total <= 0:
            return None
        return used, total

    def process_memory(self) -> int | None:
        """Resident memory of this process, bytes."""
        text = _read(f"{self._proc}/self/statm")
        if text is None:
            return None
        parts = text.split()
        if len(parts) < 2 or not parts[1].isdigit():
            return None
        return int(parts[1]) * os.sysconf("SC_PAGE_SIZE")


#: (listener name, current connections, max connections) of each MQTT listener.
ConnectionUsage = Callable[[], Iterable[tuple[str, int, int]]]


def _percent(value: float) -> str:
    return str(round(value, 2))


class AlarmMonitor:
    """The built-in monitors (module docstring), checked every interval."""

    def __init__(self, alarms: Alarms, options: BrokerOptions | Callable[[], BrokerOptions],
                 sampler: SystemSampler | None = None) -> None:
        """`options` may be a getter, so thresholds follow the broker's current
        options (they can be replaced at runtime)."""
        self.alarms = alarms
        self._options = options if callable(options) else lambda: options
        self.sampler = sampler if sampler is not None else SystemSampler()
        #: Set by whoever owns the listeners (the node); None = no connection check.
        self.connection_usage: ConnectionUsage | None = None
        self._timer: asyncio.TimerHandle | None = None

    @property
    def options(self) -> BrokerOptions:
        return self._options()

    def start(self) -> None:
        interval = self.options.alarm_check_interval
        if interval <= 0:
            return
        self.sampler.cpu_busy()  # the baseline the first check measures from
        self._timer = asyncio.get_running_loop().call_later(interval, self._fire)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        interval = self.options.alarm_check_interval
        if interval <= 0:  # turned off since
            self._timer = None
            return
        self._timer = asyncio.get_running_loop().call_later(interval, self._fire)
        try:
            self.check()
        except Exception:  # a monitor must never take the loop's timer down
            log.exception("alarm check failed")

    def check(self) -> None:
        """One round of every check."""
        self.check_cpu()
        self.check_memory()
        self.check_connections()

    def check_cpu(self) -> None:
        busy = self.sampler.cpu_busy()
        if busy is None:
            return
        options = self.options
        if busy >= options.cpu_high_watermark:
            self.alarms.raise_alarm(CPU_HIGH_WATERMARK, _percent(busy))
        elif busy < options.cpu_low_watermark:
            self.alarms.clear_alarm(CPU_HIGH_WATERMARK)

    def check_memory(self) -> None:
        options = self.options
        memory = self.sampler.memory()
        if memory is None:
            return
        used, total = memory
        self._watermark(SYSTEM_MEMORY_HIGH_WATERMARK, 100.0 * used / total,
                        options.sysmem_high_watermark)
        rss = self.sampler.process_memory()
        if rss is not None:
            self._watermark(PROCESS_MEMORY_HIGH_WATERMARK, 100.0 * rss / total,
                            options.procmem_high_watermark)

    def _watermark(self, alarm_id: str, value: float, high: float) -> None:
        if value >= high:
            self.alarms.raise_alarm(alarm_id, _percent(value))
        else:
            self.alarms.clear_alarm(alarm_id)

    def check_connections(self) -> None:
        """The fullest listener decides: its share of its own `max_connections`."""
        if self.connection_usage is None:
            return
        fullest: float | None = None
        for _name, current, maximum in self.connection_usage():
            if maximum > 0:
                share = 100.0 * current / maximum
                fullest = share if fullest is None else max(fullest, share)
        if fullest is None:
            return
        options = self.options
        if fullest >= options.connections_high_watermark:
            self.alarms.raise_alarm(TOO_MANY_CONNECTIONS, _percent(fullest))
        elif fullest < options.connections_low_watermark:
            self.alarms.clear_alarm(TOO_MANY_CONNECTIONS)
