"""/plugins: the plugin registry (list, load, unload, reload) and per-plugin
config (`plugin_configs`).

Errors keep the seed's body, ``{"code": 102, "message": "<reason>"}`` with
EMQ X's reason words, but with an HTTP status that says what happened
(EMQ X answers 200; docs/ctl.md, "Plugins"):

=====================  ======  ==========================================
message                status  when
=====================  ======  ==========================================
``not_found``          404     no plugin of that name
``already_started``    409     load of a loaded plugin
``not_started``        409     unload of a plugin that is not loaded
``in_use``             409     unload of emqx_management (it serves the API)
``not_implemented``    400     load/reload of a plugin whose implementation
                               has not landed in Starling yet
``load_failed: <why>`` 400     the plugin raised while loading (its
                               exception type and message)
(a sentence)           400     plugin_configs: unknown key (code 102) or bad
                               value (code 108)
=====================  ======  ==========================================

A successful load answers ``{"code": 0}`` as the seed shows (EMQ X 3.2 adds
the started apps as `data`).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

from starling.mgmt import QueryError
from starling.plugins import Plugin, PluginError, PluginRegistry

from ..errors import ApiError, Code, bad_type, not_found
from ..request import ApiRequest
from ..routing import RouteTable

STATUS = {
    "not_found": 404,
    "already_started": 409,
    "not_started": 409,
    "in_use": 409,
    "not_implemented": 400,
    "load_failed": 400,
    "unknown_key": 400,
    "bad_value": 400,
}
#: Reasons answered with a code other than 102 (unknown error, as the seed shows).
CODES = {"bad_value": Code.PARAMETER_TYPE_ERROR}


def registry(req: ApiRequest) -> PluginRegistry:
    plugins = req.ctx.services.get("plugins")
    if not isinstance(plugins, PluginRegistry):
        raise ApiError(Code.UNKNOWN_ERROR, "the plugin registry is not available", 404)
    return plugins


P = TypeVar("P", bound=Plugin)
T = TypeVar("T")


def loaded_instance(req: ApiRequest, name: str, cls: type[P]) -> P:
    """The running instance of plugin `name` (routes declared with ``plugin=name``
    are only reached while it is loaded; this also covers an unload racing the call)."""
    instance = registry(req).get(name).instance
    if not isinstance(instance, cls):
        raise not_found(f"Not Found: plugin {name} is not loaded")
    return instance


def api_error(exc: PluginError | QueryError) -> ApiError:
    message = exc.detail if exc.reason in ("unknown_key", "bad_value") else exc.reason
    if exc.reason == "load_failed" and exc.detail:
        message = f"load_failed: {exc.detail}"  # why, e.g. a missing optional package
    return ApiError(CODES.get(exc.reason, Code.UNKNOWN_ERROR), message,
                    STATUS.get(exc.reason, 400))


def register(table: RouteTable) -> None:
    @table.route("list_all_plugins", "GET", "/plugins/", "List all plugins in the cluster")
    async def list_all(req: ApiRequest) -> Any:
        return await _guarded(req.ctx.mgmt.cluster_plugins())

    @table.route("list_node_plugins", "GET", "/nodes/:node/plugins/",
                 "List all plugins on a node", node_routed=True)
    async def list_node(req: ApiRequest) -> Any:
        return await _guarded(req.ctx.mgmt.plugins(req.params["node"]))

    def action(name: str, verb: str, descr: str) -> None:
        async def handler(req: ApiRequest) -> Any:
            await _guarded(req.ctx.mgmt.plugin_action(req.params["node"], req.params["plugin"],
                                                      verb))
            return None

        table.route(name, "PUT", f"/nodes/:node/plugins/:plugin/{verb}", descr,
                    node_routed=True)(handler)

    action("load_plugin", "load", "Load a plugin")
    action("unload_plugin", "unload", "Unload a plugin")
    action("reload_plugin", "reload", "Reload a plugin")

    @table.route("get_plugin_configs", "GET", "/nodes/:node/plugin_configs/:plugin",
                 "Get configurations of a plugin on the node", node_routed=True)
    async def get_configs(req: ApiRequest) -> Any:
        return await _guarded(req.ctx.mgmt.plugin_configs(req.params["node"],
                                                          req.params["plugin"]))

    @table.route("update_plugin_configs", "PUT", "/nodes/:node/plugin_configs/:plugin",
                 "Update configurations of a plugin on the node", node_routed=True)
    async def update_configs(req: ApiRequest) -> Any:
        body = req.body if req.body is not None else {}
        if not isinstance(body, dict):
            raise bad_type("the body must be a JSON object of config key -> value")
        await _guarded(req.ctx.mgmt.configure_plugin(req.params["node"], req.params["plugin"],
                                                     body))
        return None


async def _guarded(call: Awaitable[T]) -> T:
    """The facade's refusal as the seed's plugin error."""
    try:
        return await call
    except QueryError as exc:
        if exc.reason == "no_registry":
            raise ApiError(Code.UNKNOWN_ERROR, exc.detail, 404) from None
        raise api_error(exc) from None
