"""emqx_plugin_template: the worked example of a Starling plugin (docs/plugins.md).

Like EMQ X's template it only watches: while loaded, it logs every client
connect and disconnect, and every publish whose topic starts with
``plugin_template.topic_prefix``, at the level ``plugin_template.log_level``.
Read it as the smallest complete plugin: a config schema, hooks attached in
`load()`, every one of them removed again in `unload()`.
"""

from __future__ import annotations

import logging
from typing import Any

from starling.broker import ClientInfo, HookPoint, Message

from . import ConfigKey, Plugin

log = logging.getLogger("starling.plugins.template")

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}


def parse_level(value: str) -> int:
    try:
        return LEVELS[value.strip().lower()]
    except KeyError:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}") from None


class TemplatePlugin(Plugin):
    SCHEMA = (
        ConfigKey("plugin_template.log_level", "info", "Level of the plugin's log lines.",
                  parse_level),
        ConfigKey("plugin_template.topic_prefix", "", "Log publishes to topics starting "
                  "with this prefix (empty: every topic).", required=False),
    )

    async def load(self) -> None:
        hooks = self.context.broker.hooks
        hooks.add(HookPoint.CLIENT_CONNECTED, self.on_connected)
        hooks.add(HookPoint.CLIENT_DISCONNECTED, self.on_disconnected)
        hooks.add(HookPoint.MESSAGE_PUBLISH, self.on_publish)

    async def unload(self) -> None:
        hooks = self.context.broker.hooks
        hooks.remove(HookPoint.CLIENT_CONNECTED, self.on_connected)
        hooks.remove(HookPoint.CLIENT_DISCONNECTED, self.on_disconnected)
        hooks.remove(HookPoint.MESSAGE_PUBLISH, self.on_publish)

    @property
    def level(self) -> int:
        level: int = self.settings["plugin_template.log_level"]
        return level

    def on_connected(self, client: ClientInfo) -> None:
        log.log(self.level, "template: client %s connected", client.client_id)

    def on_disconnected(self, client: ClientInfo, reason: str) -> None:
        log.log(self.level, "template: client %s disconnected (%s)", client.client_id, reason)

    def on_publish(self, message: Message) -> Any:
        """A `run_fold` callback: returning None leaves the message unchanged."""
        if not message.sys and message.topic.startswith(
                self.settings["plugin_template.topic_prefix"]):
            log.log(self.level, "template: publish to %s (%d bytes)", message.topic,
                    len(message.payload))
        return None
