"""The ACL file's parser and matcher (EMQ X v3's acl.conf), the ACL cache, the
explanation of a decision, and `Broker.check_acl`: tables, no node."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from starling.broker import (
    DEFAULT_ACL_CONF,
    AclCache,
    AclSubject,
    AclSyntaxError,
    Broker,
    BrokerOptions,
    ClientInfo,
    HookPoint,
    Hooks,
    InternalAcl,
    Stop,
    explain_acl,
    match_rules,
    parse_acl,
    topic_matches,
)

# -- parsing -----------------------------------------------------------------------------------


def explain(*args: Any, **kwargs: Any) -> Any:
    """`explain_acl` run to completion (it awaits ACL sources that do I/O)."""
    return asyncio.run(explain_acl(*args, **kwargs))

def test_default_file_parses_to_emqx_rules() -> None:
    rules = parse_acl(DEFAULT_ACL_CONF)
    assert [str(r) for r in rules] == [
        '{allow, {user, "dashboard"}, subscribe, ["$SYS/#"]}.',
        '{allow, {ipaddr, "127.0.0.1"}, pubsub, ["$SYS/#", "#"]}.',
        '{deny, all, subscribe, ["$SYS/#", {eq, "#"}]}.',
        "{allow, all}.",
    ]
    lines = DEFAULT_ACL_CONF.splitlines()
    for rule in rules:  # each rule knows the line it is written on
        assert lines[rule.line - 1].startswith(str(rule)[:6])


@pytest.mark.parametrize(("text", "rendered"), [
    ('{allow, all}.', "{allow, all}."),
    ('{deny, all}.', "{deny, all}."),
    ('{allow, {client, "c1"}, publish, ["a/b"]}.', '{allow, {client, "c1"}, publish, ["a/b"]}.'),
    ('{allow, {user, all}, publish, ["a"]}.', '{allow, {user, all}, publish, ["a"]}.'),
    ('{allow, {client, all}, publish, ["a"]}.', '{allow, {client, all}, publish, ["a"]}.'),
    ('{allow, {ipaddr, "10.0.0.0/8"}, pubsub, ["#"]}.',
     '{allow, {ipaddr, "10.0.0.0/8"}, pubsub, ["#"]}.'),
    ("{allow, {'and', [{user, \"u\"}, {ipaddr, \"::1\"}]}, subscribe, [\"x\"]}.",
     "{allow, {'and', [{user, \"u\"}, {ipaddr, \"::1\"}]}, subscribe, [\"x\"]}."),
    ("{deny, {'or', [{client, \"a\"}, {client, \"b\"}]}, publish, [\"x\"]}.",
     "{deny, {'or', [{client, \"a\"}, {client, \"b\"}]}, publish, [\"x\"]}."),
    # binaries, a single topic not in a list, string concatenation, escapes, odd spacing
    ('{allow, {user, <<"u">>}, publish, <<"t/1">>}.', '{allow, {user, "u"}, publish, ["t/1"]}.'),
    ('{allow,{user,"a" "b"},publish,[ "x" ,{eq,"y/#"} ]}  .',
     '{allow, {user, "ab"}, publish, ["x", {eq, "y/#"}]}.'),
    ('{allow, {user, "q\\"uote"}, publish, ["tab\\there"]}.',
     '{allow, {user, "q\\"uote"}, publish, ["tab\there"]}.'),
    ('{allow, all, publish, []}.', "{allow, all, publish, []}."),
])
def test_rule_forms(text: str, rendered: str) -> None:
    (rule,) = parse_acl(text)
    assert str(rule) == rendered


def test_comments_blank_lines_and_line_numbers() -> None:
    text = ('%% header\n'
            '\n'
            '{allow, all, publish, ["a"]}. % trailing comment\n'
            '{deny,\n'
            '   {user, "x"},   %% inside a rule\n'
            '   subscribe, ["b"]}.\n'
            '{allow, all}.')
    rules = parse_acl(text)
    assert [r.line for r in rules] == [3, 4, 7]
    assert str(rules[1]) == '{deny, {user, "x"}, subscribe, ["b"]}.'
    assert parse_acl("") == ()
    assert parse_acl("%% nothing but a comment\n") == ()
    assert len(parse_acl("\ufeff{allow, all}.")) == 1  # a byte order mark is ignored


@pytest.mark.parametrize(("text", "line", "column", "words"), [
    ('{allow, all}', 1, 13, "expected '.'"),
    ('{allow, all}.\n{deny, all', 2, 1, "never closed"),
    ('{allow, all}.\n\n{allow, {user, "a"}, publish, ["x"]\n', 3, 1, "never closed"),
    ('{allow, all}.{deny, all}.', 1, 13, "followed by a space"),
    ('{permit, all}.', 1, 2, "allow or deny"),
    ('{allow, everyone}.', 1, 9, "{allow, all}"),
    ('{allow, {user, "u"}, read, ["a"]}.', 1, 22, "publish, subscribe or pubsub"),
    ('{allow, {user, u}, publish, ["a"]}.', 1, 16, "string"),
    ('{allow, {group, "g"}, publish, ["a"]}.', 1, 9, "Who is"),
    ('{allow, {ipaddr, "10.0.0.300"}, publish, ["a"]}.', 1, 18, "bad IP address"),
    ('{allow, {ipaddr, "10.0.0.0/33"}, publish, ["a"]}.', 1, 18, "bad IP address"),
    ('{allow, {and, [all]}, publish, ["a"]}.', 1, 10, "quoted, 'and'"),
    ("{allow, {'and', []}, publish, [\"a\"]}.", 1, 17, "non-empty list"),
    ('{allow, all, publish, [topic]}.', 1, 24, "a topic is"),
    ('{allow, all, publish, [{eq, 1}]}.', 1, 29, "{eq, ...} takes a string"),
    ('{allow, all, publish, x}.', 1, 23, "topics are a list"),
    ('{allow, all, publish, ["a"], extra}.', 1, 1, "a rule is"),
    ('[allow, all].', 1, 1, "a rule is"),
    ('{allow, User}.', 1, 9, "Erlang variable"),
    ('{allow, all, publish, ["a]}.\n', 1, 24, "string not terminated"),
    ('{allow; all}.', 1, 7, "unexpected character ';'"),
    ('{allow, all,, publish}.', 1, 13, "expected a term"),
])
def test_syntax_errors_name_line_and_column(text: str, line: int, column: int,
                                            words: str) -> None:
    with pytest.raises(AclSyntaxError) as info:
        parse_acl(text, "etc/acl.conf")
    err = info.value
    assert (err.line, err.column) == (line, column), str(err)
    assert words in err.message
    assert str(err).startswith(f"etc/acl.conf:{line}:{column}: ")


# -- matching ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("topic", "rule_filter", "expected"), [
    ("a/b", "a/b", True),
    ("a/b", "a/+", True),
    ("a/b", "a/#", True),
    ("a", "a/#", True),
    ("a/b/c", "a/+", False),
    ("b/a", "a/#", False),
    ("a/b", "#", True),
    ("$SYS/x", "#", False),  # $-topics: not by a first-level wildcard
    ("$SYS/x", "+/x", False),
    ("$SYS/x", "$SYS/#", True),
    ("a/$x", "a/#", True),  # deeper levels are ordinary (as Starling routes)
    # a client's filter: its wildcards are compared as words (emqx_topic:match/2)
    ("a/+", "a/#", True),
    ("a/+", "a/+", True),
    ("a/#", "a/#", True),
    ("a/#", "a/+", True),
    ("#", "#", True),
    ("#", "a/#", False),
    ("+/b", "a/b", False),
    ("", "#", True),
])
def test_topic_matches(topic: str, rule_filter: str, expected: bool) -> None:
    assert topic_matches(topic, rule_filter) is expected


RULES = parse_acl("""
{allow, {user, "admin"}, pubsub, ["#"]}.
{deny, {client, "blocked"}, publish, ["#"]}.
{allow, {user, "alice"}, subscribe, ["alice/#"]}.
{allow, all, pubsub, ["users/%u/#", "clients/%c/+"]}.
{deny, all, subscribe, ["$SYS/#", {eq, "#"}]}.
{allow, {ipaddr, "10.1.0.0/16"}, publish, ["ip/#"]}.
{allow, {'and', [{user, "bob"}, {ipaddr, "192.168.1.1"}]}, publish, ["both/x"]}.
{allow, {'or', [{user, "carol"}, {client, "c9"}]}, publish, ["either/x"]}.
{allow, all, publish, [{eq, "exact/+"}]}.
{allow, all, subscribe, ["open/#"]}.
""")


def who(client_id: str = "c", username: str | None = None,
        ip: str | None = "127.0.0.1") -> AclSubject:
    return AclSubject(client_id, username, ip)


@pytest.mark.parametrize(("client", "action", "topic", "permission", "line"), [
    (who(username="admin"), "publish", "anything/at/all", "allow", 2),
    (who(username="admin"), "subscribe", "#", "allow", 2),  # first match wins
    (who("blocked", "admin"), "publish", "x", "allow", 2),
    (who("blocked"), "publish", "x", "deny", 3),
    (who("blocked"), "subscribe", "open/x", "allow", 11),  # the deny was for publish only
    (who(username="alice"), "subscribe", "alice/+/x", "allow", 4),
    (who(username="alice"), "publish", "alice/x", None, None),  # subscribe only
    (who(username="bob"), "publish", "users/bob/inbox", "allow", 5),
    (who(username="bob"), "subscribe", "users/bob/#", "allow", 5),
    (who(username="bob"), "publish", "users/alice/inbox", None, None),
    (who(username=None), "publish", "users/%u/x", "allow", 5),  # no user name: %u stays
    # a user name or client id put in for %u / %c is a plain word, never a wildcard
    (who(username="+"), "subscribe", "users/+/#", None, None),
    (who(username="#"), "subscribe", "users/#", None, None),
    (who(username="+"), "publish", "users/bob/x", None, None),
    (who(username="a/b"), "publish", "users/a/b/x", None, None),
    (who("#"), "subscribe", "clients/#", None, None),
    (who("c7"), "publish", "clients/c7/x", "allow", 5),
    (who("c7"), "publish", "clients/c8/x", None, None),
    (who(), "subscribe", "#", "deny", 6),
    (who(), "subscribe", "$SYS/brokers", "deny", 6),
    (who(), "subscribe", "a/#", None, None),  # eq "#" is only "#"
    (who(ip="10.1.200.3"), "publish", "ip/x", "allow", 7),
    (who(ip="::ffff:10.1.2.3"), "publish", "ip/x", "allow", 7),  # IPv4-mapped IPv6
    (who(ip="10.2.0.1"), "publish", "ip/x", None, None),
    (who(ip=None), "publish", "ip/x", None, None),
    (who(username="bob", ip="192.168.1.1"), "publish", "both/x", "allow", 8),
    (who(username="bob", ip="192.168.1.2"), "publish", "both/x", None, None),
    (who(username="carol"), "publish", "either/x", "allow", 9),
    (who("c9"), "publish", "either/x", "allow", 9),
    (who("c8"), "publish", "either/x", None, None),
    (who(), "publish", "exact/+", "allow", 10),  # the wildcard as text
    (who(), "publish", "exact/a", None, None),
])
def test_rules_table(client: AclSubject, action: str, topic: str, permission: str | None,
                     line: int | None) -> None:
    found = match_rules(RULES, client, action, topic)
    if permission is None:
        assert found is None, found
    else:
        assert found is not None
        assert (found.permission, found.rule.line) == (permission, line)


# -- the cache ---------------------------------------------------------------------------------

def test_cache_ttl_size_and_generation() -> None:
    cache = AclCache()
    assert cache.get("publish", "a", 0.0, 0) is None
    cache.put("publish", "a", True, 10.0, 2)
    cache.put("subscribe", "a", False, 10.0, 2)
    assert cache.get("publish", "a", 5.0, 0) is True
    assert cache.get("subscribe", "a", 5.0, 0) is False
    assert cache.get("publish", "a", 10.0, 0) is None  # expired, and dropped
    assert len(cache) == 1
    cache.put("publish", "b", True, 20.0, 2)
    cache.put("publish", "c", True, 20.0, 2)  # over the size: the oldest ("subscribe a") goes
    assert cache.get("subscribe", "a", 5.0, 0) is None
    assert len(cache) == 2
    assert cache.get("publish", "b", 5.0, 1) is None  # new rules: everything is stale
    assert len(cache) == 0
    cache.put("publish", "b", True, 20.0, 0)  # size 0: nothing is kept
    assert len(cache) == 0


# -- Broker.check_acl ----------------------------------------------------------------------

def channel(zone: str = "external", superuser: bool = False, client_id: str = "c",
            username: str | None = None) -> Any:
    """What `Broker.check_acl` reads of a connected client (`Client`'s attributes)."""
    info = ClientInfo(client_id, username, "10.9.9.9", 0, zone=zone, is_superuser=superuser)
    return SimpleNamespace(client_id=client_id, username=username, peerhost="10.9.9.9",
                           zone=zone, is_superuser=superuser, acl_cache=None, info=info)


def broker_with(rules: str, **options: Any) -> Broker:
    broker = Broker(BrokerOptions(**options))
    broker.acl.replace(parse_acl(rules))
    broker.acl.attach(broker.hooks)
    return broker


def test_check_acl_nomatch_zone_superuser_and_counters() -> None:
    broker = broker_with('{deny, all, publish, ["secret/#"]}.', acl_nomatch="deny")
    c = channel()
    assert broker.check_acl(c, "publish", "secret/x") is False
    assert broker.check_acl(c, "publish", "other") is False  # acl_nomatch = deny
    assert broker.check_acl(channel(superuser=True), "publish", "secret/x") is True
    assert broker.check_acl(channel(zone="internal"), "publish", "secret/x") is True
    assert broker.counters["client/acl/deny"] == 2
    assert broker.counters["client/acl/allow"] == 0  # bypasses are not decisions
    assert broker.check_acl(c, "publish", "secret/x") is False
    assert broker.counters["client/acl/cache_hit"] == 1
    assert broker.counters["client/acl/deny"] == 3


def test_check_acl_cache_is_emptied_by_new_rules() -> None:
    broker = broker_with('{allow, all}.')
    c = channel()
    assert broker.check_acl(c, "publish", "t") is True
    broker.acl.replace(parse_acl('{deny, all}.'))
    assert broker.check_acl(c, "publish", "t") is True  # still cached
    broker.invalidate_acl_cache()
    assert broker.check_acl(c, "publish", "t") is False


def test_check_acl_without_cache_and_shared_subscriptions() -> None:
    broker = broker_with('{deny, all, subscribe, [{eq, "#"}, "private/#"]}.',
                         enable_acl_cache=False)
    c = channel()
    assert broker.check_acl(c, "subscribe", "$share/g/#") is False  # the real filter: "#"
    assert broker.check_acl(c, "subscribe", "$queue/private/x") is False
    assert broker.check_acl(c, "subscribe", "$share/g/public/x") is True
    assert c.acl_cache is None
    assert broker.counters["client/acl/cache_hit"] == 0


def test_plugin_callbacks_run_before_the_file() -> None:
    broker = broker_with('{deny, all}.')
    broker.hooks.add(HookPoint.CLIENT_CHECK_ACL,
                     lambda client, action, topic, acc: Stop("allow") if topic == "p" else None)
    assert broker.check_acl(channel(), "publish", "p") is True
    assert broker.check_acl(channel(), "publish", "q") is False


def test_internal_acl_attach_detach() -> None:
    hooks = Hooks()
    acl = InternalAcl(parse_acl("{deny, all}."))
    acl.attach(hooks)
    acl.attach(hooks)  # once only
    assert len(hooks.callbacks(HookPoint.CLIENT_CHECK_ACL)) == 1
    acl.detach()
    assert not hooks.has(HookPoint.CLIENT_CHECK_ACL)


# -- explanations ------------------------------------------------------------------------------

class Plugin:
    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers

    def check(self, client: Any, action: str, topic: str, acc: Any) -> Any:
        answer = self.answers.get(topic)
        if answer == "boom":
            raise RuntimeError("broken plugin")
        return answer


def test_explain_names_the_rule_the_hook_or_nomatch() -> None:
    hooks = Hooks()
    acl = InternalAcl(parse_acl('{allow, all, publish, ["a/#"]}.\n{deny, all, publish, ["b"]}.'))
    acl.attach(hooks)
    plugin = Plugin({"p": Stop("deny"), "q": "allow", "boom": "boom"})
    hooks.add(HookPoint.CLIENT_CHECK_ACL, plugin.check)
    client = who()

    exp = explain(hooks, acl, client, "publish", "b", "allow")
    assert (exp.decision, exp.source) == ("deny", "rule")
    assert exp.decider is not None and exp.decider.match is not None
    assert exp.decider.match.rule.line == 2
    assert [s.answer for s in exp.steps] == [None, "deny"]  # the plugin first, then the file

    exp = explain(hooks, acl, client, "publish", "p", "allow")
    assert (exp.decision, exp.source) == ("deny", "hook")
    assert exp.decider is not None and exp.decider.callback == plugin.check
    assert len(exp.steps) == 1 and exp.steps[0].stopped

    exp = explain(hooks, acl, client, "publish", "q", "deny")  # a fold, not a stop
    assert (exp.decision, exp.source) == ("allow", "hook")

    exp = explain(hooks, acl, client, "publish", "c", "deny")
    assert (exp.decision, exp.source, exp.decider) == ("deny", "acl_nomatch", None)

    exp = explain(hooks, acl, client, "publish", "boom", "allow")
    assert exp.steps[0].answer == "error"
    assert (exp.decision, exp.source) == ("allow", "acl_nomatch")

    assert explain(hooks, acl, client, "publish", "b", "allow",
                       acl_enabled=False).source == "zone"
    assert explain(hooks, acl, client, "publish", "b", "allow",
                       superuser=True).source == "superuser"
    assert explain(hooks, acl, client, "subscribe", "$share/g/a/x",
                       "deny").topic == "a/x"
