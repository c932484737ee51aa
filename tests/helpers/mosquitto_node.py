"""A Debian `mosquitto` broker behind the same interface as conftest's `Node`.

Only for cross-checking the end-to-end tests against a reference broker:
`STARLING_E2E_BROKER=mosquitto python -m pytest tests/e2e`.  Tests that need
Starling-only behaviour ($SYS layout, settings mosquitto has no equivalent for)
skip themselves via `require_starling`.  The default target is Starling.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

from .process import ServerProcess
from .servers import free_port

# settings we can map onto mosquitto.conf; anything else makes the test skip
_MAPPABLE = {
    "mqtt.max_packet_size": "max_packet_size",
    "session.max_inflight": "max_inflight_messages",
    "session.max_mqueue_len": "max_queued_messages",
    "mqtt.allow_anonymous": "allow_anonymous",
}
_IGNORABLE = {"broker.sys_heartbeat"}


class UnsupportedSetting(Exception):
    pass


class MosquittoNode(ServerProcess):
    def __init__(self, data_dir: Path, settings: dict[str, str], name: str) -> None:
        self.data_dir = data_dir
        self.name = name
        self.settings = settings
        self.log_lines: list[str] = []
        self.proc: subprocess.Popen[str] | None = None
        self._port = free_port()
        lines = [f"listener {self._port} 127.0.0.1", "allow_anonymous true",
                 "log_type all", "log_dest stderr", "persistence false"]
        for key, value in settings.items():
            if key in _IGNORABLE or key.startswith(("listeners.", "management.", "dashboard.")):
                continue
            if key not in _MAPPABLE:
                raise UnsupportedSetting(key)
            if key == "mqtt.allow_anonymous":
                lines[1] = f"allow_anonymous {value}"
                continue
            lines.append(f"{_MAPPABLE[key]} {value}")
        data_dir.mkdir(parents=True, exist_ok=True)
        self.conf = data_dir / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self) -> MosquittoNode:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        # errors="replace": mosquitto logs client ids verbatim, bytes and all
        self.proc = subprocess.Popen([exe, "-c", str(self.conf)], stderr=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, text=True, errors="replace")
        self._reader = threading.Thread(target=self._read_log, args=(self.proc,), daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self._port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("mosquitto did not start:\n" + "\n".join(self.log_lines))

    def _read_log(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self.log_lines.append(line.rstrip("\n"))

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return self._port

    def wait_log(self, pattern: str, timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while time.monotonic() < deadline:
            for line in list(self.log_lines):
                if rx.search(line):
                    return line
            time.sleep(0.02)
        raise AssertionError(f"no log line matching {pattern!r}")
