"""emqx_lua_hook: hooks written as Lua scripts (through the `lupa` package).

As in EMQ X (emqx-lua-hook), every ``*.lua`` file in the script directory
(`lua.hook.script_dir`, by default ``<data_dir>/scripts`` like EMQ X's
``data/scripts``) is loaded when the plugin loads; a script defines
``register_hook()`` returning the names of the callbacks it implements, e.g.
``on_message_publish(clientid, username, topic, payload, qos, retain)``, which
returns a new ``topic, payload, qos, retain`` or ``false`` to drop the message.
docs/feature-plugins.md ("Lua hooks") lists every callback and the differences
from EMQ X.

Each script has its own Lua state, so one script cannot see or break another,
and every call is guarded: a script that raises, exceeds
`lua.hook.max_instructions` or `lua.hook.max_memory`, or returns something
unusable is counted and logged (at most once per `ERROR_LOG_INTERVAL` per
script) and the message goes on unchanged.  A script that does not load is
reported and skipped; the others load.  With `lua.hook.sandbox` on (the
default) scripts get no ``io``, ``os`` (but ``os.time``, ``os.clock``,
``os.date``, ``os.difftime``), ``require``, ``dofile``, ``loadfile``,
``debug``, ``coroutine``, ``collectgarbage`` or ``string.dump``, ``load`` takes
text chunks only, and no script can reach Python objects.

Lua runs in the broker's event loop and synchronously: a publish callback costs
a few µs per message (3 µs unchanged, 6 µs rewritten) plus what the script does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from starling.broker import AuthResult, ClientInfo, HookPoint, Message, Stop
from starling.config import parse_bool, parse_size
from starling.mqtt import ReasonCode, SubscriptionOptions, is_valid_topic_name

from .. import ConfigKey, Plugin, PluginContext, PluginUnavailable, parse_positive_int

log = logging.getLogger(__name__)

#: Seconds between two log lines about the same script's runtime errors.
ERROR_LOG_INTERVAL = 10.0
SUFFIX = ".lua"
DISABLED_SUFFIX = ".lua.x"

#: The callbacks a script may register, and the hook each runs on.
HOOKS: dict[str, HookPoint] = {
    "on_message_publish": HookPoint.MESSAGE_PUBLISH,
    "on_message_delivered": HookPoint.MESSAGE_DELIVERED,
    "on_message_acked": HookPoint.MESSAGE_ACKED,
    "on_client_connected": HookPoint.CLIENT_CONNECTED,
    "on_client_disconnected": HookPoint.CLIENT_DISCONNECTED,
    "on_session_subscribed": HookPoint.SESSION_SUBSCRIBED,
    "on_session_unsubscribed": HookPoint.SESSION_UNSUBSCRIBED,
    "on_client_authenticate": HookPoint.CLIENT_AUTHENTICATE,
    "on_client_check_acl": HookPoint.CLIENT_CHECK_ACL,
}

#: Runs `f(...)` in protected mode under an instruction budget; returns pcall's results.
_GUARD = b"""
local sethook, pcall, pack, unpack, error = debug.sethook, pcall, table.pack, table.unpack, error
local function over() error("instruction limit exceeded", 2) end
return function(limit, f, ...)
  sethook(over, "", limit)
  local r = pack(pcall(f, ...))
  sethook()
  return unpack(r, 1, r.n)
end
"""

#: Takes away what a sandboxed script must not use (run once per Lua state).
_SANDBOX = b"""
local os_ok = {time = os.time, clock = os.clock, date = os.date, difftime = os.difftime}
local raw_load = load
io, dofile, loadfile, require, package, debug, coroutine, collectgarbage = nil
os = os_ok
string.dump = nil
load = function(chunk, name, mode, ...)
  if select("#", ...) == 0 then return raw_load(chunk, name, "t") end
  return raw_load(chunk, name, "t", ...)
end
"""

#: `print` writes to the broker's log (through a Python callable scripts cannot inspect).
_PRINT = b"""
local emit, pack, tostring, concat = ..., table.pack, tostring, table.concat
print = function(...)
  local t = pack(...)
  for i = 1, t.n do t[i] = tostring(t[i]) end
  emit(concat(t, "\\t", 1, t.n))
end
python = nil
"""


class ScriptError(Exception):
    """A script that cannot be loaded (missing lupa, syntax error, bad register_hook)."""


def _no_attributes(obj: object, name: object, is_setting: bool) -> object:
    raise AttributeError("Python objects are not accessible from Lua scripts")


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


@dataclasses.dataclass(frozen=True, slots=True)
class LuaOptions:
    sandbox: bool
    max_instructions: int
    max_memory: int


class LuaScript:
    """One script file in its own Lua state, with the callbacks it registered."""

    def __init__(self, name: str, path: Path, options: LuaOptions) -> None:
        self.name = name
        self.path = path
        self.options = options
        self.functions: dict[str, Any] = {}
        self.ignored: list[str] = []
        self.error: str | None = None
        self.calls = self.errors = self.dropped = self.rewritten = 0
        self.last_error: str | None = None
        self.loaded_at: float | None = None
        self._guard: Any = None
        self._logged_at = 0.0
        self._unlogged = 0

    def load(self, source: bytes) -> None:
        """Run the script and its ``register_hook()``; `ScriptError` if either fails."""
        from lupa import lua54  # the plugin's load() checked it is installed

        runtime = lua54.LuaRuntime(
            encoding=None, register_eval=False, register_builtins=False,
            unpack_returned_tuples=True, attribute_filter=_no_attributes,
            max_memory=self.options.max_memory or None)
        self._guard = runtime.execute(_GUARD)
        loader = runtime.globals().load
        if self.options.sandbox:
            runtime.execute(_SANDBOX)
        runtime.execute(_PRINT, self._print)
        loaded = loader(source, b"@" + self.name.encode(), b"t")
        if isinstance(loaded, tuple):  # (nil, message)
            raise ScriptError(_text(loaded[1]))
        ok, *error = self._run(loaded)
        if not ok:
            raise ScriptError(_text(error[0] if error else "error"))
        register = runtime.globals().register_hook
        if register is None:
            raise ScriptError("the script defines no register_hook() function")
        ok, *names = self._run(register)
        if not ok:
            raise ScriptError(f"register_hook() failed: {_text(names[0] if names else '')}")
        for raw in names:
            name = _text(raw)
            function = runtime.globals()[raw] if isinstance(raw, bytes) else None
            if name not in HOOKS:
                self.ignored.append(name)
                log.warning("lua hook %s: unknown or unsupported hook %r ignored", self.name, name)
            elif function is None:
                self.ignored.append(name)
                log.warning("lua hook %s: register_hook() names %s, which the script does "
                            "not define", self.name, name)
            else:
                self.functions[name] = function
        self.loaded_at = time.time()

    def _print(self, text: bytes) -> None:
        log.info("lua %s: %s", self.name, _text(text))

    def _run(self, function: Any, *args: Any) -> tuple[Any, ...]:
        result = self._guard(self.options.max_instructions, function, *args)
        return result if isinstance(result, tuple) else (result,)

    def call(self, hook: str, *args: Any) -> tuple[Any, ...] | None:
        """Call a callback; its return values, or None when it failed (counted, logged)."""
        self.calls += 1
        try:
            ok, *values = self._run(self.functions[hook], *args)
        except Exception as exc:  # LuaMemoryError, a bad conversion
            self.failed(hook, f"{type(exc).__name__}: {exc}")
            return None
        if not ok:
            self.failed(hook, _text(values[0]) if values else "error")
            return None
        return tuple(values)

    def failed(self, hook: str, message: str) -> None:
        """A runtime error: counted always, logged at most every ERROR_LOG_INTERVAL."""
        self.errors += 1
        self.last_error = f"{hook}: {message}"
        now = time.monotonic()
        if now - self._logged_at < ERROR_LOG_INTERVAL:
            self._unlogged += 1
            return
        more = f" ({self._unlogged} more errors since the last report)" if self._unlogged else ""
        self._logged_at, self._unlogged = now, 0
        log.error("lua hook %s: %s failed: %s%s", self.name, hook, message, more)

    def view(self, status: str) -> dict[str, Any]:
        return {"script": self.name, "file": str(self.path), "status": status,
                "hooks": sorted(self.functions), "ignored": self.ignored,
                "error": self.error, "loaded_at": self.loaded_at, "calls": self.calls,
                "errors": self.errors, "dropped": self.dropped, "rewritten": self.rewritten,
                "last_error": self.last_error}


def _user(username: str | None) -> bytes:
    return username.encode() if username else b""


def publish_result(script: LuaScript, message: Message,
                   values: tuple[Any, ...]) -> Message | Stop | None:
    """What ``on_message_publish`` returned, as a `message.publish` fold result:
    nothing → unchanged; ``false`` → dropped; ``topic[, payload[, qos[, retain]]]``
    → a new message with those fields (the others kept)."""
    if not values or values[0] is None or values[0] is True:
        return None
    if values[0] is False:
        script.dropped += 1
        return Stop(None)
    topic, payload, qos, retain = (*values, None, None, None)[:4]
    changes: dict[str, Any] = {}
    if not isinstance(topic, bytes) or not is_valid_topic_name(new_topic := _text(topic)):
        script.failed("on_message_publish", f"returned an invalid topic {topic!r}")
        return None
    if new_topic != message.topic:
        changes["topic"] = new_topic
    if payload is not None:
        if isinstance(payload, (int, float)) and not isinstance(payload, bool):
            payload = str(payload).encode()
        if not isinstance(payload, bytes):
            script.failed("on_message_publish", "returned a payload that is not a string")
            return None
        if payload != message.payload:
            changes["payload"] = payload
    if qos is not None:
        if isinstance(qos, bool) or not isinstance(qos, (int, float)) or qos not in (0, 1, 2):
            script.failed("on_message_publish", f"returned an invalid qos {qos!r}")
            return None
        if int(qos) != message.qos:
            changes["qos"] = int(qos)
    if retain is not None and bool(retain) != message.retain:
        changes["retain"] = bool(retain)
    if not changes:
        return None
    script.rewritten += 1
    # A new message: the original's cached encodings do not fit it.
    return dataclasses.replace(message, _encoded={}, **changes)


class LuaHookPlugin(Plugin):
    SCHEMA = (
        ConfigKey("lua.hook.script_dir", "", "Directory of the *.lua scripts; empty = "
                  "<data_dir>/scripts (EMQ X's data/scripts).", required=False),
        ConfigKey("lua.hook.sandbox", "on", "Take io, os, require, debug, ... away from "
                  "scripts (on/off).", parse_bool),
        ConfigKey("lua.hook.max_instructions", "1000000", "Lua instructions one callback "
                  "call may run before it is stopped as failed.",
                  parse_positive_int),
        ConfigKey("lua.hook.max_memory", "16MB", "Memory one script's Lua state may use "
                  "(0 = no limit).", parse_size),
    )

    def __init__(self, context: PluginContext, settings: Mapping[str, Any]) -> None:
        super().__init__(context, settings)
        directory = self.settings["lua.hook.script_dir"]
        self.script_dir = Path(directory) if directory else context.data_dir / "scripts"
        self.options = LuaOptions(self.settings["lua.hook.sandbox"],
                                  self.settings["lua.hook.max_instructions"],
                                  self.settings["lua.hook.max_memory"])
        #: Loaded scripts and those that failed to load, by name (file name without .lua).
        self.scripts: dict[str, LuaScript] = {}
        self._attached: dict[str, list[tuple[HookPoint, Callable[..., Any]]]] = {}
        self._lock = asyncio.Lock()

    async def load(self) -> None:
        try:
            import lupa  # noqa: F401
        except ImportError:
            raise PluginUnavailable("emqx_lua_hook needs the lupa package: "
                               "pip install 'starling-mqtt[lua]'") from None
        self.script_dir.mkdir(parents=True, exist_ok=True)
        await self.load_all()

    async def unload(self) -> None:
        for name in list(self.scripts):
            self._detach(name)
        self.scripts.clear()

    # -- scripts ------------------------------------------------------------------------------
    def names_on_disk(self) -> dict[str, str]:
        """Script name → "enabled" (``name.lua``) or "disabled" (``name.lua.x``)."""
        found: dict[str, str] = {}
        if self.script_dir.is_dir():
            for path in self.script_dir.iterdir():
                if path.name.endswith(DISABLED_SUFFIX):
                    found.setdefault(path.name[: -len(DISABLED_SUFFIX)], "disabled")
                elif path.name.endswith(SUFFIX):
                    found[path.name[: -len(SUFFIX)]] = "enabled"
        return found

    async def load_all(self) -> list[dict[str, Any]]:
        """(Re)load every enabled script of the directory, in name order."""
        async with self._lock:
            for name in list(self.scripts):
                self._detach(name)
            self.scripts.clear()
            on_disk = await asyncio.to_thread(self.names_on_disk)
            for name in sorted(n for n, state in on_disk.items() if state == "enabled"):
                await self._load_script(name)
            rows: list[dict[str, Any]] = (await self.status())["scripts"]
            return rows

    async def load_script(self, name: str) -> LuaScript:
        """Load (or reload) one script; the old version stays if the new one fails."""
        async with self._lock:
            return await self._load_script(name)

    async def _load_script(self, name: str) -> LuaScript:
        path = self.script_dir / f"{name}{SUFFIX}"
        script = LuaScript(name, path, self.options)
        try:
            source = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise KeyError(name) from None
        except OSError as exc:
            script.error = f"cannot read {path}: {exc}"
        else:
            try:
                script.load(source)
            except ScriptError as exc:
                script.error = str(exc)
            except Exception as exc:  # lupa's own errors (out of memory at load, ...)
                script.error = f"{type(exc).__name__}: {exc}"
        old = self.scripts.get(name)
        if script.error is not None:
            log.error("lua hook %s not loaded: %s%s", path, script.error,
                      "; the loaded version stays" if old and old.error is None else "")
            if old is None or old.error is not None:
                self.scripts[name] = script
            else:
                old.error = script.error  # shown in the status until a load succeeds
            return script
        if old is not None:
            self._detach(name)
        self.scripts[name] = script
        self._attach(script)
        log.info("lua hook %s loaded: %s", path, ", ".join(sorted(script.functions)) or
                 "no hooks")
        return script

    async def unload_script(self, name: str) -> None:
        async with self._lock:
            if name not in self.scripts:
                raise KeyError(name)
            self._detach(name)
            del self.scripts[name]

    async def set_enabled(self, name: str, enabled: bool) -> None:
        """EMQ X's ``luahook enable|disable``: rename ``name.lua.x`` ↔ ``name.lua``
        and load or unload the script."""
        plain, disabled = (self.script_dir / f"{name}{SUFFIX}",
                           self.script_dir / f"{name}{DISABLED_SUFFIX}")
        source, target = (disabled, plain) if enabled else (plain, disabled)
        if not await asyncio.to_thread(source.exists):
            if await asyncio.to_thread(target.exists):
                pass  # already in that state: still make the running state match
            else:
                raise KeyError(name)
        else:
            await asyncio.to_thread(source.rename, target)
        if enabled:
            await self.load_script(name)
        elif name in self.scripts:
            await self.unload_script(name)

    # -- hooks --------------------------------------------------------------------------------
    def _attach(self, script: LuaScript) -> None:
        hooks = self.context.broker.hooks
        attached = []
        for hook in script.functions:
            callback = self._adapter(script, hook)
            hooks.add_dynamic(HOOKS[hook], callback)
            attached.append((HOOKS[hook], callback))
        self._attached[script.name] = attached

    def _detach(self, name: str) -> None:
        hooks = self.context.broker.hooks
        for point, callback in self._attached.pop(name, []):
            hooks.remove(point, callback)

    def _username(self, client_id: str) -> bytes:
        return _user(self.context.broker.username_of(client_id))

    def _adapter(self, script: LuaScript, hook: str) -> Callable[..., Any]:
        """The broker-side callback that calls `hook` of `script` with EMQ X's arguments."""
        call = script.call
        username = self._username
        if hook == "on_message_publish":
            def on_publish(message: Any) -> Any:
                if not isinstance(message, Message) or message.topic.startswith("$"):
                    return None
                values = call(hook, message.sender.encode(), _user(message.username),
                              message.topic.encode(), message.payload, message.qos,
                              message.retain)
                return None if values is None else publish_result(script, message, values)
            return on_publish
        if hook == "on_message_delivered":
            def on_delivered(client_id: str, message: Message) -> None:
                if not message.topic.startswith("$"):
                    call(hook, client_id.encode(), username(client_id), message.topic.encode(),
                         message.payload, message.qos, message.retain)
            return on_delivered
        if hook == "on_message_acked":
            def on_acked(client: ClientInfo, message: Message) -> None:
                if not message.topic.startswith("$"):
                    call(hook, client.client_id.encode(), _user(client.username),
                         message.topic.encode(), message.payload, message.qos, message.retain)
            return on_acked
        if hook == "on_client_connected":
            def on_connected(client: ClientInfo) -> None:
                call(hook, client.client_id.encode(), _user(client.username), 0)
            return on_connected
        if hook == "on_client_disconnected":
            def on_disconnected(client: ClientInfo, reason: str) -> None:
                call(hook, client.client_id.encode(), _user(client.username), reason.encode())
            return on_disconnected
        if hook == "on_session_subscribed":
            def on_subscribed(client_id: str, topic: str, opts: SubscriptionOptions) -> None:
                if not topic.startswith("$"):
                    call(hook, client_id.encode(), username(client_id), topic.encode())
            return on_subscribed
        if hook == "on_session_unsubscribed":
            def on_unsubscribed(client_id: str, topic: str) -> None:
                if not topic.startswith("$"):
                    call(hook, client_id.encode(), username(client_id), topic.encode())
            return on_unsubscribed
        if hook == "on_client_authenticate":
            def on_authenticate(client: ClientInfo, acc: AuthResult) -> Any:
                values = call(hook, client.client_id.encode(), _user(client.username),
                              client.peerhost.encode(), client.password or b"")
                if values and values[0] == b"ok":
                    return Stop(AuthResult(ReasonCode.SUCCESS, anonymous=False))
                return None  # "ignore" (or anything else): the next authenticator decides
            return on_authenticate
        assert hook == "on_client_check_acl"

        def on_check_acl(client: ClientInfo, action: str, topic: str, acc: Any) -> Any:
            values = call(hook, client.client_id.encode(), _user(client.username),
                          client.peerhost.encode(), client.password or b"",
                          topic.encode(), action.encode())
            if values and values[0] in (b"allow", b"deny"):
                return Stop(values[0].decode())
            return None
        return on_check_acl

    # -- views --------------------------------------------------------------------------------
    async def status(self) -> dict[str, Any]:
        on_disk = await asyncio.to_thread(self.names_on_disk)
        rows = []
        for name in sorted(set(on_disk) | set(self.scripts)):
            script = self.scripts.get(name)
            if script is None:
                state = "disabled" if on_disk.get(name) == "disabled" else "unloaded"
                rows.append(LuaScript(name, self.script_dir / f"{name}{SUFFIX}",
                                      self.options).view(state))
            else:
                loaded = name in self._attached
                rows.append(script.view("loaded" if loaded else "error"))
        return {"script_dir": str(self.script_dir), "sandbox": self.options.sandbox,
                "scripts": rows}
