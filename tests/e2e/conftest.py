"""Fixtures for the end-to-end suite (MQTT 3.1 / 3.1.1 over TCP).

The node fixtures (`node`, `make_node`) come from tests/conftest.py and start a
real Starling process.  Setting STARLING_E2E_BROKER=mosquitto swaps them for a
Debian `mosquitto` broker so the tests themselves can be cross-checked against a
reference implementation; tests of Starling-only behaviour skip in that mode.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

_TESTS_DIR = str(Path(__file__).resolve().parent.parent)
if _TESTS_DIR not in sys.path:  # make `helpers` importable whatever the import mode
    sys.path.insert(0, _TESTS_DIR)

from helpers.clients import MQTTv311, PahoClient  # noqa: E402
from helpers.nodes import ON_MOSQUITTO  # noqa: E402
from helpers.packets import RawClient  # noqa: E402
from helpers.packets5 import RawClient5  # noqa: E402

if ON_MOSQUITTO:
    from helpers.mosquitto_node import MosquittoNode, UnsupportedSetting

    @pytest.fixture(scope="module")
    def shared_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
        node = MosquittoNode(tmp_path_factory.mktemp("mosq"), {}, "mosquitto").start()
        yield node
        node.stop()

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

@pytest.fixture
def require_starling() -> None:
    """Skip a test of Starling/EMQ X-specific behaviour when cross-checking on mosquitto."""
    if ON_MOSQUITTO:
        pytest.skip("Starling-specific behaviour")


@pytest.fixture
def raw(node: Any) -> Iterator[Callable[..., RawClient]]:
    """Factory for raw socket clients to `node` (or to another node via `target=`)."""
    made: list[RawClient] = []

    def factory(target: Any = None, timeout: float = RawClient.DEFAULT_TIMEOUT,
                rcvbuf: int | None = None) -> RawClient:
        n = target or node
        client = RawClient(n.host, n.port, timeout=timeout, rcvbuf=rcvbuf)
        made.append(client)
        return client

    yield factory
    for client in made:
        client.close()


@pytest.fixture
def raw5(node: Any) -> Iterator[Callable[..., RawClient5]]:
    """Factory for raw MQTT 5.0 socket clients to `node` or `target=`."""
    made: list[RawClient5] = []

    def factory(target: Any = None, timeout: float = 5.0) -> RawClient5:
        n = target or node
        client = RawClient5(n.host, n.port, timeout=timeout)
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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On failure, attach the tail of every involved node's log (and whether the
    process is still alive) to the report."""
    outcome = yield
    report = outcome.get_result()
    if report.passed or report.skipped:
        return
    funcargs = getattr(item, "funcargs", {}) or {}
    nodes = [funcargs[name] for name in ("node", "shared_node", "sys_node") if name in funcargs]
    seen: set[int] = set()
    for n in nodes:
        if id(n) in seen or not hasattr(n, "log_lines"):
            continue
        seen.add(id(n))
        proc = getattr(n, "proc", None)
        state = "running" if proc is not None and proc.poll() is None else (
            f"exited with {proc.returncode}" if proc is not None else "not started")
        report.sections.append((f"node {getattr(n, 'name', '?')} ({state}), last log lines",
                                "\n".join(n.log_lines[-40:])))
