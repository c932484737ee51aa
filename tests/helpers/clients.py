"""Real-client helpers: a paho-mqtt wrapper with deadline-bounded waits, and
small polling utilities.  Independent of the `starling` package."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

MQTTv31 = paho.MQTTv31
MQTTv311 = paho.MQTTv311

T = TypeVar("T")


def uid(prefix: str = "t") -> str:
    """A unique, topic- and client-id-safe token."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def wait_until(predicate: Callable[[], T], timeout: float = 5.0, interval: float = 0.02,
               message: str = "condition") -> T:
    """Poll `predicate` until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    mid: int


class PahoClient:
    """paho-mqtt (callback API v2) with a background loop and blocking helpers.

    Messages land in `self.messages` (a queue of `Received`)."""

    def __init__(self, host: str, port: int, client_id: str | None = None,
                 protocol: int = MQTTv311, clean_session: bool = True,
                 keepalive: int = 60, transport: str = "tcp") -> None:
        self.host, self.port, self.keepalive = host, port, keepalive
        self.client_id = uid("paho") if client_id is None else client_id
        self.client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=clean_session,
            protocol=protocol,
            transport=transport,  # "tcp" or "websockets"; TLS via self.client.tls_set*
        )
        # never let paho reconnect or retry behind the test's back
        self.client.reconnect_delay_set(min_delay=60, max_delay=60)
        self.messages: queue.Queue[Received] = queue.Queue()
        self._connected = threading.Event()
        self._disconnected = threading.Event()
        self.connack: tuple[int, bool] | None = None
        self.disconnect_rc: Any = None
        self._subacks: dict[int, list[int]] = {}
        self._unsubacks: set[int] = set()
        self._cond = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_unsubscribe = self._on_unsubscribe
        self._loop_started = False

    # -- callbacks (paho's network thread) ---------------------------------------------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any,
                    properties: Any) -> None:
        self.connack = (int(reason_code.value), bool(flags.session_present))
        self._connected.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any,
                       properties: Any) -> None:
        self.disconnect_rc = reason_code
        self._connected.clear()
        self._disconnected.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        self.messages.put(Received(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain),
                                   bool(msg.dup), msg.mid))

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reason_codes: Any,
                      properties: Any) -> None:
        with self._cond:
            self._subacks[mid] = [int(rc.value) for rc in reason_codes]
            self._cond.notify_all()

    def _on_unsubscribe(self, client: Any, userdata: Any, mid: int, reason_codes: Any,
                        properties: Any) -> None:
        with self._cond:
            self._unsubacks.add(mid)
            self._cond.notify_all()

    # -- operations ----------------------------------------------------------------------
    def will_set(self, topic: str, payload: bytes | str = b"", qos: int = 0,
                 retain: bool = False) -> None:
        self.client.will_set(topic, payload, qos, retain)

    def connect(self, timeout: float = 5.0, expect_rc: int | None = 0) -> tuple[int, bool]:
        """Connect and wait for CONNACK; returns (return code, session present)."""
        self._connected.clear()
        self._disconnected.clear()
        self.client.connect(self.host, self.port, keepalive=self.keepalive)
        if not self._loop_started:
            self.client.loop_start()
            self._loop_started = True
        deadline = time.monotonic() + timeout
        while not self._connected.is_set():
            if self._disconnected.is_set() and self.connack is not None:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.client_id}: no CONNACK within {timeout}s")
            self._connected.wait(0.02)
        assert self.connack is not None
        if expect_rc is not None:
            assert self.connack[0] == expect_rc, f"CONNACK {self.connack}"
        return self.connack

    def is_connected(self) -> bool:
        return self.client.is_connected()

    def subscribe(self, topic: str | list[tuple[str, int]], qos: int = 0,
                  timeout: float = 5.0) -> list[int]:
        """Subscribe and wait for SUBACK; returns the granted QoS codes."""
        if isinstance(topic, list):
            rc, mid = self.client.subscribe(topic)
        else:
            rc, mid = self.client.subscribe(topic, qos)
        assert rc == paho.MQTT_ERR_SUCCESS, f"subscribe failed locally: {rc}"
        with self._cond:
            if not self._cond.wait_for(lambda: mid in self._subacks, timeout):
                raise AssertionError(f"no SUBACK for {topic!r} within {timeout}s")
            return self._subacks.pop(mid)

    def unsubscribe(self, topic: str | list[str], timeout: float = 5.0) -> None:
        rc, mid = self.client.unsubscribe(topic)
        assert rc == paho.MQTT_ERR_SUCCESS
        with self._cond:
            if not self._cond.wait_for(lambda: mid in self._unsubacks, timeout):
                raise AssertionError(f"no UNSUBACK for {topic!r} within {timeout}s")

    def publish(self, topic: str, payload: bytes | str | None = b"", qos: int = 0,
                retain: bool = False, timeout: float = 5.0) -> None:
        """Publish and, for QoS > 0, wait until the flow to the broker completes."""
        info = self.client.publish(topic, payload, qos, retain)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise AssertionError(f"publish to {topic!r} (qos {qos}) not completed in {timeout}s")

    def get(self, timeout: float = 5.0, topic: str | None = None) -> Received:
        """Next message (optionally the next one on `topic`, skipping others)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                msg = self.messages.get(timeout=max(remaining, 0.001))
            except queue.Empty:
                raise AssertionError(
                    f"{self.client_id}: no message{' on ' + topic if topic else ''}"
                    f" within {timeout}s") from None
            if topic is None or msg.topic == topic:
                return msg

    def get_many(self, n: int, timeout: float = 5.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        out = []
        for _ in range(n):
            try:
                out.append(self.get(max(deadline - time.monotonic(), 0.001)))
            except AssertionError:
                raise AssertionError(
                    f"{self.client_id}: got {len(out)} of {n} messages within {timeout}s: "
                    f"{[(m.topic, m.payload[:20]) for m in out][:10]}") from None
        return out

    def drain(self) -> list[Received]:
        out = []
        while True:
            try:
                out.append(self.messages.get_nowait())
            except queue.Empty:
                return out

    def wait_disconnected(self, timeout: float = 5.0) -> None:
        if not self._disconnected.wait(timeout):
            raise AssertionError(f"{self.client_id}: still connected after {timeout}s")

    def disconnect(self) -> None:
        if self.client.is_connected():
            self.client.disconnect()
            self._disconnected.wait(2.0)

    def close(self) -> None:
        try:
            self.disconnect()
        finally:
            if self._loop_started:
                self.client.loop_stop()
                self._loop_started = False
            # paho closes its sockets (and the wake-up socket pair loop_start made)
            # only in __del__, which a reference cycle can postpone until after the
            # sockets' own finalizers: a ResourceWarning.  Close them now.
            with contextlib.suppress(Exception):
                self.client._reset_sockets()


class Clients:
    """The paho clients one test connects to its nodes, all closed when it ends
    (tests/conftest.py's `clients` fixture): ``clients(node, client_id,
    username=..., clean_session=...)``."""

    def __init__(self) -> None:
        self.made: list[PahoClient] = []

    def __call__(self, node: Any, client_id: str | None = None, *, username: str | None = None,
                 password: str | None = None, connect: bool = True,
                 **options: Any) -> PahoClient:
        client = PahoClient(node.host, node.port, client_id, **options)
        if username is not None:
            client.client.username_pw_set(username, password)
        self.made.append(client)
        if connect:
            client.connect()
        return client

    def close(self) -> None:
        for client in self.made:
            client.close()
        self.made.clear()


def sys_metric(node: Any, name: str, at_least: int, timeout: float = 5.0) -> int:
    """Wait until $SYS publishes metric `name` with a value >= `at_least`."""
    watcher = PahoClient(node.host, node.port, protocol=MQTTv311)
    try:
        watcher.connect()
        topic = f"$SYS/brokers/{node.name}/metrics/{name}"
        watcher.subscribe(topic, 0)
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            with contextlib.suppress(AssertionError):
                last = int(watcher.get(timeout=max(deadline - time.monotonic(), 0.01),
                                       topic=topic).payload)
                if last >= at_least:
                    return last
        raise AssertionError(f"$SYS metric {name} = {last}, expected >= {at_least}")
    finally:
        watcher.close()
