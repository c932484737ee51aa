"""No secret or password reaches the log, at any level: a node at `log.level =
debug` is given secrets every way there is (configuration, generated files,
the API, MQTT CONNECT, wrong guesses, plugin configs), and its whole log is
searched for them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from helpers.api import err, ok
from helpers.clients import PahoClient, uid

SECRETS = {
    "app": "app-secret-9f2c", "dashboard": "dash-password-4e1a",
    "new_app": "second-app-secret-77aa", "mqtt_user": "mqtt-password-c0ffee",
    "wrong": "wrong-guess-5b5b", "redis": "redis-password-d00d",
    "new_user": "dash-user-password-8c8c", "changed": "changed-password-1234",
}


def test_secrets_never_reach_the_log(make_node: Any, tmp_path: Path) -> None:
    node = make_node({
        "log.level": "debug", "management.bind": "127.0.0.1:0", "dashboard.bind": "127.0.0.1:0",
        "api.default_app_secret": SECRETS["app"],
        "plugins.loaded": "emqx_management,emqx_dashboard,emqx_auth_username",
    }, data_dir=tmp_path / "data")
    generated = (tmp_path / "data" / "dashboard_password").read_text().strip()
    host, port = node.listeners["http:dashboard"]
    dashboard = f"http://{host}:{port}/api/v3"
    with node.api(auth=("admin", SECRETS["app"])) as api:
        ok(api.post("/apps/", json={"app_id": "second", "secret": SECRETS["new_app"]}))
        ok(api.post("/auth_username", json={"username": "alice",
                                            "password": SECRETS["mqtt_user"]}))
        ok(api.put("/nodes/starling@127.0.0.1/plugin_configs/emqx_auth_redis",
                   json={"auth.redis.password": SECRETS["redis"]}))
        ok(api.post("/users/", json={"username": "bob", "password": SECRETS["new_user"]}))
        ok(api.put("/change_pwd/bob", json={"old_pwd": SECRETS["new_user"],
                                            "new_pwd": SECRETS["changed"]}))
    with node.api(auth=("admin", SECRETS["wrong"])) as guesser:
        err(guesser.get("/brokers/"), 401)
    err(httpx.post(f"{dashboard}/auth", json={"username": "admin",
                                              "password": SECRETS["wrong"]}), 401)
    ok(httpx.post(f"{dashboard}/auth", json={"username": "admin", "password": generated}))
    good = PahoClient(node.host, node.port, uid("alice"))
    good.client.username_pw_set("alice", SECRETS["mqtt_user"])
    good.connect()
    good.disconnect()
    bad = PahoClient(node.host, node.port, uid("alice"))
    bad.client.username_pw_set("alice", SECRETS["wrong"])
    bad.connect(expect_rc=None)
    bad.close()
    node.wait_log(r"dashboard login: user 'admin'")
    node.stop()
    log = "\n".join(node.log_lines)
    assert "authentication failed" in log  # the failures were logged, without the guess
    for name, secret in {**SECRETS, "generated": generated}.items():
        assert secret not in log, f"the {name} secret is in the log"
