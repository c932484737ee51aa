"""The plugin registry: every plugin the seed's ``GET /plugins`` lists, under
its EMQ X name, and which of them are loaded.

Each entry has EMQ X's name, version, description and (v3.2) `type`, and may
have an *implementation*: a factory that makes a `Plugin` object, plus the
schema of its EMQ X config keys.  A plugin without an implementation is
listed (so scripts and dashboards see the names they know) but answers
loading honestly with `not_implemented`; it is never shown active.

Semantics of load / unload / reload follow EMQ X v3 (facts §5.7):

============================  =============================================
call                          result
============================  =============================================
load, plugin not loaded       its `load()` runs; it is active
load, already loaded          `PluginError("already_started")`
unload, loaded                its `unload()` runs; it is inactive
unload, not loaded            `PluginError("not_started")`
reload                        unload if loaded, then load with its current
                              config (so an inactive plugin gets loaded)
any, unknown name             `PluginError("not_found")`
load/reload, no impl. yet     `PluginError("not_implemented")`
unload, plugin that must stay `PluginError("in_use")` (emqx_management serves
                              the API the call came through)
============================  =============================================

Seams for the plugin system that comes later (issue 6): implementations are
registered with `implement()` (entry points will call the same), every change
is announced to `watch()` callbacks (the node persists the active set and
plugin configs from there, store table ``plugins``; docs/ctl.md), `preset()`
applies boot-time config without reloading, and `start()` / `stop()` load the
boot-time set and unload everything in reverse order at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from .plugin import PLUGIN_TYPES, ConfigKey, Plugin, PluginContext, PluginInfo

#: The name it had before the framework moved to plugins/framework (log lines and filters).
log = logging.getLogger("starling.plugins.registry")

# Reasons a registry call can fail with (EMQ X's own words where it has them).
NOT_FOUND = "not_found"
ALREADY_STARTED = "already_started"
NOT_STARTED = "not_started"
NOT_IMPLEMENTED = "not_implemented"
IN_USE = "in_use"
UNKNOWN_KEY = "unknown_key"
BAD_VALUE = "bad_value"
LOAD_FAILED = "load_failed"


class PluginError(Exception):
    """A refused or failed registry call; `reason` is one of the constants above."""

    def __init__(self, reason: str, plugin: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason
        self.plugin = plugin
        self.detail = detail


class PluginUnavailable(RuntimeError):
    """Raised by a plugin's `load()` for an expected condition it cannot load under
    (an optional package or a file missing, a server name that does not resolve):
    the message says what to do; it is logged as one line, without a traceback."""


#: What a plugin's load may fail with that is not a bug in it: one line in the log.
EXPECTED_LOAD_ERRORS = (PluginUnavailable, OSError, ImportError)


def _describe(exc: Exception) -> str:
    """An expected load failure in words, without Python's exception formatting."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    if isinstance(exc, ImportError) and exc.name:
        return f"the Python package {exc.name!r} is not installed"
    return str(exc)


#: What `implement()` registers: makes the plugin from its context and settings.
PluginFactory = Callable[[PluginContext, Mapping[str, Any]], Plugin]
#: Change announcements: (plugin name, "loaded" | "unloaded" | "configured").
Watcher = Callable[[str, str], None]

#: The seed's plugin list (emqx-rest-api-v3.md, "List all Plugins of Cluster"), with
#: the `type` EMQ X v3.2 reports for each.
SEED_PLUGINS: tuple[PluginInfo, ...] = (
    PluginInfo("emqx_auth_clientid", "EMQ X Authentication with ClientId/Password", "auth"),
    PluginInfo("emqx_auth_http", "EMQ X Authentication/ACL with HTTP API", "auth"),
    PluginInfo("emqx_auth_jwt", "EMQ X Authentication with JWT", "auth"),
    PluginInfo("emqx_auth_ldap", "EMQ X Authentication/ACL with LDAP", "auth"),
    PluginInfo("emqx_auth_mongo", "EMQ X Authentication/ACL with MongoDB", "auth"),
    PluginInfo("emqx_auth_mysql", "EMQ X Authentication/ACL with MySQL", "auth"),
    PluginInfo("emqx_auth_pgsql", "EMQ X Authentication/ACL with PostgreSQL", "auth"),
    PluginInfo("emqx_auth_redis", "EMQ X Authentication/ACL with Redis", "auth"),
    PluginInfo("emqx_auth_username", "EMQ X Authentication with Username and Password", "auth"),
    PluginInfo("emqx_coap", "EMQ X CoAP Gateway", "protocol"),
    PluginInfo("emqx_dashboard", "EMQ X Web Dashboard"),
    PluginInfo("emqx_delayed_publish", "EMQ X Delayed Publish"),
    PluginInfo("emqx_lua_hook", "EMQ X Lua Hooks"),
    PluginInfo("emqx_lwm2m", "EMQ X LwM2M Gateway", "protocol"),
    PluginInfo("emqx_management", "EMQ X Management API and CLI"),
    PluginInfo("emqx_plugin_template", "EMQ X Plugin Template"),
    PluginInfo("emqx_psk_file", "EMQX PSK Plugin from File"),
    PluginInfo("emqx_recon", "EMQ X Recon Plugin"),
    PluginInfo("emqx_reloader", "EMQ X Reloader Plugin"),
    PluginInfo("emqx_retainer", "EMQ X Retainer"),
    PluginInfo("emqx_rule_engine", "EMQ X Rule Engine"),
    PluginInfo("emqx_sn", "EMQ X MQTT SN Plugin", "protocol"),
    PluginInfo("emqx_statsd", "Statsd for EMQ X"),
    PluginInfo("emqx_stomp", "EMQ X Stomp Protocol Plugin", "protocol"),
    PluginInfo("emqx_web_hook", "EMQ X Webhook Plugin"),
)


class PluginEntry:
    """A registry row: the catalogue facts plus live state."""

    __slots__ = ("config", "factory", "info", "instance", "schema", "version")

    def __init__(self, info: PluginInfo, version: str) -> None:
        self.info = info
        self.version = version
        self.factory: PluginFactory | None = None
        self.schema: tuple[ConfigKey, ...] = ()
        #: Current config values as strings, key → value (defaults until changed).
        self.config: dict[str, str] = {}
        self.instance: Plugin | None = None

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def implemented(self) -> bool:
        return self.factory is not None

    @property
    def active(self) -> bool:
        return self.instance is not None

    def settings(self) -> dict[str, Any]:
        """The config parsed for the plugin (values were validated when stored); the
        keys of a pattern key's family under their own names."""
        out = {k.key: k.parse(self.config.get(k.key, k.default))
               for k in self.schema if not k.pattern}
        for key, value in self.config.items():
            spec = self.spec(key)
            if spec is not None and spec.pattern:
                out[key] = spec.parse(value)
        return out

    def spec(self, key: str) -> ConfigKey | None:
        """The schema entry for a config key (a pattern key for one of its family)."""
        return next((k for k in self.schema if k.matches(key)), None)

class PluginRegistry:
    def __init__(self, context: PluginContext, *, version: str,
                 catalogue: Iterable[PluginInfo] = SEED_PLUGINS) -> None:
        self.context = context
        self.version = version
        self._entries: dict[str, PluginEntry] = {}
        self._watchers: list[Watcher] = []
        self._lock = asyncio.Lock()
        self._load_order: list[str] = []
        for info in catalogue:
            self.add(info)

    # -- the catalogue -------------------------------------------------------------------
    def add(self, info: PluginInfo, version: str | None = None) -> PluginEntry:
        """List a plugin (a seed name, or a user's own plugin)."""
        if info.type not in PLUGIN_TYPES:
            raise ValueError(f"plugin type must be one of {PLUGIN_TYPES}, not {info.type!r}")
        current = self._entries.get(info.name)
        if current is not None and current.active:
            raise PluginError(IN_USE, info.name, "cannot replace a loaded plugin")
        entry = PluginEntry(info, version or self.version)
        self._entries[info.name] = entry
        return entry

    def implement(self, name: str, factory: PluginFactory,
                  schema: Sequence[ConfigKey] = ()) -> None:
        """Attach an implementation (and its config schema) to a listed plugin."""
        entry = self.get(name)
        if entry.active:
            raise PluginError(IN_USE, name, "cannot replace the implementation of a loaded plugin")
        entry.factory = factory
        entry.schema = tuple(schema)
        entry.config = {k.key: entry.config.get(k.key, k.default)
                        for k in entry.schema if not k.pattern} | {
            key: value for key, value in entry.config.items()
            if (spec := entry.spec(key)) is not None and spec.pattern}

    def get(self, name: str) -> PluginEntry:
        entry = self._entries.get(name)
        if entry is None:
            raise PluginError(NOT_FOUND, name)
        return entry

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[PluginEntry]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def active_names(self) -> list[str]:
        return [entry.name for entry in self if entry.active]

    # -- change announcements ------------------------------------------------------------
    def watch(self, callback: Watcher) -> None:
        self._watchers.append(callback)

    def _announce(self, name: str, what: str) -> None:
        for callback in list(self._watchers):
            try:
                callback(name, what)
            except Exception:
                log.exception("plugin registry watcher failed on %s %s", what, name)

    # -- load / unload / reload ----------------------------------------------------------
    async def load(self, name: str) -> None:
        async with self._lock:
            entry = self.get(name)
            if entry.active:
                raise PluginError(ALREADY_STARTED, name)
            await self._load(entry)
        self._announce(name, "loaded")

    async def unload(self, name: str) -> None:
        async with self._lock:
            entry = self.get(name)
            if not entry.active:
                raise PluginError(NOT_STARTED, name)
            assert entry.instance is not None
            if not entry.instance.unloadable:
                raise PluginError(IN_USE, name, f"{name} cannot be unloaded")
            await self._unload(entry)
        self._announce(name, "unloaded")

    async def reload(self, name: str) -> None:
        async with self._lock:
            entry = self.get(name)
            if not entry.implemented:
                raise PluginError(NOT_IMPLEMENTED, name)
            if entry.active:
                await self._unload(entry)
            await self._load(entry)
        self._announce(name, "loaded")

    async def replace(self, name: str, factory: PluginFactory,
                      schema: Sequence[ConfigKey] = (), info: PluginInfo | None = None,
                      ) -> bool:
        """Swap a listed plugin's implementation for new code (emqx_reloader).

        A loaded plugin is unloaded, re-implemented and loaded again with its
        current config; when the new code fails to load, the old implementation
        (info, factory, schema, config) is put back and loaded again, and the
        `PluginError` is raised.  Returns whether the plugin is loaded."""
        if info is not None and info.type not in PLUGIN_TYPES:
            raise ValueError(f"plugin type must be one of {PLUGIN_TYPES}, not {info.type!r}")
        async with self._lock:
            entry = self.get(name)
            was_active = entry.active
            old = (entry.info, entry.factory, entry.schema, dict(entry.config))
            if was_active:
                await self._unload(entry)
            if info is not None:
                entry.info = info
            self.implement(name, factory, schema)
            if was_active:
                try:
                    await self._load(entry)
                except PluginError:
                    entry.info, entry.factory, entry.schema, entry.config = old
                    await self._load(entry)
                    raise
        return was_active

    async def _load(self, entry: PluginEntry) -> None:
        if entry.factory is None:
            raise PluginError(NOT_IMPLEMENTED, entry.name)
        try:
            instance = entry.factory(self.context, entry.settings())
            await instance.load()
        except PluginError:
            raise
        except EXPECTED_LOAD_ERRORS as exc:
            why = _describe(exc)
            log.warning("plugin %s cannot load: %s", entry.name, why)
            raise PluginError(LOAD_FAILED, entry.name, why) from None
        except Exception as exc:
            log.exception("plugin %s failed to load", entry.name)
            raise PluginError(LOAD_FAILED, entry.name, f"{type(exc).__name__}: {exc}") from exc
        entry.instance = instance
        self._load_order.append(entry.name)
        log.info("plugin %s loaded", entry.name)

    async def _unload(self, entry: PluginEntry) -> None:
        instance, entry.instance = entry.instance, None
        if instance is None:
            return
        self._load_order.remove(entry.name)
        try:
            await instance.unload()
        except Exception:
            # It is marked inactive either way: a half-unloaded plugin must not be
            # reported active, and unloading it again could not do better.
            log.exception("plugin %s failed to unload cleanly", entry.name)
        log.info("plugin %s unloaded", entry.name)

    # -- config --------------------------------------------------------------------------
    def config_items(self, name: str) -> list[dict[str, Any]]:
        """`GET plugin_configs`: ``[{key, value, desc, required}]`` (facts §5.8)."""
        entry = self.get(name)
        items = []
        for k in entry.schema:
            if not k.pattern:
                items.append({"key": k.key, "value": entry.config.get(k.key, k.default),
                              "desc": k.desc, "required": k.required})
                continue
            items += [{"key": key, "value": value, "desc": k.desc, "required": False}
                      for key, value in sorted(entry.config.items()) if k.matches(key)]
        return items

    def validate(self, name: str, values: Mapping[str, Any]) -> dict[str, str]:
        """Check new values against the plugin's schema; return them as strings.

        Raises `PluginError(UNKNOWN_KEY)` or `PluginError(BAD_VALUE)` naming the first
        bad key or value."""
        entry = self.get(name)
        checked: dict[str, str] = {}
        for key, raw in values.items():
            spec = entry.spec(key)
            if spec is None:
                raise PluginError(UNKNOWN_KEY, name, f"unknown key {key!r} for plugin {name}")
            if isinstance(raw, bool):
                text = "true" if raw else "false"
            elif isinstance(raw, (str, int, float)):
                text = str(raw)
            else:
                raise PluginError(BAD_VALUE, name, f"{key}: value must be a string")
            try:
                if not (spec.pattern and text == ""):  # "" removes a pattern key
                    spec.parse(text)
            except (TypeError, ValueError) as exc:
                raise PluginError(BAD_VALUE, name, f"{key}: {exc}") from None
            checked[key] = text
        return checked

    async def configure(self, name: str, values: Mapping[str, Any]) -> None:
        """Validate and store new config values (all or none); reload the plugin if it
        is loaded, so the change applies at once (as EMQ X's `plugin_configs` PUT)."""
        checked = self.validate(name, values)
        async with self._lock:
            entry = self.get(name)
            previous = dict(entry.config)
            self._store_config(entry, checked)
            if entry.active:
                await self._unload(entry)
                try:
                    await self._load(entry)
                except PluginError:
                    # Back to what worked, so the plugin is not left down.
                    entry.config = previous
                    await self._load(entry)
                    raise
        self._announce(name, "configured")

    def preset(self, name: str, values: Mapping[str, Any]) -> None:
        """Validate and store config values (all or none) without reloading or
        announcing: the node's boot-time config (EMQ X conf files, the stored
        `plugin_configs`), applied before plugins load."""
        checked = self.validate(name, values)
        self._store_config(self.get(name), checked)

    @staticmethod
    def _store_config(entry: PluginEntry, checked: Mapping[str, str]) -> None:
        for key, value in checked.items():
            spec = entry.spec(key)
            if spec is not None and spec.pattern and value == "":
                entry.config.pop(key, None)
            else:
                entry.config[key] = value

    # -- node lifecycle ------------------------------------------------------------------
    async def start(self, names: Iterable[str]) -> None:
        """Load the boot-time set; a plugin that cannot load is logged, not fatal."""
        for name in names:
            try:
                await self.load(name)
            except PluginError as exc:
                if exc.reason not in (ALREADY_STARTED, LOAD_FAILED):  # _load logged those
                    log.warning("plugin %s not loaded at start: %s", name, exc)

    async def stop(self) -> None:
        """Unload every loaded plugin, last loaded first (node shutdown)."""
        async with self._lock:
            for name in reversed(list(self._load_order)):
                await self._unload(self._entries[name])
