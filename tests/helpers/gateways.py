"""Real gateway clients for the tests: the `mqtt-sn-12` package's `mqtt_sn_pub` /
`mqtt_sn_sub` commands and its `MqttSnClient` library, and stomp.py's
connections with a listener that keeps what arrives.  A node with a gateway
plugin loaded at start from an EMQ X-style conf file in `plugins.etc_dir`."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import stomp
from mqttsn12.client.MqttSnClient import MqttSnClient, MqttSnListener, MqttSnMessage

HOST = "127.0.0.1"


#: The gateway suites' ACL file: one topic tree refused for each action.
ACL = """\
{deny, all, publish, ["forbidden/#"]}.
{deny, all, subscribe, ["secret/#"]}.
{allow, all}.
"""


def write_conf(etc_dir: Path, plugin: str, values: dict[str, str]) -> None:
    etc_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"{key} = {value}" for key, value in values.items()]
    (etc_dir / f"{plugin}.conf").write_text("\n".join(lines) + "\n")


def gateway_node(tmp_path: Path, plugin: str, conf: dict[str, str], **settings: str) -> Any:
    """A started node with the API on, the `ACL` file and `plugin` loaded at start
    with `conf` (as EMQ X's ``etc/plugins/<plugin>.conf``)."""
    from tests.conftest import API_SETTINGS, BASE_SETTINGS, Node

    etc = tmp_path / "etc"
    write_conf(etc, plugin, conf)
    acl = tmp_path / "acl.conf"
    acl.write_text(ACL)
    node = Node(tmp_path / "data", {
        **BASE_SETTINGS, **API_SETTINGS, "plugins.etc_dir": str(etc), "acl_file": str(acl),
        "plugins.loaded": f"emqx_management,emqx_retainer,{plugin}", **settings},
        "starling@127.0.0.1")
    return node.start()


# -- MQTT-SN ---------------------------------------------------------------------------------
def _sn_command(name: str, port: int, args: list[str]) -> list[str]:
    # The same entry points as the `mqtt_sn_pub` / `mqtt_sn_sub` scripts.
    return [sys.executable, "-m", f"mqttsn12.{name}", "-h", HOST, "-p", str(port), *args]


def sn_pub(port: int, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run `mqtt_sn_pub` to completion (it connects, publishes, disconnects)."""
    return subprocess.run(_sn_command("mqtt_sn_pub", port, ["--timeout", "10", *args]),
                          capture_output=True, text=True, timeout=timeout, check=False)


class SnSub:
    """`mqtt_sn_sub` running in the background; its stdout lines are the payloads."""

    def __init__(self, port: int, *args: str) -> None:
        self.proc = subprocess.Popen(_sn_command("mqtt_sn_sub", port, list(args)),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self.lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def get(self, timeout: float = 10.0) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"mqtt_sn_sub printed nothing within {timeout}s; "
                                 f"exit code {self.proc.poll()}") from None

    def wait(self, timeout: float = 20.0) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


class SnListener(MqttSnListener):
    def __init__(self) -> None:
        self.messages: queue.Queue[MqttSnMessage] = queue.Queue()

    def message_arrived(self, msg: MqttSnMessage) -> None:
        self.messages.put(msg)


class SnLibClient:
    """The mqtt-sn-12 library's client, polled in a thread while `polling` is on."""

    def __init__(self, port: int, client_id: str, keepalive: int = 30,
                 clean_session: bool = True) -> None:
        self.client = MqttSnClient()
        self.client.set_client_id(client_id)
        self.client.set_keep_alive(keepalive)
        self.client.set_clean_session(clean_session)
        self.client.set_timeout(10)
        self.listener = SnListener()
        self.port = port
        self.client_id = client_id
        self._poll = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def open(self) -> SnLibClient:
        self.client.open(HOST, self.port)
        return self

    def connect(self) -> SnLibClient:
        self.open()
        self.client.send_connect()
        return self

    def locked(self) -> Any:
        """Hold while calling the library from the test (the poller waits)."""
        return self._lock

    def start_polling(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        self._poll.set()

    def stop_polling(self) -> None:
        self._poll.clear()
        with self._lock:
            pass  # the poller is between polls now

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._poll.wait(0.05):
                continue
            with self._lock:
                if self._poll.is_set():
                    self.client.polling()
            time.sleep(0.01)

    def get(self, timeout: float = 10.0) -> MqttSnMessage:
        try:
            return self.listener.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.client_id}: no MQTT-SN message within {timeout}s") \
                from None

    def close(self) -> None:
        self._stop.set()
        self._poll.set()
        if self._thread is not None:
            self._thread.join(5)
        self.client.close()


# -- STOMP -----------------------------------------------------------------------------------
class StompFrames(stomp.ConnectionListener):  # type: ignore[misc]
    """Keeps every MESSAGE, RECEIPT and ERROR stomp.py hands over."""

    def __init__(self) -> None:
        self.messages: queue.Queue[Any] = queue.Queue()
        self.errors: queue.Queue[Any] = queue.Queue()
        self.receipts: queue.Queue[str] = queue.Queue()
        self.disconnected = threading.Event()

    def on_message(self, frame: Any) -> None:
        self.messages.put(frame)

    def on_error(self, frame: Any) -> None:
        self.errors.put(frame)

    def on_receipt(self, frame: Any) -> None:
        self.receipts.put(frame.headers.get("receipt-id", ""))

    def on_disconnected(self) -> None:
        self.disconnected.set()

    def message(self, timeout: float = 10.0) -> Any:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no STOMP MESSAGE within {timeout}s") from None

    def error(self, timeout: float = 10.0) -> Any:
        try:
            return self.errors.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no STOMP ERROR within {timeout}s") from None

    def receipt(self, timeout: float = 10.0) -> str:
        try:
            return self.receipts.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no STOMP RECEIPT within {timeout}s") from None

    def no_message(self, wait: float = 0.5) -> None:
        try:
            frame = self.messages.get(timeout=wait)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected MESSAGE {frame.headers} {frame.body!r}")


CONNECTIONS = {"1.0": stomp.Connection10, "1.1": stomp.Connection11,
               "1.2": stomp.Connection12}


def stomp_connection(port: int, version: str = "1.2", **options: Any) -> tuple[Any, StompFrames]:
    """A stomp.py connection (not yet connected) and its listener."""
    conn = CONNECTIONS[version]([(HOST, port)], auto_content_length=True, **options)
    frames = StompFrames()
    conn.set_listener("test", frames)
    return conn, frames
