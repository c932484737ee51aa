"""The actions a rule can run, in the seed's v3.1 names (`<type>:<name>`),
with EMQ X v3.2's plain names accepted as aliases.

=============================  ===============  ==========================================
action                         for              effect
=============================  ===============  ==========================================
built_in:inspect_action        $any             logs the selected data, the event's
                                                columns and the params (INFO)
built_in:republish_action      message.publish  publishes to `target_topic` (a template)
                                                through the broker's normal publish path;
                                                payload = `payload_tmpl` filled, or the
                                                JSON of the selected data without one;
                                                QoS = `target_qos`, or the event's (-1)
built_in:do_nothing_action     $any             nothing (v3.2's do_nothing; not listed,
                                                as the seed lists four actions)
web_hook:publish_action        message.publish  the JSON of the selected data to the
                                                resource's URL
web_hook:event_action          $events          the `template` object (leaves filled
                                                from the selected data) to the URL;
                                                default {event, client_id, username}
=============================  ===============  ==========================================

An action is made once per rule (`ActionSpec.make`) and then called with the
selected data, the event's columns and a `report(ok)` callback: it returns
True or False when it is done at once, or None and calls `report(ok)` once
its outcome is known (web hooks: when the request has finished).  A
republished message remembers the rules it came from, and a rule never runs
on its own output again, so rules that republish to each other cannot loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starling.broker import Broker, Message
from starling.mqtt import is_valid_topic_name

from .errors import RuleError, bad_arguments
from .resources import Resource
from .schema import Schema, check, param
from .template import has_placeholders, render, render_value, to_json

inspect_log = logging.getLogger("starling.rules.inspect")

#: Message header listing the rules a republished message came from.
REPUBLISHED_BY = "republished_by"

Report = Callable[[bool], None]
#: Called with the selected data (a dict; a FOREACH element may be any JSON value), the
#: event's columns and `report`.  Returns True / False when done at once, None when it
#: calls `report(ok)` later.
ActionFn = Callable[[Any, Mapping[str, Any], Report], bool | None]


@dataclass(frozen=True, slots=True)
class ActionContext:
    """What an action is made with: the broker, the resources, its rule and params."""

    broker: Broker
    resource: Callable[[str], Resource | None]
    rule_id: str
    params: dict[str, Any]


Factory = Callable[[ActionContext], ActionFn]


@dataclass(frozen=True, slots=True)
class ActionSpec:
    name: str
    app: str
    for_: str
    type: str
    params: Schema
    description: str
    make: Factory

    def check_params(self, given: Any, resource: Callable[[str], Resource | None]
                     ) -> dict[str, Any]:
        params = check(self.params, given, f"params of {self.name}")
        if "$resource" in self.params:
            rid = params["$resource"]
            found = resource(rid)
            if found is None:
                raise RuleError(f"Resource {rid} Not Found")
            if found.type.name != self.type:
                raise bad_arguments(f"resource {rid} is not of type {self.type}")
        return params


def template_data(selected: Any, envs: Mapping[str, Any]) -> Mapping[str, Any]:
    """What `${name}` placeholders read: the selected data, then the event's columns (a
    FOREACH element that is not an object: the columns alone)."""
    return {**envs, **selected} if isinstance(selected, Mapping) else envs


# -- built_in ------------------------------------------------------------------------------

def _inspect(ctx: ActionContext) -> ActionFn:
    params = ctx.params

    def run(selected: Any, envs: Mapping[str, Any], report: Report) -> bool | None:
        inspect_log.info("[inspect] rule %s Selected Data: %s; Envs: %s; Action Init Params: %s",
                         ctx.rule_id, to_json(selected), to_json(dict(envs)), to_json(params))
        return True
    return run


def _do_nothing(ctx: ActionContext) -> ActionFn:
    def run(selected: Any, envs: Mapping[str, Any], report: Report
            ) -> bool | None:
        return True
    return run


def _republish(ctx: ActionContext) -> ActionFn:
    topic_tmpl: str = ctx.params["target_topic"]
    if not has_placeholders(topic_tmpl) and not is_valid_topic_name(topic_tmpl):
        raise bad_arguments(f"target_topic {topic_tmpl!r} is not a valid topic name")
    payload_tmpl: str | None = ctx.params.get("payload_tmpl")
    target_qos = ctx.params.get("target_qos", -1)
    if target_qos not in (-1, 0, 1, 2):
        raise bad_arguments("target_qos must be -1 (keep the message's), 0, 1 or 2")
    broker = ctx.broker
    rule_id = ctx.rule_id

    def run(selected: Any, envs: Mapping[str, Any], report: Report
            ) -> bool | None:
        data = template_data(selected, envs)
        topic = render(topic_tmpl, data)
        if not is_valid_topic_name(topic):
            raise ValueError(f"republish: {topic!r} is not a valid topic name")
        payload = to_json(selected) if payload_tmpl is None else render(payload_tmpl, data)
        qos = target_qos
        if qos < 0:
            event_qos = envs.get("qos", 0)
            qos = event_qos if event_qos in (0, 1, 2) else 0
        headers = envs.get("headers")
        chain = list(headers.get(REPUBLISHED_BY, ())) if isinstance(headers, Mapping) else []
        client = envs.get("client_id") or ""
        message = Message(topic, payload.encode(), qos, False, f"action:republish:{client}")
        message.headers[REPUBLISHED_BY] = [*chain, rule_id]
        broker.publish(message)
        return True
    return run


# -- web_hook ------------------------------------------------------------------------------

DEFAULT_EVENT_TEMPLATE = {"event": "${event}", "client_id": "${client_id}",
                          "username": "${username}"}


def _post(ctx: ActionContext, body: Callable[[Any, Mapping[str, Any]], bytes]
          ) -> ActionFn:
    rid: str = ctx.params["$resource"]
    lookup = ctx.resource

    def run(selected: Any, envs: Mapping[str, Any], report: Report
            ) -> bool | None:
        resource = lookup(rid)
        sink = resource.sink if resource is not None else None
        if sink is None:
            raise RuntimeError(f"resource {rid} is not started")
        if not sink.submit(body(selected, envs), report):
            return False  # its queue is full
        return None  # `report` is called when the request is done
    return run


def _web_publish(ctx: ActionContext) -> ActionFn:
    return _post(ctx, lambda selected, envs: to_json(selected).encode())


def _web_event(ctx: ActionContext) -> ActionFn:
    template = ctx.params.get("template") or DEFAULT_EVENT_TEMPLATE
    return _post(ctx, lambda selected, envs: to_json(
        render_value(template, template_data(selected, envs))).encode())


RESOURCE_PARAM = param("string", "Resource ID", "Bind a resource to this action",
                       required=True)

ACTIONS: dict[str, ActionSpec] = {a.name: a for a in (
    ActionSpec("built_in:inspect_action", "emqx_rule_engine", "$any", "built_in", {},
               "Inspect the details of action params for debug purpose", _inspect),
    ActionSpec("built_in:republish_action", "emqx_rule_engine", "message.publish", "built_in", {
        "target_topic": param("string", "To Which Topic", "Repubilsh the message to which topic",
                              required=True, format="topic"),
        "target_qos": param("number", "Target QoS", "The QoS of the republished message; "
                            "-1: the QoS of the original message", default=-1,
                            enum=[-1, 0, 1, 2]),
        "payload_tmpl": param("string", "Payload Template", "The payload, with ${var} "
                              "placeholders filled from the selected data; absent: the "
                              "selected data as JSON", format="sql"),
    }, "Republish a MQTT message to a another topic", _republish),
    ActionSpec("web_hook:event_action", "emqx_web_hook", "$events", "web_hook", {
        "$resource": RESOURCE_PARAM,
        "template": param("object", "Payload Template", "The payload template to be filled "
                          "with variables before sending messages", schema={}),
    }, "Forward Events to Web Server", _web_event),
    ActionSpec("web_hook:publish_action", "emqx_web_hook", "message.publish", "web_hook",
               {"$resource": RESOURCE_PARAM}, "Forward Messages to Web Server", _web_publish),
)}

#: Not listed (the seed's lists show exactly the four above) but usable by name.
UNLISTED: dict[str, ActionSpec] = {a.name: a for a in (
    ActionSpec("built_in:do_nothing_action", "emqx_rule_engine", "$any", "built_in", {},
               "This action does nothing", _do_nothing),
)}

#: EMQ X v3.2's names for the same actions.
ALIASES = {"inspect": "built_in:inspect_action", "republish": "built_in:republish_action",
           "do_nothing": "built_in:do_nothing_action",
           "data_to_webserver": "web_hook:publish_action"}


def find_action(name: str) -> ActionSpec | None:
    name = ALIASES.get(name, name)
    return ACTIONS.get(name) or UNLISTED.get(name)


def actions_for(event: str | None) -> list[ActionSpec]:
    """`GET /actions?for=<event>`: the actions for that event and the `$any` ones, as
    the seed's example (an exact match of `for`)."""
    return [a for _, a in sorted(ACTIONS.items())
            if event is None or a.for_ in (event, "$any")]


def actions_of_type(type_name: str) -> list[ActionSpec]:
    return [a for _, a in sorted(ACTIONS.items()) if a.type == type_name]
