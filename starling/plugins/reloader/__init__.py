"""emqx_reloader: plugin modules reloaded when their files change
(docs/feature-plugins.md, "Reloader"), and its REST routes (`/nodes/:node/reloader`)."""

from __future__ import annotations

from .plugin import ReloaderPlugin
from .routes import register as register_routes

__all__ = ["ReloaderPlugin", "register_routes"]
