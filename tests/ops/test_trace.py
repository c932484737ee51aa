"""Traces, as `emqx_ctl trace` has them: every packet of a client, or every message
on a topic filter, written with timestamps to a file, started and stopped with
`starling ctl trace` or the REST API, bounded in size."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers.api import err, ok
from helpers.clients import PahoClient, uid, wait_until

SETTINGS = {"management.bind": "127.0.0.1:0", "api.default_app_secret": "s"}
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} ")


def ctl(node: Any, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STARLING_")}
    return subprocess.run([sys.executable, "-m", "starling", "ctl", "--data-dir",
                           str(node.data_dir), *args],
                          capture_output=True, text=True, timeout=30, env=env)


def lines(path: Path) -> list[str]:
    text = path.read_text()
    assert all(STAMP.match(line) for line in text.splitlines()), text
    return [STAMP.sub("", line) for line in text.splitlines()]


@pytest.fixture
def node(make_node: Any) -> Any:
    return make_node(SETTINGS)


def test_a_client_trace_has_every_packet_and_no_password(node: Any) -> None:
    client_id = uid("traced")
    started = ctl(node, "trace", "start", "client", client_id, "client.log")
    assert started.returncode == 0, started.stderr
    path = node.data_dir / "trace" / "client.log"
    assert started.stdout.strip() == f"trace client {client_id} started: {path}"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    other_id = uid("other")
    other = PahoClient(node.host, node.port, other_id)  # not traced
    other.connect()
    traced = PahoClient(node.host, node.port, client_id)
    traced.client.username_pw_set("bob", "hunter2-password")
    traced.connect()
    traced.subscribe("t/#", 1)
    other.publish("t/a", "to the traced one", 1)
    assert traced.get().payload == b"to the traced one"
    traced.publish("t/b", "from the traced one", 1)
    traced.get()
    traced.disconnect()
    other.disconnect()
    listed = ctl(node, "--json", "trace", "list")
    assert [(t["type"], t["name"]) for t in json.loads(listed.stdout)] == [
        ("client", client_id)]
    stopped = ctl(node, "trace", "stop", "client", client_id)
    assert stopped.returncode == 0, stopped.stderr
    got = lines(path)
    text = "\n".join(got)
    assert got[0] == f"trace of client {client_id!r} started"
    assert "username='bob'" in text and "hunter2" not in text
    for expected in (f"RECV CONNECT(client_id={client_id!r}, username='bob', "
                     "password=******", "SENT CONNACK(session_present=False, reason_code=0)",
                     "RECV SUBSCRIBE(packet_id=1", "SENT SUBACK(packet_id=1, codes=[1])",
                     "SENT PUBLISH(topic='t/a', qos=1", "payload=b'to the traced one'",
                     "RECV PUBLISH(topic='t/b', payload=b'from the traced one', qos=1",
                     "SENT PUBACK(packet_id=", "RECV DISCONNECT", "disconnected: normal"):
        assert expected in text, (expected, text)
    assert other_id not in text
    assert got[-1] == "trace stopped"
    assert ctl(node, "trace", "list").stdout.strip().endswith("(none)")
    # nothing is written once stopped
    size = path.stat().st_size
    again = PahoClient(node.host, node.port, client_id)
    again.connect()
    again.disconnect()
    assert path.stat().st_size == size


def test_a_topic_trace_over_the_api(node: Any) -> None:
    prefix = uid("tt")
    with node.api(auth=("admin", "s")) as api:
        view = ok(api.post("/trace", json={"type": "topic", "name": f"{prefix}/+/temp",
                                           "file": "topic.log"}))
        assert view["file"] == str(node.data_dir / "trace" / "topic.log")
        publisher = PahoClient(node.host, node.port, uid("pub"))
        publisher.connect()
        publisher.publish(f"{prefix}/kitchen/temp", "21.5", 1)
        publisher.publish(f"{prefix}/kitchen/humidity", "40", 1)
        ok(api.post("/mqtt/publish", json={"topic": f"{prefix}/hall/temp", "payload": "19"}))
        publisher.disconnect()
        path = node.data_dir / "trace" / "topic.log"
        wait_until(lambda: "hall" in path.read_text(), message="the HTTP publish traced")
        ok(api.delete(f"/trace/topic/{prefix}%2F%2B%2Ftemp"))
        assert ok(api.get("/trace")) == []
    text = "\n".join(lines(path))
    assert f"topic='{prefix}/kitchen/temp', qos=1, retain=False, payload=b'21.5'" in text
    assert f"topic='{prefix}/hall/temp', qos=0" in text
    assert "humidity" not in text


def test_a_trace_stops_at_its_size_limit(make_node: Any) -> None:
    node = make_node({**SETTINGS, "trace.max_file_size": "2KB"})
    topic = uid("big")
    with node.api(auth=("admin", "s")) as api:
        ok(api.post("/trace", json={"type": "topic", "name": topic, "file": "big.log"}))
        for i in range(50):
            ok(api.post("/mqtt/publish", json={"topic": topic, "payload": f"message {i:03}"}))
        assert ok(api.get("/trace")) == []  # stopped by itself
    path = node.data_dir / "trace" / "big.log"
    assert path.stat().st_size <= 2048 + 200
    assert lines(path)[-1] == ("trace stopped: the file reached its limit of 2048 bytes "
                               "(trace.max_file_size)")
    node.wait_log(rf"\[WARNING\].*trace of topic '{topic}' stopped: .*big\.log reached "
                  r"2048 bytes")


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"type": "client", "name": "c", "file": "../escape.log"}, 400, 108),
    ({"type": "client", "name": "c", "file": "/etc/passwd"}, 400, 108),
    ({"type": "client", "name": "c", "file": ".hidden"}, 400, 108),
    ({"type": "session", "name": "c", "file": "x.log"}, 400, 108),
    ({"type": "client", "file": "x.log"}, 400, 107),
])
def test_bad_trace_requests(node: Any, body: dict[str, str], status: int, code: int) -> None:
    with node.api(auth=("admin", "s")) as api:
        err(api.post("/trace", json=body), status, code)
        assert ok(api.get("/trace")) == []
    assert not (node.data_dir / "escape.log").exists()


def test_one_trace_per_client_and_per_file(node: Any) -> None:
    with node.api(auth=("admin", "s")) as api:
        ok(api.post("/trace", json={"type": "client", "name": "c1", "file": "a.log"}))
        err(api.post("/trace", json={"type": "client", "name": "c1", "file": "b.log"}), 409)
        err(api.post("/trace", json={"type": "topic", "name": "t", "file": "a.log"}), 409)
        err(api.delete("/trace/client/nobody"), 404)
    done = ctl(node, "trace", "stop", "client", "nobody")
    assert done.returncode == 1 and "no trace of client 'nobody'" in done.stderr
    assert ctl(node, "trace", "stop").stdout.strip() == "1 trace stopped"
