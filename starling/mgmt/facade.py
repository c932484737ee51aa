"""`Management`: every view and action the API and the dashboard use, by node.

Route modules call this and nothing else for the views it covers.  Each method
takes the node it is about (a `/nodes/:node/...` route) or is the cluster-wide
form (``cluster_*``), which asks every node at once and merges their answers:
lists of per-node objects get one entry per node, paginated lists are cut from
the concatenation of every node's list in node order (counts first, then only
the rows the page needs from each node).  A node that does not answer within
`timeout` is reported (`Page.failed`, `fields.unreachable`) and the others'
answers are still served.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from . import clients, fields, forward, node_views, plugin_views
from .local import LocalNode
from .names import NameStyle, metrics_named, stats_named
from .nodes import NodeAnswer, NodeUnavailable, RemoteNodes, UnknownNode
from .paging import Page, PageSpec, Row, windows
from .query import JSON, NoParams, Params, Query, QueryError
from .system import human_bytes

P = TypeVar("P", bound=Params)
#: Makes a slice query's parameters for (offset, limit).
SliceParams = Callable[[int, int], Params]

NO_PARAMS = NoParams()


class Management:
    def __init__(self, local: LocalNode, remote: RemoteNodes | None = None, *,
                 timeout: float = 5.0, metric_names: NameStyle = "slash") -> None:
        self.local = local
        #: The cluster's other nodes; None for a lone node.
        self.remote = remote
        #: Seconds a remote node has to answer.
        self.timeout = timeout
        #: How /stats and /metrics spell names (`management.metric_names`).
        self.metric_names: NameStyle = metric_names

    # -- nodes ---------------------------------------------------------------------------
    @property
    def node_name(self) -> str:
        return self.local.name

    def node_names(self) -> list[str]:
        """This node first, then the cluster's others."""
        others = [n for n in self.remote.names() if n != self.local.name] if self.remote else []
        return [self.local.name, *others]

    def knows(self, node: str) -> bool:
        return node == self.local.name or (
            self.remote is not None and node in self.remote.names())

    def is_local(self, node: str) -> bool:
        return node == self.local.name

    async def call(self, node: str, q: Query[P], params: P) -> JSON:
        """Run `q` on `node`.  Raises UnknownNode, NodeUnavailable, or the QueryError
        the query raised."""
        if node == self.local.name:
            return await q.run(self.local, params)
        if not self.knows(node):
            raise UnknownNode(node)
        assert self.remote is not None
        try:
            return await asyncio.wait_for(
                self.remote.call(node, q.name, params.to_json(), self.timeout), self.timeout)
        except QueryError:
            raise
        except TimeoutError:
            raise NodeUnavailable(node, f"no answer within {self.timeout:g} s") from None
        except Exception as exc:
            raise NodeUnavailable(node, f"{type(exc).__name__}: {exc}") from None

    async def call_all(self, q: Query[P], params: P) -> list[NodeAnswer]:
        """`q` on every node at once, in node order."""
        return list(await asyncio.gather(*(self._answer(n, q, params)
                                           for n in self.node_names())))

    async def _answer(self, node: str, q: Query[P], params: P) -> NodeAnswer:
        try:
            return NodeAnswer(node, await self.call(node, q, params))
        except NodeUnavailable as exc:
            return NodeAnswer(node, error=exc.reason)

    async def _per_node(self, q: Query[P], params: P,
                        shape: Callable[[str, JSON], Row]) -> list[Row]:
        """A cluster-wide list of per-node objects; a silent node gets its marker."""
        return [shape(a.node, a.value) if a.ok else fields.unreachable(a.node, a.error or "")
                for a in await self.call_all(q, params)]

    # -- paginated lists -----------------------------------------------------------------
    async def _page(self, node: str | None, q: Query[Any], make: SliceParams,
                    spec: PageSpec) -> Page:
        if node is not None or len(self.node_names()) == 1:
            answer = await self.call(node or self.local.name, q, make(spec.offset, spec.limit))
            return Page(answer["rows"], spec.page, spec.limit, answer["count"])
        return await self._merged_page(q, make, spec)

    async def _merged_page(self, q: Query[Any], make: SliceParams, spec: PageSpec) -> Page:
        """Counts from every node (the first node's rows with them), then each later
        node's share of the page."""
        names = self.node_names()
        first = await asyncio.gather(self._answer(names[0], q, make(spec.offset, spec.limit)),
                                     *(self._answer(n, q, make(0, 0)) for n in names[1:]))
        counts = [a.value["count"] if a.ok else 0 for a in first]
        cuts = windows(counts, spec.offset, spec.limit)
        rest = await asyncio.gather(*(
            self._answer(name, q, make(*cut))
            for name, cut, a in zip(names[1:], cuts[1:], first[1:], strict=True)
            if a.ok and cut[1] > 0))
        failed = [a for a in (*first, *rest) if not a.ok]
        rows: list[Row] = first[0].value["rows"] if first[0].ok else []
        for a in rest:
            if a.ok:
                rows.extend(a.value["rows"])
        return Page(rows[:spec.limit], spec.page, spec.limit, sum(counts),
                    [{"node": a.node, "error": a.error} for a in failed])

    # -- connections ---------------------------------------------------------------------
    async def connections(self, node: str | None, spec: PageSpec, *,
                          client_id: str | None = None, username: str | None = None) -> Page:
        """Connections on `node` (None: the cluster), optionally only a client id's or
        a user name's."""
        def make(offset: int, limit: int) -> Params:
            return clients.ClientSlice(offset, limit, client_id, username)
        return await self._page(node, clients.connections_slice, make, spec)

    async def kick(self, node: str | None, client_id: str) -> bool:
        """Close the client's connection (on every node for None); True if one was."""
        params = clients.ClientId(client_id)
        if node is not None:
            return bool(await self.call(node, clients.kick, params))
        return any(a.ok and a.value for a in await self.call_all(clients.kick, params))

    # -- sessions ------------------------------------------------------------------------
    async def sessions(self, node: str | None, spec: PageSpec, *,
                       client_id: str | None = None, username: str | None = None) -> Page:
        def make(offset: int, limit: int) -> Params:
            return clients.ClientSlice(offset, limit, client_id, username)
        return await self._page(node, clients.sessions_slice, make, spec)

    async def clean_session(self, node: str | None, client_id: str) -> str:
        """"ok", "not_found" or "running_session" (for None: "ok" if any node cleaned
        one, else "running_session" if any had it online)."""
        params = clients.ClientId(client_id)
        if node is not None:
            return str(await self.call(node, clients.clean_session, params))
        results = {a.value for a in await self.call_all(clients.clean_session, params) if a.ok}
        for result in ("ok", "running_session"):
            if result in results:
                return result
        return "not_found"

    # -- subscriptions and routes --------------------------------------------------------
    async def subscriptions(self, node: str | None, spec: PageSpec, *,
                            client_id: str | None = None, topic: str | None = None) -> Page:
        def make(offset: int, limit: int) -> Params:
            return clients.SubscriptionSlice(offset, limit, client_id, topic)
        return await self._page(node, clients.subscriptions_slice, make, spec)

    async def routes(self, spec: PageSpec, *, topic: str | None = None) -> Page:
        """Every node's routes (EMQ X's route table has one per topic and node)."""
        def make(offset: int, limit: int) -> Params:
            return clients.RouteSlice(offset, limit, topic)
        return await self._page(None, clients.routes_slice, make, spec)

    # -- node facts ----------------------------------------------------------------------
    async def node(self, node: str) -> Row:
        info: Row = await self.call(node, node_views.node_info, NO_PARAMS)
        return info

    async def cluster_nodes(self) -> list[Row]:
        """EMQ X's list form: `node` added, memory with units (``"76.45M"``)."""
        out = []
        for a in await self.call_all(node_views.node_info, NO_PARAMS):
            if not a.ok:
                out.append({**fields.unreachable(a.node, a.error or ""), "name": a.node})
                continue
            info = dict(a.value)
            info["memory_total"] = human_bytes(info["memory_total"])
            info["memory_used"] = human_bytes(info["memory_used"])
            out.append({"node": a.node, **info})
        return out

    async def broker(self, node: str) -> Row:
        info: Row = await self.call(node, node_views.broker_info, NO_PARAMS)
        return info

    async def cluster_brokers(self) -> list[Row]:
        return await self._per_node(node_views.broker_info, NO_PARAMS,
                                    lambda n, v: {"node": n, **v})

    async def stats(self, node: str) -> Row:
        return stats_named(await self.call(node, node_views.stats, NO_PARAMS), self.metric_names)

    async def cluster_stats(self) -> list[Row]:
        style = self.metric_names
        return await self._per_node(node_views.stats, NO_PARAMS,
                                    lambda n, v: {"node": n, **stats_named(v, style)})

    async def metrics(self, node: str) -> Row:
        return metrics_named(await self.call(node, node_views.metrics, NO_PARAMS),
                             self.metric_names)

    async def cluster_metrics(self) -> list[Row]:
        style = self.metric_names
        return await self._per_node(node_views.metrics, NO_PARAMS,
                                    lambda n, v: {"node": n, "metrics": metrics_named(v, style)})

    # -- listeners -----------------------------------------------------------------------
    async def listeners(self, node: str) -> list[Row]:
        rows: list[Row] = await self.call(node, node_views.listeners, NO_PARAMS)
        return rows

    async def cluster_listeners(self) -> list[Row]:
        return await self._per_node(node_views.listeners, NO_PARAMS,
                                    lambda n, v: {"node": n, "listeners": v})

    async def listener_details(self, node: str) -> list[Row]:
        rows: list[Row] = await self.call(node, node_views.listener_details, NO_PARAMS)
        return rows

    async def listener(self, node: str, name: str) -> Row | None:
        found: Row | None = await self.call(node, node_views.listener,
                                            node_views.ListenerName(name))
        return found

    async def switch_listener(self, node: str, name: str, running: bool) -> None:
        """Raises QueryError not_found / already_started / not_started."""
        await self.call(node, node_views.switch_listener, node_views.ListenerSwitch(name, running))

    # -- alarms and bans -----------------------------------------------------------------
    async def alarms(self, node: str, *, history: bool = False) -> list[Row]:
        rows: list[Row] = await self.call(node, node_views.alarms, node_views.AlarmKind(history))
        return rows

    async def cluster_alarms(self, *, history: bool = False) -> list[Row]:
        return await self._per_node(node_views.alarms, node_views.AlarmKind(history),
                                    lambda n, v: {"node": n, "alarms": v})

    async def banned(self, spec: PageSpec) -> Page:
        """The ban table (this node's; a cluster shares one table)."""
        answer = await self.call(self.local.name, node_views.banned,
                                 node_views.BanSlice(spec.offset, spec.limit))
        return Page(answer["rows"], spec.page, spec.limit, answer["count"])

    # -- plugins -------------------------------------------------------------------------
    async def plugins(self, node: str) -> list[Row]:
        rows: list[Row] = await self.call(node, plugin_views.plugins, NO_PARAMS)
        return rows

    async def cluster_plugins(self) -> list[Row]:
        return await self._per_node(plugin_views.plugins, NO_PARAMS,
                                    lambda n, v: {"node": n, "plugins": v})

    async def plugin_action(self, node: str, plugin: str, verb: str) -> None:
        """load, unload or reload; raises QueryError with the registry's reason."""
        await self.call(node, plugin_views.plugin_action, plugin_views.PluginAction(plugin, verb))

    async def plugin_configs(self, node: str, plugin: str) -> list[Row]:
        rows: list[Row] = await self.call(node, plugin_views.plugin_configs,
                                          plugin_views.PluginName(plugin))
        return rows

    async def configure_plugin(self, node: str, plugin: str, values: dict[str, Any]) -> None:
        await self.call(node, plugin_views.configure_plugin,
                        plugin_views.PluginConfig(plugin, values))

    # -- anything else -------------------------------------------------------------------
    async def forward(self, node: str, method: str, segments: list[str],
                      query: dict[str, str], body: JSON) -> JSON:
        """Run a whole API request on `node`: ``{"status", "body"}``."""
        return await self.call(node, forward.api_call,
                               forward.ApiCall(method, segments, query, body))
