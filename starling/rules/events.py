"""Rule events: the broker hooks a rule can be for, and the columns each one
gives the rule's SQL (EMQ X v3.2's `emqx_rule_events`, facts §8.3).

A hook callback on the hot path only records *what happened* (the event name
and the hook's own arguments, no copies); the columns are built here later,
off the publish path, once per event however many rules read them.

Column values follow EMQ X: `id` is the message id as a hex string,
`peername` is ``"ip:port"``, `timestamp` and `connected_at` are epoch
milliseconds, an absent user name is ``"undefined"``.  `client_id` of
`message.publish` / `message.dropped` is the publisher, of `message.deliver` /
`message.acked` the client that received / acknowledged the message.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starling.broker import Broker, ClientInfo, HookPoint, Message

UNDEFINED = "undefined"

MESSAGE_PUBLISH = "message.publish"
MESSAGE_DELIVER = "message.deliver"
MESSAGE_ACKED = "message.acked"
MESSAGE_DROPPED = "message.dropped"
CLIENT_CONNECTED = "client.connected"
CLIENT_DISCONNECTED = "client.disconnected"
CLIENT_SUBSCRIBE = "client.subscribe"
CLIENT_UNSUBSCRIBE = "client.unsubscribe"
SESSION_SUBSCRIBED = "session.subscribed"
SESSION_UNSUBSCRIBED = "session.unsubscribed"

#: Events whose subject is a message: a v3.1 rule's FROM topic filters apply to them.
MESSAGE_EVENTS = frozenset({MESSAGE_PUBLISH, MESSAGE_DELIVER, MESSAGE_ACKED, MESSAGE_DROPPED})
#: Where the `Message` is among a message event's hook arguments.
MESSAGE_ARG = {MESSAGE_PUBLISH: 0, MESSAGE_DELIVER: 1, MESSAGE_ACKED: 1, MESSAGE_DROPPED: 0}

_MSG = ("client_id", "username", "event", "id", "payload", "peername", "qos", "timestamp",
        "topic", "node")
_CLIENT = ("client_id", "username", "event", "auth_result", "mountpoint", "peername")
_SUB = (*_CLIENT, "topic_filters", "topic", "qos", "timestamp", "node")
_SESSION = ("client_id", "username", "event", "topic", "qos", "nl", "rap", "rc", "rh",
            "timestamp", "node")


@dataclass(frozen=True, slots=True)
class EventInfo:
    """One event as `GET /rule_events` shows it."""

    name: str
    hook: HookPoint
    title: str
    description: str
    columns: tuple[str, ...]
    test_columns: Mapping[str, Any]

_TEST_MSG = {"client_id": "c_emqx", "username": "u_emqx", "topic": "t/a", "qos": 1,
             "payload": '{"msg": "hello"}', "peername": "127.0.0.1:63341"}
_TEST_CLIENT = {"client_id": "c_emqx", "username": "u_emqx", "auth_result": "success",
                "peername": "127.0.0.1:63341"}

EVENTS: dict[str, EventInfo] = {e.name: e for e in (
    EventInfo(MESSAGE_PUBLISH, HookPoint.MESSAGE_PUBLISH, "Message Publish",
              "Messages received", _MSG, _TEST_MSG),
    EventInfo(MESSAGE_DELIVER, HookPoint.MESSAGE_DELIVERED, "Message Delivered",
              "Messages delivered",
              ("client_id", "username", "event", "auth_result", "mountpoint", "id", "payload",
               "peername", "topic", "qos", "timestamp", "node"),
              {**_TEST_MSG, "auth_result": "success"}),
    EventInfo(MESSAGE_ACKED, HookPoint.MESSAGE_ACKED, "Message Acked", "Messages acked",
              ("client_id", "username", "event", "id", "payload", "peername", "topic", "qos",
               "timestamp", "node"), _TEST_MSG),
    EventInfo(MESSAGE_DROPPED, HookPoint.MESSAGE_DROPPED, "Message Dropped",
              "Messages dropped", _MSG, _TEST_MSG),
    EventInfo(CLIENT_CONNECTED, HookPoint.CLIENT_CONNECTED, "Client Connected",
              "Client connected to server",
              ("client_id", "username", "event", "auth_result", "clean_start", "connack",
               "connected_at", "is_bridge", "keepalive", "mountpoint", "peername", "proto_ver",
               "timestamp", "node"),
              {**_TEST_CLIENT, "clean_start": True, "connack": 0, "is_bridge": False,
               "keepalive": 60, "proto_ver": 4}),
    EventInfo(CLIENT_DISCONNECTED, HookPoint.CLIENT_DISCONNECTED, "Client Disconnected",
              "Client disconnected from server", (*_CLIENT, "reason_code", "timestamp", "node"),
              {**_TEST_CLIENT, "reason_code": "normal"}),
    EventInfo(CLIENT_SUBSCRIBE, HookPoint.CLIENT_SUBSCRIBE, "Client Subscribe",
              "Client subscribe topics", _SUB,
              {**_TEST_CLIENT, "topic_filters": [{"topic": "t/a", "qos": 1}],
               "topic": "t/a", "qos": 1}),
    EventInfo(CLIENT_UNSUBSCRIBE, HookPoint.CLIENT_UNSUBSCRIBE, "Client Unsubscribe",
              "Client unsubscribe topics", _SUB,
              {**_TEST_CLIENT, "topic_filters": [{"topic": "t/a", "qos": 0}],
               "topic": "t/a", "qos": 0}),
    EventInfo(SESSION_SUBSCRIBED, HookPoint.SESSION_SUBSCRIBED, "Session Subscribed",
              "Session subscribed a topic", _SESSION,
              {"client_id": "c_emqx", "username": "u_emqx", "topic": "t/a", "qos": 1,
               "nl": 0, "rap": 0, "rc": 1, "rh": 0}),
    EventInfo(SESSION_UNSUBSCRIBED, HookPoint.SESSION_UNSUBSCRIBED, "Session Unsubscribed",
              "Session unsubscribed a topic", _SESSION,
              {"client_id": "c_emqx", "username": "u_emqx", "topic": "t/a", "qos": 0,
               "nl": 0, "rap": 0, "rc": 0, "rh": 0}),
)}

#: EMQ X hook names accepted where an event name is expected (`for`, `?for=`).
ALIASES = {"message.delivered": MESSAGE_DELIVER}


#: Columns message events have beyond the listed ones (EMQ X's runtime map).
MESSAGE_EXTRAS = ("retain", "flags", "headers")


def known_columns(events: frozenset[str] | set[str]) -> set[str]:
    """Every column a rule on these events can read."""
    known: set[str] = set()
    for event in events:
        known.update(EVENTS[event].columns)
        if event in MESSAGE_EVENTS:
            known.update(MESSAGE_EXTRAS)
    return known


def event_name(name: str) -> str | None:
    """The event a name (or a hook name alias) stands for; None if there is none."""
    name = ALIASES.get(name, name)
    return name if name in EVENTS else None


# -- building the columns ---------------------------------------------------------------

def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _payload(payload: bytes) -> str | bytes:
    """Text when the payload is UTF-8 (JSON is), the bytes otherwise.

    Without an exception for binary payloads (raising one costs more than decoding):
    decoding with 'ignore' drops exactly the invalid bytes, so the text is the payload
    iff it encodes back to as many bytes."""
    if payload.isascii():
        return payload.decode("ascii")
    text = payload.decode("utf-8", "ignore")
    return text if len(text.encode()) == len(payload) else payload


def _peername(client: ClientInfo | None) -> str:
    if client is None or not client.peerhost:
        return UNDEFINED
    return f"{client.peerhost}:{client.peerport}"


def _user(name: str | None) -> str:
    return UNDEFINED if name is None else name


class ColumnBuilder:
    """Turns a recorded event (name, hook arguments, time) into the columns map."""

    def __init__(self, broker: Broker, node: str) -> None:
        self.broker = broker
        self.node = node
        self._build: dict[str, Callable[[tuple[Any, ...], float], dict[str, Any]]] = {
            MESSAGE_PUBLISH: self._publish,
            MESSAGE_DELIVER: self._deliver,
            MESSAGE_ACKED: self._acked,
            MESSAGE_DROPPED: self._dropped,
            CLIENT_CONNECTED: self._connected,
            CLIENT_DISCONNECTED: self._disconnected,
            CLIENT_SUBSCRIBE: self._subscribe,
            CLIENT_UNSUBSCRIBE: self._unsubscribe,
            SESSION_SUBSCRIBED: self._session_subscribed,
            SESSION_UNSUBSCRIBED: self._session_unsubscribed,
        }

    def build(self, event: str, args: tuple[Any, ...], at: float) -> dict[str, Any]:
        return self._build[event](args, at)

    # -- message events ------------------------------------------------------------------
    def _message(self, event: str, message: Message, client_id: str, username: str | None,
                 peername: str) -> dict[str, Any]:
        # Once per message event for every rule: helpers inlined (a call costs more
        # than the work in most of them).
        retain = message.retain
        headers = {"username": UNDEFINED if message.username is None else message.username,
                   "peerhost": message.peerhost or UNDEFINED}
        if message.headers:
            headers.update(message.headers)
        return {
            "client_id": client_id,
            "username": UNDEFINED if username is None else username,
            "event": event,
            "id": f"{message.id:x}",
            "payload": _payload(message.payload),
            "peername": peername,
            "qos": message.qos,
            "timestamp": int(message.timestamp * 1000),
            "topic": message.topic,
            "node": self.node,
            # Beyond the listed columns, as EMQ X's runtime map has them.
            "retain": 1 if retain else 0,
            "flags": {"retain": retain, "dup": False, "sys": message.sys},
            "headers": headers,
        }

    def _sender_peername(self, message: Message) -> str:
        client = self.broker.client_info(message.sender) if message.sender else None
        if client is not None and client.peerhost == message.peerhost:
            return _peername(client)
        return message.peerhost or UNDEFINED

    def _publish(self, args: tuple[Any, ...], at: float) -> dict[str, Any]:
        (message,) = args
        return self._message(MESSAGE_PUBLISH, message, message.sender, message.username,
                             self._sender_peername(message))

    def _dropped(self, args: tuple[Any, ...], at: float) -> dict[str, Any]:
        message, _reason = args
        return self._message(MESSAGE_DROPPED, message, message.sender, message.username,
                             self._sender_peername(message))

    def _deliver(self, args: tuple[Any, ...], at: float) -> dict[str, Any]:
        client_id, message = args
        client = self.broker.client_info(client_id)
        columns = self._message(MESSAGE_DELIVER, message, client_id,
                                client.username if client is not None else None,
                                _peername(client))
        columns["auth_result"] = "success"
        columns["mountpoint"] = UNDEFINED
        return columns

    def _acked(self, args: tuple[Any, ...], at: float) -> dict[str, Any]:
        client, message = args
        return self._message(MESSAGE_ACKED, message, client.client_id, client.username,
                             _peername(client))

    # -- client events -------------------------------------------------------------------
    def _client(self, event: str, client: ClientInfo, at: float) -> dict[str, Any]:
        return {
            "client_id": client.client_id,
            "username": _user(client.username),
            "event": event,
            "auth_result": "success",
            "mountpoint": UNDEFINED,
            "peername": _peername(client),
            "timestamp": _ms(at),
            "node": self.node,
        }

    def _connected(self, args: tuple[Any, ...], at: float) -> dict[str, Any]:
        (client,) = args
        columns = self._client(CLIENT_CONNECTED, client, at)
        columns.update(clean_start=client.clean_start, connack=0,
                       connected_at=_ms(client.connected_at or at),
                       is_bridge=client.is_bridge, keepalive=client.keepalive,
                       proto_ver=client.proto_ver)
        return columns

    def _disconnected(self, args: tuple[Any, ...], at: float) -> dict[str, Any]:
        client, reason = args
        columns = self._client(CLIENT_DISCONNECTED, client, at)
        columns["reason_code"] = reason
        return columns

    def _subscribe(self, args: tuple[Any, ...], at: float) -> dict[str, Any]:
        client, subscriptions = args
        filters = [{"topic": f, "qos": opts.qos} for f, opts in subscriptions]
        return self._topic_filters(CLIENT_SUBSCRIBE, client, filters, at)

    def _unsubscribe(self, args: tuple[Any, ...], at: float) -> dict[str, Any]:
        client, topic_filters = args
        filters = [{"topic": f, "qos": 0} for f in topic_filters]
        return self._topic_filters(CLIENT_UNSUBSCRIBE, client, filters, at)

    def _topic_filters(self, event: str, client: ClientInfo, filters: list[dict[str, Any]],
                       at: float) -> dict[str, Any]:
        columns = self._client(event, client, at)
        first = filters[0] if filters else {"topic": UNDEFINED, "qos": 0}
        columns.update(topic_filters=filters, topic=first["topic"], qos=first["qos"])
        return columns

    # -- session events ------------------------------------------------------------------
    def _session(self, event: str, client_id: str, topic: str, opts: Any,
                 at: float) -> dict[str, Any]:
        client = self.broker.client_info(client_id)
        qos = opts.qos if opts is not None else 0
        return {
            "client_id": client_id,
            "username": _user(client.username if client is not None else None),
            "event": event,
            "topic": topic,
            "qos": qos,
            "nl": int(opts.no_local) if opts is not None else 0,
            "rap": int(opts.retain_as_published) if opts is not None else 0,
            "rc": qos,
            "rh": opts.retain_handling if opts is not None else 0,
            "timestamp": _ms(at),
            "node": self.node,
        }

    def _session_subscribed(self, args: tuple[Any, ...], at: float) -> dict[str, Any]:
        client_id, topic, opts = args
        return self._session(SESSION_SUBSCRIBED, client_id, topic, opts, at)

    def _session_unsubscribed(self, args: tuple[Any, ...], at: float) -> dict[str, Any]:
        client_id, topic = args
        return self._session(SESSION_UNSUBSCRIBED, client_id, topic, None, at)
