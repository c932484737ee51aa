"""What the database auth backend tests share: a node with the API on and a
strict ACL file, configuring and loading a plugin through the REST API, real
paho clients connecting / subscribing / publishing, and reading alarms and
metrics back through the API."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from helpers.api import ok
from helpers.clients import PahoClient, uid, wait_until

OK = 0
BAD_PASSWORD = 0x86  # CONNACK 4 under 3.1.1, as paho reports it
NOT_AUTHORIZED = 0x87  # CONNACK 5
SUB_FAILED = 0x80

#: The node's ACL file: only ``open/#`` may be subscribed; everything else is
#: denied, so a superuser (who bypasses ACL) is visible, and so is a DB rule
#: that allows what the file would deny.
ACL_FILE = '{allow, all, subscribe, ["open/#"]}.\n{deny, all}.\n'

NODE = "starling@127.0.0.1"


def node_settings(tmp: Path) -> dict[str, str]:
    acl = tmp / "acl.conf"
    acl.write_text(ACL_FILE)
    return {
        "management.bind": "127.0.0.1:0",
        "api.default_app_id": "admin",
        "api.default_app_secret": "test-secret",
        "acl_file": str(acl),
        "enable_acl_cache": "false",
    }


def configure(node: Any, plugin: str, settings: dict[str, str]) -> None:
    """PUT the plugin's config (reloads it when loaded) and make sure it is loaded."""
    with node.api() as api:
        ok(api.put(f"/nodes/{NODE}/plugin_configs/{plugin}", json=settings))
        loaded = {p["name"]: p["active"] for p in ok(api.get(f"/nodes/{NODE}/plugins"))}
        if not loaded[plugin]:
            ok(api.put(f"/nodes/{NODE}/plugins/{plugin}/load"))


def unload(node: Any, plugin: str) -> None:
    with node.api() as api:
        ok(api.put(f"/nodes/{NODE}/plugins/{plugin}/unload"))


def alarms(node: Any) -> dict[str, str]:
    with node.api() as api:
        return {a["id"]: a["desc"] for a in ok(api.get(f"/alarms/present/{NODE}"))}


def metrics(node: Any) -> dict[str, int]:
    with node.api() as api:
        data = ok(api.get(f"/nodes/{NODE}/metrics/"))
    return dict(data[0] if isinstance(data, list) else data)


def wait_alarm(node: Any, alarm_id: str, present: bool = True, timeout: float = 30.0) -> None:
    wait_until(lambda: (alarm_id in alarms(node)) == present, timeout=timeout,
               message=f"alarm {alarm_id} {'raised' if present else 'cleared'}")


def connect_rc(node: Any, username: str | None, password: str | None,
               client_id: str | None = None) -> int:
    """CONNACK code of a real client with these credentials (then disconnected)."""
    client = PahoClient(node.host, node.port, client_id=client_id or uid("c"))
    if username is not None:
        client.client.username_pw_set(username, password)
    try:
        return client.connect(expect_rc=None, timeout=20)[0]
    finally:
        client.close()


@contextlib.contextmanager
def connected(node: Any, username: str | None, password: str | None,
              client_id: str | None = None) -> Iterator[PahoClient]:
    client = PahoClient(node.host, node.port, client_id=client_id or uid("c"))
    if username is not None:
        client.client.username_pw_set(username, password)
    try:
        client.connect(timeout=20)
        yield client
    finally:
        client.close()


def suback(client: PahoClient, topic: str) -> int:
    """The SUBACK code for one QoS 1 subscription (0x80 = refused)."""
    codes = client.subscribe(topic, qos=1, timeout=20)
    if codes[0] != SUB_FAILED:
        client.unsubscribe(topic)
    return codes[0]


def publish_reaches(client: PahoClient, watcher: PahoClient, topic: str,
                   control: str) -> bool:
    """Whether a QoS 1 PUBLISH from `client` to `topic` reaches `watcher` (a
    superuser subscribed to ``#``).  A denied publish is acknowledged and dropped
    (MQTT 3.1.1), so `client` then publishes to `control`, a topic it may use:
    messages of one client arrive in order, so once the control message is in,
    the first one either came before it or never will."""
    watcher.drain()
    payload = uid("p")
    client.publish(topic, payload, qos=1)
    client.publish(control, payload, qos=1)
    seen: list[str] = []
    while True:
        msg = watcher.get(timeout=20)
        if msg.payload.decode() != payload:
            continue
        if msg.topic == control:
            return topic in seen
        seen.append(msg.topic)
