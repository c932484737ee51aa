"""/nodes/:node/lua_hook: emqx_lua_hook's scripts (docs/feature-plugins.md,
"Lua hooks"); EMQ X's ``emqx_ctl luahook`` commands as API calls.

===============================================  =====================================
call                                             answer
===============================================  =====================================
GET /nodes/:node/lua_hook                        ``{script_dir, sandbox, scripts:
                                                 [{script, status, hooks, error,
                                                 calls, errors, dropped, rewritten,
                                                 ...}]}``
PUT /nodes/:node/lua_hook/reload                 re-read the directory: every enabled
                                                 script loaded again; the scripts
PUT /nodes/:node/lua_hook/scripts/:script/load   load or reload one script (``test`` or
PUT .../scripts/:script/reload                   ``test.lua``); one that fails → 400 code
                                                 102 with the Lua error (a loaded
                                                 version stays)
PUT .../scripts/:script/unload                   its hooks removed
PUT .../scripts/:script/enable|disable           rename ``.lua.x`` ↔ ``.lua`` and load /
                                                 unload it (EMQ X's enable/disable)
unknown script                                   404 ``script <name> not found``
any, plugin not loaded                           404 ``Not Found: plugin emqx_lua_hook
                                                 is not loaded``
===============================================  =====================================
"""

from __future__ import annotations

from typing import Any

from starling.api import (
    ApiError,
    ApiRequest,
    Code,
    RouteTable,
    bad_type,
    loaded_instance,
    not_found,
)

from .plugin import LuaHookPlugin

PLUGIN = "emqx_lua_hook"


def _lua(req: ApiRequest) -> LuaHookPlugin:
    return loaded_instance(req, PLUGIN, LuaHookPlugin)


def script_name(raw: str) -> str:
    """``test`` or ``test.lua`` → ``test``; never a path."""
    name = raw[:-4] if raw.endswith(".lua") else raw
    if not name or "/" in name or "\\" in name or name.startswith(".") or "\0" in name:
        raise bad_type(f"bad script name {raw!r}: a file name in the script directory")
    return name


def register(table: RouteTable) -> None:
    @table.route("lua_hook_scripts", "GET", "/nodes/:node/lua_hook",
                 "Lua hook scripts: loaded hooks, errors and counters", plugin=PLUGIN)
    async def scripts(req: ApiRequest) -> Any:
        return await _lua(req).status()

    @table.route("lua_hook_reload_all", "PUT", "/nodes/:node/lua_hook/reload",
                 "Load every enabled script of the directory again", plugin=PLUGIN)
    async def reload_all(req: ApiRequest) -> Any:
        return await _lua(req).load_all()

    def action(verb: str, descr: str) -> None:
        async def handler(req: ApiRequest) -> Any:
            lua = _lua(req)
            name = script_name(req.params["script"])
            try:
                if verb in ("load", "reload"):
                    script = await lua.load_script(name)
                    if script.error is not None:
                        raise ApiError(Code.UNKNOWN_ERROR,
                                       f"{verb} {name} failed: {script.error}", 400)
                elif verb == "unload":
                    await lua.unload_script(name)
                else:
                    await lua.set_enabled(name, verb == "enable")
                    loaded = lua.scripts.get(name)
                    if verb == "enable" and loaded is not None and loaded.error is not None:
                        raise ApiError(Code.UNKNOWN_ERROR,
                                       f"enabled {name}, but it failed to load: "
                                       f"{loaded.error}", 400)
            except KeyError:
                raise not_found(f"script {name} not found") from None
            return None

        table.route(f"lua_hook_{verb}", "PUT", f"/nodes/:node/lua_hook/scripts/:script/{verb}",
                    descr, plugin=PLUGIN)(handler)

    action("load", "Load a Lua script into the hooks")
    action("reload", "Load a Lua script again (after it changed)")
    action("unload", "Remove a Lua script's hooks")
    action("enable", "Enable a script (rename .lua.x to .lua) and load it")
    action("disable", "Unload a script and disable it (rename .lua to .lua.x)")
