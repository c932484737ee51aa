"""Topic names and topic filters (MQTT §4.7).

Valid filters:   ``a/b``, ``a/+/c``, ``+``, ``#``, ``a/#``, ``/``, ``$SYS/#``
Invalid filters: ``a/#/b`` (# not last), ``a#``, ``a+/b`` (wildcard not a whole
level), ``""`` (empty), ``$share/g`` (no filter), ``$share/g+/a``.
A filter whose first level is a wildcard does not match topics starting with
``$`` [MQTT-4.7.2-1]: ``#`` does not match ``$SYS/uptime``.
"""

from __future__ import annotations

import re

SHARE_PREFIX = "$share/"
QUEUE_PREFIX = "$queue/"  # EMQ X's older shared-subscription form


def _encodable(text: str) -> bool:
    """No U+0000 and at most 65535 UTF-8 bytes [MQTT-4.7.3-2, -3]."""
    if "\x00" in text:
        return False
    try:
        return len(text.encode()) <= 65535
    except UnicodeEncodeError:  # lone surrogates
        return False


#: U+0001-U+001F and U+007F-U+009F: code points a string SHOULD NOT hold, which a
#: receiver MAY treat as malformed (MQTT 5.0 §1.5.4, MQTT 3.1.1 §1.5.3).
_CONTROL = re.compile("[\x01-\x1f\x7f-\x9f]")


def has_control_characters(text: str) -> bool:
    """Does `text` hold a control character?  (`isprintable` answers in C for the
    usual text; only text it flags, which includes a few allowed characters such as
    U+00A0 or U+FEFF, is searched exactly.)"""
    return not text.isprintable() and _CONTROL.search(text) is not None


def is_valid_topic_name(topic: str) -> bool:
    """A PUBLISH topic: at least one character, no wildcards [MQTT-4.7.3-1]."""
    return bool(topic) and "+" not in topic and "#" not in topic and _encodable(topic)


def is_wildcard(topic_filter: str) -> bool:
    return "+" in topic_filter or "#" in topic_filter


def _valid_filter_levels(topic_filter: str) -> bool:
    if not topic_filter:
        return False
    levels = topic_filter.split("/")
    last = len(levels) - 1
    for i, level in enumerate(levels):
        if level == "#":
            if i != last:
                return False  # [MQTT-4.7.1-2]
        elif level != "+" and ("+" in level or "#" in level):
            return False  # [MQTT-4.7.1-3]
    return True


def parse_share(topic_filter: str) -> tuple[str | None, str]:
    """Split ``$share/<group>/<filter>`` (and ``$queue/<filter>``) into (group, filter).

    A plain filter returns (None, filter).  Validity is not checked here.
    """
    if topic_filter.startswith(SHARE_PREFIX):
        group, _, rest = topic_filter[len(SHARE_PREFIX):].partition("/")
        return group, rest
    if topic_filter.startswith(QUEUE_PREFIX):
        return "$queue", topic_filter[len(QUEUE_PREFIX):]
    return None, topic_filter


def is_empty_filter(topic_filter: str) -> bool:
    """A zero-length filter, or a shared subscription with a zero-length share name
    or filter (``$share/g``, ``$share/g/``, ``$share//a``, ``$queue/``): not a
    filter at all [MQTT-4.7.3-1, MQTT-4.8.2-1, -2], a protocol violation."""
    if not topic_filter:
        return True
    group, real = parse_share(topic_filter)
    return group is not None and (not group or not real)


def is_valid_topic_filter(topic_filter: str) -> bool:
    if not _encodable(topic_filter):
        return False
    group, real = parse_share(topic_filter)
    if group is not None and (not group or "+" in group or "#" in group):
        return False  # [MQTT-4.8.2-1, -2]
    return _valid_filter_levels(real)


def matches(topic_filter: str, topic: str) -> bool:
    """Does a single (non-shared) filter match a topic name?"""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    f_levels = topic_filter.split("/")
    t_levels = topic.split("/")
    for i, f in enumerate(f_levels):
        if f == "#":
            return True
        if i >= len(t_levels):
            return False
        if f != "+" and f != t_levels[i]:
            return False
    return len(f_levels) == len(t_levels)


def topic_levels_ok(topic: str, limit: int) -> bool:
    """At most `limit` levels (EMQ X's `max_topic_levels`; 0 means no limit)."""
    return not limit or topic.count("/") < limit
