"""The dashboard listener (`http:dashboard`) and dashboard users (emqx_dashboard):
credentials of dashboard users, the default user's generated or configured
password, every users route and its errors, users surviving a restart, the
listener following the plugin's load/unload, and `starling ctl admins`."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from emqx_seed import SEED_ROUTES
from helpers.api import err, ok
from helpers.clients import uid, wait_until

from starling import ctl
from starling.api.users import hash_password, verify_password

APP = ("admin", "test-secret")
ON = {
    "management.bind": "127.0.0.1:0",
    "api.default_app_id": "admin",
    "api.default_app_secret": "test-secret",
    "dashboard.bind": "127.0.0.1:0",
}
USER_ROUTES = {(name, method, path, descr) for name, method, path, descr in SEED_ROUTES
               if name in ("auth_user", "create_user", "list_users", "update_user",
                           "delete_user", "change_pwd")}
CREATED_LOG = r"dashboard: created user 'admin'; its password is in"


def dashboard_url(node: Any) -> str:
    host, port = node.listeners["http:dashboard"]
    return f"http://{host}:{port}/api/v3"


def dash(node: Any, auth: tuple[str, str] | None) -> httpx.Client:
    return httpx.Client(base_url=dashboard_url(node), auth=auth, timeout=10)


def generated_password(node: Any) -> str:
    return (node.data_dir / "dashboard_password").read_text().strip()


@pytest.fixture
def node(make_node: Any) -> Any:
    """A node with both listeners on and a generated dashboard password."""
    return make_node(ON)


@pytest.fixture
def admin(node: Any) -> Iterator[httpx.Client]:
    with dash(node, ("admin", generated_password(node))) as client:
        yield client


# -- credentials -------------------------------------------------------------------------

def test_generated_password_file_log_and_basic_auth(node: Any) -> None:
    path = node.data_dir / "dashboard_password"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    password = generated_password(node)
    assert len(password) >= 16 and password != "public"
    line = node.wait_log(CREATED_LOG)
    assert str(path) in line  # where, never what
    assert not any(password in line for line in node.log_lines)
    with dash(node, ("admin", password)) as client:
        assert ok(client.get("/brokers/"))[0]["node"] == node.name
        assert ok(client.get("/users/")) == [{"username": "admin", "tags": "administrator"}]
    for auth in (None, ("admin", "public"), ("admin", password + "x"), ("nobody", password),
                 APP):  # an app's credentials are not a dashboard user's
        with dash(node, auth) as client:
            for resp in (client.get("/brokers/"), client.get("/no/such/path")):
                err(resp, 401, 103, "UNAUTHORIZED")
                assert resp.headers["www-authenticate"].startswith("Basic realm=")
    # the management listener still takes apps, and not dashboard users
    with node.api() as api:
        assert ok(api.get("/users/")) == [{"username": "admin", "tags": "administrator"}]
    with node.api(("admin", password)) as api:
        err(api.get("/users/"), 401, 103)


def test_configured_password_is_the_initial_one(make_node: Any, tmp_path: Path) -> None:
    data = tmp_path / "cfg"
    node = make_node({**ON, "dashboard.default_user.password": "first-pw",
                      "dashboard.default_user.login": "root"}, data_dir=data)
    assert not (data / "dashboard_password").exists()
    assert not any("first-pw" in line for line in node.log_lines)
    with dash(node, ("root", "first-pw")) as client:
        assert ok(client.get("/users/")) == [{"username": "root", "tags": "administrator"}]
        err(client.delete("/users/root"), 409, 106, "Cannot delete admin")
    node.stop()
    # as in EMQ X, a later change of the configured password does not touch the user
    node = make_node({**ON, "dashboard.default_user.password": "second-pw",
                      "dashboard.default_user.login": "root"}, data_dir=data)
    with dash(node, ("root", "first-pw")) as client:
        assert ok(client.get("/users/"))
    with dash(node, ("root", "second-pw")) as client:
        err(client.get("/users/"), 401, 103)


# -- the routes --------------------------------------------------------------------------

def test_auth_route_needs_no_credentials(node: Any) -> None:
    password = generated_password(node)
    with dash(node, None) as client:
        assert client.post("/auth", json={"username": "admin", "password": password}).json() \
            == {"code": 0}
        ok(client.post("/auth/", json={"username": "admin", "password": password}))
        # One answer for a wrong password and an unknown user: no user name is revealed.
        wrong = client.post("/auth", json={"username": "admin", "password": "nope"})
        ghost = client.post("/auth", json={"username": "ghost", "password": "nope"})
        err(wrong, 401, 103, "Username or Password Error")
        assert (ghost.status_code, ghost.headers, ghost.content) == \
            (wrong.status_code, wrong.headers, wrong.content)
        err(client.post("/auth", json={"password": "x"}), 400, 104, "Username undefined")
        err(client.post("/auth", json={"username": "admin"}), 400, 104, "Password undefined")
        err(client.post("/auth", json={"username": "admin", "password": 1}), 400, 108)
        err(client.post("/auth", content=b"{bad"), 400, 109)
        err(client.get("/auth"), 401, 103)  # only POST /auth is open
        err(client.get("/users/"), 401, 103)
    with node.api(None) as api:  # on the management listener it needs an app
        err(api.post("/auth", json={"username": "admin", "password": password}), 401, 103)
    with node.api() as api:
        ok(api.post("/auth", json={"username": "admin", "password": password}))


def test_users_crud_and_errors(node: Any, admin: httpx.Client) -> None:
    name = uid("ops")
    ok(admin.post("/users/", json={"username": name, "password": "pw-1", "tags": "viewer"}))
    assert {"username": name, "tags": "viewer"} in ok(admin.get("/users/"))
    err(admin.post("/users/", json={"username": name, "password": "x"}), 409, 113,
        "Username Already Exist")
    for body in ({"username": uid()}, {"password": "x"}, {"username": "", "password": "x"}, {}):
        err(admin.post("/users/", json=body), 400, 104, "Username or password undefined")
    for body in ({"username": 5, "password": "x"}, {"username": uid(), "password": ["x"]},
                 {"username": uid(), "password": "x", "tags": 3},
                 {"username": "a:b", "password": "x"}, {"username": "a\nb", "password": "x"},
                 {"username": "u" * 300, "password": "x"}):
        err(admin.post("/users/", json=body), 400, 108)
    with dash(node, (name, "pw-1")) as client:  # a new user can sign in at once
        assert ok(client.get("/brokers/"))
    # tags default to empty; names are percent-decoded path segments
    odd = uid("a b/c")
    ok(admin.post("/users/", json={"username": odd, "password": "pw"}))
    assert {"username": odd, "tags": ""} in ok(admin.get("/users/"))
    ok(admin.put("/users/" + odd.replace(" ", "%20").replace("/", "%2F"), json={"tags": "t"}))
    assert {"username": odd, "tags": "t"} in ok(admin.get("/users/"))

    # update_user
    ok(admin.put(f"/users/{name}", json={"tags": "operator"}))
    assert {"username": name, "tags": "operator"} in ok(admin.get("/users/"))
    err(admin.put("/users/ghost", json={"tags": "x"}), 404, 105, "Username Not Found")
    err(admin.put(f"/users/{name}", json={}), 400, 107)
    err(admin.put(f"/users/{name}", json={"tags": 1}), 400, 108)
    err(admin.put(f"/users/{name}", json={"password": ""}), 400, 104)

    # change_pwd
    err(admin.put(f"/change_pwd/{name}", json={"old_pwd": "wrong", "new_pwd": "pw-2"}), 400,
        114, "Password Error")
    err(admin.put("/change_pwd/ghost", json={"old_pwd": "a", "new_pwd": "b"}), 404, 105,
        "Username Not Found")
    err(admin.put(f"/change_pwd/{name}", json={"old_pwd": "pw-1"}), 400, 107)
    err(admin.put(f"/change_pwd/{name}", json={"old_pwd": 1, "new_pwd": "x"}), 400, 108)
    ok(admin.put(f"/change_pwd/{name}", json={"old_pwd": "pw-1", "new_pwd": "pw-2"}))
    with dash(node, (name, "pw-1")) as client:
        err(client.get("/brokers/"), 401, 103)
    with dash(node, (name, "pw-2")) as client:
        assert ok(client.get("/brokers/"))
    # a password reset without the old one (what `ctl admins passwd` uses)
    ok(admin.put(f"/users/{name}", json={"password": "pw-3"}))
    with dash(node, (name, "pw-3")) as client:
        assert ok(client.get("/brokers/"))

    # delete_user
    err(admin.delete("/users/admin"), 409, 106, "Cannot delete admin")
    err(admin.delete("/users/ghost"), 404, 105, "Username Not Found")
    ok(admin.delete(f"/users/{name}"))
    assert name not in {u["username"] for u in ok(admin.get("/users/"))}
    with dash(node, (name, "pw-3")) as client:  # its credentials stop working at once
        err(client.get("/brokers/"), 401, 103)
    err(admin.patch(f"/users/{name}"), 405, 102)


def test_routes_are_listed_on_both_listeners(node: Any, admin: httpx.Client) -> None:
    on_dashboard = ok(admin.get("/"))
    with node.api() as api:
        on_management = ok(api.get("/"))
        assert ok(api.get("/apps/"))  # apps answer on both (EMQ X: dashboard only)
    assert on_dashboard == on_management
    listed = {(r["name"], r["method"], r["path"], r["descr"]) for r in on_dashboard}
    assert listed >= USER_ROUTES and len(USER_ROUTES) == 6
    assert ok(admin.get("/apps/"))
    assert {"app_id": "admin"}.items() <= ok(admin.get("/apps/admin")).items()


# -- sign-in tokens (the web dashboard's login) ------------------------------------------

def test_sign_in_token_lifecycle(node: Any, admin: httpx.Client) -> None:
    name = uid("tok")
    ok(admin.post("/users/", json={"username": name, "password": "pw-t1"}))
    with dash(node, None) as anon:
        wrong = anon.post("/auth/token", json={"username": name, "password": "nope"})
        ghost = anon.post("/auth/token", json={"username": "ghost", "password": "nope"})
        err(wrong, 401, 103, "Username or Password Error")
        assert (ghost.status_code, ghost.content) == (wrong.status_code, wrong.content)
        err(anon.post("/auth/token", json={"username": name}), 400, 104, "Password undefined")
        err(anon.post("/auth/token", json={"username": name, "password": "pw-t1",
                                            "remember": "maybe"}), 400, 108)
        short = ok(anon.post("/auth/token", json={"username": name, "password": "pw-t1"}))
        long = ok(anon.post("/auth/token", json={"username": name, "password": "pw-t1",
                                                  "remember": True}))
    now = time.time()
    assert short["username"] == name and short["token"] != long["token"]
    assert 11 * 3600 < short["expires_at"] - now <= 12 * 3600 + 5
    assert 29 * 86400 < long["expires_at"] - now <= 30 * 86400 + 5
    token = short["token"]
    # the token is a Basic password on the dashboard listener, for that user only
    with dash(node, (name, token)) as client:
        assert ok(client.get("/brokers/"))
    with dash(node, ("admin", token)) as client:
        err(client.get("/brokers/"), 401, 103)
    with node.api((name, token)) as api:  # never on the management listener
        err(api.get("/brokers/"), 401, 103)
    with dash(node, None) as anon:  # nor where the password itself is asked for
        err(anon.post("/auth", json={"username": name, "password": token}), 401, 103)
    with dash(node, (name, token)) as client:
        err(client.put(f"/change_pwd/{name}", json={"old_pwd": token, "new_pwd": "x"}), 400, 114)
        # logout: revoked by whoever holds it; revoking twice is fine
        assert client.request("DELETE", "/auth/token", json={"token": token}).json() == {"code": 0}
        err(client.get("/brokers/"), 401, 103)
    with dash(node, None) as anon:
        ok(anon.request("DELETE", "/auth/token", json={"token": token}))
        err(anon.request("DELETE", "/auth/token", json={}), 400, 107)
    # a password change ends every token of the user
    with dash(node, (name, long["token"])) as client:
        assert ok(client.get("/brokers/"))
        ok(client.put(f"/change_pwd/{name}", json={"old_pwd": "pw-t1", "new_pwd": "pw-t2"}))
        err(client.get("/brokers/"), 401, 103)
    with dash(node, None) as anon:
        again = ok(anon.post("/auth/token", json={"username": name, "password": "pw-t2"}))
    ok(admin.delete(f"/users/{name}"))  # and so does deleting the user
    with dash(node, (name, again["token"])) as client:
        err(client.get("/brokers/"), 401, 103)


def test_tokens_survive_a_restart_as_digests(make_node: Any, tmp_path: Path) -> None:
    data = tmp_path / "tokens"
    node = make_node({**ON, "dashboard.default_user.password": "pw-r"}, data_dir=data)
    with dash(node, None) as anon:
        token = ok(anon.post("/auth/token", json={"username": "admin", "password": "pw-r",
                                                   "remember": True}))["token"]
    node.stop()
    for path in data.rglob("*"):  # only its SHA-256 is kept
        assert not path.is_file() or token.encode() not in path.read_bytes(), path
    node = make_node({**ON, "dashboard.default_user.password": "pw-r"}, data_dir=data)
    with dash(node, ("admin", token)) as client:
        assert ok(client.get("/brokers/"))


# -- persistence, plugin load/unload ----------------------------------------------------

def test_users_survive_a_restart(make_node: Any, tmp_path: Path) -> None:
    data = tmp_path / "restart"
    node = make_node(ON, data_dir=data)
    password = generated_password(node)
    name = uid("keep")
    with dash(node, ("admin", password)) as client:
        ok(client.post("/users/", json={"username": name, "password": "p1", "tags": "a"}))
        ok(client.put(f"/change_pwd/{name}", json={"old_pwd": "p1", "new_pwd": "p2"}))
        ok(client.put(f"/users/{name}", json={"tags": "b"}))
        ok(client.post("/users/", json={"username": "gone", "password": "x"}))
        ok(client.delete("/users/gone"))
    node.stop()
    node = make_node(ON, data_dir=data)
    assert generated_password(node) == password
    assert not any("its password is in" in line for line in node.log_lines)  # once only
    with dash(node, (name, "p2")) as client:
        users = ok(client.get("/users/"))
    assert sorted(users, key=lambda u: u["username"]) == sorted(
        [{"username": "admin", "tags": "administrator"}, {"username": name, "tags": "b"}],
        key=lambda u: u["username"])


def listeners(api: httpx.Client) -> dict[str, str]:
    return {item["protocol"]: item["listen_on"] for item in ok(api.get("/listeners/"))[0]
            ["listeners"]}


def refused(url: str) -> bool:
    try:
        httpx.get(url, timeout=2)
    except httpx.TransportError:
        return True
    return False


def test_unload_stops_the_listener_and_load_starts_it(node: Any) -> None:
    password = generated_password(node)
    plugin = f"/nodes/{node.name}/plugins/emqx_dashboard"
    with node.api() as api:
        plugins = {p["name"]: p["active"] for p in ok(api.get("/plugins/"))[0]["plugins"]}
        assert plugins["emqx_dashboard"] is True
        host, port = node.listeners["http:dashboard"]
        assert listeners(api)["http:dashboard"] == f"{host}:{port}"
        old = dashboard_url(node)

        ok(api.put(f"{plugin}/unload"))
        assert refused(old + "/brokers/")
        assert "http:dashboard" not in listeners(api)
        err(api.get("/users/"), 404, 404)  # the plugin's routes are gone too
        err(api.post("/auth", json={"username": "admin", "password": password}), 404, 404)
        assert {p["name"]: p["active"] for p in ok(api.get("/plugins/"))[0]["plugins"]}[
            "emqx_dashboard"] is False

        ok(api.put(f"{plugin}/load"))
        listen_on = listeners(api)["http:dashboard"]
        new = f"http://{listen_on}/api/v3"
        with httpx.Client(base_url=new, auth=("admin", password), timeout=10) as client:
            assert ok(client.get("/users/"))
            # unloaded through the dashboard itself: answered, then the listener is gone
            assert client.put(f"{plugin}/unload").json() == {"code": 0}
        assert wait_until(lambda: refused(new + "/brokers/"), message="dashboard closed")
        assert "http:dashboard" not in listeners(api)
        ok(api.put(f"{plugin}/load"))
        assert "http:dashboard" in listeners(api)


def test_dashboard_bind_off(make_node: Any) -> None:
    """No listener, hence no default user or generated password; the users routes
    still answer on the management listener while the plugin is loaded."""
    node = make_node({**ON, "dashboard.bind": "off"})
    assert "http:dashboard" not in node.listeners
    assert not (node.data_dir / "dashboard_password").exists()
    with node.api() as api:
        assert "http:dashboard" not in listeners(api)
        assert ok(api.get("/users/")) == []
        ok(api.post("/users/", json={"username": "early", "password": "pw"}))
        err(api.delete("/users/early"), 409, 106, "Cannot delete the last user")
        assert {p["name"]: p["active"] for p in ok(api.get("/plugins/"))[0]["plugins"]}[
            "emqx_dashboard"] is True


# -- starling ctl admins -----------------------------------------------------------------

def ctl_run(node: Any, *args: str) -> tuple[int, str, str]:
    host, port = node.listeners["http:management"]
    out, errs = io.StringIO(), io.StringIO()
    status = ctl.main(["--url", f"http://{host}:{port}", "--app-id", APP[0], "--secret",
                       APP[1], *args], stdout=out, stderr=errs)
    return status, out.getvalue(), errs.getvalue()


def test_ctl_admins(node: Any) -> None:
    name = uid("ctl")
    status, out, _ = ctl_run(node, "admins", "add", name, "pw-a", "ops")
    assert status == 0 and name in out
    status, out, _ = ctl_run(node, "admins", "list")
    assert status == 0 and out.splitlines()[0].split() == ["username", "tags"]
    assert any(line.split() == [name, "ops"] for line in out.splitlines())
    assert {"username": name, "tags": "ops"} in json.loads(
        ctl_run(node, "admins", "list", "--json")[1])
    status, _, errs = ctl_run(node, "admins", "add", name, "x")
    assert status == 1 and "Username Already Exist" in errs
    assert ctl_run(node, "admins", "passwd", name, "pw-b")[0] == 0
    with dash(node, (name, "pw-b")) as client:
        assert ok(client.get("/brokers/"))
    status, _, errs = ctl_run(node, "admins", "del", "admin")
    assert status == 1 and "Cannot delete admin" in errs
    assert ctl_run(node, "admins", "del", name)[0] == 0
    status, _, errs = ctl_run(node, "admins", "del", name)
    assert status == 1 and "Username Not Found" in errs
    assert ctl_run(node, "admins", "add")[0] == 2
    # the password from stdin, kept out of the process list
    host, port = node.listeners["http:management"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("STARLING_")}
    done = subprocess.run([sys.executable, "-m", "starling", "ctl", "--url",
                           f"http://{host}:{port}", "--secret", APP[1], "admins", "add",
                           name], input="from-stdin\n", capture_output=True, text=True,
                          timeout=30, env=env)
    assert done.returncode == 0, done.stderr
    with dash(node, (name, "from-stdin")) as client:
        assert ok(client.get("/brokers/"))


# -- hashing -----------------------------------------------------------------------------

def test_password_hashes() -> None:
    encoded = hash_password("s3cret", iterations=1000)
    scheme, rounds, salt, digest = encoded.split("$")
    assert (scheme, rounds) == ("pbkdf2_sha256", "1000") and salt and digest
    assert verify_password("s3cret", encoded)
    assert not verify_password("s3cret!", encoded)
    assert hash_password("s3cret", iterations=1000) != encoded  # a salt per hash
    for bad in ("", "md5$1$x$y", "pbkdf2_sha256$x$AA==$AA==", "pbkdf2_sha256$1000$!$AA==",
                "pbkdf2_sha256$0$AA==$AA==", encoded + "$"):
        assert not verify_password("s3cret", bad)
    assert hash_password("x").startswith("pbkdf2_sha256$600000$")
