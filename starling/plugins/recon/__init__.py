"""emqx_recon: runtime views of the node (docs/feature-plugins.md, "Recon"), and
its REST routes (`/nodes/:node/recon...`)."""

from __future__ import annotations

from .plugin import TALKER_KEYS, ReconPlugin, parse_limit
from .routes import register as register_routes

__all__ = ["TALKER_KEYS", "ReconPlugin", "parse_limit", "register_routes"]
