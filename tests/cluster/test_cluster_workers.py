"""`starling start --workers 2`: two nodes as one cluster on one machine, sharing
the MQTT port, with the nats-server the command starts and stops itself."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from helpers.clients import PahoClient, uid, wait_until
from helpers.servers import find_program

pytestmark = pytest.mark.needs_server


class Workers:
    def __init__(self, data_dir: Path) -> None:
        args = [sys.executable, "-m", "starling", "start", "--workers", "2",
                "--data-dir", str(data_dir),
                "--set", "listeners.tcp.default.bind=127.0.0.1:0",
                "--set", "listeners.tcp.internal.bind=off",
                "--set", "listeners.ws.default.bind=off",
                "--set", "management.bind=127.0.0.1:0", "--set", "dashboard.bind=off",
                "--set", "api.default_app_id=admin", "--set", "api.default_app_secret=test-secret",
                "--set", "cluster.heartbeat_interval=300ms",
                "--set", "cluster.node_timeout=1500ms"]
        self.lines: list[str] = []
        self.proc = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def count(self, pattern: str) -> int:
        return sum(1 for line in list(self.lines) if re.search(pattern, line))

    def first(self, pattern: str) -> re.Match[str]:
        for line in list(self.lines):
            match = re.search(pattern, line)
            if match:
                return match
        raise AssertionError(f"no line matching {pattern!r}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        return self.proc.returncode


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_two_workers_share_the_port_and_form_one_cluster(tmp_path: Path) -> None:
    find_program("nats-server", "/usr/sbin", "/usr/bin")
    workers = Workers(tmp_path)
    clients: list[PahoClient] = []
    try:
        wait_until(lambda: workers.count("node started") == 2, 40, 0.1,
                   "both workers to start:\n" + "\n".join(workers.lines[-20:]))
        ports = {int(m) for m in re.findall(r"listener mqtt:tcp:default on 127\.0\.0\.1:(\d+)",
                                            "\n".join(workers.lines))}
        assert len(ports) == 1  # one port, shared
        port = ports.pop()
        nats_port = int(workers.first(r"nats-server started on nats://127\.0\.0\.1:(\d+)")
                        .group(1))
        names = set(re.findall(r"node started: (\S+)", "\n".join(workers.lines)))
        assert names == {"starling-1@127.0.0.1", "starling-2@127.0.0.1"}
        wait_until(lambda: workers.count(r"cluster: node starling-\d@127\.0\.0\.1 is up") >= 2,
                   15, 0.1, "the workers to see each other")
        # clients land on either worker; every message reaches every subscriber
        topic = uid("wk") + "/t"
        subs = []
        for _ in range(20):
            sub = PahoClient("127.0.0.1", port)
            clients.append(sub)
            sub.connect()
            sub.subscribe(topic, 1)
            subs.append(sub)
        pub = PahoClient("127.0.0.1", port)
        clients.append(pub)
        pub.connect()

        def all_reached() -> bool:
            pub.publish(topic, b"probe", 1)
            time.sleep(0.1)
            return all(sub.drain() for sub in subs)

        wait_until(all_reached, 15, 0.0, "routes on both workers")
        time.sleep(0.3)
        for sub in subs:
            sub.drain()
        for i in range(10):
            pub.publish(topic, str(i).encode(), 1)
        for sub in subs:
            assert [m.payload for m in sub.get_many(10)] == [str(i).encode() for i in range(10)]
        # the API (its port shared too) lists both workers, each with some of the clients
        api_port = int(workers.first(r"listener http:management on 127\.0\.0\.1:(\d+)")
                       .group(1))
        with httpx.Client(base_url=f"http://127.0.0.1:{api_port}/api/v3",
                          auth=("admin", "test-secret"), timeout=10) as api:
            nodes = api.get("/nodes/").json()["data"]
        assert {n["name"] for n in nodes} == names
        assert all(n["connections"] >= 1 for n in nodes), nodes
        assert sum(n["connections"] for n in nodes) == len(clients)
    finally:
        for client in clients:
            client.close()
        status = workers.stop()
    assert status == 0
    assert workers.count("nats-server stopped") == 1
    assert not port_open(nats_port)
