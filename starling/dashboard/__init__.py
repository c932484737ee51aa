"""The web dashboard (emqx_dashboard's pages): plain HTML, CSS and ES modules
under `static/`, served on the dashboard listener in front of the API
(docs/dashboard.md)."""

from __future__ import annotations

from .site import DashboardSite, content_security_policy, load_static

__all__ = ["DashboardSite", "content_security_policy", "load_static"]
