"""Helpers for the API suites that are not fixtures (importable by test modules;
conftest modules are not, since every one of them is named "conftest")."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

Node = Any  # tests/conftest.py's Node


def close_node(node: Node, timeout: float = 2.0) -> None:
    """Stop a node (SIGTERM) and close its stderr pipe once the log reader is done."""
    node.stop()
    proc = node.proc
    if proc is None or proc.stderr is None:
        return
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        args = getattr(thread, "_args", ())
        if thread.name.endswith("(_read_log)") and args and args[0] is proc:
            thread.join(max(deadline - time.monotonic(), 0.0))
    with contextlib.suppress(Exception):
        proc.stderr.close()
