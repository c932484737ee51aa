"""Fuzz every operation of the OpenAPI document a running node serves, with
schemathesis (valid and invalid inputs).  Whatever is sent, the answer is
never a 5xx and always the JSON envelope: an integer `code`, 0 exactly when
the HTTP status is 2xx, and a `message` with every error.

The fuzzer uses an app of its own, so it cannot lock itself out; operations
that would disable or delete that app or `admin`, or unload the management
plugin, are not sent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from helpers.clients import uid
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

MAX_EXAMPLES = 12
PROTECTED_APPS = {"admin"}
PROTECTED_PLUGINS = {"emqx_management"}


@pytest.fixture(scope="module")
def fuzzer_app(api_node: Any) -> Iterator[tuple[str, str]]:
    with api_node.api() as api:
        app_id = uid("fuzzer")
        body = api.post("/apps/", json={"app_id": app_id, "name": "fuzzer"}).json()
        assert body["code"] == 0, body
        PROTECTED_APPS.add(app_id)
        yield app_id, body["data"]["secret"]


def dangerous(case: Any) -> bool:
    """Cases that would break the run rather than test anything."""
    params = case.path_parameters or {}
    if params.get("appid") in PROTECTED_APPS and case.method in ("DELETE", "PUT"):
        return True
    return params.get("plugin") in PROTECTED_PLUGINS and case.method == "PUT"


def realistic(case: Any, node: str, qos: int) -> None:
    """Random node names and QoS values are refused before anything else is looked
    at; half of the cases get the real node name and a valid QoS instead."""
    if case.path_parameters and "node" in case.path_parameters:
        case.path_parameters["node"] = node
    if isinstance(case.body, dict) and "qos" in case.body:
        case.body["qos"] = qos


def check(case: Any, resp: schemathesis.Response) -> None:
    where = f"{case.method} {resp.request.url} body={case.body!r}"
    assert resp.status_code < 500, f"{where} -> {resp.status_code} {resp.text[:300]}"
    headers = {k.lower(): v for k, v in resp.headers.items()}
    ctype = (headers.get("content-type") or [""])[0]
    assert ctype.startswith("application/json"), f"{where} -> content-type {ctype!r}"
    try:
        body = resp.json()
    except (ValueError, json.JSONDecodeError):
        raise AssertionError(f"{where} -> not JSON: {resp.text[:300]!r}") from None
    assert isinstance(body, dict), f"{where} -> {body!r}"
    code = body.get("code")
    assert isinstance(code, int) and not isinstance(code, bool), f"{where} -> {body!r}"
    success = 200 <= resp.status_code < 300
    assert (code == 0) == success, f"{where} -> HTTP {resp.status_code} with {body!r}"
    if not success:
        assert isinstance(body.get("message"), str) and body["message"], f"{where} -> {body!r}"
    if "meta" in body:
        meta = body["meta"]
        assert set(meta) == {"page", "limit", "count"}, f"{where} -> {body!r}"
        assert isinstance(body["data"], list) and len(body["data"]) <= meta["limit"]


@pytest.mark.timeout(600)  # MAX_EXAMPLES per operation bound the work; a loaded machine is slow
def test_fuzz_every_operation(api_node: Any, fuzzer_app: tuple[str, str]) -> None:
    host, port = api_node.listeners["http:management"]
    base_url = f"http://{host}:{port}"
    schema = schemathesis.openapi.from_url(f"{base_url}/api/v3/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    with api_node.api() as api:
        listed = api.get("/").json()["data"]
    assert len(operations) == len(listed) > 30
    failures: list[str] = []
    calls = 0
    with requests.Session() as session:
        session.auth = fuzzer_app
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                try:
                    strategy = operation.as_strategy(generation_mode=mode)
                except Exception as exc:  # nothing to negate, e.g. no parameters at all
                    if mode is GenerationMode.POSITIVE:
                        failures.append(f"{operation.label}: no strategy: {exc!r}")
                    continue

                @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
                          derandomize=True, phases=[Phase.explicit, Phase.generate],
                          suppress_health_check=list(HealthCheck))
                @given(case=strategy, real=st.booleans(), qos=st.sampled_from([0, 1, 2]))
                def run(case: Any, real: bool, qos: int) -> None:
                    nonlocal calls
                    if dangerous(case):
                        return
                    if real:  # also reach the handlers behind `:node` and `qos` checks
                        realistic(case, api_node.name, qos)
                    calls += 1
                    resp = case.call(base_url=base_url, session=session, timeout=10)
                    check(case, resp)

                try:
                    run()
                except AssertionError as exc:
                    failures.append(f"{operation.label} ({mode.value}): {exc}")
                except Exception as exc:
                    if mode is GenerationMode.NEGATIVE and "Unsatisfiable" in type(exc).__name__:
                        continue  # no invalid input can be expressed for this operation
                    failures.append(f"{operation.label} ({mode.value}): {exc!r}")
    assert not failures, "\n".join(failures)
    assert calls > len(operations) * 3
    # the node is still healthy and the credentials still work
    with api_node.api() as api:
        assert api.get("/brokers").json()["code"] == 0
