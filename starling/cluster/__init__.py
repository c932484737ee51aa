"""Clustering through NATS (docs/cluster.md).

Only `settings`, `errors` and the `--workers` supervisor are imported by a lone
node; everything that talks to NATS (`link.Cluster` and what it uses) is
imported by `make_cluster`, called only when `cluster.discovery = nats`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from .errors import ClusterUnavailable, NameTaken
from .settings import ClusterConfigError, ClusterSettings, cluster_settings, is_clustered
from .workers import LocalNats, run_workers

if TYPE_CHECKING:
    from starling.broker import Broker
    from starling.mgmt import LocalNode

    from .link import Cluster
    from .management import ClusterNodes


def make_cluster(settings: ClusterSettings, broker: Broker, version: str,
                 store_save: Callable[[str, str, str], None],
                 store_delete: Callable[[str, str], None],
                 store_load: Callable[[str], Mapping[str, str]]) -> Cluster:
    """This node's membership of the cluster, not started yet (NATS is loaded here)."""
    from .link import Cluster

    return Cluster(settings, broker, version, store_save, store_delete, store_load)


def remote_nodes(cluster: Cluster, local: LocalNode) -> ClusterNodes:
    """The management facade's other nodes, asked through the cluster's calls."""
    from .management import ClusterNodes

    return ClusterNodes(cluster.membership, cluster.rpc, local)


__all__ = ["ClusterConfigError", "ClusterSettings", "ClusterUnavailable", "LocalNats",
           "NameTaken", "cluster_settings", "is_clustered", "make_cluster", "remote_nodes",
           "run_workers"]
