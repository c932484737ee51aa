"""Queries about one node's plugins: the list, load/unload/reload, and the
per-plugin config (`plugin_configs`).

A refusal of the registry (`PluginError`) becomes a `QueryError` with the same
reason word (``not_found``, ``already_started``, ``load_failed``, ...).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starling.plugins import PluginError, PluginRegistry

from . import fields
from .local import LocalNode
from .query import JSON, NoParams, Params, QueryError, query

VERBS = ("load", "unload", "reload")


@dataclass(frozen=True, slots=True)
class PluginName(Params):
    plugin: str


@dataclass(frozen=True, slots=True)
class PluginAction(Params):
    plugin: str
    verb: str  #: load, unload or reload


@dataclass(frozen=True, slots=True)
class PluginConfig(Params):
    plugin: str
    values: dict[str, Any]


async def _guarded(run: Callable[[PluginRegistry], Awaitable[JSON]], node: LocalNode) -> JSON:
    try:
        return await run(node.plugin_registry())
    except PluginError as exc:
        raise QueryError(exc.reason, exc.detail) from None


@query("plugins.list", NoParams)
async def plugins(node: LocalNode, _: NoParams) -> JSON:
    return [fields.plugin(entry) for entry in node.plugin_registry()]


@query("plugins.action", PluginAction)
async def plugin_action(node: LocalNode, p: PluginAction) -> JSON:
    if p.verb not in VERBS:
        raise QueryError("bad_params", f"verb must be one of {', '.join(VERBS)}")

    async def run(registry: PluginRegistry) -> JSON:
        await getattr(registry, p.verb)(p.plugin)
        return "ok"
    return await _guarded(run, node)


@query("plugins.configs", PluginName)
async def plugin_configs(node: LocalNode, p: PluginName) -> JSON:
    async def run(registry: PluginRegistry) -> JSON:
        return registry.config_items(p.plugin)
    return await _guarded(run, node)


@query("plugins.configure", PluginConfig)
async def configure_plugin(node: LocalNode, p: PluginConfig) -> JSON:
    async def run(registry: PluginRegistry) -> JSON:
        await registry.configure(p.plugin, p.values)
        return "ok"
    return await _guarded(run, node)
