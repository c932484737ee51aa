"""A real cluster for tests: three Starling nodes (real `python -m starling start`
processes, the management API on) joined through a real `nats-server -js`, and
`settle`, which waits until a route has reached the publisher's node.

Cross-node routes travel asynchronously (EMQ X forwards asynchronously too), so a
test that subscribes on one node and publishes on another first waits until the
route has arrived: `settle` publishes probes until the subscriber gets one.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from helpers.clients import PahoClient, wait_until
from helpers.nats_server import NatsServer

Node = Any  # tests/conftest.py's Node

#: Quick fault detection for the tests: a node silent for 1.5 s is Stopped.
FAST = {"cluster.heartbeat_interval": "300ms", "cluster.node_timeout": "1500ms",
        "cluster.rpc_timeout": "1s"}


def cluster_settings(nats: NatsServer, name: str, **more: str) -> dict[str, str]:
    return {"cluster.discovery": "nats", "cluster.nats.servers": nats.url,
            "cluster.name": name, **FAST, **more}


class Cluster:
    """Nodes n1, n2, n3 of one cluster."""

    def __init__(self, spawn: Callable[[Path, dict[str, str], str], Node], root: Path,
                 nats: NatsServer, count: int = 3, **settings: str) -> None:
        self.spawn = spawn
        self.root = root
        self.nats = nats
        self.settings = settings
        self.name = "c" + uuid.uuid4().hex[:8]
        self.nodes: list[Node] = []
        for i in range(1, count + 1):
            self.nodes.append(self.start_node(f"n{i}@127.0.0.1"))
        self.wait_joined()

    def start_node(self, name: str, **settings: str) -> Node:
        data_dir = self.root / name.split("@")[0]
        return self.spawn(data_dir, cluster_settings(self.nats, self.name,
                                                     **{**self.settings, **settings}), name)

    def wait_joined(self, timeout: float = 15.0) -> None:
        """Until every node lists every other as Running."""
        names = {n.name for n in self.nodes}

        def joined() -> bool:
            for node in self.nodes:
                with node.api() as api:
                    listed = {n["name"]: n["node_status"]
                              for n in api.get("/nodes/").json()["data"]}
                if any(listed.get(name) != "Running" for name in names):
                    return False
            return True

        wait_until(joined, timeout, 0.1, "every node to see every other")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def settle(publisher: PahoClient, subscribers: PahoClient | list[PahoClient], topic: str,
           timeout: float = 10.0) -> None:
    """Publish probes on `topic` until every subscriber has received one (the routes
    reached the publisher's node), then drop whatever probes arrive."""
    waiting = [subscribers] if isinstance(subscribers, PahoClient) else list(subscribers)
    everyone = list(waiting)

    def probe() -> bool:
        publisher.publish(topic, b"probe")
        for sub in list(waiting):
            try:
                sub.get(0.1)
                waiting.remove(sub)
            except AssertionError:
                pass
        return not waiting

    wait_until(probe, timeout, 0.0, f"routes for {topic} to reach the publisher's node")
    for sub in everyone:
        while True:
            try:
                sub.get(0.3)
            except AssertionError:
                break
