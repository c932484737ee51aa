"""Clustering through NATS (docs/cluster.md).

Only `settings` is imported by a lone node; everything that talks to NATS
(`link.Cluster` and what it uses) is imported when `cluster.discovery = nats`.
"""

from __future__ import annotations

from .errors import ClusterUnavailable, NameTaken
from .settings import ClusterConfigError, ClusterSettings, cluster_settings, is_clustered

__all__ = ["ClusterConfigError", "ClusterSettings", "ClusterUnavailable", "NameTaken", "cluster_settings", "is_clustered"]
