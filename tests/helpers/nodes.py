"""Node lifecycle helpers that work with tests/conftest.py's `Node` (and the
mosquitto stand-in)."""

from __future__ import annotations

import os
from typing import Any

# STARLING_E2E_BROKER=mosquitto runs the e2e suite against Debian's mosquitto
ON_MOSQUITTO = os.environ.get("STARLING_E2E_BROKER", "starling").lower() == "mosquitto"


#: Settings of every test node: the MQTT/TCP listener on a free port, the rest off.
BASE_SETTINGS = {
    "listeners.tcp.default.bind": "127.0.0.1:0",
    "listeners.tcp.internal.bind": "off",
    "listeners.ws.default.bind": "off",
    "listeners.ssl.default.bind": "off",
    "listeners.wss.default.bind": "off",
    "management.bind": "off",
    "dashboard.bind": "off",
}


def restart(node: Any) -> Any:
    """node.stop() (SIGTERM) + node.start() on the same data dir, without leaks."""
    node.stop()
    return node.start()


def rss_kib(node: Any) -> int:
    """The node process's resident memory (VmRSS), KiB."""
    with open(f"/proc/{node.proc.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {node.proc.pid}")
