"""emqx_web_hook: broker events POSTed as JSON to a web server (EMQ X v3.2).

Config as in EMQ X's ``etc/plugins/emqx_web_hook.conf``: ``web.hook.api.url``,
``web.hook.encode_payload`` and one ``web.hook.rule.<hook>.<n> = {"action":
"on_<hook_with_underscores>", "topic": "<filter>"}`` per forwarded event
(docs/feature-plugins.md lists the events and the JSON of each).

Unlike EMQ X v3, which made the request from inside the hook (a slow web
server stalled connects and deliveries), a hook here only builds the body
and hands it to an `HttpSink`: a bounded queue and a few sender tasks.
Bodies that do not fit are dropped and counted (``web_hook/dropped``), and
the alarm ``webhook_down/emqx_web_hook`` is raised while the server fails.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starling.broker import ClientInfo, HookPoint, Message, topic_matches
from starling.mqtt import SubscriptionOptions, is_valid_topic_filter

from . import (
    ConfigKey,
    HttpSink,
    Plugin,
    check_url,
    parse_nonnegative_int,
    parse_positive_int,
    parse_timeout,
)

PLUGIN = "emqx_web_hook"

#: hook → the action EMQ X names its callback after (and the body's `action`).
EVENTS: dict[str, str] = {
    "client.connected": "client_connected",
    "client.disconnected": "client_disconnected",
    "client.subscribe": "client_subscribe",
    "client.unsubscribe": "client_unsubscribe",
    "session.subscribed": "session_subscribed",
    "session.unsubscribed": "session_unsubscribed",
    "message.publish": "message_publish",
    "message.delivered": "message_delivered",
    "message.acked": "message_acked",
}


@dataclass(frozen=True, slots=True)
class Rule:
    hook: str
    topic: str | None  #: a topic filter, or None for every topic


def parse_rule(value: str) -> dict[str, Any] | None:
    """``{"action": "on_client_connected", "topic": "a/#"}``; "" switches a rule off."""
    if not value.strip():
        return None
    try:
        spec = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"a rule is a JSON object: {exc.msg}") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("action"), str):
        raise ValueError('a rule is a JSON object with an "action", e.g. '
                         '{"action": "on_message_publish", "topic": "a/#"}')
    topic = spec.get("topic")
    if topic is not None and (not isinstance(topic, str) or not is_valid_topic_filter(topic)):
        raise ValueError(f"bad topic filter in rule: {topic!r}")
    return spec


def parse_encoding(value: str) -> str:
    value = value.strip().lower()
    if value not in ("", "plain", "base64", "base62"):
        raise ValueError("encode_payload must be base64, base62 or empty (plain)")
    return "" if value == "plain" else value


def parse_url(value: str) -> str:
    return check_url(value)


_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def base62(data: bytes) -> str:
    """The payload read as one big-endian number, in base 62 (0-9A-Za-z); each
    leading zero byte is one leading "0"."""
    number = int.from_bytes(data, "big")
    digits = []
    while number:
        number, rest = divmod(number, 62)
        digits.append(_B62[rest])
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "0" * zeros + "".join(reversed(digits))


def rule_parser(hook: str) -> Callable[[str], dict[str, Any] | None]:
    """`parse_rule`, also checking the action is the one of `hook` (EMQ X's
    callback name; v3.1's ``on_message_deliver`` accepted for message.delivered)."""
    actions = {f"on_{EVENTS[hook]}"} | ({"on_message_deliver"}
                                        if hook == "message.delivered" else set())

    def parse(value: str) -> dict[str, Any] | None:
        spec = parse_rule(value)
        if spec is not None and spec["action"] not in actions:
            raise ValueError(f"the action for {hook} is on_{EVENTS[hook]}")
        return spec
    return parse


def _rule_keys() -> tuple[ConfigKey, ...]:
    keys: list[ConfigKey] = []
    for hook, action in EVENTS.items():
        parse = rule_parser(hook)
        keys.append(ConfigKey(f"web.hook.rule.{hook}.1", json.dumps({"action": f"on_{action}"}),
                              f"Forward {hook} events ('' to stop).", parse, required=False))
        keys.append(ConfigKey(f"web.hook.rule.{hook}.$no", "",
                              f"More {hook} rules, e.g. with another topic filter.", parse,
                              required=False))
    return tuple(keys)


class WebHookPlugin(Plugin):
    SCHEMA = (
        ConfigKey("web.hook.api.url", "http://127.0.0.1:8080",
                  "The web server events are POSTed to.", parse_url),
        ConfigKey("web.hook.encode_payload", "",
                  "Encode message payloads: base64, base62, or empty for plain text.",
                  parse_encoding, required=False),
        ConfigKey("web.hook.headers.$name", "", "An HTTP header sent with every request.",
                  required=False),
        ConfigKey("web.hook.timeout", "5s", "Timeout of one request.", parse_timeout),
        ConfigKey("web.hook.pool_size", "8",
                  "Connections to the web server (and sender tasks).", parse_positive_int),
        ConfigKey("web.hook.queue_size", "10000",
                  "Bodies waiting to be sent; more are dropped and counted.",
                  parse_positive_int),
        ConfigKey("web.hook.max_retries", "3",
                  "Retries of a request that failed (connection, timeout, 5xx).",
                  parse_nonnegative_int),
        *_rule_keys(),
    )

    def __init__(self, context: Any, settings: Mapping[str, Any]) -> None:
        super().__init__(context, settings)
        self.broker = context.broker
        self.encoding: str = self.settings["web.hook.encode_payload"]
        self.rules: dict[str, list[Rule]] = {}
        for key, spec in self.settings.items():
            if not key.startswith("web.hook.rule.") or spec is None:
                continue
            hook = key[len("web.hook.rule."):].rpartition(".")[0]  # the schema made sure
            self.rules.setdefault(hook, []).append(Rule(hook, spec.get("topic")))
        headers = {key[len("web.hook.headers."):]: value for key, value in self.settings.items()
                   if key.startswith("web.hook.headers.") and value}
        self.sink = HttpSink(
            PLUGIN, self.settings["web.hook.api.url"], headers=headers,
            timeout=self.settings["web.hook.timeout"],
            pool_size=self.settings["web.hook.pool_size"],
            queue_size=self.settings["web.hook.queue_size"],
            max_retries=self.settings["web.hook.max_retries"],
            alarms=self.broker.alarms, alarm_id=f"webhook_down/{PLUGIN}",
            counters=self.broker.counters, counter_prefix="web_hook/")
        handlers: dict[str, Callable[..., Any]] = {
            "client.connected": self.on_client_connected,
            "client.disconnected": self.on_client_disconnected,
            "client.subscribe": self.on_client_subscribe,
            "client.unsubscribe": self.on_client_unsubscribe,
            "session.subscribed": self.on_session_subscribed,
            "session.unsubscribed": self.on_session_unsubscribed,
            "message.publish": self.on_message_publish,
            "message.delivered": self.on_message_delivered,
            "message.acked": self.on_message_acked,
        }
        self.hooks = {HookPoint(hook): handlers[hook] for hook in self.rules}

    async def load(self) -> None:
        await self.sink.start()
        for point, callback in self.hooks.items():
            self.broker.hooks.add_dynamic(point, callback)

    async def unload(self) -> None:
        for point, callback in self.hooks.items():
            self.broker.hooks.remove(point, callback)
        await self.sink.stop()

    # -- sending ---------------------------------------------------------------------
    def _send(self, hook: str, topic: str | None, body: dict[str, Any]) -> None:
        """Once per rule whose filter matches (EMQ X: one request per matching rule);
        events without a topic ignore filters."""
        for rule in self.rules[hook]:
            if rule.topic is None or topic is None or topic_matches(topic, rule.topic):
                self.broker.counters[f"web_hook/{EVENTS[hook]}"] += 1
                self.sink.submit(body)

    def _wanted(self, hook: str, topic: str) -> bool:
        return any(r.topic is None or topic_matches(topic, r.topic) for r in self.rules[hook])

    def _payload(self, payload: bytes) -> str:
        if self.encoding == "base64":
            return base64.b64encode(payload).decode()
        if self.encoding == "base62":
            return base62(payload)
        return payload.decode("utf-8", "replace")

    def _message(self, action: str, message: Message) -> dict[str, Any]:
        return {"action": action, "from_client_id": message.sender,
                "from_username": _user(message.username), "topic": message.topic,
                "qos": message.qos, "retain": message.retain,
                "payload": self._payload(message.payload), "ts": int(message.timestamp)}

    # -- the hooks ---------------------------------------------------------------------
    def on_client_connected(self, client: ClientInfo) -> None:
        self._send("client.connected", None, {
            "action": "client_connected", "client_id": client.client_id,
            "username": _user(client.username), "ipaddress": client.peerhost,
            "keepalive": client.keepalive, "proto_ver": client.proto_ver,
            "connected_at": int(client.connected_at or 0), "conn_ack": 0})

    def on_client_disconnected(self, client: ClientInfo, reason: str) -> None:
        self._send("client.disconnected", None, {
            "action": "client_disconnected", "client_id": client.client_id,
            "username": _user(client.username), "reason": reason})

    def on_client_subscribe(self, client: ClientInfo,
                            table: list[tuple[str, SubscriptionOptions]]) -> None:
        for topic, opts in table:
            self._send("client.subscribe", topic, {
                "action": "client_subscribe", "client_id": client.client_id,
                "username": _user(client.username), "topic": topic, "opts": _opts(opts)})

    def on_client_unsubscribe(self, client: ClientInfo, topics: list[str]) -> None:
        for topic in topics:
            self._send("client.unsubscribe", topic, {
                "action": "client_unsubscribe", "client_id": client.client_id,
                "username": _user(client.username), "topic": topic})

    def on_session_subscribed(self, client_id: str, topic: str,
                              opts: SubscriptionOptions) -> None:
        self._send("session.subscribed", topic, {
            "action": "session_subscribed", "client_id": client_id,
            "username": self._username(client_id), "topic": topic, "opts": _opts(opts)})

    def on_session_unsubscribed(self, client_id: str, topic: str) -> None:
        self._send("session.unsubscribed", topic, {
            "action": "session_unsubscribed", "client_id": client_id,
            "username": self._username(client_id), "topic": topic})

    def on_message_publish(self, message: Message) -> None:
        if message.sys or message.topic.startswith("$SYS/"):
            return None
        if self._wanted("message.publish", message.topic):
            self._send("message.publish", message.topic,
                       self._message("message_publish", message))
        return None  # the message goes on unchanged

    def on_message_delivered(self, client_id: str, message: Message) -> None:
        if message.sys or not self._wanted("message.delivered", message.topic):
            return
        body = {"action": "message_delivered", "client_id": client_id,
                "username": self._username(client_id)}
        self._send("message.delivered", message.topic,
                   body | self._message("message_delivered", message))

    def on_message_acked(self, client: ClientInfo, message: Message) -> None:
        if message.sys or not self._wanted("message.acked", message.topic):
            return
        body = {"action": "message_acked", "client_id": client.client_id,
                "username": _user(client.username)}
        self._send("message.acked", message.topic, body | self._message("message_acked", message))

    def _username(self, client_id: str) -> str:
        client = self.broker.client_info(client_id)
        return _user(client.username if client is not None else None)


def _user(username: str | None) -> str:
    """EMQ X v3 sends the atom `undefined` (JSON "undefined") for no user name."""
    return username if username is not None else "undefined"


def _opts(opts: SubscriptionOptions) -> dict[str, int]:
    """EMQ X's subscription options map: qos, nl, rap, rh."""
    return {"qos": opts.qos, "nl": int(opts.no_local), "rap": int(opts.retain_as_published),
            "rh": opts.retain_handling}
