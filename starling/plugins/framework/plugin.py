"""The plugin framework's base: what a plugin is (`Plugin`, made from a
`PluginContext` and its settings), its config keys (`ConfigKey`) and its
catalogue facts (`PluginInfo`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from starling.broker import Broker

from .storage import PluginStore

#: The `type` values of EMQ X v3.2 (`-emqx_plugin(Type)`; anything else is "feature").
PLUGIN_TYPES = ("auth", "protocol", "backend", "bridge", "feature")

@dataclass(frozen=True, slots=True)
class PluginListener:
    """A listener a plugin runs (a gateway's), as GET /listeners shows it beside the
    node's own: an operator sees every port the node serves in one place."""

    protocol: str  #: "stomp:tcp", "mqtt-sn:udp", "coap:dtls", ...
    name: str  #: "stomp:tcp:default"
    host: str
    port: int
    max_conns: int
    current_conns: int
    shutdown_count: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PluginContext:
    """What a plugin gets to work with: the broker facade (hooks bus included)
    and where the node keeps its data.  `services` is shared by all plugins;
    `store` holds the plugins' tables (written through to the node's store);
    `listeners` maps a running listener's name to what describes it now (a plugin
    adds its own while loaded and removes them when unloaded)."""

    broker: Broker
    node_name: str
    data_dir: Path
    services: dict[str, Any] = field(default_factory=dict)
    store: PluginStore = field(default_factory=PluginStore)
    listeners: dict[str, Callable[[], PluginListener]] = field(default_factory=dict)


def parse_str(value: str) -> str:
    return value


@dataclass(frozen=True, slots=True)
class ConfigKey:
    """One key of a plugin's config, as EMQ X names it in ``etc/plugins/<name>.conf``.

    Values travel as strings (as in EMQ X's conf files and `plugin_configs`);
    `parse` turns one into what the plugin uses and raises `ValueError` on a bad one.

    A segment starting with ``$`` makes the key a pattern for a family of keys, as
    EMQ X's ``auth.client.$id.clientid``: any one segment stands there
    (``auth.client.1.clientid``, ``auth.client.lab.clientid``).  Such keys are
    optional, have no default, appear in the settings and in `plugin_configs` only
    once set, and are removed again by setting them to ``""``.
    """

    key: str
    default: str
    desc: str
    parse: Callable[[str], Any] = parse_str
    required: bool = True

    @property
    def pattern(self) -> bool:
        return "$" in self.key

    def matches(self, key: str) -> bool:
        """Whether `key` is this key, or one of the family a pattern key stands for."""
        if not self.pattern:
            return key == self.key
        want, got = self.key.split("."), key.split(".")
        return len(want) == len(got) and all(
            (w.startswith("$") and g != "") or w == g for w, g in zip(want, got, strict=True))


class Plugin:
    """Base class of a plugin implementation.

    `load()` attaches the plugin (hooks, timers, tasks); `unload()` must remove
    every trace of it.  Both may await.  `settings` holds the parsed values of the
    plugin's config keys; a config change reaches a loaded plugin as a reload
    (unload, then a new instance loaded with the new settings), as in EMQ X.
    """

    #: False for a plugin that must not be unloaded through the API.
    unloadable: ClassVar[bool] = True

    def __init__(self, context: PluginContext, settings: Mapping[str, Any]) -> None:
        self.context = context
        self.settings = dict(settings)

    async def load(self) -> None:
        return None

    async def unload(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class PluginInfo:
    name: str
    description: str
    type: str = "feature"
