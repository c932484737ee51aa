"""A node with a gateway plugin loaded through the management API, and the UDP
checks the gateway tests share."""

from __future__ import annotations

import socket
from typing import Any

from helpers.api import ok
from helpers.clients import wait_until
from helpers.plugin_api import configure, plugin_call

#: The management API on, with the test app's credentials.
API = {"management.bind": "127.0.0.1:0", "api.default_app_id": "admin",
       "api.default_app_secret": "test-secret"}


def start_gateway_node(make_node: Any, plugin: str, listener: str, values: dict[str, str],
                       settings: dict[str, str] | None = None) -> tuple[Any, int]:
    """A node (from the `make_node` fixture) with `plugin` loaded: (node, port)."""
    node = make_node({**API, **(settings or {})})
    return node, load_gateway(node, plugin, listener, values)


def load_gateway(node: Any, plugin: str, listener: str, values: dict[str, str]) -> int:
    """Configure and load `plugin`; the UDP port its `listener` logged."""
    node.listeners.pop(listener, None)
    with node.api() as api:
        configure(api, node, plugin, values)
        plugin_call(api, node, plugin, "load")
    return int(wait_until(lambda: node.listeners.get(listener), timeout=10,
                          message=f"listener {listener}")[1])


def udp_port_closed(port: int, host: str = "127.0.0.1") -> bool:
    """Does a datagram to `port` come back as ICMP port unreachable (nobody listens)?"""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1.0)
        sock.connect((host, port))
        # a CoAP ping (empty CON): a server answers with a reset
        sock.send(b"\x40\x00\x12\x34")
        try:
            sock.recv(64)
        except ConnectionRefusedError:
            return True
        except TimeoutError:
            return False
        return False


def connection(api: Any, client_id: str) -> dict[str, Any] | None:
    found = ok(api.get(f"/connections/{client_id}"))
    return found[0] if found else None


def subscriptions(api: Any, client_id: str) -> list[str]:
    return [s["topic"] for s in ok(api.get(f"/subscriptions/{client_id}"))]
