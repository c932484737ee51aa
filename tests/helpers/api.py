"""Checks of the management API's envelope, shared by the API suites."""

from __future__ import annotations

from typing import Any

import httpx


def ok(resp: httpx.Response) -> Any:
    """A success: HTTP 200, `code` 0; returns `data` (None when absent)."""
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["code"] == 0, body
    return body.get("data")


def err(resp: httpx.Response, status: int, code: int | None = None,
        message: str | None = None) -> dict[str, Any]:
    """An error: the HTTP status, JSON with a non-zero integer `code` and a
    `message` (checked against `code` / `message` when given); returns the body."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json"), resp.headers
    body: dict[str, Any] = resp.json()
    assert isinstance(body["code"], int) and body["code"] != 0, body
    assert isinstance(body["message"], str) and body["message"], body
    if code is not None:
        assert body["code"] == code, body
    if message is not None:
        assert body["message"] == message, body
    return body


def listener_row(api: httpx.Client, node: str, protocol: str) -> dict[str, Any] | None:
    """The node's listener of `protocol` ("stomp:tcp", ...) in GET /nodes/:node/listeners,
    or None when it lists none."""
    rows = [row for row in ok(api.get(f"/nodes/{node}/listeners")) if row["protocol"] == protocol]
    assert len(rows) <= 1, rows
    return rows[0] if rows else None
