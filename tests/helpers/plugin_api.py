"""The management API calls the plugin suites make: load / unload a plugin, change its
config, read whether it is active, and the node's stats and metrics."""

from __future__ import annotations

from typing import Any

import httpx

from .api import ok


def plugin_call(api: httpx.Client, node: Any, plugin: str, verb: str) -> None:
    """`PUT /nodes/<node>/plugins/<plugin>/<verb>` (load, unload, reload), which must work."""
    ok(api.put(f"/nodes/{node.name}/plugins/{plugin}/{verb}"))


def configure(api: httpx.Client, node: Any, plugin: str, values: dict[str, str]) -> None:
    """`PUT /nodes/<node>/plugin_configs/<plugin>`: a loaded plugin reloads with them."""
    ok(api.put(f"/nodes/{node.name}/plugin_configs/{plugin}", json=values))


def plugin_config(api: httpx.Client, node: Any, plugin: str) -> dict[str, str]:
    return {item["key"]: item["value"]
            for item in ok(api.get(f"/nodes/{node.name}/plugin_configs/{plugin}"))}


def active(api: httpx.Client, node: Any, plugin: str) -> bool:
    plugins = ok(api.get(f"/nodes/{node.name}/plugins/"))
    return bool({p["name"]: p["active"] for p in plugins}[plugin])


def stats(api: httpx.Client, node: Any) -> dict[str, int]:
    return ok(api.get(f"/nodes/{node.name}/stats/"))  # type: ignore[no-any-return]


def metrics(api: httpx.Client, node: Any) -> dict[str, int]:
    return ok(api.get(f"/nodes/{node.name}/metrics/"))  # type: ignore[no-any-return]
