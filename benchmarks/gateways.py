#!/usr/bin/env python3
"""Throughput of the protocol gateways: messages/s from a gateway client to an
MQTT subscriber, through a real Starling node.

A node is started (pinned to CPU 0 with `taskset`, as run.py pins brokers)
with emqx_sn and emqx_stomp loaded on free ports.  This process (pinned to
CPU 1) is both sides: one MQTT 3.1.1 subscriber on a raw socket (decoded
with `starling.mqtt`), and one gateway publisher:

    sn-qos0    MQTT-SN PUBLISH at QoS 0 (a registered topic id), over UDP
    sn-qos1    MQTT-SN PUBLISH at QoS 1, at most 10 waiting for PUBACK
    stomp      STOMP SEND frames over one TCP connection

Closed loop, as run.py's scenarios: the publisher keeps at most 100 messages
sent but not yet received by the subscriber, so the gateway cannot look fast
by dropping.  Payloads carry a sequence number; the subscriber counts what
arrives, and messages lost or out of order (MQTT-SN over UDP may lose a
datagram; the window then waits `--loss-timeout` and moves on).

    PYTHONPATH=$PWD python3 benchmarks/gateways.py                  # each scenario, 5 s + 1 s warm-up
    PYTHONPATH=$PWD python3 benchmarks/gateways.py --scenarios stomp --duration 10 --runs 3

Reported per scenario (medians over the runs): messages/s received; the
node's CPU % over the measured window (100 = one core busy) and its CPU time
per message (µs: what a loaded machine changes least); this process's CPU %
(the client side: to show it is not the bottleneck).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from starling.gateways.mqttsn.codec import decode as sn_decode
from starling.gateways.mqttsn.codec import encode as sn_encode
from starling.gateways.mqttsn.messages import (
    Connack,
    Connect,
    Puback,
    Publish,
    Regack,
    Register,
    TopicIdType,
)
from starling.mqtt import Connect as MqttConnect
from starling.mqtt import Decoder, Subscribe, SubscriptionOptions, encode

ROOT = Path(__file__).resolve().parent.parent
LISTENER = re.compile(r"listener (\S+) on (\S+):(\d+)")
WINDOW, INFLIGHT = 100, 10
TOPIC = "bench/gw"
PAYLOAD_PAD = b"x" * 56  # 8-byte sequence + 56 = 64-byte payloads, as run.py


@dataclass
class Counts:
    received: int = 0
    lost: int = 0
    reordered: int = 0
    next_seq: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def take(self, seq: int) -> None:
        self.received += 1
        if seq > self.next_seq:
            self.lost += seq - self.next_seq
        elif seq < self.next_seq:
            self.reordered += 1
            return
        self.next_seq = seq + 1
        self.arrived.set()


def pin(cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu)] if shutil.which("taskset") else []


def start_node(tmp: Path) -> tuple[subprocess.Popen[str], dict[str, tuple[str, int]]]:
    etc = tmp / "etc"
    etc.mkdir()
    (etc / "emqx_sn.conf").write_text("mqtt.sn.port = 127.0.0.1:0\n"
                                      "mqtt.sn.advertise_duration = 0\n"
                                      "mqtt.sn.peer_rate_limit = 0\n")
    (etc / "emqx_stomp.conf").write_text("stomp.listener = 127.0.0.1:0\n"
                                         "stomp.frame.max_body_length = 65536\n")
    cmd = [*pin(0), sys.executable, "-m", "starling", "start", "--data-dir", str(tmp / "data"),
           "--set", "listeners.tcp.default.bind=127.0.0.1:0",
           "--set", "listeners.tcp.internal.bind=off", "--set", "listeners.ws.default.bind=off",
           "--set", "management.bind=off", "--set", "dashboard.bind=off",
           "--set", "log.level=warning", "--set", f"plugins.etc_dir={etc}",
           "--set", "plugins.loaded=emqx_retainer,emqx_sn,emqx_stomp"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env=env)
    listeners: dict[str, tuple[str, int]] = {}
    assert proc.stderr is not None
    deadline = time.monotonic() + 30
    for line in proc.stderr:
        match = LISTENER.search(line)
        if match:
            listeners[match.group(1)] = (match.group(2), int(match.group(3)))
        if "node started" in line:
            break
        if time.monotonic() > deadline:
            break
    if proc.poll() is not None or "mqttsn:udp:default" not in listeners:
        proc.kill()
        raise SystemExit("the node did not start: " + "".join(proc.stderr.readlines()[-20:]))
    return proc, listeners


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the MQTT subscriber ----------------------------------------------------------------------
async def subscriber(host: str, port: int, counts: Counts,
                     ready: asyncio.Event) -> asyncio.StreamWriter:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(encode(MqttConnect(client_id=f"bench-sub-{os.getpid()}", keepalive=0), 4))
    writer.write(encode(Subscribe(1, [(TOPIC, SubscriptionOptions(0))]), 4))
    decoder = Decoder(protocol_level=4)

    async def read() -> None:
        while data := await reader.read(1 << 16):
            for packet in decoder.feed(data):
                kind = packet.type.name
                if kind == "SUBACK":
                    ready.set()
                elif kind == "PUBLISH":
                    counts.take(struct.unpack_from("<Q", packet.payload)[0])  # type: ignore[attr-defined]
    asyncio.get_running_loop().create_task(read())
    return writer


async def window_open(counts: Counts, sent: int, loss_timeout: float) -> None:
    """Wait until fewer than WINDOW messages are on their way (or give up on them)."""
    while sent - counts.next_seq >= WINDOW:
        counts.arrived.clear()
        try:
            await asyncio.wait_for(counts.arrived.wait(), loss_timeout)
        except TimeoutError:
            counts.lost += sent - counts.next_seq
            counts.next_seq = sent


# -- the gateway publishers -------------------------------------------------------------------
class SnPublisher(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.replies: asyncio.Queue[object] = asyncio.Queue()
        self.acked = 0
        self.acked_event = asyncio.Event()

    def datagram_received(self, data: bytes, addr: object) -> None:
        message = sn_decode(data)
        if isinstance(message, Puback):
            self.acked += 1
            self.acked_event.set()
        else:
            self.replies.put_nowait(message)


async def run_sn(address: tuple[str, int], qos: int, counts: Counts, stop_at: float,
                 loss_timeout: float) -> None:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(SnPublisher, remote_addr=address)
    transport.sendto(sn_encode(Connect(f"bench-sn-{os.getpid()}", 0)))
    assert isinstance(await proto.replies.get(), Connack)
    transport.sendto(sn_encode(Register(0, 1, TOPIC)))
    regack = await proto.replies.get()
    assert isinstance(regack, Regack)
    sent = 0
    while time.monotonic() < stop_at:
        await window_open(counts, sent, loss_timeout)
        if qos:
            while sent - proto.acked >= INFLIGHT:
                proto.acked_event.clear()
                await proto.acked_event.wait()
        payload = struct.pack("<Q", sent) + PAYLOAD_PAD
        transport.sendto(sn_encode(Publish(TopicIdType.NORMAL, regack.topic_id,
                                           sent % 65535 + 1 if qos else 0, payload, qos=qos)))
        sent += 1
        if sent % 64 == 0:
            await asyncio.sleep(0)
    transport.close()


async def run_stomp(address: tuple[str, int], counts: Counts, stop_at: float,
                    loss_timeout: float) -> None:
    reader, writer = await asyncio.open_connection(*address)
    writer.write(b"CONNECT\naccept-version:1.2\nhost:bench\nlogin:guest\npasscode:guest\n\n\x00")
    reply = await reader.readuntil(b"\x00")
    assert reply.startswith(b"CONNECTED"), reply
    head = f"SEND\ndestination:{TOPIC}\ncontent-length:64\n\n".encode()
    sent = 0
    while time.monotonic() < stop_at:
        await window_open(counts, sent, loss_timeout)
        writer.write(head + struct.pack("<Q", sent) + PAYLOAD_PAD + b"\x00")
        sent += 1
        if sent % 64 == 0:
            await writer.drain()
    writer.close()


async def measure(scenario: str, listeners: dict[str, tuple[str, int]], node_pid: int,
                  duration: float, warmup: float, loss_timeout: float) -> dict[str, float]:
    counts = Counts()
    ready = asyncio.Event()
    sub = await subscriber(*listeners["mqtt:tcp:default"], counts, ready)
    await asyncio.wait_for(ready.wait(), 10)
    start = time.monotonic()
    stop_at = start + warmup + duration
    if scenario == "stomp":
        work = run_stomp(listeners["stomp:tcp:default"], counts, stop_at, loss_timeout)
    else:
        work = run_sn(listeners["mqttsn:udp:default"], 1 if scenario == "sn-qos1" else 0,
                      counts, stop_at, loss_timeout)
    task = asyncio.get_running_loop().create_task(work)
    await asyncio.sleep(warmup)
    received0, node0 = counts.received, cpu_seconds(node_pid)
    own0 = time.process_time()
    t0 = time.monotonic()
    await task
    elapsed = time.monotonic() - t0
    received = counts.received - received0
    node_cpu = cpu_seconds(node_pid) - node0
    result = {"msg_per_s": received / elapsed,
              "node_cpu": 100 * node_cpu / elapsed,
              "us_per_msg": 1e6 * node_cpu / max(received, 1),
              "client_cpu": 100 * (time.process_time() - own0) / elapsed,
              "lost": counts.lost, "reordered": counts.reordered}
    sub.close()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default="sn-qos0,sn-qos1,stomp")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--loss-timeout", type=float, default=0.5)
    args = parser.parse_args()
    if shutil.which("taskset"):
        os.sched_setaffinity(0, {1})
    rows = []
    for scenario in args.scenarios.split(","):
        results = []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory() as tmp:
                node, listeners = start_node(Path(tmp))
                try:
                    results.append(asyncio.run(measure(scenario, listeners, node.pid,
                                                       args.duration, args.warmup,
                                                       args.loss_timeout)))
                finally:
                    node.terminate()
                    node.wait(20)
        rows.append((scenario, {key: statistics.median(r[key] for r in results)
                                for key in results[0]}))
    print(f"{'scenario':<10} {'msg/s':>10} {'node CPU %':>11} {'node us CPU/msg':>16} "
          f"{'client CPU %':>13} {'lost':>6} {'reordered':>10}")
    for scenario, r in rows:
        print(f"{scenario:<10} {r['msg_per_s']:>10,.0f} {r['node_cpu']:>11.0f} "
              f"{r['us_per_msg']:>16.1f} {r['client_cpu']:>13.0f} {r['lost']:>6.0f} "
              f"{r['reordered']:>10.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
