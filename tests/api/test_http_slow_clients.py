"""Slow and greedy HTTP clients (issue #25): raw sockets that never finish a request,
more of them than the listener's `max_connections`, while real API calls keep
being served; the request timeout closes them (408 for one that had begun a
request), the per-address cap refuses the surplus at once (503), and
`/listeners` counts both."""

from __future__ import annotations

import base64
import json
import socket
import time
from typing import Any

import httpx
from helpers.api import ok
from helpers.clients import wait_until

#: Loopback addresses other than the API client's 127.0.0.1 (Linux routes all of 127/8).
SLOW_SOURCE = "127.0.0.2"
PARTIAL = b"GET /api/v3/brokers HTTP/1.1\r\nHost: starling\r\nX-Slow: "


def slow_socket(address: tuple[str, int], source: str, partial: bool) -> socket.socket:
    """A connection that starts a request (`partial`) or sends nothing, and stays open."""
    sock = socket.create_connection(address, timeout=10, source_address=(source, 0))
    if partial:
        sock.sendall(PARTIAL)
    return sock


def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes the connection."""
    sock.settimeout(timeout)
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk


def read_response(sock: socket.socket) -> tuple[bytes, bytes]:
    """One whole HTTP/1.1 answer on a kept-alive connection: (head, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    fields = dict(line.split(b": ", 1) for line in head.lower().split(b"\r\n")[1:])
    if b"content-length" in fields:
        while len(body) < int(fields[b"content-length"]):
            body += sock.recv(4096)
        return head, body
    while not body.endswith(b"0\r\n\r\n"):  # chunked
        body += sock.recv(4096)
    return head, body


def answer(raw: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def http_shutdowns(api: httpx.Client, name: str) -> dict[str, int]:
    listeners = ok(api.get("/listeners"))[0]["listeners"]
    return next(lst["shutdown_count"] for lst in listeners if lst["protocol"] == name)


def test_slow_sockets_beyond_the_cap_do_not_starve_real_calls(make_node: Any) -> None:
    node = make_node({"management.bind": "127.0.0.1:0", "api.default_app_secret": "s",
                      "management.max_connections": "16",
                      "management.max_connections_per_address": "4",
                      "management.request_timeout": "3s"})
    address = node.listeners["http:management"]
    held = [slow_socket(address, SLOW_SOURCE, partial=i % 2 == 0) for i in range(20)]
    try:
        with node.api(auth=("admin", "s")) as api:
            # 20 slow sockets (more than max_connections): real calls are served meanwhile.
            for _ in range(10):
                assert ok(api.get("/brokers"))[0]["node_status"] == "Running"
            # The 16 beyond the per-address cap were refused at once, in the API's envelope.
            refused = []
            for sock in held[4:]:
                status, body = answer(read_until_closed(sock, 10))
                refused.append(status)
                assert body == {"code": 102, "message": "too many connections from your address"}
            assert refused == [503] * 16
            # The 4 admitted ones are closed once the request timeout passes: the ones
            # that had begun a request are told why, the idle ones are just closed.
            for i, sock in enumerate(held[:4]):
                raw = read_until_closed(sock, 15)
                if i % 2 == 0:
                    assert answer(raw) == (408, {"code": 102, "message": "request timeout"})
                else:
                    assert raw == b""
            for _ in range(5):
                ok(api.get("/brokers"))
            counts = http_shutdowns(api, "http:management")
            assert counts["max_conns_per_address"] == 16
            assert counts["request_timeout"] == 4
        assert node.wait_log(r"http:management: connection from 127\.0\.0\.2 refused")
    finally:
        for sock in held:
            sock.close()


def test_a_request_that_arrives_in_pieces_in_time_is_served(make_node: Any) -> None:
    """Only an unfinished request is cut off: one sent in pieces within the timeout
    is answered, and the connection then gets a fresh deadline for its next request."""
    node = make_node({"management.bind": "127.0.0.1:0", "api.default_app_secret": "s",
                      "management.request_timeout": "10s"})
    address = node.listeners["http:management"]
    credentials = b"Basic " + base64.b64encode(b"admin:s")
    request = (b"GET /api/v3/brokers HTTP/1.1\r\nHost: starling\r\nAuthorization: "
               + credentials + b"\r\n\r\n")
    with socket.create_connection(address, timeout=10) as sock:
        for second_request in (False, True):
            for piece in (request[:10], request[10:40], request[40:]):
                sock.sendall(piece)
                time.sleep(0.2)
            head, body = read_response(sock)
            assert head.startswith(b"HTTP/1.1 200"), (second_request, head)
            assert b'"node_status":"Running"' in body


def test_dashboard_listener_times_out_slow_clients(make_node: Any) -> None:
    node = make_node({"management.bind": "127.0.0.1:0", "api.default_app_secret": "s",
                      "dashboard.bind": "127.0.0.1:0", "dashboard.request_timeout": "1s",
                      "dashboard.max_connections_per_address": "2"})
    address = node.listeners["http:dashboard"]
    held = [slow_socket(address, SLOW_SOURCE, partial=True) for _ in range(3)]
    try:
        assert answer(read_until_closed(held[2], 10))[0] == 503
        for sock in held[:2]:
            assert answer(read_until_closed(sock, 15))[0] == 408
        host, port = address
        with httpx.Client(base_url=f"http://{host}:{port}", timeout=10) as site:
            assert site.get("/status").status_code == 200
        with node.api(auth=("admin", "s")) as api:
            wait_until(lambda: http_shutdowns(api, "http:dashboard").get("request_timeout") == 2,
                       message="the dashboard's request_timeout count")
    finally:
        for sock in held:
            sock.close()
