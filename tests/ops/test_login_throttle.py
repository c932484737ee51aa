"""Password guessing on the HTTP listeners is logged and slowed down, per source
address and per user name, and costs the guesser time rather than the node's
CPU: real HTTP requests from different loopback source addresses to a running
node."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from helpers.api import err, ok

#: The node's throttle: failures before any wait, then 0.5 s, doubling (api/throttle.py).
FREE = 5
FIRST_STEP = 0.5

SETTINGS = {"management.bind": "127.0.0.1:0", "dashboard.bind": "127.0.0.1:0",
            "api.default_app_id": "admin", "api.default_app_secret": "right-secret",
            "dashboard.default_user.password": "right-password"}


def client(url: str, source: str, auth: tuple[str, str] | None) -> httpx.Client:
    """A client whose requests come from `source` (any 127.x address is this machine)."""
    return httpx.Client(base_url=url, auth=auth, timeout=60,
                        transport=httpx.HTTPTransport(local_address=source))


def mgmt_url(node: Any) -> str:
    host, port = node.listeners["http:management"]
    return f"http://{host}:{port}/api/v3"


def dash_url(node: Any) -> str:
    host, port = node.listeners["http:dashboard"]
    return f"http://{host}:{port}/api/v3"


@pytest.fixture
def node(make_node: Any) -> Any:
    return make_node(SETTINGS)


def timed(call: Any) -> tuple[httpx.Response, float]:
    start = time.monotonic()
    response = call()
    return response, time.monotonic() - start


def test_failed_basic_auth_is_logged_with_the_address_and_slowed(node: Any) -> None:
    with client(mgmt_url(node), "127.0.0.2", ("admin", "guess")) as guesser:
        for _ in range(FREE):
            err(guesser.get("/brokers/"), 401, 103)
        line = node.wait_log(r"authentication failed for 'admin' from 127\.0\.0\.2 "
                             r"\(5 failed attempts")
        assert "starling API" in line and "WARNING" in line
        assert "guess" not in "\n".join(node.log_lines)  # never the password
        # Each further guess waits its turn, longer every time.
        waits = [timed(lambda: guesser.get("/brokers/"))[1] for _ in range(3)]
    assert waits[0] >= FIRST_STEP * 0.9
    assert waits[1] >= 2 * FIRST_STEP * 0.9
    assert waits[2] >= 4 * FIRST_STEP * 0.9
    # Even the right secret waits now: a guess cannot be told apart by answering early.
    with client(mgmt_url(node), "127.0.0.2", ("admin", "right-secret")) as owner:
        response, waited = timed(lambda: owner.get("/brokers/"))
        ok(response)
        assert waited >= 8 * FIRST_STEP * 0.9
        # ... and a success clears the slate for that address and user.
        response, waited = timed(lambda: owner.get("/brokers/"))
        ok(response)


def test_parallel_guesses_queue_one_behind_the_other(node: Any) -> None:
    with client(mgmt_url(node), "127.0.0.3", ("nobody", "x")) as guesser:
        for _ in range(FREE):
            err(guesser.get("/brokers/"), 401)
    start = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        def attempt(_: int) -> int:
            with client(mgmt_url(node), "127.0.0.3", ("nobody", "x")) as c:
                return c.get("/brokers/").status_code
        codes = list(pool.map(attempt, range(4)))
    assert codes == [401] * 4
    # Turns are booked on arrival, at least a step apart: checked one after the other,
    # not all four at once.
    assert time.monotonic() - start >= 4 * FIRST_STEP * 0.9


def test_other_addresses_and_users_are_not_slowed(node: Any) -> None:
    with client(mgmt_url(node), "127.0.0.4", ("admin", "guess")) as guesser:
        for _ in range(FREE + 1):
            err(guesser.get("/brokers/"), 401)
    # Another address guessing the same user waits: the user name is throttled too.
    with client(mgmt_url(node), "127.0.0.5", ("admin", "guess")) as other:
        _, waited = timed(lambda: err(other.get("/brokers/"), 401))
        assert waited >= FIRST_STEP * 0.9
    # Another user from another address: served at once, and no failure counted.
    ok(httpx.post(f"{mgmt_url(node)}/apps/", auth=("admin", "right-secret"),
                  json={"app_id": "viewer", "secret": "viewer-secret"}))
    with client(mgmt_url(node), "127.0.0.6", ("viewer", "viewer-secret")) as viewer:
        ok(viewer.get("/brokers/"))
    assert not any("127.0.0.6" in line for line in node.log_lines)


def test_dashboard_logins_and_failures_are_logged(node: Any) -> None:
    with client(dash_url(node), "127.0.0.7", None) as browser:
        err(browser.post("/auth", json={"username": "admin", "password": "wrong-pw"}), 401, 103)
        # one answer for an unknown name (issue #25): it does not tell which names exist
        err(browser.post("/auth", json={"username": "ghost", "password": "wrong-pw"}), 401, 103)
        ok(browser.post("/auth", json={"username": "admin", "password": "right-password"}))
    node.wait_log(r"dashboard login: authentication failed for 'admin' from 127\.0\.0\.7")
    node.wait_log(r"dashboard login: authentication failed for 'ghost' from 127\.0\.0\.7")
    node.wait_log(r"\[INFO\] .*dashboard login: user 'admin' from 127\.0\.0\.7")
    logged = "\n".join(node.log_lines)
    assert "wrong-pw" not in logged and "right-password" not in logged
    # Basic auth on the dashboard listener is throttled the same way.
    with client(dash_url(node), "127.0.0.8", ("admin", "nope")) as guesser:
        for _ in range(FREE):
            err(guesser.get("/brokers/"), 401)
        _, waited = timed(lambda: err(guesser.get("/brokers/"), 401))
    assert waited >= FIRST_STEP * 0.9
    node.wait_log(r"starling-dashboard API: authentication failed for 'admin' from "
                  r"127\.0\.0\.8")
