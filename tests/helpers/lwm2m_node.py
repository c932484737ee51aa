"""lwm2m-node-lib (npm), a third-party LwM2M client, driven through
tests/gateways/lwm2m_node/client.js.

scripts/test installs it into that folder (``npm ci``); a missing install
skips the test locally and fails it under `.ci/run`, as a missing server
program does (`helpers.servers`).
"""

from __future__ import annotations

import queue
import subprocess
import threading
from pathlib import Path

import pytest

from helpers.servers import REQUIRED, find_program

CLIENT_DIR = Path(__file__).resolve().parent.parent / "gateways" / "lwm2m_node"
MARKERS = ("registered", "updated", "deregistered", "error")


def require_lwm2m_node_lib() -> str:
    node = find_program("node")
    if not (CLIENT_DIR / "node_modules" / "lwm2m-node-lib").is_dir():
        message = f"lwm2m-node-lib is not installed in {CLIENT_DIR} (scripts/test runs npm ci)"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    return node


class NodeLwm2mClient:
    """One lwm2m-node-lib device: registered on start, then `update()` and
    `deregister()` on demand; each returns the line the script printed."""

    def __init__(self, host: str, port: int, endpoint: str, lifetime: int = 300) -> None:
        node = require_lwm2m_node_lib()
        self.proc = subprocess.Popen(
            [node, str(CLIENT_DIR / "client.js"), host, str(port), endpoint, str(lifetime)],
            cwd=CLIENT_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True)
        self._lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.registered = self._next()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.split(" ", 1)[0].strip() in MARKERS:
                self._lines.put(line.strip())
        self._lines.put("error exited")

    def _next(self, timeout: float = 20.0) -> str:
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("lwm2m-node-lib client did not answer") from None

    def _send(self, command: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._next()

    def update(self) -> str:
        return self._send("update")

    def deregister(self) -> str:
        return self._send("deregister")

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        self._reader.join(10)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()
