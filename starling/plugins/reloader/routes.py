"""/nodes/:node/reloader: emqx_reloader's status and manual trigger
(docs/feature-plugins.md, "Reloader").

=====================================  =============================================
call                                   answer
=====================================  =============================================
GET /nodes/:node/reloader              ``{plugin_dir, interval, last_scan, modules:
                                       [{module, file, status, plugins, loaded_at,
                                       reloads, error, error_at}]}``
PUT /nodes/:node/reloader/reload       check the directory now: ``[{module, result,
                                       plugins, error?}]`` for each new or changed
                                       module (result ``loaded``, ``reloaded`` or
                                       ``failed``)
PUT /nodes/:node/reloader/reload       body or query ``module``: import that module
                                       again even if unchanged; failure → 400 code
                                       102 with the error (the old code kept);
                                       no such file → 404
any, plugin not loaded                 404 ``Not Found: plugin emqx_reloader is not
                                       loaded``
=====================================  =============================================
"""

from __future__ import annotations

from typing import Any

from starling.api import ApiError, ApiRequest, Code, RouteTable, loaded_instance, not_found

from .plugin import ReloaderPlugin

PLUGIN = "emqx_reloader"


def register(table: RouteTable) -> None:
    @table.route("reloader_status", "GET", "/nodes/:node/reloader",
                 "Plugin modules watched by the reloader, and the last error of each",
                 plugin=PLUGIN)
    async def status(req: ApiRequest) -> Any:
        return loaded_instance(req, PLUGIN, ReloaderPlugin).status()

    @table.route("reloader_reload", "PUT", "/nodes/:node/reloader/reload",
                 "Reload changed plugin modules now (or one module, changed or not)",
                 plugin=PLUGIN,
                 body={"module": ("string", False, "a module (file name without .py)")})
    async def reload(req: ApiRequest) -> Any:
        reloader = loaded_instance(req, PLUGIN, ReloaderPlugin)
        module = req.str_arg("module")
        try:
            results = await reloader.scan(force=module or None)
        except KeyError:
            raise not_found(f"no module {module} in {reloader.plugin_dir}") from None
        failed = [r for r in results if r["result"] == "failed" and r["module"] == module]
        if failed:
            raise ApiError(Code.UNKNOWN_ERROR,
                           f"reload of {module} failed, the old code is kept: "
                           f"{failed[0]['error']}", 400)
        return results
