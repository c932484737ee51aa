"""The open-file limit: every connection holds one file descriptor.

At start the node raises its soft RLIMIT_NOFILE to the hard limit (a process
may do that without privilege), and warns, naming the listener and the
numbers, when a listener's `max_connections` promises more connections than
the limit lets it hold: past the limit `accept()` fails with EMFILE and
clients see connection resets instead of a counted refusal.
"""

from __future__ import annotations

import logging
import os
import resource
from collections.abc import Iterable

log = logging.getLogger(__name__)

#: Descriptors kept for the node itself beyond those open at start: the store's
#: files (database, WAL, shared memory), log files, HTTP clients of plugins.
RESERVED_FDS = 64


def raise_open_files_limit() -> int:
    """Raise the soft limit on open files to the hard limit; return the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # An unlimited hard limit (some kernels refuse it as a soft limit): keep the soft one.
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, hard, exc)
    return soft


def open_fds() -> int:
    """Descriptors this process holds now (0 where /proc is not there)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def connection_room(soft_limit: int) -> int:
    """How many connections the open-file limit leaves room for, all listeners together."""
    if soft_limit == resource.RLIM_INFINITY or soft_limit < 0:
        return 1 << 62
    return max(0, soft_limit - open_fds() - RESERVED_FDS)


def warn_over_limit(listeners: Iterable[tuple[str, int]], soft_limit: int) -> list[str]:
    """One warning per listener whose max_connections the limit cannot honour."""
    room = connection_room(soft_limit)
    warnings = []
    for name, max_connections in listeners:
        if max_connections > room:
            warnings.append(
                f"listener {name}: max_connections is {max_connections} but the open-file "
                f"limit (RLIMIT_NOFILE {soft_limit}) leaves room for about {room} connections; "
                f"beyond that new connections fail at accept (EMFILE) instead of being "
                f"refused and counted: raise the hard limit (ulimit -Hn, systemd LimitNOFILE=) "
                f"or lower listeners.*.max_connections")
    for message in warnings:
        log.warning("%s", message)
    return warnings
