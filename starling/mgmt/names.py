"""How stat and metric names are spelled: EMQ X 3.1's (the seed's) or 3.2's.

The broker counts under the seed's names (``packets/connect``,
``connections/count``).  Tools written for EMQ X v3.2 (its dashboard among them)
read v3.2's dotted names, which are not just the same words with dots: v3.2 also
says which way a packet went (``packets/connect`` became
``packets.connect.received``, ``packets/connack`` ``packets.connack.sent``;
facts §5.9).  `management.metric_names = dot` serves those; the default
``slash`` keeps the seed's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, TypeVar

NameStyle = Literal["slash", "dot"]
NAME_STYLES: tuple[NameStyle, ...] = ("slash", "dot")

#: The seed's metrics whose v3.2 name adds the direction (facts §5.9).
V32_RENAMES: dict[str, str] = {
    "packets/connect": "packets.connect.received",
    "packets/connack": "packets.connack.sent",
    "packets/subscribe": "packets.subscribe.received",
    "packets/suback": "packets.suback.sent",
    "packets/unsubscribe": "packets.unsubscribe.received",
    "packets/unsuback": "packets.unsuback.sent",
    "packets/pingreq": "packets.pingreq.received",
    "packets/pingresp": "packets.pingresp.sent",
    "packets/auth": "packets.auth.received",
}

V = TypeVar("V")


def name_style(value: object) -> NameStyle:
    """A configured style, or ValueError naming the choices."""
    for style in NAME_STYLES:
        if value == style:
            return style
    raise ValueError(f"must be one of {', '.join(NAME_STYLES)}, not {value!r}")


def metric_name(name: str, style: NameStyle) -> str:
    if style == "slash":
        return name
    return V32_RENAMES.get(name) or name.replace("/", ".")


def stat_name(name: str, style: NameStyle) -> str:
    """``connections/count`` → ``connections.count``; ``subscriptions/shared/max`` →
    ``subscriptions.shared.max``."""
    return name if style == "slash" else name.replace("/", ".")


def metrics_named(values: Mapping[str, V], style: NameStyle) -> dict[str, V]:
    return {metric_name(k, style): v for k, v in values.items()}


def stats_named(values: Mapping[str, V], style: NameStyle) -> dict[str, V]:
    return {stat_name(k, style): v for k, v in values.items()}
