"""A fleet of real MQTT 3.1.1 clients held open by a child process, for tests that
need hundreds of connections (paging, filters).

`Fleet(host, port, clients)` starts ``python fleet.py`` with the clients'
description on stdin; the child connects each (raw sockets, the packet builders
of `packets.py`), subscribes it, prints ``ready``, and keeps every connection
open until its stdin closes (`Fleet.close()`), then disconnects them all.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

READY_TIMEOUT = 60.0


@dataclass(frozen=True)
class FleetClient:
    client_id: str
    username: str | None = None
    #: (topic filter, qos) pairs subscribed after CONNACK.
    subscriptions: list[tuple[str, int]] = field(default_factory=list)


class Fleet:
    def __init__(self, host: str, port: int, clients: list[FleetClient]) -> None:
        self.clients = clients
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), host, str(port)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps([asdict(c) for c in clients]) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            self.close()
            raise RuntimeError(f"fleet did not connect: {line!r}")

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.close()
                self.proc.wait(15)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def _run(host: str, port: int, described: list[dict[str, Any]]) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from helpers.packets import (
        CONNACK,
        SUBACK,
        gen_connect,
        gen_disconnect,
        gen_subscribe,
        read_packet,
    )

    socks: list[socket.socket] = []
    try:
        for client in described:
            sock = socket.create_connection((host, port), timeout=READY_TIMEOUT)
            socks.append(sock)
            sock.sendall(gen_connect(client["client_id"], keepalive=0,
                                     username=client["username"]))
            ack = read_packet(sock, READY_TIMEOUT)
            if ack.type != CONNACK or ack.body[1] != 0:
                raise RuntimeError(f"{client['client_id']}: CONNACK {ack.body!r}")
            if client["subscriptions"]:
                pairs = [(topic, qos) for topic, qos in client["subscriptions"]]
                sock.sendall(gen_subscribe(1, pairs))
                if read_packet(sock, READY_TIMEOUT).type != SUBACK:
                    raise RuntimeError(f"{client['client_id']}: no SUBACK")
        print("ready", flush=True)
        sys.stdin.read()  # until the test closes our stdin
    except Exception as exc:  # reported to the parent on stdout
        print(f"error: {type(exc).__name__}: {exc}", flush=True)
    finally:
        for sock in socks:
            with contextlib.suppress(OSError):  # the broker may have closed it
                sock.sendall(gen_disconnect())
            sock.close()


if __name__ == "__main__":
    _run(sys.argv[1], int(sys.argv[2]), json.loads(sys.stdin.readline()))
