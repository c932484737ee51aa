"""emqx_management: the management REST API and `starling ctl`.

The node itself serves the API (`management.bind`), so this plugin is active
whenever the API answers and cannot be unloaded through it: that would cut
off the only way back in.  Its config keys are EMQ X's
(``etc/plugins/emqx_management.conf``); the ones Starling applies:

- ``management.max_row_limit``: the default `_limit` of paginated lists
  (EMQ X default 10000).  A reload (or a `plugin_configs` PUT) applies it.

EMQ X's listener keys (``management.listener.http`` ...) map onto Starling's
own `management.*` configuration and change only with a restart.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from . import ConfigKey, Plugin, PluginContext, PluginFactory, parse_positive_int

MAX_ROW_LIMIT = "management.max_row_limit"


class ManagementPlugin(Plugin):
    unloadable = False

    SCHEMA = (
        ConfigKey(MAX_ROW_LIMIT, "10000",
                  "Default page size (_limit) of paginated API lists.", parse_positive_int),
    )

    def __init__(self, context: PluginContext, settings: Mapping[str, Any],
                 apply: Callable[[Mapping[str, Any]], None]) -> None:
        super().__init__(context, settings)
        self._apply = apply

    @classmethod
    def factory(cls, apply: Callable[[Mapping[str, Any]], None]) -> PluginFactory:
        """A factory for the registry; `apply` receives the parsed settings on load."""
        def make(context: PluginContext, settings: Mapping[str, Any]) -> Plugin:
            return cls(context, settings, apply)
        return make

    async def load(self) -> None:
        self._apply(self.settings)
