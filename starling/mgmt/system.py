"""Facts about this process and machine for /brokers and /nodes."""

from __future__ import annotations

import asyncio
import os
import platform
import resource


def _meminfo_kib(field: str) -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def process_rss() -> int:
    """Resident memory of this process in bytes."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def machine_memory() -> int:
    return _meminfo_kib("MemTotal") * 1024


def load_averages() -> tuple[str, str, str]:
    """As EMQ X shows them: strings with two decimals."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        one = five = fifteen = 0.0
    return f"{one:.2f}", f"{five:.2f}", f"{fifteen:.2f}"


def max_fds() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def runtime_release() -> str:
    """Stands in for EMQ X's `otp_release`: the runtime under the broker."""
    return f"Python {platform.python_version()}"


def task_count() -> int:
    try:
        return len(asyncio.all_tasks())
    except RuntimeError:
        return 0


def human_bytes(value: int) -> str:
    """EMQ X's /nodes list form: "76.45M" (base 1024, two decimals)."""
    amount = float(value)
    for unit in ("K", "M", "G", "T"):
        amount /= 1024
        if amount < 1024:
            return f"{amount:.2f}{unit}"
    return f"{amount:.2f}P"
