"""Node lifecycle helpers that work with tests/conftest.py's `Node` (and the
mosquitto stand-in)."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import Any

# STARLING_E2E_BROKER=mosquitto runs the e2e suite against Debian's mosquitto
ON_MOSQUITTO = os.environ.get("STARLING_E2E_BROKER", "starling").lower() == "mosquitto"


def release_pipes(node: Any, timeout: float = 2.0) -> None:
    """Close the stderr pipe of a node process that has exited.

    tests/conftest.py's Node leaves `proc.stderr` open after the process ends, which
    surfaces as a ResourceWarning (an error under this project's
    filterwarnings=error) whenever the Popen is collected.  Wait for the log
    reader thread to reach EOF first so closing never races its read."""
    proc = getattr(node, "proc", None)
    if proc is None or proc.poll() is None or proc.stderr is None:
        return
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        # a running Thread still holds its args (CPython drops them when run ends)
        args = getattr(thread, "_args", ())
        if thread.name.endswith("(_read_log)") and args and args[0] is proc:
            thread.join(max(deadline - time.monotonic(), 0.0))
    with contextlib.suppress(Exception):
        proc.stderr.close()


def restart(node: Any) -> Any:
    """node.stop() (SIGTERM) + node.start() on the same data dir, without leaks."""
    node.stop()
    release_pipes(node)
    return node.start()
