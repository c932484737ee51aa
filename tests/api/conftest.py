"""Fixtures for the management API suites.

`api_node` and `make_node` come from tests/conftest.py.  `api` is an authenticated httpx client
that is closed after the test; `mqtt` makes paho-mqtt 2.x clients (callback
API v2) for `api_node` and disconnects them afterwards.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

_HERE = Path(__file__).resolve().parent
for _dir in (str(_HERE.parent), str(_HERE)):  # `helpers`, `emqx_seed`
    if _dir not in sys.path:
        sys.path.insert(0, _dir)

Node = Any  # tests/conftest.py's Node
from helpers.clients import MQTTv311, PahoClient, wait_until  # noqa: E402


@pytest.fixture
def api(api_node: Node) -> Iterator[httpx.Client]:
    """An authenticated client for `api_node`'s API (base URL `.../api/v3`)."""
    with api_node.api() as client:
        yield client


@pytest.fixture
def mqtt(api_node: Node) -> Iterator[Callable[..., PahoClient]]:
    """Factory for connected paho clients: `mqtt(client_id=..., clean_session=...)`.

    `connect=False` returns it unconnected (e.g. to set a will or a user name first)."""
    made: list[PahoClient] = []

    def factory(client_id: str | None = None, *, protocol: int = MQTTv311,
                clean_session: bool = True, keepalive: int = 60,
                username: str | None = None, connect: bool = True, **_: Any) -> PahoClient:
        client = PahoClient(api_node.host, api_node.port, client_id=client_id,
                            protocol=protocol, clean_session=clean_session, keepalive=keepalive)
        if username is not None:
            client.client.username_pw_set(username, "pw")
        made.append(client)
        if connect:
            client.connect()
        return client

    yield factory
    for client in made:
        client.close()
    # Leave no half-closed connection behind: later tests compare counts.
    with api_node.api() as api:
        for client_id in {c.client_id for c in made}:
            wait_until(lambda cid=client_id: api.get(
                "/connections/" + quote(cid, safe="")).json().get("data") == [],
                message=f"{client_id} gone from /connections")
