"""Shared fixtures: a real Starling node started as a subprocess on free ports.

Every end-to-end test talks to a node through real sockets; nothing here
imports the broker.  The node prints `listener <name> on <host>:<port>` for
each listener it binds, which is how the fixture learns the free port the OS
picked for `:0`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from helpers.clients import Clients
from helpers.nodes import BASE_SETTINGS
from helpers.process import ServerProcess
from hypothesis import HealthCheck, settings

# Timing-based hypothesis checks flake on a loaded 2-core CI machine; the
# properties are what matter, not how fast each example runs.
settings.register_profile("starling", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("starling")

LISTENER_LINE = re.compile(r"listener (\S+) on (\S+):(\d+)")
STARTUP_TIMEOUT = 20.0


class Node(ServerProcess):
    """A running `starling start` process and the addresses it reported."""

    def __init__(self, data_dir: Path, settings: dict[str, str], name: str) -> None:
        self.data_dir = data_dir
        self.name = name
        self.listeners: dict[str, tuple[str, int]] = {}
        self.log_lines: list[str] = []
        self._ready = threading.Event()
        self._settings = settings
        self.proc: subprocess.Popen[str] | None = None

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> Node:
        args = [
            sys.executable, "-m", "starling", "start",
            "--data-dir", str(self.data_dir),
            "--node-name", self.name,
        ]
        for key, value in self._settings.items():
            args += ["--set", f"{key}={value}"]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.listeners.clear()
        self._ready.clear()
        self.proc = subprocess.Popen(
            args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env
        )
        self._reader = threading.Thread(target=self._read_log, args=(self.proc,), daemon=True)
        self._reader.start()
        if not self._ready.wait(STARTUP_TIMEOUT) or self.proc.poll() is not None:
            self.kill()
            raise RuntimeError("node did not start:\n" + "\n".join(self.log_lines[-30:]))
        return self

    def _read_log(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self.log_lines.append(line.rstrip("\n"))
            match = LISTENER_LINE.search(line)
            if match:
                self.listeners[match.group(1)] = (match.group(2), int(match.group(3)))
            if "node started" in line:
                self._ready.set()
        proc.wait()
        self._ready.set()  # exited before starting: start() reports the log

    # -- addresses ---------------------------------------------------------
    @property
    def host(self) -> str:
        return self.listeners["mqtt:tcp:default"][0]

    @property
    def port(self) -> int:
        return self.listeners["mqtt:tcp:default"][1]

    @property
    def api_url(self) -> str:
        host, port = self.listeners["http:management"]
        return f"http://{host}:{port}/api/v3"

    def api(self, auth: tuple[str, str] | None = ("admin", "test-secret")) -> httpx.Client:
        """An HTTP client for the management API, with the test app's credentials."""
        return httpx.Client(base_url=self.api_url, auth=auth, timeout=10)

    def wait_log(self, pattern: str, timeout: float = 5.0) -> str:
        """Wait until a log line matches `pattern` (a regex) and return it."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while time.monotonic() < deadline:
            for line in list(self.log_lines):
                if rx.search(line):
                    return line
            time.sleep(0.02)
        raise AssertionError(f"no log line matching {pattern!r}")




@pytest.fixture
def make_node(tmp_path: Path) -> Iterator[Callable[..., Node]]:
    """Factory: `make_node(**{"mqtt.max_packet_size": "100"})` starts a node."""
    nodes: list[Node] = []

    def factory(settings: dict[str, str] | None = None, name: str = "starling@127.0.0.1",
                data_dir: Path | None = None) -> Node:
        merged = dict(BASE_SETTINGS)
        merged.update(settings or {})
        node = Node(data_dir or tmp_path / f"data{len(nodes)}", merged, name)
        nodes.append(node)
        return node.start()

    yield factory
    for node in nodes:
        node.stop()


@pytest.fixture(scope="module")
def shared_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """One node for a whole test module; tests use unique client ids and topics."""
    node = Node(tmp_path_factory.mktemp("shared"), dict(BASE_SETTINGS), "starling@127.0.0.1")
    node.start()
    yield node
    node.stop()


@pytest.fixture
def node(shared_node: Node) -> Node:
    return shared_node


@pytest.fixture
def clients() -> Iterator[Clients]:
    """Connected paho clients, closed when the test ends: ``clients(node, client_id,
    username=..., clean_session=...)``."""
    made = Clients()
    yield made
    made.close()


#: Settings that turn the management API on, with a known secret for tests.
API_SETTINGS = {
    "management.bind": "127.0.0.1:0",
    "api.default_app_id": "admin",
    "api.default_app_secret": "test-secret",
}


@pytest.fixture(scope="session")
def spawn_node() -> Callable[[Path, dict[str, str], str], Node]:
    """Start a node process with the management API on (test credentials) plus
    `settings`; the caller stops it.  For suites that manage their nodes' lives
    themselves (tests/cluster: several nodes, killed and restarted)."""

    def spawn(data_dir: Path, settings: dict[str, str], name: str) -> Node:
        return Node(data_dir, {**BASE_SETTINGS, **API_SETTINGS, **settings}, name).start()

    return spawn


@pytest.fixture(scope="module")
def api_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """A node with the management API on, shared by a test module."""
    node = Node(tmp_path_factory.mktemp("api"), {**BASE_SETTINGS, **API_SETTINGS},
                "starling@127.0.0.1")
    node.start()
    yield node
    node.stop()
