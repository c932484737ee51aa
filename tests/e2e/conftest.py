"""Fixtures for the end-to-end suite (MQTT 3.1 / 3.1.1 over TCP).

The node fixtures (`node`, `make_node`) come from tests/conftest.py and start a
real Starling process.  Setting STARLING_E2E_BROKER=mosquitto swaps them for a
Debian `mosquitto` broker so the tests themselves can be cross-checked against a
reference implementation; tests of Starling-only behaviour skip in that mode.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

_TESTS_DIR = str(Path(__file__).resolve().parent.parent)
if _TESTS_DIR not in sys.path:  # make `helpers` importable whatever the import mode
    sys.path.insert(0, _TESTS_DIR)

from helpers.clients import MQTTv311, PahoClient  # noqa: E402
from helpers.packets import RawClient  # noqa: E402

REFERENCE = os.environ.get("STARLING_E2E_BROKER", "starling").lower()
ON_MOSQUITTO = REFERENCE == "mosquitto"


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
        if thread.name.endswith("(_read_log)") and thread is not threading.current_thread():
            thread.join(max(deadline - time.monotonic(), 0.0))
    with contextlib.suppress(Exception):
        proc.stderr.close()


def restart(node: Any) -> Any:
    """node.stop() (SIGTERM) + node.start() on the same data dir, without leaks."""
    node.stop()
    release_pipes(node)
    return node.start()


if ON_MOSQUITTO:
    from helpers.mosquitto_node import MosquittoNode, UnsupportedSetting

    @pytest.fixture(scope="module")
    def shared_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
        node = MosquittoNode(tmp_path_factory.mktemp("mosq"), {}, "mosquitto").start()
        yield node
        node.stop()
        release_pipes(node)

    @pytest.fixture
    def make_node(tmp_path: Path) -> Iterator[Callable[..., Any]]:
        nodes: list[MosquittoNode] = []

        def factory(settings: dict[str, str] | None = None, name: str = "mosquitto",
                    data_dir: Path | None = None) -> Any:
            try:
                node = MosquittoNode(data_dir or tmp_path / f"mosq{len(nodes)}",
                                     settings or {}, name)
            except UnsupportedSetting as exc:
                pytest.skip(f"no mosquitto equivalent for setting {exc}")
            nodes.append(node)
            return node.start()

        yield factory
        for node in nodes:
            node.stop()
            release_pipes(node)

else:

    @pytest.fixture(scope="module")
    def shared_node(shared_node: Any) -> Iterator[Any]:  # wraps tests/conftest.py's
        yield shared_node
        shared_node.stop()
        release_pipes(shared_node)

    @pytest.fixture
    def make_node(make_node: Callable[..., Any]) -> Iterator[Callable[..., Any]]:
        nodes: list[Any] = []

        def factory(*args: Any, **kwargs: Any) -> Any:
            node = make_node(*args, **kwargs)
            nodes.append(node)
            return node

        yield factory
        for node in nodes:
            node.stop()
            release_pipes(node)


@pytest.fixture
def require_starling() -> None:
    """Skip a test of Starling/EMQ X-specific behaviour when cross-checking on mosquitto."""
    if ON_MOSQUITTO:
        pytest.skip("Starling-specific behaviour")


@pytest.fixture
def raw(node: Any) -> Iterator[Callable[..., RawClient]]:
    """Factory for raw socket clients to `node` (or to another node via `target=`)."""
    made: list[RawClient] = []

    def factory(target: Any = None, timeout: float = RawClient.DEFAULT_TIMEOUT) -> RawClient:
        n = target or node
        client = RawClient(n.host, n.port, timeout=timeout)
        made.append(client)
        return client

    yield factory
    for client in made:
        client.close()


@pytest.fixture
def paho_client(node: Any) -> Iterator[Callable[..., PahoClient]]:
    """Factory for paho clients (not yet connected) to `node` or `target=`."""
    made: list[PahoClient] = []

    def factory(client_id: str | None = None, protocol: int = MQTTv311,
                clean_session: bool = True, keepalive: int = 60,
                target: Any = None) -> PahoClient:
        n = target or node
        client = PahoClient(n.host, n.port, client_id=client_id, protocol=protocol,
                            clean_session=clean_session, keepalive=keepalive)
        made.append(client)
        return client

    yield factory
    for client in made:
        client.close()


@pytest.fixture
def connected(paho_client: Callable[..., PahoClient]) -> Callable[..., PahoClient]:
    """Factory for paho clients that are already connected (CONNACK 0)."""

    def factory(**kwargs: Any) -> PahoClient:
        client = paho_client(**kwargs)
        client.connect()
        return client

    return factory
