"""The cluster's settings, read from the node's `cluster.*` keys and checked at
start (a bad value is refused naming its key).  Each key's own range and
choices are checked with every other key (`starling.config.SETTINGS`); here is
what depends on several keys or on files.  No NATS import here: a lone node
reads `cluster.discovery`, finds `manual`, and goes no further."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Protocol

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_URL = re.compile(r"^(nats|tls)://[^\s/@]+(:\d+)?/?$")


#: How to install what a cluster node needs.
EXTRA = "pip install 'starling-mqtt[cluster]'"

class ClusterConfigError(ValueError):
    """A `cluster.*` value that cannot be used; the message names the key."""


class ConfigSource(Protocol):
    def __getitem__(self, key: str) -> Any: ...


@dataclass(frozen=True, slots=True)
class NatsSettings:
    servers: tuple[str, ...]
    connect_timeout: float
    replicas: int = 1
    user: str = ""
    password: str = ""
    token: str = ""
    credentials: str = ""
    cacertfile: str = ""
    certfile: str = ""
    keyfile: str = ""

    @property
    def tls(self) -> bool:
        return bool(self.cacertfile or self.certfile
                    or any(s.startswith("tls://") for s in self.servers))

    def __repr__(self) -> str:  # never show a secret
        return f"NatsSettings(servers={self.servers!r})"


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    node_name: str
    name: str
    autoclean: float
    heartbeat_interval: float
    node_timeout: float
    rpc_timeout: float
    forward_buffer: int
    nats: NatsSettings


def is_clustered(config: ConfigSource) -> bool:
    """Whether `cluster.discovery` asks for a cluster (`manual` or `nats`)."""
    return bool(config["cluster.discovery"] != "manual")


def cluster_settings(config: ConfigSource) -> ClusterSettings | None:
    """The cluster settings, or None for a lone node (`cluster.discovery = manual`)."""
    if not is_clustered(config):
        return None
    name = config["cluster.name"]
    if not _NAME.match(name):
        raise ClusterConfigError(
            f"cluster.name: {name!r} must be 1 to 64 letters, digits, '-' or '_'")
    node_name = config["node.name"]
    if not node_name or any(c.isspace() for c in node_name):
        raise ClusterConfigError(f"node.name: {node_name!r} must be non-empty, without spaces")
    servers = tuple(s.strip() for s in str(config["cluster.nats.servers"]).split(",")
                    if s.strip())
    if not servers:
        raise ClusterConfigError("cluster.nats.servers: at least one nats:// URL is needed")
    for server in servers:
        if not _URL.match(server):
            raise ClusterConfigError(
                f"cluster.nats.servers: {server!r} is not a nats://host:port or "
                "tls://host:port URL (credentials go in cluster.nats.user/password)")
    durations = {key: float(config[f"cluster.{key}"]) for key in (
        "autoclean", "heartbeat_interval", "node_timeout", "rpc_timeout")}
    if durations["node_timeout"] < 2 * durations["heartbeat_interval"]:
        raise ClusterConfigError("cluster.node_timeout must be at least twice "
                                 "cluster.heartbeat_interval")
    forward_buffer = int(config["cluster.forward_buffer"])
    connect_timeout = float(config["cluster.nats.connect_timeout"])
    replicas = int(config["cluster.nats.replicas"])
    files = {}
    for key in ("credentials", "tls.cacertfile", "tls.certfile", "tls.keyfile"):
        path = config[f"cluster.nats.{key}"]
        if path and not Path(path).is_file():
            raise ClusterConfigError(f"cluster.nats.{key}: no such file {path!r}")
        files[key.rpartition(".")[2]] = path
    if bool(files["certfile"]) != bool(files["keyfile"]):
        raise ClusterConfigError(
            "cluster.nats.tls.certfile and cluster.nats.tls.keyfile go together")
    if config["cluster.nats.token"] and config["cluster.nats.user"]:
        raise ClusterConfigError(
            "cluster.nats.token and cluster.nats.user: give one way to authenticate")
    # The libraries are looked for, not imported: a missing one is a refusal at
    # start naming the key, not an ImportError when the node first connects.
    if find_spec("nats") is None:
        raise ClusterConfigError(f"cluster.discovery: nats needs the nats-py library ({EXTRA})")
    if files["credentials"] and find_spec("nkeys") is None:
        raise ClusterConfigError("cluster.nats.credentials: a .creds file needs the nkeys "
                                 f"library ({EXTRA})")
    nats = NatsSettings(servers, connect_timeout, replicas, config["cluster.nats.user"],
                        config["cluster.nats.password"], config["cluster.nats.token"],
                        files["credentials"], files["cacertfile"], files["certfile"],
                        files["keyfile"])
    return ClusterSettings(node_name, name, durations["autoclean"],
                           durations["heartbeat_interval"], durations["node_timeout"],
                           durations["rpc_timeout"], forward_buffer, nats)
