"""emqx_auth_http: authentication, superuser and ACL answered by an HTTP server.

As EMQ X v3.2's plugin (docs/auth-backends.md#http): at CONNECT the
``auth_req`` URL is asked with the configured params (placeholders filled in);
HTTP 200 lets the client in (a body of ``ignore`` passes it on to the next
plugin), any other status refuses it.  A client let in is then checked with
``super_req`` (200 = superuser, which bypasses ACL).  ``acl_req`` answers
publish / subscribe checks: 200 allow, 200 ``ignore`` ignore, other status
deny; the broker's per-connection ACL cache keeps the answers
(``acl_cache_ttl``).  A request that times out or cannot connect is answered
by ``auth.http.on_error`` (``ignore`` by default) and raises the
``emqx_auth_http_down`` alarm until the server answers again.

Requests go through one `httpx.AsyncClient` (a connection pool of
``auth.http.pool_size``), each bounded by ``auth.http.request.timeout``;
connection errors are retried ``retry_times`` times.  URLs with their query
strings and bodies are never logged (they carry passwords).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from starling.broker import AuthResult, ClientInfo, HookPoint, Stop
from starling.config import parse_duration
from starling.mqtt import ReasonCode

from .. import (
    ConfigKey,
    Plugin,
    PluginContext,
    parse_choice,
    parse_nonnegative_int,
    parse_positive_int,
    parse_timeout,
)
from .common import (
    common_name,
    denied,
    fill,
    parse_on_error,
    parse_pairs,
    placeholder_values,
)
from .monitor import AuthMetrics, ServerAlarm, tcp_probe

log = logging.getLogger(__name__)

PLUGIN = "emqx_auth_http"
ALARM = "emqx_auth_http_down"
METHODS = ("get", "post", "put")
CONTENT_TYPES = {"x-www-form-urlencoded": "form", "application/x-www-form-urlencoded": "form",
                 "form": "form", "json": "json", "application/json": "json"}


def parse_url(value: str) -> str:
    """An http(s) URL, or "" (that request is not made)."""
    text = value.strip()
    if not text:
        return ""
    try:
        url = httpx.URL(text)
    except Exception:
        raise ValueError("not a URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("must be an http:// or https:// URL")
    return text


def parse_content_type(value: str) -> str:
    text = value.strip().lower()
    if text not in CONTENT_TYPES:
        raise ValueError("must be x-www-form-urlencoded or json")
    return CONTENT_TYPES[text]


def parse_optional_timeout(value: str) -> float | None:
    return parse_timeout(value) if value.strip() else None


def parse_backoff(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise ValueError("must be more than 0")
    return number


def _request_keys(kind: str, url: str, method: str, params: str) -> tuple[ConfigKey, ...]:
    prefix = f"auth.http.{kind}"
    return (
        ConfigKey(prefix, url, f"URL of the {kind} request; empty = not made.", parse_url,
                  required=False),
        ConfigKey(f"{prefix}.method", method, "get, post or put.", parse_choice(*METHODS)),
        ConfigKey(f"{prefix}.params", params,
                  "name=value pairs separated by commas; values may hold placeholders.",
                  parse_pairs, required=False),
        ConfigKey(f"{prefix}.content_type", "x-www-form-urlencoded",
                  "Body of post/put requests: x-www-form-urlencoded or json.",
                  parse_content_type),
    )


SCHEMA: tuple[ConfigKey, ...] = (
    *_request_keys("auth_req", "http://127.0.0.1:8991/mqtt/auth", "post",
                   "clientid=%c,username=%u,password=%P"),
    *_request_keys("super_req", "http://127.0.0.1:8991/mqtt/superuser", "post",
                   "clientid=%c,username=%u"),
    *_request_keys("acl_req", "http://127.0.0.1:8991/mqtt/acl", "get",
                   "access=%A,username=%u,clientid=%c,ipaddr=%a,topic=%t,mountpoint=%m"),
    ConfigKey("auth.http.request.timeout", "5s",
              "Time limit of one request (EMQ X's default is infinity; Starling bounds it).",
              parse_timeout),
    ConfigKey("auth.http.request.connect_timeout", "",
              "Time limit to connect; empty = request.timeout.", parse_optional_timeout,
              required=False),
    ConfigKey("auth.http.request.retry_times", "3",
              "Retries of a request whose connection failed.", parse_nonnegative_int),
    ConfigKey("auth.http.request.retry_interval", "1s", "Wait before the first retry.",
              parse_duration),
    ConfigKey("auth.http.request.retry_backoff", "2.0",
              "Each further retry waits this many times longer.", parse_backoff),
    ConfigKey("auth.http.pool_size", "32", "Connections kept to the server at most.",
              parse_positive_int),
    ConfigKey("auth.http.on_error", "ignore",
              "When the server cannot be reached or times out: ignore or deny.", parse_on_error),
    ConfigKey("auth.http.header.$name", "", "An HTTP header sent with every request.",
              required=False),
    ConfigKey("auth.http.ssl.cacertfile", "", "CA certificates (PEM) that https servers "
              "are checked against; empty = the system's.", required=False),
    ConfigKey("auth.http.ssl.certfile", "", "Client certificate (PEM) for https servers "
              "that ask for one.", required=False),
    ConfigKey("auth.http.ssl.keyfile", "", "Key (PEM) of ssl.certfile.", required=False),
)


def tls_context(settings: Mapping[str, Any]) -> ssl.SSLContext:
    """The TLS settings of https requests (files read at load; a bad one fails it)."""
    context = ssl.create_default_context(cafile=settings["auth.http.ssl.cacertfile"] or None)
    certfile = settings["auth.http.ssl.certfile"]
    if certfile:
        context.load_cert_chain(certfile, settings["auth.http.ssl.keyfile"] or None)
    return context


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One configured request (auth_req, super_req or acl_req)."""

    url: str
    method: str
    params: tuple[tuple[str, str], ...]
    content_type: str

    @classmethod
    def of(cls, settings: Mapping[str, Any], kind: str) -> HttpRequest | None:
        prefix = f"auth.http.{kind}"
        url = settings[prefix]
        if not url:
            return None
        return cls(url, settings[f"{prefix}.method"], settings[f"{prefix}.params"],
                   settings[f"{prefix}.content_type"])

    @property
    def server(self) -> str:
        """``host:port``, for the alarm and the log (no credentials, no query)."""
        url = httpx.URL(self.url)
        port = url.port or (443 if url.scheme == "https" else 80)
        host = f"[{url.host}]" if ":" in url.host else url.host
        return f"{host}:{port}"

    @property
    def where(self) -> str:
        """The URL without query string or credentials, for the log."""
        url = httpx.URL(self.url)
        return str(url.copy_with(query=None, username=None, password=None))

    def build(self, client: httpx.AsyncClient, values: Mapping[str, str]) -> httpx.Request:
        data = {name: fill(template, values) for name, template in self.params}
        if self.method == "get":
            return client.build_request("GET", self.url, params=data)
        if self.content_type == "json":
            return client.build_request(self.method.upper(), self.url, json=data)
        return client.build_request(self.method.upper(), self.url, data=data)


def client_vars(client: ClientInfo, action: str | None = None,
                topic: str | None = None) -> dict[str, str]:
    """The placeholders of a request: the shared ones (absent values "") and
    EMQ X's ``%cn`` / ``%dn`` (the certificate's common name and subject) and
    ``%l`` (listener port: none in Starling)."""
    values = {name: value or "" for name, value in
              placeholder_values(client, action, topic).items()}
    subject = client.peercert or ""
    return values | {"cn": common_name(subject) or "", "dn": subject, "l": ""}


class HttpAuthPlugin(Plugin):
    SCHEMA = SCHEMA

    def __init__(self, context: PluginContext, settings: Mapping[str, Any]) -> None:
        super().__init__(context, settings)
        self.auth_req = HttpRequest.of(settings, "auth_req")
        self.super_req = HttpRequest.of(settings, "super_req")
        self.acl_req = HttpRequest.of(settings, "acl_req")
        self.on_error: str = settings["auth.http.on_error"]
        self.retry_times: int = settings["auth.http.request.retry_times"]
        self.retry_interval: float = settings["auth.http.request.retry_interval"]
        self.retry_backoff: float = settings["auth.http.request.retry_backoff"]
        timeout: float = settings["auth.http.request.timeout"]
        connect = settings["auth.http.request.connect_timeout"] or timeout
        self.timeout = httpx.Timeout(timeout, connect=connect)
        self.headers = {key.split(".", 3)[3]: value for key, value in settings.items()
                        if key.startswith("auth.http.header.")}
        self.pool_size: int = settings["auth.http.pool_size"]
        self.client: httpx.AsyncClient | None = None
        broker = context.broker
        self.metrics = AuthMetrics(broker, "http")
        self.alarm = ServerAlarm(broker, ALARM, lambda server: tcp_probe(server, connect))

    async def load(self) -> None:
        limits = httpx.Limits(max_connections=self.pool_size,
                              max_keepalive_connections=self.pool_size)
        self.client = httpx.AsyncClient(timeout=self.timeout, limits=limits,
                                        headers=self.headers, follow_redirects=True,
                                        verify=tls_context(self.settings))
        hooks = self.context.broker.hooks
        if self.auth_req is not None:
            hooks.add(HookPoint.CLIENT_AUTHENTICATE, self.authenticate)
        if self.acl_req is not None:
            hooks.add(HookPoint.CLIENT_CHECK_ACL, self.check_acl)

    async def unload(self) -> None:
        hooks = self.context.broker.hooks
        hooks.remove(HookPoint.CLIENT_AUTHENTICATE, self.authenticate)
        hooks.remove(HookPoint.CLIENT_CHECK_ACL, self.check_acl)
        await self.alarm.close()
        if self.client is not None:
            await self.client.aclose()
            self.client = None

    # -- requests --------------------------------------------------------------------
    async def request(self, req: HttpRequest, values: Mapping[str, str]) -> httpx.Response:
        """Send `req`; retry connection failures; raise `httpx.TransportError` (the
        server down, or too slow) once the retries are spent."""
        client = self.client
        if client is None:
            raise httpx.ConnectError("plugin unloaded")
        interval = self.retry_interval
        attempt = 0
        while True:
            try:
                try:
                    response = await client.send(req.build(client, values))
                except RuntimeError:  # the client was closed under us: the plugin unloaded
                    raise httpx.ConnectError("plugin unloaded") from None
                except OSError as exc:  # e.g. a TLS alert read with the answer: httpx lets
                    raise httpx.ConnectError(type(exc).__name__) from exc  # those out
            except httpx.TimeoutException as exc:
                self.alarm.failed(req.server, exc)
                raise
            except httpx.TransportError as exc:
                if attempt >= self.retry_times:
                    self.alarm.failed(req.server, exc)
                    raise
                attempt += 1
                await asyncio.sleep(interval)
                interval *= self.retry_backoff
                continue
            self.alarm.succeeded(req.server)
            return response

    async def _ask(self, req: HttpRequest, values: Mapping[str, str],
                   what: str) -> str | None:
        """"allow", "deny", "ignore", or None when the server could not answer."""
        try:
            response = await self.request(req, values)
        except httpx.TransportError as exc:
            log.warning("emqx_auth_http: %s request to %s failed: %s", what, req.where,
                        type(exc).__name__)
            return None
        if response.status_code != 200:
            return "deny"
        if response.text.strip() == "ignore":
            return "ignore"
        return "allow"

    # -- hooks -------------------------------------------------------------------------
    async def authenticate(self, client: ClientInfo, acc: AuthResult) -> AuthResult | Stop | None:
        assert self.auth_req is not None
        if not client.username or not client.password:
            # EMQ X: no user name or no password is "bad user name or password",
            # left for a later plugin to overrule (not a stop).
            self.metrics.auth("failure")
            return denied()
        values = client_vars(client)
        answer = await self._ask(self.auth_req, values, "auth")
        if answer is None:
            answer = "ignore" if self.on_error == "ignore" else "deny"
        if answer == "ignore":
            self.metrics.auth("ignore")
            return None
        if answer == "deny":
            self.metrics.auth("failure")
            return Stop(denied())
        self.metrics.auth("success")
        superuser = False
        if self.super_req is not None:
            superuser = await self._ask(self.super_req, values, "superuser") == "allow"
        return Stop(AuthResult(ReasonCode.SUCCESS, anonymous=False, superuser=superuser))

    async def check_acl(self, client: ClientInfo, action: str, topic: str,
                        acc: str) -> Stop | None:
        assert self.acl_req is not None
        if (client.username or "").startswith("$"):
            return None  # EMQ X: user names starting with $ are not asked about
        values = client_vars(client, action, topic)
        answer = await self._ask(self.acl_req, values, "acl")
        if answer is None:
            answer = "ignore" if self.on_error == "ignore" else "deny"
        self.metrics.acl(answer)
        if answer == "ignore":
            return None
        return Stop(answer)
