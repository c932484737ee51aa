"""emqx_reloader: plugins from a directory of Python modules, reloaded when their
file changes, without restarting the node.

EMQ X's reloader hot-loads changed Erlang beam files every `reloader.interval`.
Starling's does the same for Python plugin modules (docs/feature-plugins.md,
"Reloader"): every ``*.py`` file in `reloader.plugin_dir` (not starting with
``_``) is a module with a ``register(registry)`` function, as an entry point's
(docs/plugins.md).  While the reloader is loaded it checks the directory every
`reloader.interval` (and on demand through the API / ``starling ctl reloader``):

- a new module is imported and its plugins are listed (``/plugins``), ready to
  be loaded like any other;
- a changed module is imported again, fresh; each plugin it registers gets the
  new implementation, and one that was loaded is unloaded and loaded again
  with the new code and its current config;
- new code that does not import (a syntax error, an exception at import time,
  no or a failing ``register``) or whose plugin fails to load is not used: the
  old code stays in place and keeps running (a plugin whose new ``load()``
  raised is loaded again with the old code).  The error is logged (also to
  `reloader.logfile`), shown in the reloader's status and raised as the alarm
  ``reloader:<module>`` until a later version of the file loads.

A file that disappears leaves its plugins as they are until the node restarts.
Module code runs on the event loop when it is imported, so it must not block.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sys
import time
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import (
    ConfigKey,
    Plugin,
    PluginContext,
    PluginError,
    PluginFactory,
    PluginInfo,
    PluginRegistry,
    cancel,
    positive_duration,
)

log = logging.getLogger(__name__)

#: Where the modules' records live in `PluginContext.services`: they outlive one
#: reloader instance (a config change reloads the reloader, not the modules).
SERVICE = "emqx_reloader.modules"
#: Imported modules are named ``starling_reloaded.<file stem>`` in `sys.modules`.
PACKAGE = "starling_reloaded"
PLUGIN_TABLE = "plugins"  #: the plugin persistence table (which plugins were loaded)


@dataclass
class ModuleRecord:
    """One module file: which code is running and what happened to the latest."""

    name: str  #: the file stem
    path: Path
    digest: str = ""  #: sha256 of the source in use ("" = never imported)
    plugins: list[str] = field(default_factory=list)
    loaded_at: float | None = None
    reloads: int = 0
    error: str | None = None
    error_at: float | None = None
    failed_digest: str = ""  #: the source that failed (not retried until it changes)
    removed: bool = False

    def view(self) -> dict[str, Any]:
        status = "removed" if self.removed else "error" if self.error else "ok"
        return {"module": self.name, "file": str(self.path), "status": status,
                "plugins": list(self.plugins), "loaded_at": self.loaded_at,
                "reloads": self.reloads, "error": self.error, "error_at": self.error_at}


class Recorder:
    """What ``register(registry)`` is handed: records the plugins a module
    registers, so nothing changes until its whole import has succeeded."""

    def __init__(self, registry: PluginRegistry) -> None:
        self._registry = registry
        self.infos: dict[str, PluginInfo] = {}
        self.versions: dict[str, str | None] = {}
        self.impls: dict[str, tuple[PluginFactory, tuple[ConfigKey, ...]]] = {}

    @property
    def version(self) -> str:
        return self._registry.version

    def add(self, info: PluginInfo, version: str | None = None) -> None:
        if not isinstance(info, PluginInfo):
            raise TypeError("registry.add() takes a PluginInfo")
        self.infos[info.name] = info
        self.versions[info.name] = version

    def implement(self, name: str, factory: PluginFactory,
                  schema: Sequence[ConfigKey] = ()) -> None:
        if name not in self.infos and name not in self._registry:
            raise PluginError("not_found", name, f"implement({name!r}) before add()")
        if not callable(factory):
            raise TypeError(f"the factory of {name} is not callable")
        self.impls[name] = (factory, tuple(schema))

    def __contains__(self, name: object) -> bool:
        return name in self.infos or name in self._registry


def read_dir(directory: Path) -> dict[str, tuple[Path, bytes]]:
    """The plugin modules in `directory`: stem → (path, source).  Run in a thread."""
    found: dict[str, tuple[Path, bytes]] = {}
    if not directory.is_dir():
        return found
    for path in sorted(directory.glob("*.py")):
        if path.name.startswith("_") or not path.is_file():
            continue
        try:
            found[path.stem] = (path, path.read_bytes())
        except OSError as exc:
            log.warning("reloader: cannot read %s: %s", path, exc)
    return found


class ReloaderPlugin(Plugin):
    SCHEMA = (
        ConfigKey("reloader.interval", "60s", "How often the plugin directory is checked "
                  "for changed modules (EMQ X's key; a duration).", positive_duration),
        ConfigKey("reloader.logfile", "reloader.log", "File that reloads and failures are "
                  "also written to; relative to the data dir; empty = none.", required=False),
        ConfigKey("reloader.plugin_dir", "", "Directory of plugin modules (*.py with a "
                  "register(registry) function); empty = <data_dir>/plugins.", required=False),
    )

    def __init__(self, context: PluginContext, settings: Mapping[str, Any],
                 registry: PluginRegistry) -> None:
        super().__init__(context, settings)
        self.registry = registry
        directory = self.settings["reloader.plugin_dir"]
        self.plugin_dir = Path(directory) if directory else context.data_dir / "plugins"
        self.interval: float = self.settings["reloader.interval"]
        self.modules: dict[str, ModuleRecord] = context.services.setdefault(SERVICE, {})
        self.last_scan: float | None = None
        self._pass = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._handler: logging.Handler | None = None
        self._first_pass = True

    @classmethod
    def factory(cls, registry: PluginRegistry) -> PluginFactory:
        def make(context: PluginContext, settings: Mapping[str, Any]) -> Plugin:
            return cls(context, settings, registry)
        return make

    @property
    def alarms(self) -> Any:
        return self.context.broker.alarms

    async def load(self) -> None:
        self.plugin_dir.mkdir(parents=True, exist_ok=True)
        logfile = self.settings["reloader.logfile"]
        if logfile:
            path = Path(logfile)
            if not path.is_absolute():
                path = self.context.data_dir / path
            handler = logging.FileHandler(path, encoding="utf-8")
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            log.addHandler(handler)
            self._handler = handler
        # The first pass runs in the task, outside the registry's lock (this load
        # holds it), because swapping a loaded plugin's code takes that lock.
        self._task = asyncio.get_running_loop().create_task(self._watch(), name="reloader")

    async def unload(self) -> None:
        task, self._task = self._task, None
        await cancel(task)
        for record in self.modules.values():
            self.alarms.clear_alarm(alarm_id(record.name))
        if self._handler is not None:
            log.removeHandler(self._handler)
            self._handler.close()
            self._handler = None

    async def _watch(self) -> None:
        while True:
            try:
                await self.scan()
            except Exception:
                log.exception("reloader: scanning %s failed", self.plugin_dir)
            await asyncio.sleep(self.interval)

    # -- a pass over the directory ------------------------------------------------------------
    async def scan(self, force: str | None = None) -> list[dict[str, Any]]:
        """Import new and changed modules (and `force`, changed or not); return
        what happened to each module looked at: reloaded / failed / unchanged."""
        async with self._pass:
            files = await asyncio.to_thread(read_dir, self.plugin_dir)
            if force is not None and force not in files:
                raise KeyError(force)
            results = []
            for stem, (path, source) in files.items():
                digest = hashlib.sha256(source).hexdigest()
                record = self.modules.get(stem)
                if record is None:
                    record = self.modules[stem] = ModuleRecord(stem, path)
                record.path, record.removed = path, False
                if digest == record.digest and record.error is not None:
                    # Back to the code that runs: the failed version is gone.
                    record.error = record.error_at = None
                    record.failed_digest = ""
                    self.alarms.clear_alarm(alarm_id(stem))
                unchanged = digest in (record.digest, record.failed_digest)
                if unchanged and stem != force:
                    continue
                results.append(await self._reload(record, source, digest))
            for stem, record in self.modules.items():
                if stem not in files and not record.removed:
                    record.removed = True
                    log.warning("reloader: %s was removed; its plugins keep running the code "
                                "they have until the node restarts", record.path)
            first, self._first_pass = self._first_pass, False
            if first:
                await self._restore_loaded()
            self.last_scan = time.time()
            return results

    async def _reload(self, record: ModuleRecord, source: bytes,
                      digest: str) -> dict[str, Any]:
        first = not record.digest
        try:
            module, recorder = self._import(record, source)
            await self._apply(record, recorder)
        except Exception as exc:
            return self._failed(record, digest, exc)
        record.digest, record.failed_digest = digest, ""
        record.error = record.error_at = None
        record.loaded_at = time.time()
        if not first:
            record.reloads += 1
        sys.modules[f"{PACKAGE}.{record.name}"] = module
        self.alarms.clear_alarm(alarm_id(record.name))
        log.info("reloader: %s %s (plugins: %s)", "loaded" if first else "reloaded",
                 record.path, ", ".join(record.plugins))
        return {"module": record.name, "result": "loaded" if first else "reloaded",
                "plugins": list(record.plugins)}

    def _import(self, record: ModuleRecord,
                source: bytes) -> tuple[types.ModuleType, Recorder]:
        """Run the module's code in a fresh module object and record what its
        ``register`` registers; nothing outside changes yet."""
        module = types.ModuleType(f"{PACKAGE}.{record.name}")
        module.__file__ = str(record.path)
        code = compile(source, str(record.path), "exec")
        exec(code, module.__dict__)
        register = getattr(module, "register", None)
        if not callable(register):
            raise ImportError("the module has no register(registry) function")
        recorder = Recorder(self.registry)
        register(recorder)
        if not recorder.impls:
            raise ImportError("register(registry) implemented no plugin")
        for name in recorder.impls:
            owner = self._owner(name)
            if owner is not None and owner != record.name:
                raise ImportError(f"plugin {name} belongs to module {owner}")
            if owner is None and name in self.registry and self.registry.get(name).implemented:
                raise ImportError(f"plugin {name} is implemented by Starling or an installed "
                                  "package, not by the reloader")
        return module, recorder

    def _owner(self, plugin: str) -> str | None:
        return next((r.name for r in self.modules.values() if plugin in r.plugins), None)

    async def _apply(self, record: ModuleRecord, recorder: Recorder) -> None:
        """Give each plugin the new code (a loaded one is swapped by the registry,
        which puts the old code back if the new fails to load)."""
        for name, (factory, schema) in recorder.impls.items():
            info = recorder.infos.get(name)
            if name not in self.registry:
                assert info is not None
                self.registry.add(info, recorder.versions.get(name))
                self.registry.implement(name, factory, schema)
            else:
                await self.registry.replace(name, factory, schema, info)
            if name not in record.plugins:
                record.plugins.append(name)

    def _failed(self, record: ModuleRecord, digest: str, exc: Exception) -> dict[str, Any]:
        if isinstance(exc, PluginError):
            detail = f"plugin {exc.plugin} failed to load the new code: {exc.detail or exc.reason}"
        elif isinstance(exc, SyntaxError):
            detail = f"SyntaxError: {exc.msg} (line {exc.lineno})"
        else:
            detail = f"{type(exc).__name__}: {exc}"
        record.error, record.error_at, record.failed_digest = detail, time.time(), digest
        kept = "the old code stays in place" if record.digest else "not loaded"
        log.error("reloader: %s: %s; %s", record.path, detail, kept)
        self.alarms.raise_alarm(alarm_id(record.name),
                                f"plugin module {record.name} failed to reload: {detail}")
        return {"module": record.name, "result": "failed", "error": detail,
                "plugins": list(record.plugins)}

    async def _restore_loaded(self) -> None:
        """At the first pass: load again the directory's plugins that were loaded
        through the API before the node restarted (the node could not, as their
        code was not known yet when it started its plugins)."""
        table = self.context.store.table(PLUGIN_TABLE)
        for record in self.modules.values():
            for name in record.plugins:
                row = table.get(name)
                entry = self.registry.get(name)
                if isinstance(row, dict) and row.get("active") is True and not entry.active:
                    try:
                        await self.registry.load(name)
                    except PluginError as exc:
                        log.error("reloader: plugin %s not loaded again: %s", name, exc)

    def status(self) -> dict[str, Any]:
        return {"plugin_dir": str(self.plugin_dir), "interval": self.interval,
                "last_scan": self.last_scan,
                "modules": [r.view() for _, r in sorted(self.modules.items())]}


def alarm_id(module: str) -> str:
    return f"reloader:{module}"
