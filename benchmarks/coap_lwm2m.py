"""Throughput of the CoAP and LwM2M gateways through a running Starling node.

    python3 benchmarks/coap_lwm2m.py [--duration 5] [--clients 8] [--devices 8]

Starts a node (management API on, memory store), loads emqx_coap and
emqx_lwm2m on free ports through the API, then measures, each for
`--duration` seconds:

- coap-put:  `--clients` CoAP clients (aiocoap, each its own socket) PUT to
  ``/mqtt/bench/<n>`` one request at a time (confirmable, waiting for 2.04);
  a paho subscriber counts what reaches MQTT.
- coap-observe: `--clients` observers (non-confirmable) of ``obs/#``; a paho
  publisher sends QoS 0 messages; counted: notifications received.
- lwm2m-read: `--devices` test devices (aiocoap, objects 1/3/4) registered; an
  MQTT back end keeps one read command in flight per device; counted:
  answers on ``up/resp``.

Prints one line per scenario (operations per second). The load generators
share the machine with the node: figures are for comparing runs on one
machine, not absolute.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import aiocoap
import httpx
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from helpers.lwm2m_device import TestDevice  # noqa: E402

LISTENER = re.compile(r"listener (\S+) on (\S+):(\d+)")
SECRET = "bench-secret"


class Node:
    def __init__(self, data_dir: str) -> None:
        args = [sys.executable, "-m", "starling", "start", "--data-dir", data_dir,
                "--node-name", "bench@127.0.0.1"]
        for key, value in {"listeners.tcp.default.bind": "127.0.0.1:0",
                           "listeners.tcp.internal.bind": "off", "listeners.ws.default.bind": "off",
                           "listeners.ssl.default.bind": "off",
                           "listeners.wss.default.bind": "off",
                           "management.bind": "127.0.0.1:0", "dashboard.bind": "off",
                           "api.default_app_id": "admin", "api.default_app_secret": SECRET,
                           "store.backend": "memory"}.items():
            args += ["--set", f"{key}={value}"]
        self.listeners: dict[str, tuple[str, int]] = {}
        self.started = threading.Event()
        self.proc = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     text=True, cwd=ROOT,
                                     env=dict(os.environ, PYTHONPATH=str(ROOT)))
        threading.Thread(target=self._read, daemon=True).start()
        if not self.started.wait(30):
            raise SystemExit("node did not start")

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            match = LISTENER.search(line)
            if match:
                self.listeners[match.group(1)] = (match.group(2), int(match.group(3)))
            if "node started" in line:
                self.started.set()

    def api(self) -> httpx.Client:
        host, port = self.listeners["http:management"]
        return httpx.Client(base_url=f"http://{host}:{port}/api/v3", auth=("admin", SECRET),
                            timeout=10)

    def load(self, plugin: str, listener: str, values: dict[str, str]) -> int:
        with self.api() as api:
            api.put(f"/nodes/bench@127.0.0.1/plugin_configs/{plugin}", json=values)
            answer = api.put(f"/nodes/bench@127.0.0.1/plugins/{plugin}/load").json()
            if answer["code"] != 0:
                raise SystemExit(f"{plugin}: {answer}")
        deadline = time.monotonic() + 10
        while listener not in self.listeners:
            if time.monotonic() > deadline:
                raise SystemExit(f"{plugin}: no listener line")
            time.sleep(0.05)
        return self.listeners[listener][1]

    @property
    def mqtt(self) -> tuple[str, int]:
        return self.listeners["mqtt:tcp:default"]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


class Counter:
    """A paho client counting the messages of `topic` (and keeping the last ones)."""

    def __init__(self, node: Node, topic: str | None) -> None:
        self.count = 0
        self.lock = threading.Lock()
        self.topics: list[str] = []
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"counter-{time.time()}")
        self.client.on_message = self._on_message
        self.client.connect(*node.mqtt)
        if topic is not None:
            self.client.subscribe(topic, 0)
        self.client.loop_start()
        time.sleep(0.3)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self.lock:
            self.count += 1
            self.topics.append(message.topic)

    def take(self) -> int:
        with self.lock:
            count, self.count = self.count, 0
            return count

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


async def coap_put(port: int, clients: int, duration: float) -> int:
    contexts = [await aiocoap.Context.create_client_context() for _ in range(clients)]
    done = 0
    deadline = time.monotonic() + duration

    async def one(index: int, context: aiocoap.Context) -> None:
        nonlocal done
        uri = f"coap://127.0.0.1:{port}/mqtt/bench/{index}?c=bench{index}"
        while time.monotonic() < deadline:
            request = aiocoap.Message(code=aiocoap.PUT, uri=uri, payload=b"x" * 16)
            response = await context.request(request).response
            if response.code == aiocoap.CHANGED:
                done += 1

    await asyncio.gather(*(one(i, c) for i, c in enumerate(contexts)))
    for context in contexts:
        await context.shutdown()
    return done


async def coap_observe(port: int, clients: int, node: Node, duration: float) -> int:
    received = 0
    contexts = [await aiocoap.Context.create_client_context() for _ in range(clients)]
    observations = []
    for index, context in enumerate(contexts):
        request = aiocoap.Message(code=aiocoap.GET, observe=0,
                                  uri=f"coap://127.0.0.1:{port}/mqtt/obs/%23?c=obs{index}",
                                  transport_tuning=aiocoap.Unreliable)
        pending = context.request(request)
        await pending.response
        observations.append(pending)

    async def count(pending: Any) -> None:
        nonlocal received
        async for _ in pending.observation:
            received += 1

    tasks = [asyncio.ensure_future(count(p)) for p in observations]
    publisher = Counter(node, None)
    stop = time.monotonic() + duration
    while time.monotonic() < stop:
        for _ in range(50):
            publisher.client.publish("obs/t", b"y" * 16, qos=0)
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.5)
    publisher.close()
    for task in tasks:
        task.cancel()
    for context in contexts:
        await context.shutdown()
    return received


def lwm2m_read(node: Node, port: int, devices: int, duration: float) -> int:
    endpoints = [f"bench-dev{i}" for i in range(devices)]
    made = [TestDevice(ep, ("127.0.0.1", port)) for ep in endpoints]
    for device in made:
        device.register()
    answers = Counter(node, "lwm2m/+/up/resp")
    time.sleep(0.5)
    answers.take()
    sender = Counter(node, None)
    sent = {ep: 0 for ep in endpoints}

    def send(ep: str) -> None:
        sent[ep] += 1
        command = {"reqID": sent[ep], "msgType": "read", "data": {"path": "/3/0/9"}}
        sender.client.publish(f"lwm2m/{ep}/dn", json.dumps(command), qos=0)

    for ep in endpoints:
        send(ep)
    total = 0
    stop = time.monotonic() + duration
    seen = 0
    while time.monotonic() < stop:
        time.sleep(0.005)
        with answers.lock:
            fresh = answers.topics[seen:]
            seen = len(answers.topics)
        for topic in fresh:  # lwm2m/<ep>/up/resp: that device is free again
            total += 1
            send(topic.split("/")[1])
    answers.close()
    sender.close()
    for device in made:
        device.close()
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--devices", type=int, default=8)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as data:
        node = Node(data)
        try:
            coap_port = node.load("emqx_coap", "coap:udp:default", {"coap.port": "127.0.0.1:0"})
            lwm2m_port = node.load("emqx_lwm2m", "lwm2m:udp:default",
                                   {"lwm2m.port": "127.0.0.1:0"})
            sink = Counter(node, "bench/#")
            puts = asyncio.run(coap_put(coap_port, options.clients, options.duration))
            time.sleep(0.5)
            delivered = sink.take()
            sink.close()
            print(f"coap-put      {puts / options.duration:9.0f} req/s   "
                  f"({delivered / options.duration:.0f} msg/s reached MQTT)")
            notes = asyncio.run(coap_observe(coap_port, options.clients, node,
                                             options.duration))
            print(f"coap-observe  {notes / options.duration:9.0f} notifications/s "
                  f"({options.clients} observers)")
            reads = lwm2m_read(node, lwm2m_port, options.devices, options.duration)
            print(f"lwm2m-read    {reads / options.duration:9.0f} commands/s "
                  f"({options.devices} devices, one in flight each)")
        finally:
            node.stop()


if __name__ == "__main__":
    main()
