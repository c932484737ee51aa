"""Fixtures of the cluster suites: `nats_server` and a three-node `cluster`
(tests/helpers/cluster.py), each started once per module; tests use unique
client ids and topics."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_HERE = Path(__file__).resolve().parent
if str(_HERE.parent) not in sys.path:
    sys.path.insert(0, str(_HERE.parent))

from helpers.cluster import Cluster  # noqa: E402
from helpers.nats_server import NatsServer  # noqa: E402


@pytest.fixture(scope="module")
def nats_server() -> Iterator[NatsServer]:
    server = NatsServer().start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def cluster(spawn_node: Any, nats_server: NatsServer,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    made = Cluster(spawn_node, tmp_path_factory.mktemp("cluster"), nats_server)
    yield made
    made.stop()
