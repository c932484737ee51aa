"""The rule engine's runtime: rules and resources, kept in the store, run on
live broker events.

Hot path.  The engine attaches a callback only to the hooks some enabled rule
is for, so a node without rules pays nothing.  A callback only appends
``(event, hook arguments, time)`` to a bounded queue and schedules a drain on
the event loop; it never builds columns, evaluates SQL or runs an action, so
a publish is not held up by rules.  Which rules a topic reaches is worked out
once per topic and remembered (a message no rule wants is not even queued).
The drain (a `call_soon` callback that runs what was queued when it started,
up to BATCH, then lets connections have their turn) builds each event's
columns once and calls its group's runner: the code of all those rules
compiled into one function (runner.py), which reads each column once and
decodes a JSON payload at most once.
Actions that do I/O (web hooks) hand their request to the resource's sender
queue and report back when it is done: a slow or dead endpoint never stalls
anything.  When the queue is full (`rule_engine.max_pending`) events are
dropped and counted (`dropped`), never buffered without bound.

Metrics per rule (`metrics` of the rule object): `matched` events that
reached the rule (its FROM matched), of which `passed` (WHERE true: the
actions ran), `nomatch` (WHERE false) and `failed` (the SQL raised);
`speed` is matched events per second over the last 5 s, `speed_max` its
highest value and `speed_last5m` its 5-minute moving average.  Per action:
`success` and `failed` (an exception, a full queue, a request that failed
or got a non-2xx answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from starling.broker import Broker, HookPoint, Message
from starling.mqtt import matches

from .actions import REPUBLISHED_BY, ActionContext, ActionFn, actions_for, find_action
from .errors import RuleError, bad_arguments, not_found
from .events import (
    EVENTS,
    MESSAGE_ARG,
    MESSAGE_DROPPED,
    MESSAGE_EVENTS,
    MESSAGE_PUBLISH,
    ColumnBuilder,
    event_name,
    known_columns,
)
from .resources import RESOURCE_TYPES, Resource, make_resource, probe
from .runner import Runner, runner_for
from .sql import RuleSql, Selected, SqlError, parse_sql

log = logging.getLogger(__name__)

#: Events run per drain callback at most before the loop gets a turn.  A drain runs
#: everything queued when it starts, up to this: with a small fixed batch the socket
#: reads of one loop turn (thousands of messages) outpace it, the queue fills up to
#: `max_pending` and drops, and the many queued messages make every full garbage
#: collection slow (measured: 14 full collections of ~90 ms each in 6 s of fan-in).
BATCH = 10_000
#: Topics whose matching rules are remembered, per message event.
TOPIC_CACHE = 10_000
#: Groups of rules (per event, per topic) whose compiled runner is remembered.
GROUP_CACHE = 256
#: Seconds between speed samples.
SPEED_INTERVAL = 5.0
#: Seconds between two log lines about the same rule's failures.
LOG_EVERY = 10.0
RULES_TABLE = "rules"
RESOURCES_TABLE = "resources"


class Table(Protocol):
    """The store table the engine keeps its rows in (`PluginStore.table()`)."""

    def get(self, key: str) -> Any: ...
    def put(self, key: str, value: Any) -> None: ...
    def delete(self, key: str) -> bool: ...
    def items(self) -> list[tuple[str, Any]]: ...
    def watch(self, callback: Callable[[str, Any], None] | None) -> None: ...


class BoundAction:
    """One action of one rule, made from its params, with its counters."""

    __slots__ = ("done", "failed", "name", "params", "run", "success")

    def __init__(self, name: str, params: dict[str, Any], run: ActionFn) -> None:
        self.name = name
        self.params = params
        self.run = run
        self.success = 0
        self.failed = 0
        #: `report`, bound once (not per call) for actions that finish later.
        self.done = self.report

    def report(self, ok: bool) -> None:
        if ok:
            self.success += 1
        else:
            self.failed += 1

class RuleMetrics:
    __slots__ = ("_last", "failed", "nomatch", "passed", "speed", "speed_last5m",
                 "speed_max")

    def __init__(self) -> None:
        self.passed = self.nomatch = self.failed = 0
        self.speed = self.speed_max = self.speed_last5m = 0.0
        self._last = 0

    @property
    def matched(self) -> int:
        """Every event that reached the rule ends as exactly one of these (one counter
        less to bump per rule and event)."""
        return self.passed + self.nomatch + self.failed

    def sample(self, seconds: float) -> None:
        speed = (self.matched - self._last) / seconds if seconds > 0 else 0.0
        self._last = self.matched
        self.speed = round(speed, 2)
        self.speed_max = max(self.speed_max, self.speed)
        alpha = min(1.0, seconds / 300.0)
        self.speed_last5m = round(self.speed_last5m + alpha * (speed - self.speed_last5m), 2)

@dataclass(slots=True, eq=False)
class Rule:
    id: str
    name: str
    for_: Any
    rawsql: str
    sql: RuleSql
    events: frozenset[str]
    actions: list[BoundAction]
    description: str
    enabled: bool
    created_at: int
    topic_filters: tuple[str, ...] = field(init=False)
    #: FROM "#": every topic not starting with "$".
    any_topic: bool = field(init=False)
    metrics: RuleMetrics = field(init=False, default_factory=RuleMetrics)
    _logged_at: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self.topic_filters = tuple(self.sql.topic_filters)
        self.any_topic = "#" in self.topic_filters

    def record(self) -> dict[str, Any]:
        """What the store keeps (no metrics)."""
        return {"id": self.id, "name": self.name, "for": self.for_, "rawsql": self.rawsql,
                "actions": [{"name": a.name, "params": a.params} for a in self.actions],
                "description": self.description, "enabled": self.enabled,
                "created_at": self.created_at}

    def log_failure(self, what: str, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY:
            self._logged_at = now
            log.warning("rule %s: %s: %s: %s", self.id, what, type(exc).__name__, exc)


class RuleGroup:
    """Rules that run on the same events (an event's, or those a topic reaches), and
    their runner, compiled on first use (runner.py)."""

    __slots__ = ("rules", "runner")

    def __init__(self, rules: tuple[Rule, ...]) -> None:
        self.rules = rules
        self.runner: Runner | None = None


def _str_field(body: Mapping[str, Any], key: str, default: str | None = None) -> str | None:
    value = body.get(key, default)
    if value is not None and not isinstance(value, str):
        raise bad_arguments(f"'{key}' must be a string")
    return value


class RuleEngine:
    def __init__(self, broker: Broker, node: str, rules_table: Table, resources_table: Table,
                 *, ignore_sys_message: bool = True, max_pending: int = 100_000,
                 check_interval: float = 10.0) -> None:
        self.broker = broker
        self.node = node
        self.ignore_sys_message = ignore_sys_message
        self.max_pending = max_pending
        self.check_interval = check_interval
        self.columns = ColumnBuilder(broker, node)
        self._rules_table = rules_table
        self._resources_table = resources_table
        self.rules: dict[str, Rule] = {}
        self.resources: dict[str, Resource] = {}
        #: Enabled rules by event, in creation order (rebuilt on every change).
        self._by_event: dict[str, tuple[Rule, ...]] = {}
        self._hooked: dict[HookPoint, Callable[..., None]] = {}
        #: Per message event, per topic: the enabled rules whose FROM takes the topic
        #: (computed on first sight, forgotten on every rule change or past TOPIC_CACHE).
        self._by_topic: dict[str, dict[str, RuleGroup]] = {}
        self._groups: dict[tuple[Rule, ...], RuleGroup] = {}
        #: Recorded events: (event, hook arguments, time), or a published `Message`.
        self._queue: deque[tuple[str, tuple[Any, ...], float] | Message] = deque()
        self._scheduled = False
        self._running = False
        #: Events dropped because the queue was full.
        self.dropped = 0
        self._timers: list[asyncio.Task[None]] = []
        #: Resources started or stopped because another node changed them.
        self._pending_work: set[asyncio.Future[Any]] = set()

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        self._running = True
        for rid, row in sorted(self._resources_table.items(),
                               key=lambda kv: kv[1].get("created_at", 0)):
            resource = self._stored_resource(rid, row, "stored")
            if resource is not None:
                await resource.start()
        for rid, row in sorted(self._rules_table.items(),
                               key=lambda kv: kv[1].get("created_at", 0)):
            try:
                self.rules[rid] = self._make_rule(rid, row)
            except RuleError as exc:
                log.error("stored rule %s not loaded: %s", rid, exc.message)
        self._reindex()
        self._rules_table.watch(self._rule_replicated)
        self._resources_table.watch(self._resource_replicated)
        self._timers = [asyncio.create_task(self._every(SPEED_INTERVAL, self._sample_speed)),
                        asyncio.create_task(self._every(self.check_interval,
                                                        self._check_resources))]

    async def stop(self) -> None:
        self._running = False
        self._rules_table.watch(None)
        self._resources_table.watch(None)
        for point, callback in self._hooked.items():
            self.broker.hooks.remove(point, callback)
        self._hooked.clear()
        self._queue.clear()
        for task in self._timers:
            task.cancel()
        for task in self._timers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._timers.clear()
        for resource in self.resources.values():
            await resource.stop()

    @staticmethod
    async def _every(seconds: float, work: Callable[[float], Any]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                result = work(seconds)
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                log.exception("rule engine: periodic %s failed", getattr(work, "__name__", ""))

    def _sample_speed(self, seconds: float) -> None:
        for rule in self.rules.values():
            rule.metrics.sample(seconds)

    async def _check_resources(self, seconds: float) -> None:
        for resource in list(self.resources.values()):
            await resource.check()

    # -- the hot path: record, then drain ------------------------------------------------
    def _reindex(self) -> None:
        """Rebuild the per-event rule lists and attach exactly the hooks they need."""
        by_event: dict[str, list[Rule]] = {}
        for rule in sorted(self.rules.values(), key=lambda r: r.created_at):
            if rule.enabled:
                for event in rule.events:
                    by_event.setdefault(event, []).append(rule)
        self._by_event = {event: tuple(rules) for event, rules in by_event.items()}
        self._by_topic = {}
        self._groups = {}
        wanted = {EVENTS[e].hook: e for e in by_event}
        hooks = self.broker.hooks
        for point in [p for p in self._hooked if p not in wanted]:
            hooks.remove(point, self._hooked.pop(point))
        if not self._running:
            return
        for point, event in wanted.items():
            if point not in self._hooked:
                callback = self._recorder(event)
                self._hooked[point] = callback
                hooks.add_dynamic(point, callback)

    def _recorder(self, event: str) -> Callable[..., None]:
        """The hook callback of an event: checks what is cheap to check, then records."""
        enqueue = self._enqueue
        if event == MESSAGE_PUBLISH:
            queue = self._queue

            def on_publish(message: Any) -> None:
                # The one callback on the publish path of every message: `_enqueue`
                # inlined for the common case (room in the queue).
                topic = message.topic
                if self.ignore_sys_message and (message.sys or topic.startswith("$SYS/")):
                    return None
                cache = self._by_topic.get(MESSAGE_PUBLISH)
                group = cache.get(topic) if cache is not None else None
                if group is None:
                    group = self._group_for_topic(MESSAGE_PUBLISH, topic)
                if not group.rules:
                    return None
                if self._scheduled and len(queue) < self.max_pending:
                    queue.append(message)  # a message alone: message.publish
                else:
                    enqueue(MESSAGE_PUBLISH, (message,))
                return None  # leave the message as it is (a fold hook)
            return on_publish
        if event == MESSAGE_DROPPED:
            def on_dropped(message: Any, reason: Any) -> None:
                if not (self.ignore_sys_message and
                        (message.sys or message.topic.startswith("$SYS/"))):
                    enqueue(MESSAGE_DROPPED, (message, reason))
            return on_dropped

        def on_event(*args: Any) -> None:
            enqueue(event, args)
        return on_event

    def _enqueue(self, event: str, args: tuple[Any, ...]) -> None:
        queue = self._queue
        if len(queue) >= self.max_pending:
            self.dropped += 1
            return
        # A published message is queued alone (the message has its time): two tuples
        # less per message, on the path of every message.
        queue.append(args[0] if event == MESSAGE_PUBLISH else (event, args, time.time()))
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._drain)

    def _drain(self) -> None:
        self._scheduled = False
        queue = self._queue
        pop = queue.popleft
        for _ in range(min(len(queue), BATCH)):
            entry = pop()
            try:
                if isinstance(entry, tuple):
                    self._process(*entry)
                else:
                    self._process_message(MESSAGE_PUBLISH, entry, (entry,), 0.0)
            except Exception:
                log.exception("rule engine: event %s not processed",
                              entry[0] if isinstance(entry, tuple) else MESSAGE_PUBLISH)
        if queue and self._running:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._drain)

    def _group_for_topic(self, event: str, topic: str) -> RuleGroup:
        """The enabled rules of a message event whose FROM takes `topic`, remembered."""
        cache = self._by_topic.get(event)
        if cache is None or len(cache) >= TOPIC_CACHE:
            cache = self._by_topic[event] = {}
        plain = not topic.startswith("$")  # "#" matches it
        found = []
        for rule in self._by_event.get(event, ()):
            filters = rule.topic_filters
            if not filters or (plain and rule.any_topic) or \
                    any(matches(f, topic) for f in filters):
                found.append(rule)
        group = cache[topic] = self._group(tuple(found))
        return group

    def _group(self, rules: tuple[Rule, ...]) -> RuleGroup:
        """The one `RuleGroup` of these rules (topics with the same rules share it and
        its compiled runner); forgotten when the rules change, or past GROUP_CACHE."""
        group = self._groups.get(rules)
        if group is None:
            if len(self._groups) >= GROUP_CACHE:
                self._groups.clear()
            group = self._groups[rules] = RuleGroup(rules)
        return group

    def _process(self, event: str, args: tuple[Any, ...], at: float) -> None:
        """Run the rules of one recorded event: its columns are built once and its
        group's runner (all the rules in one function) runs on them."""
        if event in MESSAGE_EVENTS:
            self._process_message(event, args[MESSAGE_ARG[event]], args, at)
            return
        rules = self._by_event.get(event)
        if rules:
            self._run(self._group(rules), self.columns.build(event, args, at))

    def _process_message(self, event: str, message: Message, args: tuple[Any, ...],
                         at: float) -> None:
        topic = message.topic
        cache = self._by_topic.get(event)
        group = cache.get(topic) if cache is not None else None
        if group is None:
            group = self._group_for_topic(event, topic)
        if not group.rules:
            return
        columns = self.columns.build(event, args, at)
        chain = message.headers.get(REPUBLISHED_BY)
        if chain:  # never on its own republished output
            group = self._group(tuple(r for r in group.rules if r.id not in chain))
            if not group.rules:
                return
        self._run(group, columns)

    @staticmethod
    def _run(group: RuleGroup, columns: dict[str, Any]) -> None:
        runner = group.runner
        if runner is None:
            runner = group.runner = runner_for(group.rules)
        runner(columns)

    # -- rules ---------------------------------------------------------------------------
    def _new_rule_id(self, name: str | None) -> str:
        if not name:
            while True:
                rid = f"rule:{secrets.token_hex(4)}"
                if rid not in self.rules:
                    return rid
        stamp = time.time_ns()
        while f"{name}:{stamp}" in self.rules:
            stamp += 1
        return f"{name}:{stamp}"

    def _resource(self, rid: str) -> Resource | None:
        return self.resources.get(rid)

    def _events(self, for_: Any, sql: RuleSql) -> frozenset[str]:
        """The events a rule runs on: FROM's event names (v3.2), or `for` (v3.1, with
        topic filters in FROM; message.publish when absent)."""
        given: list[str] = []
        if for_ is not None:
            names = [for_] if isinstance(for_, str) else for_
            if not isinstance(names, list) or not names or \
                    not all(isinstance(n, str) for n in names):
                raise bad_arguments("'for' must be an event name or a list of them")
            for name in names:
                event = event_name(name)
                if event is None:
                    raise RuleError(f"Event {name} Not Found")
                given.append(event)
        from_sql = set()
        for name in sql.events():  # message.publish for FROM's topic filters
            event = event_name(name)
            if event is None:
                raise RuleError(f"Event {name} Not Found")
            from_sql.add(event)
        if sql.topic_filters and given:
            # v3.1: `for` names the hook; the topic filters restrict message events only.
            named = {e for n in sql.event_names if (e := event_name(n)) is not None}
            return frozenset({*given, *named})
        if given and not set(given) <= from_sql:
            raise bad_arguments(f"'for' ({', '.join(given)}) is not among the events of "
                                f"the SQL's FROM ({', '.join(sorted(from_sql))})")
        return frozenset(from_sql)

    def _make_rule(self, rid: str, body: Mapping[str, Any]) -> Rule:
        """A rule from a create/update body or a stored row (checked the same way)."""
        rawsql = _str_field(body, "rawsql")
        if not rawsql:
            raise bad_arguments("missing 'rawsql'")
        try:
            sql = parse_sql(rawsql)
        except SqlError as exc:
            raise bad_arguments(str(exc)) from None
        for_ = body.get("for")
        events = self._events(for_, sql)
        if not sql.topic_filters:
            # v3.2 scope: WHERE and SELECT may read the events' columns only.
            try:
                sql.check_columns(known_columns(events))
            except SqlError as exc:
                raise RuleError(str(exc)) from None
        if for_ is None:
            for_ = next(iter(events)) if len(events) == 1 else sorted(events)
        name = _str_field(body, "name", "") or ""
        description = _str_field(body, "description", "") or ""
        enabled = body.get("enabled", True)
        if enabled in ("true", "false"):  # from the query string (`?enabled=false`)
            enabled = enabled == "true"
        if not isinstance(enabled, bool):
            raise bad_arguments("'enabled' must be true or false")
        actions_given = body.get("actions", [])
        if not isinstance(actions_given, list):
            raise bad_arguments("'actions' must be a list of {name, params}")
        actions: list[BoundAction] = []
        for item in actions_given:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise bad_arguments("each action must be an object with a 'name'")
            spec = find_action(item["name"])
            if spec is None:
                raise RuleError(f"Action {item['name']} Not Found")
            params = spec.check_params(item.get("params"), self._resource)
            run = spec.make(ActionContext(self.broker, self._resource, rid, params))
            actions.append(BoundAction(item["name"], params, run))
        created_at = body.get("created_at")
        if not isinstance(created_at, int):
            created_at = time.time_ns()
        return Rule(rid, name or rid.rsplit(":", 1)[0], for_, rawsql, sql, events, actions,
                    description, enabled, created_at)

    def create_rule(self, body: Any) -> Rule:
        if not isinstance(body, dict):
            raise bad_arguments("the body must be a JSON object")
        name = _str_field(body, "name")
        rule = self._make_rule(self._new_rule_id(name), {**body, "created_at": None})
        self.rules[rule.id] = rule
        self._rules_table.put(rule.id, rule.record())
        self._reindex()
        return rule

    def update_rule(self, rid: str, body: Any) -> Rule:
        """`PUT /rules/:id`: change any of rawsql, for, actions, description, enabled,
        name (the id stays).  Rule metrics are kept."""
        current = self.rules.get(rid)
        if current is None:
            raise not_found()
        if not isinstance(body, dict):
            raise bad_arguments("the body must be a JSON object")
        merged = current.record()
        merged.update({k: v for k, v in body.items()
                       if k in ("rawsql", "for", "actions", "description", "enabled", "name")})
        if "rawsql" in body and "for" not in body and not current.topic_filters:
            merged.pop("for", None)  # a v3.2 rule's `for` follows its FROM
        rule = self._make_rule(rid, merged)
        rule.metrics = current.metrics
        self.rules[rid] = rule
        self._rules_table.put(rid, rule.record())
        self._reindex()
        return rule

    def delete_rule(self, rid: str) -> None:
        if self.rules.pop(rid, None) is not None:
            self._rules_table.delete(rid)
            self._reindex()

    # -- changes made on another node of the cluster --------------------------------------
    def _rule_replicated(self, rid: str, row: Any) -> None:
        """A rule created, changed or deleted on another node: the same here (this
        node's metrics of it are kept)."""
        if row is None:
            if self.rules.pop(rid, None) is not None:
                self._reindex()
            return
        try:
            rule = self._make_rule(rid, row)
        except RuleError as exc:
            log.error("replicated rule %s not loaded: %s", rid, exc.message)
            return
        current = self.rules.get(rid)
        if current is not None:
            rule.metrics = current.metrics
        self.rules[rid] = rule
        self._reindex()

    def _resource_replicated(self, rid: str, row: Any) -> None:
        old = self.resources.pop(rid, None)
        if old is not None:
            self._track(old.stop())
        if row is None:
            return
        resource = self._stored_resource(rid, row, "replicated")
        if resource is not None:
            self._track(resource.start())

    def _stored_resource(self, rid: str, row: Any, where: str) -> Resource | None:
        """A resource from its table row, in `self.resources` (not started yet)."""
        try:
            resource = make_resource(rid, row.get("name", ""), row.get("type", ""),
                                     row.get("config"), row.get("description", ""),
                                     self.broker.alarms, row.get("created_at"))
        except RuleError as exc:
            log.error("%s resource %s not loaded: %s", where, rid, exc.message)
            return None
        self.resources[rid] = resource
        return resource

    def _track(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._pending_work.add(task)
        task.add_done_callback(self._pending_work.discard)

    def rule_list(self) -> list[Rule]:
        return sorted(self.rules.values(), key=lambda r: r.created_at)

    def test_sql(self, rawsql: Any, ctx: Any) -> Selected:
        """A dry run (`test: true`): the SQL on columns given in `ctx`, over the
        sample values of its event.  FOREACH gives the list of what each element
        selects (maybe empty); a WHERE that does not hold is `SQL Not Match` (404)."""
        if not isinstance(rawsql, str) or not rawsql:
            raise bad_arguments("missing 'rawsql'")
        if ctx is not None and not isinstance(ctx, dict):
            raise bad_arguments("'ctx' must be an object")
        try:
            sql = parse_sql(rawsql)
        except SqlError as exc:
            raise bad_arguments(str(exc)) from None
        events = sorted(self._events(None, sql))
        info = EVENTS[events[0]]
        columns = {**info.test_columns, "event": info.name, "node": self.node,
                   "timestamp": int(time.time() * 1000), **(ctx or {})}
        try:
            selected = sql.apply(columns)
        except Exception as exc:
            raise bad_arguments(f"SQL failed: {exc}") from None
        if selected is None:
            raise RuleError("SQL Not Match", 404)
        return selected

    # -- resources -----------------------------------------------------------------------
    async def create_resource(self, body: Any) -> Resource:
        if not isinstance(body, dict):
            raise bad_arguments("the body must be a JSON object")
        type_name = _str_field(body, "type")
        if not type_name:
            raise bad_arguments("missing 'type'")
        if type_name not in RESOURCE_TYPES:
            raise RuleError(f"Resource Type {type_name} Not Found")
        name = _str_field(body, "name")
        if name:
            rid = f"{type_name}:{name}"
            if rid in self.resources:
                raise RuleError(f"Resource {rid} Already Exists", 400, 409)
        else:
            rid = f"resource:{secrets.token_hex(4)}"
            name = rid
        resource = make_resource(rid, name, type_name, body.get("config"),
                                 _str_field(body, "description", "") or "", self.broker.alarms)
        self.resources[rid] = resource
        self._resources_table.put(rid, resource.record())
        if not await resource.start():
            log.warning("resource %s created but not reachable", rid)
        return resource

    async def test_resource(self, body: Any) -> None:
        """A dry run (`test: true`): the type and config checked as at create, and a
        web hook's endpoint probed; nothing is created.  Unreachable: EMQ X's
        ``Test Creating Resource Failed`` (code 500)."""
        if not isinstance(body, dict):
            raise bad_arguments("the body must be a JSON object")
        type_name = _str_field(body, "type")
        if not type_name:
            raise bad_arguments("missing 'type'")
        resource = make_resource("resource:test", "test", type_name, body.get("config"), "",
                                 self.broker.alarms)
        if resource.type.name == "web_hook" and not await probe(resource.config["url"]):
            raise RuleError("Test Creating Resource Failed", 500, 400)

    async def start_resource(self, rid: str) -> Resource:
        resource = self.resources.get(rid)
        if resource is None:
            raise RuleError(f"Resource {rid} Not Found", 400, 404)
        if not await resource.start():
            raise RuleError(f"Start Resource {rid} Failed")
        return resource

    def users_of(self, rid: str) -> list[str]:
        return [rule.id for rule in self.rule_list()
                if any(a.params.get("$resource") == rid for a in rule.actions)]

    async def delete_resource(self, rid: str) -> None:
        resource = self.resources.get(rid)
        if resource is None:
            return
        users = self.users_of(rid)
        if users:
            raise RuleError(f"Resource {rid} is in use by rule {', '.join(users)}", 400, 409)
        del self.resources[rid]
        self._resources_table.delete(rid)
        await resource.stop()

    def resource_list(self, type_name: str | None = None) -> list[Resource]:
        return sorted((r for r in self.resources.values()
                       if type_name is None or r.type.name == type_name),
                      key=lambda r: r.created_at)

    @staticmethod
    def action_list(event: str | None) -> list[Any]:
        return actions_for(event)

    def stats(self) -> dict[str, int]:
        return {"pending": len(self._queue), "dropped": self.dropped}
