"""Third-party plugins, found through the ``starling.plugins`` entry point group.

A package declares, in its pyproject.toml::

    [project.entry-points."starling.plugins"]
    my_plugin = "my_package.plugin:register"

and `register(registry)` adds the plugin (`registry.add(PluginInfo(...))`) and
its implementation (`registry.implement(name, factory, schema)`).  A plugin
that fails to register is logged and skipped; the node still starts.
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

from .registry import PluginRegistry

log = logging.getLogger(__name__)

GROUP = "starling.plugins"


def discover_plugins(registry: PluginRegistry) -> list[str]:
    """Run every registered entry point's `register(registry)`; return their names."""
    found = []
    for entry in entry_points(group=GROUP):
        try:
            register = entry.load()
            register(registry)
        except Exception:
            log.exception("plugin entry point %s (%s) failed to register", entry.name,
                          entry.value)
            continue
        found.append(entry.name)
        log.info("plugin entry point %s registered", entry.name)
    return found
