"""emqx_retainer: retained messages, as a plugin that is loaded by default.

The core keeps the mechanism (a topic trie of retained messages, written to
the node's store, sent to new subscriptions); this plugin switches it on with
the limits of EMQ X v3.2's ``etc/plugins/emqx_retainer.conf`` and off again
when unloaded, so the publish path pays nothing for a hook (docs/feature-plugins.md,
"Retainer").
"""

from __future__ import annotations

from starling.broker import RetainerSettings
from starling.config import parse_size

from . import (
    ConfigKey,
    Plugin,
    parse_choice,
    parse_nonnegative_duration,
    parse_nonnegative_int,
)

#: EMQ X's storage types: ram keeps them in memory only; disc and disc_only also in
#: the node's store (Starling always serves them from memory).
STORAGE_TYPES = ("ram", "disc", "disc_only")


class RetainerPlugin(Plugin):
    SCHEMA = (
        ConfigKey("retainer.storage_type", "disc",
                  "Where retained messages are kept: ram (memory only, lost at restart), "
                  "disc or disc_only (also in the node's store). EMQ X's default is ram; "
                  "Starling's is disc.", parse_choice(*STORAGE_TYPES)),
        ConfigKey("retainer.max_retained_messages", "0",
                  "Most retained messages held; when reached, new topics are refused and "
                  "held ones can still be replaced. 0 = no limit.",
                  parse_nonnegative_int),
        ConfigKey("retainer.max_payload_size", "1MB",
                  "Largest payload stored as a retained message (larger ones are routed "
                  "but not stored). 0 = no limit.", parse_size),
        ConfigKey("retainer.expiry_interval", "0",
                  "How long a retained message without its own Message Expiry Interval "
                  "is kept, from its publication (e.g. 2h, 30m). 0 = forever.",
                  parse_nonnegative_duration),
    )

    def retainer_settings(self) -> RetainerSettings:
        s = self.settings
        return RetainerSettings(
            max_messages=s["retainer.max_retained_messages"],
            max_payload_size=s["retainer.max_payload_size"],
            expiry_interval=s["retainer.expiry_interval"],
            persist=s["retainer.storage_type"] != "ram")

    async def load(self) -> None:
        self.context.broker.set_retainer(self.retainer_settings())

    async def unload(self) -> None:
        self.context.broker.set_retainer(None)
