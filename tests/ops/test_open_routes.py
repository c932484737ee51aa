"""docs/api.md lists every route that answers without credentials ("Routes
answered without credentials"); this asks a running node, on both HTTP
listeners, every route it has (and a few paths outside the table) without
credentials, and compares what did not answer 401 with that list."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
from helpers.api import ok

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
MARKER = "<!-- open-routes"
SETTINGS = {"management.bind": "127.0.0.1:0", "dashboard.bind": "127.0.0.1:0",
            "api.default_app_secret": "s", "dashboard.default_user.password": "pw"}
#: Paths that are not in the route table but are served (or must be refused).
EXTRA = [("GET", "/status"), ("POST", "/status"), ("GET", "/api/v3/openapi.json"),
         ("POST", "/api/v3/openapi.json"), ("GET", "/api/v3/prometheus/stats"),
         ("GET", "/api/v3/"), ("GET", "/api/v3/no/such/route"), ("GET", "/"),
         ("GET", "/static/favicon.svg")]


def documented() -> set[tuple[str, str, str]]:
    """(listener, method, path) rows of the table after the marker."""
    lines = DOC.read_text("utf-8").split(MARKER, 1)[1].splitlines()[1:]
    rows = set()
    for line in lines:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] in ("listener", "") or set(cells[0]) <= {"-"}:
            continue
        listeners = ("management", "dashboard") if cells[0] == "both" else (cells[0],)
        rows |= {(name, cells[1], cells[2].strip("`")) for name in listeners}
    return rows


def base(node: Any, listener: str) -> str:
    host, port = node.listeners[f"http:{listener}"]
    return f"http://{host}:{port}"


def test_the_documented_list_is_what_answers_without_credentials(make_node: Any) -> None:
    node = make_node(SETTINGS)
    with node.api(auth=("admin", "s")) as api:
        table = ok(api.get("/"))
    assert len(table) > 50
    candidates = list(EXTRA)
    for route in table:
        template = "/api/v3/" + route["path"].lstrip("/")
        candidates.append((route["method"], template))
    answered = set()
    with httpx.Client(timeout=10) as client:
        for listener in ("management", "dashboard"):
            for method, template in candidates:
                path = re.sub(r":\w+", "x", template)
                response = client.request(method, base(node, listener) + path)
                if response.status_code != 401:
                    # the dashboard's files are one row: `/static/…`
                    shown = "/static/…" if template.startswith("/static/") else template
                    answered.add((listener, method, shown))
    assert answered - {(lst, "POST", "/status") for lst in ("management", "dashboard")} \
        - {(lst, "POST", "/api/v3/openapi.json") for lst in ("management", "dashboard")} \
        == documented()
    # other methods on the open paths give nothing away
    for listener in ("management", "dashboard"):
        status = httpx.post(base(node, listener) + "/status")
        assert (status.status_code, status.text) == (400, "Not found.\n")
        assert httpx.post(base(node, listener) + "/api/v3/openapi.json").status_code == 405


def test_prometheus_auth_closes_the_scrape(make_node: Any) -> None:
    closed = make_node({**SETTINGS, "prometheus.auth": "true"})
    url = base(closed, "management") + "/api/v3/prometheus/stats"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, auth=("admin", "s")).status_code == 200
