"""`cluster.*` settings: a lone node by default, bad values refused naming the key,
and a lone node that never loads NATS."""

from __future__ import annotations

import subprocess
import sys

import pytest

from starling.cluster import ClusterConfigError, cluster_settings
from starling.config import Config, ConfigError


def test_a_node_is_alone_by_default() -> None:
    assert cluster_settings(Config()) is None


def test_nats_discovery_reads_every_key() -> None:
    settings = cluster_settings(Config({
        "cluster.discovery": "nats", "cluster.name": "prod-1",
        "cluster.nats.servers": "nats://a:4222, tls://b:4443", "cluster.autoclean": "1m",
        "cluster.nats.user": "u", "cluster.nats.password": "secret-pw",
        "node.name": "n1@10.0.0.1"}))
    assert settings is not None
    assert settings.name == "prod-1" and settings.node_name == "n1@10.0.0.1"
    assert settings.nats.servers == ("nats://a:4222", "tls://b:4443")
    assert settings.autoclean == 60.0 and settings.nats.tls
    assert "secret-pw" not in repr(settings)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("cluster.name", "my.cluster", r"cluster\.name: 'my\.cluster' must be"),
    ("cluster.name", "", r"cluster\.name: '' must be"),
    ("cluster.nats.servers", "", r"cluster\.nats\.servers: at least one"),
    ("cluster.nats.servers", "http://x:1", r"cluster\.nats\.servers: 'http://x:1' is not"),
    ("cluster.nats.servers", "nats://u:p@x:1", r"cluster\.nats\.servers: .* is not"),
    ("cluster.node_timeout", "1s", r"cluster\.node_timeout must be at least twice"),
    ("cluster.nats.credentials", "/no/such.creds", r"cluster\.nats\.credentials: no such file"),
    ("cluster.nats.tls.cacertfile", "/no/ca.pem", r"cluster\.nats\.tls\.cacertfile: no such"),
    ("node.name", "a b", r"node\.name: 'a b' must be"),
])
def test_bad_values_name_their_key(key: str, value: str, message: str) -> None:
    with pytest.raises(ClusterConfigError, match=message):
        cluster_settings(Config({"cluster.discovery": "nats", key: value}))


@pytest.mark.parametrize(("key", "value"), [
    ("cluster.discovery", "etcd"), ("cluster.rpc_timeout", "0"),
    ("cluster.forward_buffer", "1KB"), ("cluster.nats.replicas", "6"),
])
def test_out_of_range_values_are_refused_with_the_other_keys(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{key}: "):
        Config({"cluster.discovery": "nats", key: value})


def test_a_lone_node_never_imports_nats() -> None:
    code = ("import sys; import starling.cli, starling.node, starling.cluster; "
            "from starling.config import Config; from starling.node import Node; "
            "Node(Config({'store.backend': 'memory'})); "
            "print(sorted(m for m in sys.modules if m == 'nats' or m.startswith('nats.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"
