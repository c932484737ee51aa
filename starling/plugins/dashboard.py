"""emqx_dashboard: the dashboard listener and the dashboard users API.

Loaded, it makes sure the default user exists, serves the users routes
(`/auth`, `/users/`, `/change_pwd/...`) and starts the `http:dashboard`
listener on ``dashboard.bind``; unloaded, the listener is closed and the
users routes answer 404 (the users themselves stay in the store).  The node
owns the listener and hands the plugin two callbacks, as emqx_management
gets its `apply`.

Its settings are the node's ``dashboard.*`` keys (docs/configuration.md),
read at each load; it declares no `plugin_configs` keys, so the configured
default password is never shown through the API.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from . import Plugin, PluginContext, PluginFactory

Callback = Callable[[], Awaitable[None]]


class DashboardPlugin(Plugin):
    SCHEMA = ()

    def __init__(self, context: PluginContext, settings: Mapping[str, Any],
                 start: Callback, stop: Callback) -> None:
        super().__init__(context, settings)
        self._start = start
        self._stop = stop

    @classmethod
    def factory(cls, start: Callback, stop: Callback) -> PluginFactory:
        """A factory for the registry; `start`/`stop` bring the listener up and down."""
        def make(context: PluginContext, settings: Mapping[str, Any]) -> Plugin:
            return cls(context, settings, start, stop)
        return make

    async def load(self) -> None:
        await self._start()

    async def unload(self) -> None:
        await self._stop()
