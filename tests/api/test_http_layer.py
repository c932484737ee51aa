"""The management API's HTTP layer: Basic auth and apps, the bootstrap secret,
routing (slashes, percent-decoding, 404/405), JSON errors, the route listing
against the seed, pagination, /status."""

from __future__ import annotations

import base64
import os
import re
import stat
import time
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from emqx_seed import BATCH_ROUTES, IMPLEMENTED, SEED_ROUTES
from helpers.api import err, ok
from helpers.clients import uid, wait_until

API_ON = {"management.bind": "127.0.0.1:0"}
#: Values for path parameters: harmless ones that exist nowhere.
PARAM_VALUES = {
    "clientid": "no-such-client", "username": "no-such-user", "topic": "no/such/topic",
    "appid": "no-such-app", "who": "no-such-who", "app": "no_such_app",
    "plugin": "no_such_plugin", "id": "no-such-id", "name": "no-such-name",
    "type": "no-such-type",
}


def ok_json(resp: httpx.Response) -> Any:
    assert resp.status_code == 200, resp.text
    return resp.json()


def fill(path: str, node: str) -> str:
    """A route path with every `:param` replaced by a percent-encoded value."""
    parts = []
    for part in path.split("/"):
        if part.startswith(":"):
            name = part[1:]
            value = node if name == "node" else PARAM_VALUES.get(name, f"no-such-{name}")
            part = quote(value, safe="")
        parts.append(part)
    return "/".join(parts)


def normalized(path: str) -> str:
    return "/" + "/".join(p for p in path.split("/") if p)


@pytest.fixture(scope="module")
def listing(api_node: Any) -> list[dict[str, str]]:
    with api_node.api() as client:
        return ok(client.get("/"))


# -- authentication ---------------------------------------------------------------------

def test_every_route_and_unknown_paths_need_credentials(api_node: Any, listing: Any) -> None:
    paths = [(r["method"], fill(r["path"], api_node.name)) for r in listing]
    paths += [("GET", "/"), ("GET", "/no/such/route"), ("POST", "/brokers"),
              ("GET", "/../../etc/passwd"), ("DELETE", "/apps/admin")]
    with httpx.Client(base_url=api_node.api_url, timeout=10) as anonymous:
        for method, path in paths:
            resp = anonymous.request(method, "/" + path.lstrip("/"))
            err(resp, 401)
            challenge = resp.headers["www-authenticate"]
            assert challenge.lower().startswith("basic realm="), challenge
    with httpx.Client(timeout=10) as anonymous:  # outside /api/v3 too
        host, port = api_node.listeners["http:management"]
        err(anonymous.get(f"http://{host}:{port}/somewhere"), 401)


@pytest.mark.parametrize("auth", [
    ("admin", "wrong-secret"),
    ("admin", ""),
    ("nobody", "test-secret"),
    ("", ""),
    ("admin", "test-secret-and-more"),
])
def test_wrong_credentials_are_refused(api_node: Any, auth: tuple[str, str]) -> None:
    with api_node.api(auth=auth) as client:
        err(client.get("/brokers"), 401)


@pytest.mark.parametrize("header", [
    "Bearer test-secret",
    "Basic !!!not-base64!!!",
    "Basic " + base64.b64encode(b"admin-without-colon").decode(),
    "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),
    "Basic",
])
def test_malformed_authorization_header_is_refused(api_node: Any, header: str) -> None:
    with httpx.Client(base_url=api_node.api_url, timeout=10) as client:
        err(client.get("/brokers", headers={"Authorization": header}), 401)


def test_basic_scheme_is_case_insensitive(api_node: Any) -> None:
    token = base64.b64encode(b"admin:test-secret").decode()
    with httpx.Client(base_url=api_node.api_url, timeout=10) as client:
        ok(client.get("/brokers", headers={"Authorization": "basic " + token}))


def test_created_app_authenticates_and_list_hides_secrets(api_node: Any, api: Any) -> None:
    app_id = uid("app")
    secret = ok(api.post("/apps/", json={"app_id": app_id, "name": "n", "desc": "d"}))["secret"]
    assert isinstance(secret, str) and len(secret) >= 16
    with api_node.api(auth=(app_id, secret)) as client:
        ok(client.get("/brokers"))
    listed = ok(api.get("/apps/"))
    mine = [a for a in listed if a["app_id"] == app_id]
    assert len(mine) == 1 and "secret" not in mine[0]
    assert all("secret" not in a for a in listed)
    assert ok(api.get(f"/apps/{app_id}"))["secret"] == secret
    # an explicit secret is used as given
    app2 = uid("app")
    assert ok(api.post("/apps/", json={"app_id": app2, "secret": "s3cr3t-given"})) == {
        "secret": "s3cr3t-given"}
    with api_node.api(auth=(app2, "s3cr3t-given")) as client:
        ok(client.get("/brokers"))
    # deleting it locks it out
    assert api.delete(f"/apps/{app2}").json() == {"code": 0}
    with api_node.api(auth=(app2, "s3cr3t-given")) as client:
        err(client.get("/brokers"), 401)


def test_disabled_app_is_refused(api_node: Any, api: Any) -> None:
    app_id = uid("off")
    secret = ok(api.post("/apps/", json={"app_id": app_id, "status": False}))["secret"]
    with api_node.api(auth=(app_id, secret)) as client:
        err(client.get("/brokers"), 401)
        ok(api.put(f"/apps/{app_id}", json={"status": True}))
        ok(client.get("/brokers"))
        ok(api.put(f"/apps/{app_id}", json={"status": False}))
        err(client.get("/brokers"), 401)


def test_expired_app_is_refused(api_node: Any, api: Any) -> None:
    app_id = uid("exp")
    soon = int(time.time()) + 2
    secret = ok(api.post("/apps/", json={"app_id": app_id, "expired": soon}))["secret"]
    with api_node.api(auth=(app_id, secret)) as client:
        ok(client.get("/brokers"))
        time.sleep(max(0.0, soon + 1.1 - time.time()))
        err(client.get("/brokers"), 401)
        # an update that keeps the (now past) expiry is fine; a later one revives it
        ok(api.put(f"/apps/{app_id}", json={"name": "renamed", "expired": soon}))
        err(client.get("/brokers"), 401)
        ok(api.put(f"/apps/{app_id}", json={"expired": int(time.time()) + 3600}))
        ok(client.get("/brokers"))
        assert ok(api.get(f"/apps/{app_id}"))["expired"] > time.time()


def test_an_expiry_in_the_past_is_refused(api: Any) -> None:
    """An app that could never be used is not created silently (issue 19)."""
    past = int(time.time()) - 60
    app_id = uid("past")
    message = err(api.post("/apps/", json={"app_id": app_id, "expired": past}), 400, 108)[
        "message"]
    assert message.startswith(f"'expired' ({past}) is in the past")
    err(api.get(f"/apps/{app_id}"), 404)  # not created
    ok(api.post("/apps/", json={"app_id": app_id}))
    err(api.put(f"/apps/{app_id}", json={"expired": past}), 400, 108)
    assert ok(api.get(f"/apps/{app_id}"))["expired"] is None


def test_apps_errors(api: Any) -> None:
    app_id = uid("dup")
    ok(api.post("/apps/", json={"app_id": app_id}))
    err(api.post("/apps/", json={"app_id": app_id}), 409, 102)
    err(api.post("/apps/", json={"name": "no id"}), 400, 107)
    err(api.post("/apps/", json={"app_id": 5}), 400, 108)
    # Basic credentials are "id:secret": an id with ':' could never authenticate
    err(api.post("/apps/", json={"app_id": "a:b"}), 400, 108)
    err(api.post("/apps/", json={"app_id": uid("x"), "status": "maybe"}), 400, 108)
    err(api.post("/apps/", json={"app_id": uid("x"), "expired": "soon"}), 400, 108)
    err(api.put("/apps/" + uid("none"), json={"name": "x"}), 404, 102)
    err(api.get("/apps/" + uid("none")), 404)
    assert api.delete("/apps/" + uid("none")).json() == {"code": 0}


# -- bootstrap secret -------------------------------------------------------------------

def test_bootstrap_secret_is_generated_saved_never_logged_and_kept(make_node: Any) -> None:
    node = make_node(API_ON)
    path = node.data_dir / "api_secret"
    assert path.exists()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    secret = path.read_text().strip()
    assert len(secret) >= 16
    assert not [line for line in node.log_lines if secret in line]  # the log says where
    mentions = [line for line in node.log_lines if str(path) in line]
    assert len(mentions) == 1, mentions
    assert "admin" in mentions[0] and "0600" in mentions[0]
    with node.api(auth=("admin", secret)) as client:
        assert ok(client.get("/brokers"))[0]["node"] == node.name
    with node.api(auth=("admin", "test-secret")) as client:
        err(client.get("/brokers"), 401)

    node.stop()  # restart on the same data dir: same secret, not logged again
    node.start()
    assert path.read_text().strip() == secret
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert not [line for line in node.log_lines if secret in line]
    with node.api(auth=("admin", secret)) as client:
        ok(client.get("/brokers"))


def test_configured_secret_is_used_and_not_written(make_node: Any) -> None:
    node = make_node({**API_ON, "api.default_app_id": "ops",
                      "api.default_app_secret": "configured-secret"})
    assert not (node.data_dir / "api_secret").exists()
    assert not any("configured-secret" in line for line in node.log_lines)
    with node.api(auth=("ops", "configured-secret")) as client:
        ok(client.get("/brokers"))
    with node.api(auth=("admin", "configured-secret")) as client:
        err(client.get("/brokers"), 401)


# -- management.max_connections --------------------------------------------------------

def test_max_connections_allows_that_many(make_node: Any) -> None:
    """`management.max_connections = 2`: two clients with open keep-alive connections
    are both served.  (uvicorn's limit_concurrency counts the asking connection
    itself, so today only max_connections - 1 are: with 1, nothing is ever served.)"""
    node = make_node({**API_ON, "api.default_app_secret": "s",
                      "management.max_connections": "2"})
    with node.api(auth=("admin", "s")) as first, node.api(auth=("admin", "s")) as second:
        ok(first.get("/brokers"))
        ok(second.get("/brokers"))
        ok(first.get("/brokers"))


def test_over_max_connections_the_refusal_is_json(make_node: Any) -> None:
    node = make_node({**API_ON, "api.default_app_secret": "s",
                      "management.max_connections": "1"})
    with node.api(auth=("admin", "s")) as first, node.api(auth=("admin", "s")) as second:
        first.get("/brokers")
        resp = second.get("/brokers")
        if resp.status_code != 200:
            assert resp.headers["content-type"].startswith("application/json"), resp.text
            assert resp.json()["code"] != 0


# -- routing ----------------------------------------------------------------------------

@pytest.mark.parametrize("path", [
    "/brokers", "/brokers/", "/brokers//", "//brokers",
    "/nodes/starling@127.0.0.1", "/nodes/starling@127.0.0.1/",
    "/nodes/starling%40127.0.0.1/metrics", "/nodes/starling@127.0.0.1/metrics/",
    "/connections", "/connections/", "/stats", "/stats/",
    "/listeners", "/listeners/", "/nodes/starling@127.0.0.1/listeners/",
])
def test_trailing_slash_does_not_matter(api_node: Any, api: Any, path: str) -> None:
    with httpx.Client(base_url=api_node.api_url.rstrip("/"), auth=("admin", "test-secret"),
                      timeout=10) as client:
        resp = client.get(path)
    assert resp.status_code == 200 and resp.json()["code"] == 0, (path, resp.text)


def test_api_root_with_and_without_slash(api_node: Any) -> None:
    host, port = api_node.listeners["http:management"]
    with httpx.Client(auth=("admin", "test-secret"), timeout=10) as client:
        for url in (f"http://{host}:{port}/api/v3/", f"http://{host}:{port}/api/v3"):
            assert len(ok(client.get(url))) > 30


def test_clientid_with_slash_and_spaces_is_percent_decoded(api_node: Any, api: Any,
                                                          mqtt: Any) -> None:
    client_id = f"{uid('odd')}/with space/and%percent+plus"
    client = mqtt(client_id=client_id, clean_session=False)
    topic = uid("enc") + "/x"
    client.subscribe(topic, 1)
    encoded = quote(client_id, safe="")
    node = api_node.name
    for path in (f"/connections/{encoded}", f"/nodes/{node}/connections/{encoded}",
                 f"/sessions/{encoded}", f"/nodes/{node}/sessions/{encoded}"):
        found = ok(api.get(path))
        assert [c["client_id"] for c in found] == [client_id], path
    for path in (f"/subscriptions/{encoded}", f"/nodes/{node}/subscriptions/{encoded}"):
        assert ok(api.get(path)) == [
            {"node": node, "client_id": client_id, "topic": topic, "qos": 1}]
    # unencoded slashes split the path into more segments: no route
    err(api.get("/connections/" + quote(client_id, safe="/")), 404)
    ok(api.delete(f"/connections/{encoded}"))
    client.wait_disconnected()
    ok(api.delete(f"/sessions/persistent/{encoded}"))
    assert ok(api.get(f"/sessions/{encoded}")) == []


def test_username_in_path_is_percent_decoded(api: Any, mqtt: Any) -> None:
    username = uid("user") + "/a b"
    client = mqtt(username=username)
    found = ok(api.get("/connection/username/" + quote(username, safe="")))
    assert [(c["client_id"], c["username"]) for c in found] == [(client.client_id, username)]


def test_route_topic_is_percent_decoded(api_node: Any, api: Any, mqtt: Any) -> None:
    prefix = uid("rt")
    client = mqtt()
    client.subscribe(f"{prefix}/a/b/#", 0)
    client.subscribe(f"{prefix}/a/+/c", 0)
    node = api_node.name
    assert ok(api.get("/routes/" + quote(f"{prefix}/a/b/#", safe=""))) == [
        {"topic": f"{prefix}/a/b/#", "node": node}]
    assert ok(api.get(f"/routes/{prefix}%2Fa%2F%2B%2Fc")) == [
        {"topic": f"{prefix}/a/+/c", "node": node}]
    # unencoded slashes split the path: no such route (not a lookup of another topic)
    err(api.get(f"/routes/{prefix}/a/b/%23"), 404)
    assert ok(api.get("/routes/" + quote(f"{prefix}/a/b", safe=""))) == []


def test_unknown_route_is_404_json(api: Any) -> None:
    for path in ("/no-such-thing", "/brokers/a/b/c/d", "/nodes/x/y/z/w/v", "/rulez/",
                 "/connections/a/b"):
        err(api.get(path), 404)
    err(api.get("http://" + api.base_url.host + f":{api.base_url.port}/other/path"), 404)


def test_unknown_node_is_404_json(api: Any) -> None:
    for path in ("/nodes/other@host", "/brokers/other@host", "/nodes/other@host/metrics/",
                 "/nodes/other@host/stats/", "/nodes/other@host/listeners",
                 "/nodes/other@host/connections/", "/nodes/other@host/sessions/",
                 "/nodes/other@host/subscriptions/"):
        body = err(api.get(path), 404)
        assert "other@host" in body["message"]


@pytest.mark.parametrize(("method", "path"), [
    ("DELETE", "/brokers"), ("POST", "/connections/"), ("PUT", "/stats/"),
    ("GET", "/mqtt/publish"), ("PATCH", "/apps/admin"), ("POST", "/"),
    ("DELETE", "/sessions/"), ("PUT", "/nodes/starling@127.0.0.1/metrics/"),
])
def test_wrong_method_is_405_json(api: Any, method: str, path: str) -> None:
    err(api.request(method, path), 405)


@pytest.mark.parametrize("body", [b"{bad", b"{'single': 1}", b"[1,", b"\xff\xfe{}",
                                  b"{\"topic\": \"a\"} trailing", b"[" * 100_000],
                         ids=["bad", "quotes", "unclosed", "not-utf8", "trailing", "deep"])
def test_bad_json_body_is_400_code_109(api: Any, body: bytes) -> None:
    err(api.post("/mqtt/publish", content=body,
                 headers={"content-type": "application/json"}), 400, 109)


def test_non_text_json_string_is_refused(api: Any) -> None:
    """A lone surrogate escape is valid JSON syntax but not text: 400, never a 500."""
    resp = api.post("/mqtt/publish", content=b'{"topic": "t/x", "payload": "\\ud800"}',
                    headers={"content-type": "application/json"})
    err(resp, 400)
    resp = api.post("/apps/", content=b'{"app_id": "' + uid("s").encode() + b'", '
                    b'"name": "\\udfff"}', headers={"content-type": "application/json"})
    err(resp, 400)
    ok(api.get("/apps/"))


def test_out_of_range_numbers_are_400_not_500(api: Any) -> None:
    for body in (b'{"topic": "t/x", "qos": 1e400}', b'{"topic": "t/x", "qos": -1e400}',
                 b'{"topic": "t/x", "qos": NaN}', b'{"topic": "t/x", "qos": 1.5}',
                 b'{"app_id": "x-inf", "expired": 1e400}'):
        path = "/apps/" if b"app_id" in body else "/mqtt/publish"
        err(api.post(path, content=body, headers={"content-type": "application/json"}),
            400, 108)


def test_empty_body_is_no_parameters(api: Any) -> None:
    err(api.post("/mqtt/publish", content=b""), 400, 107)
    err(api.post("/mqtt/publish", content=b"  \n"), 400, 107)


# -- the route listing ----------------------------------------------------------------

def test_listing_entries_are_well_formed_and_unique(listing: Any) -> None:
    seen = set()
    for route in listing:
        assert set(route) == {"name", "method", "path", "descr"}, route
        assert route["method"] in ("GET", "POST", "PUT", "DELETE"), route
        assert all(isinstance(v, str) and v for v in route.values()), route
        key = (route["method"], normalized(route["path"]))
        assert key not in seen, f"listed twice: {key}"
        seen.add(key)


def test_listing_matches_the_seed(listing: Any) -> None:
    seed = {(name, method, normalized(path)): descr
            for name, method, path, descr in SEED_ROUTES}
    listed = {(r["name"], r["method"], normalized(r["path"])): r for r in listing}
    seed_names = {name for name, *_ in SEED_ROUTES}
    for key, route in listed.items():
        if route["name"] in seed_names:
            assert key in seed, f"{key} differs from the seed's listing"
            assert route["descr"].strip() == seed[key].strip(), route
    for name, method, path, _descr in SEED_ROUTES:
        if name in IMPLEMENTED:
            assert (name, method, normalized(path)) in listed, f"not listed: {name}"
            # the seed's own spelling of the path (e.g. no leading slash) is kept
            assert listed[(name, method, normalized(path))]["path"] == path
    for name, method, path, descr in BATCH_ROUTES:
        assert listed[(name, method, path)]["descr"] == descr


def test_every_listed_route_answers(api_node: Any, api: Any, listing: Any) -> None:
    """Each listed route is routed: its method does not give 405/routing 404, and the
    path is known (another method gives 405)."""
    for route in listing:
        path = fill(route["path"], api_node.name)
        resp = api.request(route["method"], path)
        assert resp.status_code != 405, (route, resp.text)
        assert resp.headers["content-type"].startswith("application/json"), route
        assert isinstance(resp.json()["code"], int), route
        assert resp.status_code < 500, (route, resp.text)
        probe = api.request("PATCH", path)
        assert probe.status_code == 405, (route, "path not routed", probe.text)


def test_unlisted_seed_routes_are_not_routed(api_node: Any, api: Any, listing: Any) -> None:
    listed = {(r["method"], normalized(r["path"])) for r in listing}
    for name, method, path, _descr in SEED_ROUTES:
        if (method, normalized(path)) in listed:
            continue
        resp = api.request(method, fill(path, api_node.name))
        err(resp, resp.status_code)
        assert resp.status_code in (404, 405), (name, resp.status_code, resp.text)


def test_openapi_document_covers_the_listing(api_node: Any, api: Any, listing: Any) -> None:
    doc = ok_json(api.get("/openapi.json"))
    assert doc["openapi"].startswith("3.")
    operations = {(method.upper(), path) for path, item in doc["paths"].items()
                  for method in item}
    for route in listing:
        oa_path = "/api/v3" + re.sub(r":(\w+)", r"{\1}", normalized(route["path"]))
        assert (route["method"], oa_path) in operations, route
    assert len(operations) == len(listing)


# -- pagination -------------------------------------------------------------------------

def settle_decoder(api: Any, path: str) -> None:
    """Wait until a list stops changing (disconnects of earlier tests are asynchronous)."""
    last: list[Any] = [None]

    def same() -> bool:
        count = api.get(path).json()["meta"]["count"]
        stable = count == last[0]
        last[0] = count
        return stable

    wait_until(same, interval=0.1, message=f"{path} to settle")


def test_pagination_meta_and_pages(api_node: Any, api: Any, mqtt: Any) -> None:
    client = mqtt()
    prefix = uid("page")
    for i in range(7):
        client.subscribe(f"{prefix}/{i}", 0)
    settle_decoder(api, "/subscriptions/")
    everything = api.get("/subscriptions/").json()
    total = everything["meta"]["count"]
    assert everything["meta"] == {"page": 1, "limit": 10000, "count": total}
    assert total == len(everything["data"]) >= 7
    seen = []
    page = 1
    while True:
        body = api.get("/subscriptions/", params={"_page": page, "_limit": 3}).json()
        assert body["code"] == 0
        assert body["meta"] == {"page": page, "limit": 3, "count": total}
        if not body["data"]:
            break
        assert len(body["data"]) <= 3
        seen += body["data"]
        page += 1
    assert page == -(-total // 3) + 1
    assert sorted(map(repr, seen)) == sorted(map(repr, everything["data"]))
    mine = [s["topic"] for s in seen if s["client_id"] == client.client_id]
    assert sorted(mine) == sorted(f"{prefix}/{i}" for i in range(7))
    # the node form paginates the same way; page < 1 is the first page
    body = api.get(f"/nodes/{api_node.name}/subscriptions/",
                   params={"_page": 0, "_limit": 2}).json()
    assert body["meta"] == {"page": 1, "limit": 2, "count": total}
    assert len(body["data"]) == 2


@pytest.mark.parametrize("path", ["/connections/", "/sessions/", "/subscriptions/",
                                  "/routes/", "/nodes/starling@127.0.0.1/connections/",
                                  "/nodes/starling@127.0.0.1/sessions/",
                                  "/nodes/starling@127.0.0.1/subscriptions/"])
def test_paginated_lists_have_meta(api: Any, path: str) -> None:
    body = api.get(path, params={"_limit": 1}).json()
    assert body["code"] == 0
    assert body["meta"]["page"] == 1 and body["meta"]["limit"] == 1
    assert isinstance(body["meta"]["count"], int) and len(body["data"]) <= 1


@pytest.mark.parametrize("params", [{"_page": "x"}, {"_page": "1.5"}, {"_limit": "ten"},
                                    {"_limit": "0"}, {"_limit": "-3"}, {"_page": "1e3"}])
def test_bad_pagination_is_400_code_108(api: Any, params: dict[str, str]) -> None:
    err(api.get("/connections/", params=params), 400, 108)


def test_empty_pagination_parameters_mean_defaults(api: Any) -> None:
    body = api.get("/connections/", params={"_page": "", "_limit": ""}).json()
    assert body["code"] == 0 and body["meta"]["page"] == 1 and body["meta"]["limit"] == 10000


# -- /status ----------------------------------------------------------------------------

def test_status_is_text_without_credentials(api_node: Any) -> None:
    host, port = api_node.listeners["http:management"]
    with httpx.Client(timeout=10) as client:
        resp = client.get(f"http://{host}:{port}/status")
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/plain")
        assert resp.text.splitlines() == [f"Node {api_node.name} is started",
                                          "starling is running"]
        other = client.post(f"http://{host}:{port}/status")
        assert other.status_code == 400 and other.headers["content-type"].startswith(
            "text/plain")


def test_responses_are_json_utf8(api: Any, mqtt: Any) -> None:
    client = mqtt(client_id=uid("ünï") + "-客户端")
    resp = api.get("/connections/" + quote(client.client_id, safe=""))
    assert resp.headers["content-type"] == "application/json; charset=utf-8"
    assert resp.json()["data"][0]["client_id"] == client.client_id
