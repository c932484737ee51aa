"""emqx_rule_engine as a plugin: active by default (it is in the seed's plugin
list and in `plugins.loaded`), and switchable at runtime like any other.

Unloading removes every hook and timer and stops the resources; the rules and
resources stay in the store and come back with the next load.
"""

from __future__ import annotations

from starling.config import parse_bool, parse_duration
from starling.plugins import ConfigKey, Plugin, parse_positive_int

from .engine import RESOURCES_TABLE, RULES_TABLE, RuleEngine

PLUGIN = "emqx_rule_engine"


def _interval(value: str) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"expected a positive duration, got {value!r}")
    return seconds


class RuleEnginePlugin(Plugin):
    SCHEMA = (
        ConfigKey("rule_engine.ignore_sys_message", "on",
                  "Do not run message.publish / message.dropped rules on $SYS messages.",
                  parse_bool),
        ConfigKey("rule_engine.max_pending", "100000",
                  "Events waiting for the rules at most; beyond it events are dropped "
                  "and counted.", parse_positive_int),
        ConfigKey("rule_engine.resource_check_interval", "10s",
                  "How often resources (web hook endpoints) are probed.", _interval),
    )

    engine: RuleEngine | None = None

    async def load(self) -> None:
        store = self.context.store
        engine = RuleEngine(
            self.context.broker, self.context.node_name, store.table(RULES_TABLE),
            store.table(RESOURCES_TABLE),
            ignore_sys_message=self.settings["rule_engine.ignore_sys_message"],
            max_pending=self.settings["rule_engine.max_pending"],
            check_interval=self.settings["rule_engine.resource_check_interval"])
        await engine.start()
        self.engine = engine

    async def unload(self) -> None:
        engine, self.engine = self.engine, None
        if engine is not None:
            await engine.stop()
