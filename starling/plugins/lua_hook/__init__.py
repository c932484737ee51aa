"""emqx_lua_hook: hooks written in Lua (docs/feature-plugins.md, "Lua hooks"), and
its REST routes (`/nodes/:node/lua_hook`)."""

from __future__ import annotations

from .plugin import LuaHookPlugin
from .routes import register as register_routes

__all__ = ["LuaHookPlugin", "register_routes"]
