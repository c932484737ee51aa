"""Which plugins a node loads at start, and with what config; remembered across
restarts.

At start, each plugin's config is built in layers, later ones winning:

1. the plugin's defaults (its schema);
2. the node's own configuration where it has the key (``management.max_row_limit``);
3. the EMQ X conf file ``<plugins.etc_dir>/<plugin>.conf``, if there is one;
4. what ``plugin_configs`` PUT stored (store table ``plugins``): once a plugin's
   config was changed through the API, that config replaces the file's as a
   whole, as EMQ X's PUT rewrites the plugin's conf file.

The plugins loaded at start are ``plugins.loaded`` (EMQ X's seed set by default),
changed by what was loaded or unloaded through the API or ctl since: each row
of table ``plugins`` records ``"active"`` only where it differs from
``plugins.loaded``, so a later change of ``plugins.loaded`` applies to every
plugin the API has not overridden.  A row is ``{"active": bool, "config":
{key: value}}``, either field optional.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .conffile import ConfFileError, read_conf
from .registry import BAD_VALUE, PluginError, PluginRegistry
from .storage import PluginStore

log = logging.getLogger(__name__)

TABLE = "plugins"


def plugin_names(value: str) -> list[str]:
    """``"a, b c"`` → ``["a", "b", "c"]`` (commas and/or spaces)."""
    return [name for name in re.split(r"[,\s]+", value) if name]


class PluginPersistence:
    def __init__(self, registry: PluginRegistry, store: PluginStore,
                 defaults: Iterable[str], etc_dir: Path | None = None) -> None:
        self.registry = registry
        self.store = store
        self.defaults = list(dict.fromkeys(defaults))
        self.etc_dir = etc_dir

    def restore(self, base: Mapping[str, Mapping[str, Any]] | None = None) -> list[str]:
        """Apply the layers above to every plugin's config (`base` is layer 2) and
        return the plugins to load, in order.  Raises `PluginError` for a bad value
        in `base` or a conf file (the node refuses to start); a stored config that no
        longer validates is logged and skipped."""
        registry = self.registry
        for name, values in (base or {}).items():
            registry.preset(name, values)
        if self.etc_dir is not None:
            if not self.etc_dir.is_dir():
                raise PluginError(BAD_VALUE, "emqx", f"plugins.etc_dir: {self.etc_dir} is not "
                                  "a directory (set it to the directory of the plugins' "
                                  ".conf files, or leave it empty)")
            for entry in registry:
                path = self.etc_dir / f"{entry.name}.conf"
                if entry.implemented and path.is_file():
                    self._apply_file(entry.name, path)
        wanted = dict.fromkeys(self.defaults)
        for name, row in self.store.table(TABLE).items():
            if name not in registry or not isinstance(row, dict):
                log.warning("stored state of unknown plugin %s ignored", name)
                continue
            config = row.get("config")
            if isinstance(config, dict):
                entry = registry.get(name)
                stale = {key: "" for key in entry.config
                         if key not in config and (spec := entry.spec(key)) is not None
                         and spec.pattern}
                try:
                    registry.preset(name, stale | config)
                except PluginError as exc:
                    log.error("stored config of plugin %s not applied: %s", name, exc)
            if row.get("active") is True:
                wanted[name] = None
            elif row.get("active") is False:
                wanted.pop(name, None)
        for name in [n for n in wanted if n not in registry]:
            log.warning("plugins.loaded: no plugin named %s", name)
            del wanted[name]
        return list(wanted)

    def _apply_file(self, name: str, path: Path) -> None:
        entry = self.registry.get(name)
        try:
            values = read_conf(path)
        except ConfFileError as exc:
            raise PluginError(BAD_VALUE, name, str(exc)) from None
        known = {key: value for key, value in values.items() if entry.spec(key) is not None}
        unused = sorted(set(values) - set(known))
        if unused:
            log.info("%s: keys Starling does not use: %s", path, ", ".join(unused))
        try:
            self.registry.preset(name, known)
        except PluginError as exc:
            raise PluginError(exc.reason, name, f"{path}: {exc}") from None

    def attach(self) -> None:
        """From now on, record loads, unloads and config changes."""
        self.registry.watch(self.changed)

    def changed(self, name: str, what: str) -> None:
        table = self.store.table(TABLE)
        row = dict(table.get(name) or {})
        if what in ("loaded", "unloaded"):
            active = what == "loaded"
            if active == (name in self.defaults):
                row.pop("active", None)
            else:
                row["active"] = active
        elif what == "configured":
            row["config"] = dict(self.registry.get(name).config)
        if row:
            table.put(name, row)
        else:
            table.delete(name)
