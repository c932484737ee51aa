"""/acl: the ACL file's state, its reload, and the explanation of a decision
(Starling's own; no EMQ X version has these).  docs/acl.md.

``GET /acl/`` shows the file, its rules and the ACL settings;
``PUT /acl/reload`` re-reads the file (a file that does not parse is refused
with code 102 and ``file:line:column: why``, HTTP 400, and the rules in force
stay); ``GET /acl/explain?client_id=&username=&ipaddr=&topic=&action=`` runs
the ACL chain for a client described by those parameters (no connection
needed; the ACL cache is not consulted) and answers the decision, what decided
(``rule``: a rule of the file, with its line and text; ``hook``: an ACL
plugin's `client.check_acl` callback; ``acl_nomatch``; ``zone``: ACL is off in
the zone; ``superuser``), why, and what each callback of the chain answered.

Errors: ``topic`` or ``action`` missing → 107; ``action`` not publish or
subscribe, a topic that is not a valid topic name (publish) or filter
(subscribe), a bad ``ipaddr`` or ``superuser`` → 108; all HTTP 400.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from starling.api import ApiError, ApiRequest, Code, RouteTable, bad_type, missing
from starling.broker import (
    ACL_ACTIONS,
    AclExplanation,
    AclMatch,
    AclStep,
    AclSubject,
    Broker,
    explain_acl,
)
from starling.mgmt import fields
from starling.mqtt import is_valid_topic_filter, is_valid_topic_name
from starling.plugins import PluginRegistry

from .acl_file import AclFile, AclFileError

#: How the file ACL appears in explanations (EMQ X's module name).
FILE_ACL = "emqx_mod_acl_internal"


def acl_file(req: ApiRequest) -> AclFile:
    service = req.ctx.services.get("acl")
    if not isinstance(service, AclFile):
        raise ApiError(Code.UNKNOWN_ERROR, "the ACL file is not available", 404)
    return service


def settings(broker: Broker) -> dict[str, Any]:
    options = broker.options
    return {
        "acl_nomatch": options.acl_nomatch,
        "acl_deny_action": options.acl_deny_action,
        "enable_acl_cache": options.enable_acl_cache,
        "acl_cache_max_size": options.acl_cache_max_size,
        "acl_cache_ttl": options.acl_cache_ttl,
        "zones_without_acl": sorted(options.acl_disabled_zones),
    }


def _text(req: ApiRequest, name: str) -> str | None:
    value = req.arg(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_type(f"'{name}' must be a string")
    return value


def subject(req: ApiRequest) -> AclSubject:
    ipaddr = _text(req, "ipaddr")
    if ipaddr:
        try:
            ipaddress.ip_address(ipaddr)
        except ValueError:
            raise bad_type(f"'ipaddr' must be an IP address, not {ipaddr!r}") from None
    return AclSubject(
        client_id=_text(req, "client_id") or "",
        username=_text(req, "username") or None,
        peerhost=ipaddr or None,
        zone=_text(req, "zone") or "external",
        is_superuser=req.bool_arg("superuser", False),
    )


def _describer(req: ApiRequest) -> Callable[[Callable[..., Any]], dict[str, Any]]:
    """Name a `client.check_acl` callback: the plugin that owns it, if any."""
    broker = req.ctx.broker
    registry = req.ctx.services.get("plugins")
    owners: dict[int, str] = {}
    if isinstance(registry, PluginRegistry):
        owners = {id(entry.instance): entry.name for entry in registry
                  if entry.instance is not None}

    def describe(callback: Callable[..., Any]) -> dict[str, Any]:
        name = f"{getattr(callback, '__module__', '?')}." \
               f"{getattr(callback, '__qualname__', repr(callback))}"
        if callback == broker.acl.check:
            return {"plugin": FILE_ACL, "callback": name}
        owner = getattr(callback, "__self__", None)
        return {"plugin": owners.get(id(owner)) if owner is not None else None,
                "callback": name}
    return describe


def _rule_view(match: AclMatch, file: str) -> dict[str, Any]:
    topic = match.topic
    return {"file": file, "line": match.rule.line, "rule": str(match.rule),
            "permission": match.rule.permission,
            #: the rule's topic that matched, and how: filter, eq or pattern (%u / %c)
            "topic": topic.topic if topic is not None else None,
            "topic_match": topic.kind if topic is not None else None}


def _reason(exp: AclExplanation, client: AclSubject, action: str, file: str,
            describe: Callable[[Callable[..., Any]], dict[str, Any]]) -> str:
    if exp.source == "superuser":
        return "superusers are not ACL-checked"
    if exp.source == "zone":
        return f"ACL is off in zone {client.zone!r} (zone.{client.zone}.enable_acl)"
    if exp.source == "acl_nomatch":
        return (f"no ACL rule or plugin matched {action} {exp.topic!r}, so acl_nomatch "
                f"decides: {exp.nomatch}")
    step = exp.decider
    assert step is not None
    if exp.source == "rule" and step.match is not None:
        rule = step.match.rule
        where = f"{file}:{rule.line} {rule}"
        if rule.catch_all:
            return f"{where} decides {rule.permission}: it matches every client and topic"
        return (f"{where} decides {rule.permission}: {rule.who} matches the client, "
                f"{rule.access} covers {action}, and {step.match.topic} matches "
                f"{exp.topic!r}")
    who = describe(step.callback)
    name = who["plugin"] or who["callback"]
    return f"{name} answered {step.answer} on the client.check_acl hook"


def explanation_view(exp: AclExplanation, client: AclSubject, action: str, topic: str,
                     file: str, describe: Callable[[Callable[..., Any]], dict[str, Any]],
                     ) -> dict[str, Any]:
    def step_view(step: AclStep) -> dict[str, Any]:
        view = describe(step.callback)
        view.update(answer=step.answer, stopped=step.stopped)
        if step.match is not None:
            view["rule"] = _rule_view(step.match, file)
        return view

    decider = exp.decider
    return {
        "decision": exp.decision,
        "action": action,
        "topic": topic,
        "checked_topic": exp.topic,
        "client_id": client.client_id,
        "username": client.username,
        "ipaddr": client.peerhost,
        "zone": client.zone,
        "superuser": client.is_superuser,
        "source": exp.source,
        "rule": (_rule_view(decider.match, file)
                 if decider is not None and decider.match is not None else None),
        "hook": (describe(decider.callback)
                 if decider is not None and decider.match is None else None),
        "reason": _reason(exp, client, action, file, describe),
        "acl_nomatch": exp.nomatch,
        "chain": [step_view(step) for step in exp.steps],
    }


def register(table: RouteTable) -> None:
    @table.route("acl_status", "GET", "/acl/", "The ACL file, its rules and the ACL settings")
    async def status(req: ApiRequest) -> Any:
        state = acl_file(req).status()
        return {
            "file": state.file,
            "loaded_at": fields.local_time(state.loaded_at),
            "last_error": state.last_error,
            "check_interval": state.check_interval,
            "rules": [{"line": rule.line, "rule": str(rule)} for rule in state.rules],
            **settings(req.ctx.broker),
        }

    @table.route("reload_acl", "PUT", "/acl/reload",
                 "Reload the ACL file (the rules in force stay if it does not parse)")
    async def reload(req: ApiRequest) -> Any:
        acl = acl_file(req)
        try:
            count = acl.reload()
        except AclFileError as exc:
            raise ApiError(Code.UNKNOWN_ERROR, str(exc), 400) from None
        return {"file": str(acl.path), "rules": count}

    @table.route("explain_acl", "GET", "/acl/explain",
                 "Explain the ACL decision for a client, action and topic")
    async def explain(req: ApiRequest) -> Any:
        topic, action = _text(req, "topic"), _text(req, "action")
        absent = [n for n, v in (("topic", topic), ("action", action)) if not v]
        if absent:
            raise missing(*absent)
        assert topic is not None and action is not None
        if action not in ACL_ACTIONS:
            raise bad_type("'action' must be publish or subscribe")
        if action == "publish" and not is_valid_topic_name(topic):
            raise bad_type(f"'topic' must be a topic name without wildcards: {topic!r}")
        if action == "subscribe" and not is_valid_topic_filter(topic):
            raise bad_type(f"'topic' is not a valid topic filter: {topic!r}")
        client = subject(req)
        acl = acl_file(req)
        broker = req.ctx.broker
        options = broker.options
        exp = await explain_acl(broker.hooks, broker.acl, client, action, topic, options.acl_nomatch,
                          acl_enabled=client.zone not in options.acl_disabled_zones,
                          superuser=client.is_superuser)
        return explanation_view(exp, client, action, topic, str(acl.path), _describer(req))
