"""/mqtt/publish, /mqtt/subscribe, /mqtt/unsubscribe and their *_batch forms
(facts §6): publish as a client would, subscribe on an existing session's
behalf (online or offline).  HTTP publishes go through the normal broker path
(hooks, retained, routing) but are not counted as received MQTT messages.

In durable mode a success answer is an acknowledgement like PUBACK/SUBACK: it
is sent once what the request changed in the store is committed; while the
store cannot write, a publish that needs it is refused (503, store_unavailable).

In a cluster, a subscribe or unsubscribe for a client whose session lives on
another node is run there (a publish is routed like any message)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from starling.broker import Message
from starling.mgmt import PageSpec
from starling.mqtt import (
    Publish,
    encode,
    is_valid_topic_filter,
    is_valid_topic_name,
    is_wildcard,
    parse_share,
)

from ..errors import ApiError, Code, bad_type, missing
from ..request import ApiRequest, to_int
from ..routing import RouteTable

T = TypeVar("T")

PUBLISH_BODY = {
    "topic": ("string", False, "topic to publish to"),
    "topics": ("string", False, "comma-separated topics (used when `topic` is absent)"),
    "payload": ("string", False, "message payload (UTF-8 text)"),
    "qos": ("integer", False, "0, 1 or 2 (default 0)"),
    "retain": ("boolean", False, "retain flag (default false)"),
    "client_id": ("string", False, "client id recorded as the sender"),
}
SUBSCRIBE_BODY = {
    "client_id": ("string", True, "client whose session subscribes"),
    "topic": ("string", False, "topic filter"),
    "topics": ("string", False, "comma-separated topic filters"),
    "qos": ("integer", False, "0, 1 or 2 (default 0)"),
}
UNSUBSCRIBE_BODY = {
    "client_id": ("string", True, "client whose session unsubscribes"),
    "topic": ("string", True, "topic filter"),
}


def _field(item: dict[str, Any], name: str, kind: type, default: Any) -> Any:
    value = item.get(name, default)
    if value is None:
        return default
    if kind is int:
        value = to_int(name, value)
    elif kind is bool:
        if isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        if not isinstance(value, bool):
            raise bad_type(f"'{name}' must be true or false")
    elif not isinstance(value, kind):
        raise bad_type(f"'{name}' must be a {kind.__name__}")
    return value


def _topics(item: dict[str, Any], single_only: bool = False) -> list[str]:
    topic = _field(item, "topic", str, None)
    if topic is not None:
        return [topic]
    if single_only:
        raise missing("topic")
    topics = _field(item, "topics", str, None)
    if topics is None:
        raise missing("topic")
    return [t.strip() for t in topics.split(",") if t.strip()]


def _qos(item: dict[str, Any]) -> int:
    qos = _field(item, "qos", int, 0)
    if qos not in (0, 1, 2):
        raise bad_type("'qos' must be 0, 1 or 2")
    return int(qos)


def _publish(req: ApiRequest, item: dict[str, Any]) -> None:
    broker = req.ctx.broker
    topics = [t for t in _topics(item)
              if is_valid_topic_name(t) and broker.topic_levels_ok(t)]
    if not topics:
        raise ApiError(Code.BAD_TOPIC, "bad_topic", 400)
    payload = _field(item, "payload", str, "").encode()
    qos = _qos(item)
    retain = _field(item, "retain", bool, False)
    sender = _field(item, "client_id", str, "")
    limit = broker.options.max_packet_size
    for topic in topics:  # each as the PUBLISH an MQTT client would have to send
        size = len(encode(Publish(topic, payload, qos, retain, packet_id=1 if qos else None)))
        if size > limit:
            raise ApiError(Code.PARAMETER_TYPE_ERROR, f"message too large: its PUBLISH would "
                           f"be {size} bytes, over mqtt.max_packet_size ({limit})", 413)
    messages = [Message(topic, payload, qos, retain, sender) for topic in topics]
    if broker.journal.failing_since is not None and any(
            m.qos and broker.needs_store(m) for m in messages):
        raise store_unavailable()
    for message in messages:
        broker.publish(message)


def store_unavailable() -> ApiError:
    """The answer while the store cannot commit what a request would change."""
    return ApiError(Code.UNKNOWN_ERROR, "store_unavailable", 503)


#: Seconds a request waits for its commit before answering store_unavailable.
COMMIT_TIMEOUT = 5.0


async def _durably(req: ApiRequest, action: Callable[[ApiRequest, Any], T], arg: Any) -> T:
    """`action(req, arg)`, answered only once what it changed in the store is on
    disk (durable mode), as PUBACK and SUBACK are."""
    journal = req.ctx.broker.journal
    ops_before = journal.ops_added
    result = action(req, arg)
    if journal.changed_since(ops_before):
        try:
            await asyncio.wait_for(journal.committed(), COMMIT_TIMEOUT)
        except TimeoutError:
            raise store_unavailable() from None
    return result


def _subscribe(req: ApiRequest, item: dict[str, Any]) -> None:
    client_id = _field(item, "client_id", str, None)
    if not client_id:
        raise missing("client_id")
    # The filters an MQTT client's SUBSCRIBE would be granted (by node-wide options).
    options = req.ctx.broker.options
    topics = [t for t in _topics(item) if is_valid_topic_filter(t)
              and req.ctx.broker.topic_levels_ok(t)
              and (options.shared_subscription or parse_share(t)[0] is None)
              and (options.wildcard_subscription or not is_wildcard(parse_share(t)[1]))]
    if not topics:
        raise ApiError(Code.BAD_TOPIC, "bad_topic", 400)
    qos = _qos(item)
    for topic in topics:
        if not req.ctx.broker.subscribe_client(client_id, topic, qos):
            raise ApiError(Code.CLIENT_NOT_ONLINE, "session_not_found", 404)


def _unsubscribe(req: ApiRequest, item: dict[str, Any]) -> None:
    client_id = _field(item, "client_id", str, None)
    if not client_id:
        raise missing("client_id")
    topic = _topics(item, single_only=True)[0]
    if not is_valid_topic_filter(topic):
        raise ApiError(Code.BAD_TOPIC, "bad_topic", 400)
    if not req.ctx.broker.unsubscribe_client(client_id, topic):
        raise ApiError(Code.CLIENT_NOT_ONLINE, "session_not_found", 404)


async def _session_elsewhere(req: ApiRequest, item: dict[str, Any]) -> str | None:
    """In a cluster: the other node that holds the session of the item's client
    (None: this node holds it, no node does, or the node is alone)."""
    client_id = item.get("client_id")
    mgmt = req.ctx.mgmt
    if mgmt.remote is None or not isinstance(client_id, str) or not client_id \
            or req.ctx.broker.sessions.get(client_id) is not None:
        return None
    page = await mgmt.sessions(None, PageSpec(1, 1), client_id=client_id)
    for row in page.rows:
        node = row.get("node")
        if isinstance(node, str) and node != mgmt.node_name:
            return node
    return None


async def _on_session_node(req: ApiRequest, path: str, item: dict[str, Any],
                           action: Callable[[ApiRequest, dict[str, Any]], None]) -> None:
    """`action` here, or the same request on the node with the client's session."""
    node = await _session_elsewhere(req, item)
    if node is None:
        await _durably(req, action, item)
        return
    answer = await req.ctx.mgmt.forward(node, "POST", ["mqtt", path], {}, item)
    body = answer.get("body") if isinstance(answer, dict) else None
    if not isinstance(body, dict) or body.get("code") != 0:
        body = body if isinstance(body, dict) else {}
        raise ApiError(int(body.get("code", Code.UNKNOWN_ERROR)),
                       str(body.get("message", "failed")), int(answer.get("status", 500)))


def _single(req: ApiRequest) -> dict[str, Any]:
    """The request's parameters as one item: query string over JSON body."""
    body = req.body if isinstance(req.body, dict) else {}
    if req.body is not None and not isinstance(req.body, dict):
        raise bad_type("request body must be a JSON object")
    return {**body, **req.query}


def _items(req: ApiRequest) -> list[dict[str, Any]]:
    if not isinstance(req.body, list):
        raise bad_type("request body must be a JSON array of objects")
    for item in req.body:
        if not isinstance(item, dict):
            raise bad_type("each batch item must be a JSON object")
    return list(req.body)


def _outcome(item: dict[str, Any], error: ApiError | None) -> dict[str, Any]:
    outcome: dict[str, Any] = {k: item[k] for k in ("client_id", "topic", "topics")
                               if k in item}
    outcome["code"] = 0 if error is None else error.code
    if error is not None:
        outcome["message"] = error.message
    return outcome


def _batch(req: ApiRequest, action: Callable[[ApiRequest, dict[str, Any]], None],
           ) -> list[dict[str, Any]]:
    results = []
    for item in _items(req):
        try:
            action(req, item)
            results.append(_outcome(item, None))
        except ApiError as exc:
            results.append(_outcome(item, exc))
    return results


async def _session_batch(req: ApiRequest, path: str,
                         action: Callable[[ApiRequest, dict[str, Any]], None],
                         ) -> list[dict[str, Any]]:
    """A subscribe/unsubscribe batch, each item on its session's node."""
    results = []
    for item in _items(req):
        try:
            await _on_session_node(req, path, item, action)
            results.append(_outcome(item, None))
        except ApiError as exc:
            results.append(_outcome(item, exc))
    return results


def register(table: RouteTable) -> None:
    @table.route("mqtt_subscribe", "POST", "/mqtt/subscribe", "Subscribe a topic",
                 body=SUBSCRIBE_BODY)
    async def mqtt_subscribe(req: ApiRequest) -> Any:
        await _on_session_node(req, "subscribe", _single(req), _subscribe)

    @table.route("mqtt_publish", "POST", "/mqtt/publish", "Publish a MQTT message",
                 body=PUBLISH_BODY)
    async def mqtt_publish(req: ApiRequest) -> Any:
        await _durably(req, _publish, _single(req))

    @table.route("mqtt_unsubscribe", "POST", "/mqtt/unsubscribe", "Unsubscribe a topic",
                 body=UNSUBSCRIBE_BODY)
    async def mqtt_unsubscribe(req: ApiRequest) -> Any:
        await _on_session_node(req, "unsubscribe", _single(req), _unsubscribe)

    @table.route("mqtt_subscribe_batch", "POST", "/mqtt/subscribe_batch",
                 "Batch subscribes topics")
    async def mqtt_subscribe_batch(req: ApiRequest) -> Any:
        return await _session_batch(req, "subscribe", _subscribe)

    @table.route("mqtt_publish_batch", "POST", "/mqtt/publish_batch",
                 "Batch publish MQTT messages")
    async def mqtt_publish_batch(req: ApiRequest) -> Any:
        return await _durably(req, _batch, _publish)

    @table.route("mqtt_unsubscribe_batch", "POST", "/mqtt/unsubscribe_batch",
                 "Batch unsubscribes topics")
    async def mqtt_unsubscribe_batch(req: ApiRequest) -> Any:
        return await _session_batch(req, "unsubscribe", _unsubscribe)
