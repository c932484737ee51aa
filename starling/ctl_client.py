"""What every ``starling ctl`` command uses: the management API client, the
error that ends a command, and the table / details output.  `ctl` (the core
commands) and `ctl_ops` (the operator plugins' commands) both build on it."""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TextIO

API_PREFIX = "/api/v3"
DEFAULT_TIMEOUT = 10.0
PAGE_LIMIT = 10000


class CtlError(Exception):
    """Something to tell the user on stderr, with the exit status to leave with."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@contextlib.contextmanager
def failing_as(what: str, keep_status: bool = False) -> Iterator[None]:
    """A `CtlError` raised inside says what was being done: ``kick c1: <why>``
    (exit status 1, or the error's own with `keep_status`)."""
    try:
        yield
    except CtlError as exc:
        raise CtlError(f"{what}: {exc.message}", exc.status if keep_status else 1) from None


class ApiClient:
    """A tiny client for the management API (urllib, no third-party package)."""

    def __init__(self, base: str, app_id: str, secret: str,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.base = base
        self.app_id = app_id
        self.secret = secret
        self.timeout = timeout

    def _open(self, method: str, url: str, body: Any = None,
              auth: bool = True) -> tuple[int, bytes]:
        data = None
        headers = {"Accept": "application/json"}
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if auth:
            token = base64.b64encode(f"{self.app_id}:{self.secret}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.read()
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CtlError(f"cannot reach the management API at {self.base}: {reason}") from None

    def call(self, method: str, path: str, query: dict[str, Any] | None = None,
             body: Any = None) -> dict[str, Any]:
        """One API call; the envelope on success, `CtlError` with the API's message else."""
        url = self.base + API_PREFIX + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        status, raw = self._open(method, url, body)
        try:
            envelope = json.loads(raw) if raw else {}
        except ValueError:
            envelope = {}
        if not isinstance(envelope, dict):
            envelope = {}
        if status == 401:
            raise CtlError(
                f"the API at {self.base} refused app id {self.app_id!r}: wrong or missing "
                "secret. Pass --app-id/--secret, set STARLING_APP_ID/STARLING_APP_SECRET, or "
                "run with --data-dir of the node so <data_dir>/api_secret can be read")
        code = envelope.get("code")
        if status >= 400 or code not in (0, None) or "code" not in envelope:
            message = envelope.get("message") or raw.decode("utf-8", "replace").strip()
            detail = f"code {code}, HTTP {status}" if code is not None else f"HTTP {status}"
            raise CtlError(f"{message or 'request failed'} ({detail})")
        return envelope

    def data(self, method: str, path: str, query: dict[str, Any] | None = None,
             body: Any = None) -> Any:
        return self.call(method, path, query, body).get("data")

    def get_all(self, path: str) -> list[Any]:
        """Every row of a paginated list, page after page."""
        rows: list[Any] = []
        page = 1
        while True:
            envelope = self.call("GET", path, {"_page": page, "_limit": PAGE_LIMIT})
            chunk = envelope.get("data") or []
            rows.extend(chunk)
            count = (envelope.get("meta") or {}).get("count", len(rows))
            if not chunk or len(rows) >= count:
                return rows
            page += 1

    def status_text(self) -> str:
        """The node's unauthenticated health check, `GET /status`."""
        status, raw = self._open("GET", self.base + "/status", auth=False)
        if status != 200:
            raise CtlError(f"{self.base}/status answered HTTP {status}")
        return raw.decode("utf-8", "replace")

    def local_node(self) -> str:
        """The name of the node this URL reaches (from `/status`, else `/brokers/`)."""
        first = self.status_text().splitlines()[:1]
        words = first[0].split() if first else []
        if len(words) >= 2 and words[0] == "Node":
            return words[1]
        brokers = self.data("GET", "/brokers/") or []
        if brokers:
            return str(brokers[0]["node"])
        raise CtlError("cannot tell which node this is; pass --node")


def q(segment: str) -> str:
    """A path segment, percent-encoded (client ids and topics may hold `/`)."""
    return urllib.parse.quote(segment, safe="")


Column = tuple[str, Callable[[dict[str, Any]], Any]]


def col(header: str, key: str | None = None) -> Column:
    name = key or header
    return header, lambda row: row.get(name, "")


def text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, dict):
        return ", ".join(f"{k}={text(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(text(v) for v in value)
    return str(value)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[Column], out: TextIO) -> None:
    cells = [[text(get(row)) for _, get in columns] for row in rows]
    headers = [h for h, _ in columns]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()

    out.write(line(headers) + "\n")
    for row in cells:
        out.write(line(row) + "\n")
    if not rows:
        out.write("(none)\n")


def details(item: dict[str, Any], out: TextIO) -> None:
    width = max((len(k) for k in item), default=0)
    for key, value in item.items():
        out.write(f"{key.ljust(width)} : {text(value)}\n")


class Output:
    def __init__(self, as_json: bool, out: TextIO) -> None:
        self.as_json = as_json
        self.out = out

    def json(self, data: Any) -> bool:
        """Print `data` as JSON if --json was given; say whether it was."""
        if self.as_json:
            self.out.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        return self.as_json

    def message(self, line: str) -> None:
        if not self.as_json:
            self.out.write(line + "\n")


def node_of(api: ApiClient, args: argparse.Namespace) -> str:
    """The node a command is for: --node, else the one answering."""
    return getattr(args, "node", None) or api.local_node()


def need(args: argparse.Namespace, name: str) -> str:
    value = getattr(args, name, None)
    if not value:
        raise CtlError(f"missing argument: {name}", 2)
    return str(value)

