"""Why a node cannot join its cluster (no NATS import: the command line and the
node catch these without loading the cluster)."""

from __future__ import annotations


class ClusterUnavailable(RuntimeError):
    """NATS cannot be reached (at start), or refused us."""


class NameTaken(RuntimeError):
    """Another running node of the cluster has this node's name."""
