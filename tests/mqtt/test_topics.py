"""Topic names, topic filters, matching and shared-subscription parsing (MQTT §4.7, §4.8)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from starling.mqtt import (
    has_control_characters,
    is_empty_filter,
    is_valid_topic_filter,
    is_valid_topic_name,
    is_wildcard,
    matches,
    parse_share,
)

VALID_FILTERS = [
    "a", "a/b", "a/+/c", "+", "#", "a/#", "/", "//", "+/+", "/+", "+/", "a//b", "+/#",
    "a/+/#", "$SYS/#", "$SYS/+/x", "sport/tennis/player1/#", "ünï/€/\U0001f426", " ", "a b/c",
    "$share/g/a/b", "$share/g/#", "$share/group-1/+/x", "$share/g/$SYS/#", "$queue/a/b",
    "$queue/#", "a" * 65535,
]

INVALID_FILTERS = [
    ("", "[MQTT-4.7.3-1] empty"),
    ("a/#/b", "[MQTT-4.7.1-2] # not last"),
    ("#/a", "[MQTT-4.7.1-2] # not last"),
    ("a#", "[MQTT-4.7.1-2] # not a whole level"),
    ("a/b#", "[MQTT-4.7.1-2] # not a whole level"),
    ("##", "[MQTT-4.7.1-2] # not a whole level"),
    ("a+/b", "[MQTT-4.7.1-3] + not a whole level"),
    ("a/+b", "[MQTT-4.7.1-3] + not a whole level"),
    ("++", "[MQTT-4.7.1-3] + not a whole level"),
    ("+#", "mixed wildcards in one level"),
    ("$share/g", "[MQTT-4.8.2-2] shared subscription without a filter"),
    ("$share/g/", "[MQTT-4.8.2-2] shared subscription with an empty filter"),
    ("$share//a", "[MQTT-4.8.2-1] empty share name"),
    ("$share/g+/a", "[MQTT-4.8.2-2] + in share name"),
    ("$share/g#/a", "[MQTT-4.8.2-2] # in share name"),
    ("$share/+/a", "[MQTT-4.8.2-2] + as share name"),
    ("$share/g/a/#/b", "[MQTT-4.7.1-2] # not last in the shared filter"),
    ("$queue/", "$queue without a filter"),
    ("a" * 65536, "[MQTT-4.7.3-3] longer than 65535 bytes"),
]


@pytest.mark.parametrize("topic_filter", VALID_FILTERS, ids=lambda f: f[:40])
def test_valid_filters(topic_filter: str) -> None:
    assert is_valid_topic_filter(topic_filter)


@pytest.mark.parametrize(("topic_filter", "why"), INVALID_FILTERS,
                         ids=[w for _, w in INVALID_FILTERS])
def test_invalid_filters(topic_filter: str, why: str) -> None:
    assert not is_valid_topic_filter(topic_filter), why


@pytest.mark.parametrize("topic", [
    "a", "a/b", "/", "//", "/a", "a/", "$SYS/broker/uptime", " ", "a b", "ü/€", "a" * 65535,
])
def test_valid_topic_names(topic: str) -> None:
    assert is_valid_topic_name(topic)


@pytest.mark.parametrize(("topic", "why"), [
    ("", "[MQTT-4.7.3-1] empty"),
    ("+", "[MQTT-4.7.1-1] wildcard in a topic name"),
    ("#", "[MQTT-4.7.1-1] wildcard in a topic name"),
    ("a/+", "[MQTT-4.7.1-1] wildcard in a topic name"),
    ("a/#", "[MQTT-4.7.1-1] wildcard in a topic name"),
    ("a+b", "[MQTT-4.7.1-1] wildcard character inside a level"),
    ("a#b", "[MQTT-4.7.1-1] wildcard character inside a level"),
    ("a" * 65536, "[MQTT-4.7.3-3] longer than 65535 bytes"),
])
def test_invalid_topic_names(topic: str, why: str) -> None:
    assert not is_valid_topic_name(topic), why


@pytest.mark.parametrize("check", [is_valid_topic_name, is_valid_topic_filter])
def test_null_character_is_invalid(check: object) -> None:
    assert callable(check)
    assert not check("a/\x00/b")


@pytest.mark.parametrize("check", [is_valid_topic_name, is_valid_topic_filter])
def test_length_limit_counts_utf8_bytes(check: object) -> None:
    assert callable(check)
    assert not check("é" * 40000)


@pytest.mark.parametrize(("topic_filter", "expected"), [
    ("a/b", False), ("+", True), ("#", True), ("a/+/c", True), ("a/#", True),
    ("$share/g/a", False), ("$share/g/#", True),
])
def test_is_wildcard(topic_filter: str, expected: bool) -> None:
    assert is_wildcard(topic_filter) is expected


MATCHES = [
    # exact
    ("a/b", "a/b", True), ("a/b", "a/c", False), ("a/b", "a", False), ("a", "a/b", False),
    ("a/b", "a/b/", False), ("a/b/", "a/b/", True), ("A", "a", False), ("a//b", "a//b", True),
    ("/", "/", True), ("/a", "a", False),
    # + matches exactly one level, which may be empty [MQTT-4.7.1-3]
    ("a/+", "a/b", True), ("a/+", "a/b/c", False), ("a/+", "a", False), ("a/+", "a/", True),
    ("+/+", "/", True), ("+", "/", False), ("/+", "/a", True), ("+/a", "/a", True),
    ("a/+/b", "a//b", True), ("+", "a", True), ("+/+/+", "a/b/c", True), ("+/+", "a/b/c", False),
    ("sport/+/player1", "sport/tennis/player1", True),
    # # matches the parent level and any number of children [MQTT-4.7.1-2]
    ("#", "a", True), ("#", "a/b/c", True), ("#", "/", True), ("a/#", "a", True),
    ("a/#", "a/", True), ("a/#", "a/b/c", True), ("a/#", "ab", False), ("a/#", "b/a", False),
    ("a/b/#", "a", False), ("+/#", "a", True), ("+/#", "a/b/c", True), ("a/+/#", "a/b", True),
    ("a/+/#", "a", False), ("sport/tennis/player1/#", "sport/tennis/player1", True),
    ("sport/#", "sport", True),
    # $-topics and wildcards in the first level [MQTT-4.7.2-1]
    ("#", "$SYS", False), ("#", "$SYS/uptime", False), ("+", "$SYS", False),
    ("+/uptime", "$SYS/uptime", False), ("+/#", "$SYS/a", False), ("#", "$foo/bar", False),
    ("+/+", "$a/b", False), ("$SYS/#", "$SYS/uptime", True), ("$SYS/#", "$SYS", True),
    ("$SYS/+", "$SYS/uptime", True), ("$SYS", "$SYS", True), ("$SYS/+/+", "$SYS/a/b", True),
    ("#", "a/$SYS", True), ("+/$SYS", "a/$SYS", True), ("a/#", "a/$b", True),
]


@pytest.mark.parametrize(("topic_filter", "topic", "expected"), MATCHES,
                         ids=[f"{f}~{t}" for f, t, _ in MATCHES])
def test_matches(topic_filter: str, topic: str, expected: bool) -> None:
    assert matches(topic_filter, topic) is expected


@pytest.mark.parametrize(("topic_filter", "expected"), [
    ("$share/g/a/b", ("g", "a/b")),
    ("$share/g/#", ("g", "#")),
    ("$share/group-1/+/x", ("group-1", "+/x")),
    ("$share/g/$SYS/#", ("g", "$SYS/#")),
    ("$share/g//", ("g", "/")),
    ("$share/g", ("g", "")),
    ("$share//a", ("", "a")),
    ("$queue/a/b", ("$queue", "a/b")),
    ("$queue/#", ("$queue", "#")),
    ("a/b", (None, "a/b")),
    ("$share", (None, "$share")),
    ("$SYS/share/g/a", (None, "$SYS/share/g/a")),
    ("share/g/a", (None, "share/g/a")),
    ("$Share/g/a", (None, "$Share/g/a")),
])
def test_parse_share(topic_filter: str, expected: tuple[str | None, str]) -> None:
    assert parse_share(topic_filter) == expected


# -- matches() against an independent regex translation ------------------------------

def _regex_for(topic_filter: str) -> re.Pattern[str]:
    parts = topic_filter.split("/")
    out = ""
    for i, part in enumerate(parts):
        sep = "/" if i else ""
        if part == "#":
            out += f"(?:{sep}.*)?" if i else ".*"
        elif part == "+":
            out += sep + "[^/]*"
        else:
            out += sep + re.escape(part)
    if topic_filter[:1] in ("+", "#"):
        out = r"(?!\$)" + out
    return re.compile(out, re.DOTALL)


level_names = st.sampled_from(["a", "b", "", "$SYS", "$x", "ab"])
filter_levels = st.sampled_from(["a", "b", "", "$SYS", "+", "ab"])


@st.composite
def topic_filters(draw: st.DrawFn) -> str:
    levels = draw(st.lists(filter_levels, min_size=1, max_size=4))
    if draw(st.booleans()):
        levels.append("#")
    return "/".join(levels)


@settings(max_examples=500, deadline=None)
@given(topic_filter=topic_filters().filter(bool),
       topic=st.lists(level_names, min_size=1, max_size=5).map("/".join))
def test_matches_agrees_with_regex(topic_filter: str, topic: str) -> None:
    assert is_valid_topic_filter(topic_filter)
    expected = _regex_for(topic_filter).fullmatch(topic) is not None
    assert matches(topic_filter, topic) is expected


def test_regex_reference_is_sane() -> None:
    """The reference used above agrees with the hand-written table."""
    for topic_filter, topic, expected in MATCHES:
        assert (_regex_for(topic_filter).fullmatch(topic) is not None) is expected, \
            (topic_filter, topic)


@pytest.mark.parametrize(("topic_filter", "empty"), [
    ("", True), ("$share/g", True), ("$share/g/", True), ("$share//a", True), ("$share/", True),
    ("$queue/", True), ("a", False), ("/", False), ("$share/g/a", False), ("$share", False),
    ("$queue/a", False), ("$share/g+/a", False), ("a/#/b", False),
])
def test_is_empty_filter(topic_filter: str, empty: bool) -> None:
    """Zero-length filters and shared subscriptions missing their share name or
    filter [MQTT-4.7.3-1, MQTT-4.8.2-1, -2]: not filters at all, unlike `a/#/b`
    (a filter the spec makes invalid)."""
    assert is_empty_filter(topic_filter) is empty


@pytest.mark.parametrize("codepoint", [*range(0x01, 0x20), *range(0x7F, 0xA0)])
def test_control_characters_are_found(codepoint: int) -> None:
    assert has_control_characters(f"a/{chr(codepoint)}/b")


@pytest.mark.parametrize("text", ["a/b", "", " ", "ünï/€/\U0001f426", "\u00a0", "\ufeff",
                                  "\u200b", "\u2028", "\ue000", "\U000e0001", "a\u00adb"])
def test_other_characters_are_not_control_characters(text: str) -> None:
    assert not has_control_characters(text)
