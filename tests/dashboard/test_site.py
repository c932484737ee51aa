"""The dashboard's page and static files on the dashboard listener, over HTTP:
what is served, the Content-Security-Policy and other headers on every answer,
and the API behind them unchanged."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
from helpers.api import err, ok
from helpers.dashboard import PASSWORD, dashboard_url

STATIC = Path(__file__).resolve().parents[2] / "starling" / "dashboard" / "static"


def csp_directives(response: httpx.Response) -> dict[str, list[str]]:
    policy = response.headers["content-security-policy"]
    return {part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()}


def test_page_and_every_static_file_are_served(dash_node: Any) -> None:
    base = dashboard_url(dash_node)
    with httpx.Client(base_url=base, timeout=10) as web:  # no credentials needed
        index = web.get("/")
        assert index.status_code == 200
        assert index.headers["content-type"] == "text/html; charset=utf-8"
        # relative URLs only, so the dashboard also works under a proxy's sub-path
        refs = re.findall(r'(?:src|href)="([^"]+)"', index.text)
        assert refs and all(ref.startswith("static/") for ref in refs), refs
        files = [p for p in STATIC.rglob("*") if p.is_file() and p.name != "index.html"]
        assert len(files) > 20
        for file in files:
            url = "/static/" + file.relative_to(STATIC).as_posix()
            answer = web.get(url)
            assert answer.status_code == 200, url
            assert answer.content == file.read_bytes(), url
            if file.suffix == ".js":
                assert answer.headers["content-type"] == "text/javascript; charset=utf-8"
            assert "content-security-policy" in answer.headers
        # validators: an unchanged file is not sent again
        etag = web.get("/static/js/main.js").headers["etag"]
        again = web.get("/static/js/main.js", headers={"if-none-match": etag})
        assert again.status_code == 304 and again.content == b""
        head = web.head("/")
        assert head.status_code == 200 and head.content == b""
        for missing in ("/static/nope.js", "/static/index.html", "/static/js"):
            answer = web.get(missing)
            assert answer.status_code == 404, missing
            assert "content-security-policy" in answer.headers
        assert web.post("/").status_code == 405


def test_content_security_policy_allows_only_the_dashboard(dash_node: Any) -> None:
    base = dashboard_url(dash_node)
    ws_host, ws_port = dash_node.listeners["mqtt:ws:default"]
    with httpx.Client(base_url=base, timeout=10) as web:
        index = web.get("/")
    csp = csp_directives(index)
    assert csp["default-src"] == ["'none'"]
    assert csp["script-src"] == ["'self'"]  # no inline script, no eval, no other origin
    assert csp["style-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["form-action"] == ["'none'"]
    # fetch to itself, WebSocket to the node's MQTT WebSocket listener on the page's host
    host = base.split("//")[1].rsplit(":", 1)[0]
    assert host == ws_host
    assert csp["connect-src"] == ["'self'", f"ws://{host}:{ws_port}"]
    assert index.headers["x-content-type-options"] == "nosniff"
    assert index.headers["x-frame-options"] == "DENY"
    # a hostile Host header cannot add sources
    with httpx.Client(base_url=base, timeout=10) as web:
        odd = web.get("/", headers={"host": "evil.example; script-src *"})
    assert csp_directives(odd)["connect-src"] == ["'self'"]
    assert csp_directives(odd)["script-src"] == ["'self'"]


def test_api_answers_carry_the_headers(dash_node: Any) -> None:
    base = dashboard_url(dash_node) + "/api/v3"
    with httpx.Client(base_url=base, auth=("admin", PASSWORD), timeout=10) as api:
        answer = api.get("/brokers/")
        assert ok(answer)[0]["node"] == dash_node.name
        assert answer.headers["cache-control"] == "no-store"
        assert "content-security-policy" in answer.headers
    with httpx.Client(base_url=base, timeout=10) as anon:
        # a script gets the Basic challenge; the page gets no browser password prompt
        plain = anon.get("/brokers/")
        err(plain, 401, 103)
        assert plain.headers["www-authenticate"].startswith("Basic realm=")
        from_page = anon.get("/brokers/", headers={"x-requested-with": "XMLHttpRequest"})
        err(from_page, 401, 103)
        assert "www-authenticate" not in from_page.headers


def test_management_listener_serves_no_page(dash_node: Any) -> None:
    with dash_node.api(None) as api:
        answer = api.get(api.base_url.copy_with(path="/"))
    assert answer.status_code == 401
    assert answer.headers["content-type"].startswith("application/json")
    assert "content-security-policy" not in answer.headers
