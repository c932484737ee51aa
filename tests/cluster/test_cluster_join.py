"""Joining a cluster: NATS credentials, and the clear refusals at start (NATS
unreachable, wrong credentials, a bad cluster key), with no secret in the log."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers.certs import CA
from helpers.cluster import cluster_settings
from helpers.nats_jwt import Operator
from helpers.nats_server import NatsServer
from helpers.servers import free_port

pytestmark = pytest.mark.needs_server

SECRET = "s3cret-nats-pw"


def start(tmp_path: Path, settings: dict[str, str], timeout: float = 60) -> \
        subprocess.CompletedProcess[str]:
    """`starling start` that is expected to refuse: its exit status and output."""
    args = [sys.executable, "-m", "starling", "start", "--data-dir", str(tmp_path / "n"),
            "--node-name", "joiner@127.0.0.1",
            "--set", "listeners.tcp.default.bind=127.0.0.1:0",
            "--set", "listeners.tcp.internal.bind=off", "--set", "listeners.ws.default.bind=off",
            "--set", "management.bind=off", "--set", "dashboard.bind=off"]
    for key, value in settings.items():
        args += ["--set", f"{key}={value}"]
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def auth_nats(tmp_path: Path) -> Any:
    server = NatsServer(tmp_path / "nats", "--user", "starling", "--pass", SECRET).start()
    yield server
    server.close()


def test_nodes_join_with_nats_credentials(spawn_node: Any, auth_nats: NatsServer,
                                          tmp_path: Path) -> None:
    settings = cluster_settings(auth_nats, "auth", **{"cluster.nats.user": "starling",
                                                      "cluster.nats.password": SECRET})
    _two_join(spawn_node, tmp_path, settings, secret=SECRET)


def test_wrong_credentials_are_refused_at_start(auth_nats: NatsServer, tmp_path: Path) -> None:
    done = start(tmp_path, cluster_settings(auth_nats, "auth", **{
        "cluster.nats.user": "starling", "cluster.nats.password": "wrong-" + SECRET,
        "cluster.nats.connect_timeout": "2s"}))
    assert done.returncode == 1
    assert "cannot join the cluster: cannot reach NATS at" in done.stderr
    assert SECRET not in done.stderr and "Traceback" not in done.stderr


def test_unreachable_nats_is_refused_at_start(tmp_path: Path) -> None:
    done = start(tmp_path, {"cluster.discovery": "nats",
                            "cluster.nats.servers": f"nats://127.0.0.1:{free_port()}",
                            "cluster.nats.connect_timeout": "1s"})
    assert done.returncode == 1
    assert "cannot join the cluster: cannot reach NATS at nats://127.0.0.1:" in done.stderr
    assert "(cluster.nats.servers)" in done.stderr and "Traceback" not in done.stderr


def test_a_bad_cluster_key_is_refused_naming_it(tmp_path: Path) -> None:
    done = start(tmp_path, {"cluster.discovery": "nats", "cluster.name": "no.dots"})
    assert done.returncode == 2
    assert "configuration error: cluster.name: 'no.dots' must be" in done.stderr


def test_buckets_that_one_nats_server_cannot_replicate_are_refused(
        nats_server: NatsServer, tmp_path: Path) -> None:
    done = start(tmp_path, cluster_settings(nats_server, "r3", **{
        "cluster.nats.replicas": "3"}))
    assert done.returncode == 1
    assert "cannot join the cluster: JetStream refused the bucket starling_r3_nodes" \
        in done.stderr
    assert "Traceback" not in done.stderr


def _two_join(spawn_node: Any, tmp_path: Path, settings: dict[str, str],
              secret: str | None = None) -> None:
    """Two nodes started with `settings` list each other as running; `secret` is
    in neither log."""
    a = spawn_node(tmp_path / "a", settings, "a@127.0.0.1")
    b = spawn_node(tmp_path / "b", settings, "b@127.0.0.1")
    try:
        with a.api() as api:
            listed = {n["name"]: n["node_status"] for n in api.get("/nodes/").json()["data"]}
        assert listed == {a.name: "Running", b.name: "Running"}
        if secret is not None:
            assert not any(secret in line for line in a.log_lines + b.log_lines)
    finally:
        a.stop()
        b.stop()


def test_nodes_join_over_mutual_tls(spawn_node: Any, tmp_path: Path) -> None:
    """nats-server requiring TLS and a client certificate from our CA: the nodes
    join with cluster.nats.tls.*; a node without a client certificate is refused."""
    ca = CA.create(tmp_path / "pki")
    server, client = ca.issue_server(), ca.issue_client("starling-node")
    nats = NatsServer(tmp_path / "nats", "--tls", "--tlscert", str(server.cert),
                      "--tlskey", str(server.key), "--tlsverify",
                      "--tlscacert", str(ca.cert)).start()
    url = nats.url.replace("nats://", "tls://")
    tls = {"cluster.nats.servers": url, "cluster.nats.tls.cacertfile": str(ca.cert)}
    settings = cluster_settings(nats, "tls", **tls, **{
        "cluster.nats.tls.certfile": str(client.cert),
        "cluster.nats.tls.keyfile": str(client.key)})
    try:
        _two_join(spawn_node, tmp_path, settings)
        done = start(tmp_path, cluster_settings(nats, "tls", **tls, **{
            "cluster.nats.connect_timeout": "2s"}))
        assert done.returncode != 0
        assert "NATS" in done.stderr + done.stdout
    finally:
        nats.close()


def test_nodes_join_with_a_nats_token(spawn_node: Any, tmp_path: Path) -> None:
    token = "t0ken-" + SECRET
    nats = NatsServer(tmp_path / "nats", "--auth", token).start()
    try:
        settings = cluster_settings(nats, "token", **{"cluster.nats.token": token})
        _two_join(spawn_node, tmp_path, settings, secret=token)
    finally:
        nats.close()


def test_nodes_join_an_operator_mode_nats_with_a_creds_file(spawn_node: Any,
                                                             tmp_path: Path) -> None:
    """nats-server in operator mode (decentralized JWT auth, as `nsc` sets it up):
    the nodes join with a user's `.creds` file (cluster.nats.credentials); the seed
    in it is never logged; a node without credentials is refused at start."""
    operator = Operator()
    config = operator.server_config(tmp_path / "operator.conf")
    creds = operator.user_creds(tmp_path / "node.creds")
    seed = creds.read_text().split("-----BEGIN USER NKEY SEED-----\n")[1].split("\n")[0]
    nats = NatsServer(tmp_path / "nats", "-c", str(config)).start()
    try:
        settings = cluster_settings(nats, "creds", **{"cluster.nats.credentials": str(creds)})
        _two_join(spawn_node, tmp_path, settings, secret=seed)
        done = start(tmp_path, cluster_settings(nats, "creds", **{
            "cluster.nats.connect_timeout": "2s"}))
        assert done.returncode == 1
        assert "cannot join the cluster: cannot reach NATS at" in done.stderr
        assert "Traceback" not in done.stderr
    finally:
        nats.close()


def test_a_missing_client_library_is_refused_naming_the_key(tmp_path: Path) -> None:
    """A node installed without the `cluster` extra (nats-py, nkeys): refused at
    start naming the key and the install command, not an ImportError later."""
    creds = Operator().user_creds(tmp_path / "node.creds")
    settings = {"cluster.discovery": "nats", "cluster.nats.credentials": str(creds)}
    for hidden, key in (("nkeys", "cluster.nats.credentials"), ("nats", "cluster.discovery")):
        args = ["--data-dir", str(tmp_path / "n"), "--node-name", "joiner@127.0.0.1",
                "--set", "management.bind=off", "--set", "dashboard.bind=off"]
        for name, value in settings.items():
            args += ["--set", f"{name}={value}"]
        # The library made unimportable in that process, as if never installed.
        code = (f"import sys; sys.modules[{hidden!r}] = None; from starling.cli import main; "
                f"sys.exit(main(['start', *{args!r}]))")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 2, done.stderr
        assert f"configuration error: {key}:" in done.stderr
        assert "pip install 'starling-mqtt[cluster]'" in done.stderr
        assert "Traceback" not in done.stderr
