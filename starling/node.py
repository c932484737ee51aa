"""Assemble a node from its configuration, and take it down in order.

Start: broker core → MQTT listeners.  Stop: listeners stop accepting →
broker closes every connection → timers and tasks end.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from . import __version__, compiled
from .api import (
    ApiContext,
    AppRegistry,
    Dashboard,
    HttpLimits,
    HttpListener,
    ListenerInfo,
    ManagementApp,
    PluginRoutes,
    RouteDispatcher,
    RuntimeConfig,
    UserRegistry,
    build_table,
    prometheus_routes,
)
from .broker import Broker, BrokerOptions, Journal
from .client_log import ClientLog
from .cluster import (
    ClusterConfigError,
    NameTaken,
    cluster_settings,
    make_cluster,
    remote_nodes,
)
from .config import Config, ConfigError
from .datadir import DataDir
from .gateways import CoapPlugin, Lwm2mPlugin, SnPlugin, StompPlugin, broker_hub
from .mgmt import LocalNode, Management, name_style
from .plugins import (
    PluginContext,
    PluginError,
    PluginPersistence,
    PluginRegistry,
    PluginStore,
    discover_plugins,
    plugin_names,
)
from .plugins.auth import (
    AclFile,
    AclFileError,
    ClientIdAuthPlugin,
    HttpAuthPlugin,
    JwtAuthPlugin,
    LdapAuthPlugin,
    MongoAuthPlugin,
    MysqlAuthPlugin,
    PgsqlAuthPlugin,
    PskFilePlugin,
    RedisAuthPlugin,
    UsernameAuthPlugin,
    register_acl_routes,
    register_table_routes,
)
from .plugins.dashboard import DashboardPlugin
from .plugins.delayed_publish import DelayedPublishPlugin
from .plugins.lua_hook import LuaHookPlugin
from .plugins.lua_hook import register_routes as lua_hook_routes
from .plugins.management import ManagementPlugin
from .plugins.recon import ReconPlugin
from .plugins.recon import register_routes as recon_routes
from .plugins.reloader import ReloaderPlugin
from .plugins.reloader import register_routes as reloader_routes
from .plugins.retainer import RetainerPlugin
from .plugins.statsd import StatsdPlugin
from .plugins.template import TemplatePlugin
from .plugins.web_hook import WebHookPlugin
from .rules import PLUGIN as RULE_ENGINE
from .rules import RuleEnginePlugin
from .runtime_file import RuntimeFile
from .store import MemoryStore, SQLiteStore, Store
from .transport import (
    BindError,
    Listener,
    ListenerConfig,
    TlsOptions,
    Tracer,
    parse_bind,
    raise_open_files_limit,
    warn_over_limit,
)

log = logging.getLogger(__name__)
startup_log = logging.getLogger("starling.startup")

#: The REST routes plugins hold: the auth tables first (as the seed lists them), then
#: after the core's the ACL file's and the feature plugins' (answered while loaded).
PLUGIN_ROUTES = PluginRoutes(first=(register_table_routes,),
                             last=(register_acl_routes, recon_routes, reloader_routes,
                                   lua_hook_routes))

class StartError(Exception):
    """The node cannot start for a reason outside its configuration's syntax (a
    port in use, a plugin that cannot load); the message names what and why."""


#: MQTT listener kinds, in the order they start (EMQ X's protocol names mqtt:<kind>).
LISTENER_KINDS = ("tcp", "ssl", "ws", "wss")


def broker_options(config: Config) -> BrokerOptions:
    return BrokerOptions(
        node_name=config["node.name"],
        version=__version__,
        max_packet_size=config["mqtt.max_packet_size"],
        max_clientid_len=config["mqtt.max_clientid_len"],
        max_topic_levels=config["mqtt.max_topic_levels"],
        allow_anonymous=config["mqtt.allow_anonymous"],
        keepalive_multiplier=config["mqtt.keepalive_multiplier"],
        idle_timeout=config["mqtt.idle_timeout"],
        retain_available=config["mqtt.retain_available"],
        allow_control_characters=config["mqtt.allow_control_characters"],
        wildcard_subscription=config["mqtt.wildcard_subscription"],
        server_keepalive=config["mqtt.server_keepalive"],
        max_topic_alias=config["mqtt.max_topic_alias"],
        server_topic_alias=config["mqtt.server_topic_alias"],
        shared_subscription=config["mqtt.shared_subscription"],
        shared_subscription_strategy=config["mqtt.shared_subscription_strategy"],
        message_expiry_interval=config["mqtt.message_expiry_interval"],
        response_information=config["mqtt.response_information"],
        allow_sys_publish=config["mqtt.allow_sys_publish"],
        session_expiry_interval=config["session.expiry_interval"],
        max_inflight=config["session.max_inflight"],
        max_mqueue_len=config["session.max_mqueue_len"],
        max_mqueue_bytes=config["session.max_mqueue_bytes"],
        mqueue_store_qos0=config["session.mqueue_store_qos0"],
        max_awaiting_rel=config["session.max_awaiting_rel"],
        await_rel_timeout=config["session.await_rel_timeout"],
        retry_interval=config["session.retry_interval"],
        strict_resume=config["session.strict_resume"],
        sys_interval=config["broker.sys_interval"],
        sys_heartbeat=config["broker.sys_heartbeat"],
        presence_qos=config["broker.presence_qos"],
        alarm_check_interval=config["alarm.check_interval"],
        cpu_high_watermark=config["alarm.cpu_high_watermark"],
        cpu_low_watermark=config["alarm.cpu_low_watermark"],
        sysmem_high_watermark=config["alarm.sysmem_high_watermark"],
        procmem_high_watermark=config["alarm.procmem_high_watermark"],
        connections_high_watermark=config["alarm.connections_high_watermark"],
        connections_low_watermark=config["alarm.connections_low_watermark"],
        **acl_options(config),
    )


#: Zone keys whose BrokerOptions field has another name or unit.
_ZONE_FIELDS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "keepalive_backoff": ("keepalive_multiplier", lambda backoff: backoff * 2),
    "rate_limit.conn_bytes_in": ("bytes_in_limit", tuple),
    "publish_limit": ("publish_limit", tuple),
}


def zone_options(config: Config, base: BrokerOptions) -> dict[str, BrokerOptions]:
    """Each zone's options: its `zone.<name>.*` keys over the node-wide `base`
    (`enable_acl` is read by `acl_options`)."""
    zones = {}
    for zone in config.zone_names():
        changes = {}
        for field, value in config.zone_settings(zone).items():
            if field == "enable_acl":
                continue
            name, convert = _ZONE_FIELDS.get(field, (field, lambda v: v))
            changes[name] = convert(value)
        zones[zone] = dataclasses.replace(base, **changes) if changes else base
    return zones


def acl_options(config: Config) -> dict[str, Any]:
    """The ACL settings as broker options (docs/acl.md)."""
    return {
        "acl_nomatch": config["acl_nomatch"],
        "acl_deny_action": config["acl_deny_action"],
        "enable_acl_cache": config["enable_acl_cache"],
        "acl_cache_max_size": config["acl_cache_max_size"],
        "acl_cache_ttl": config["acl_cache_ttl"],
        "acl_deliver_check": config["acl_deliver_check"],
        "acl_deliver_cache_max_size": config["acl_deliver_cache_max_size"],
        "acl_disabled_zones": frozenset(
            key.split(".")[1] for key, on in config.items()
            if key.startswith("zone.") and key.endswith(".enable_acl") and not on),
    }


class Node:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.name: str = config["node.name"]
        self.data_dir = Path(config["node.data_dir"])
        try:
            self.cluster_settings = cluster_settings(config)
        except ClusterConfigError as exc:
            raise ConfigError(str(exc)) from None
        #: This node's membership of a cluster (`cluster.discovery = nats`), once joined.
        self.cluster: Any = None
        self.datadir = DataDir(self.data_dir)
        #: How `starling ctl` on this machine reaches the node (written once started).
        self.runtime_file = RuntimeFile(self.data_dir)
        self.store = self._make_store()
        self.journal = Journal(self.store, config["store.durability"],
                               config["store.commit_interval"])
        options = broker_options(config)
        self.broker = Broker(options, self.journal, zone_options(config, options))
        self.broker.set_retainer(None)  # until emqx_retainer loads
        self.broker.monitor.connection_usage = self.connection_usage
        self._broker_started = False
        self.listeners: list[Listener] = []
        self.http_listeners: list[HttpListener] = []
        self.apps = AppRegistry()
        self.local = LocalNode(self.name, __version__, self.broker,
                               listeners=self.listener_infos, listener_control=self)
        try:
            metric_names = name_style(config["management.metric_names"])
        except ValueError as exc:
            raise ConfigError(f"management.metric_names: {exc}") from None
        self.mgmt = Management(self.local, metric_names=metric_names)
        self.api = ApiContext(self.broker, self.apps, self.name, __version__, self.mgmt)
        self.plugin_store = PluginStore(self.store.load_kv, self._kv_put, self._kv_delete)
        self.plugin_context = PluginContext(self.broker, self.name, self.data_dir,
                                            store=self.plugin_store)
        self.plugins = PluginRegistry(self.plugin_context, version=f"v{__version__}")
        for auth in (ClientIdAuthPlugin, UsernameAuthPlugin):
            self.plugins.implement(auth.SPEC.plugin, auth, auth.SCHEMA)
        for backend in (RedisAuthPlugin, MysqlAuthPlugin, PgsqlAuthPlugin, MongoAuthPlugin):
            self.plugins.implement(backend.PLUGIN, backend, backend.SCHEMA)
        self.plugins.implement("emqx_plugin_template", TemplatePlugin, TemplatePlugin.SCHEMA)
        self.plugins.implement("emqx_recon", ReconPlugin, ReconPlugin.SCHEMA)
        self.plugins.implement("emqx_reloader", ReloaderPlugin.factory(self.plugins),
                               ReloaderPlugin.SCHEMA)
        self.plugins.implement("emqx_lua_hook", LuaHookPlugin, LuaHookPlugin.SCHEMA)
        self.plugins.implement(RULE_ENGINE, RuleEnginePlugin, RuleEnginePlugin.SCHEMA)
        self.plugins.implement("emqx_auth_http", HttpAuthPlugin, HttpAuthPlugin.SCHEMA)
        self.plugins.implement("emqx_auth_jwt", JwtAuthPlugin, JwtAuthPlugin.SCHEMA)
        self.plugins.implement("emqx_auth_ldap", LdapAuthPlugin, LdapAuthPlugin.SCHEMA)
        self.plugins.implement("emqx_psk_file", PskFilePlugin, PskFilePlugin.SCHEMA)
        self.plugins.implement("emqx_web_hook", WebHookPlugin, WebHookPlugin.SCHEMA)
        self.plugins.implement("emqx_statsd", StatsdPlugin, StatsdPlugin.SCHEMA)
        self.plugins.implement("emqx_retainer", RetainerPlugin, RetainerPlugin.SCHEMA)
        self.plugins.implement("emqx_sn", SnPlugin, SnPlugin.SCHEMA)
        self.plugins.implement("emqx_stomp", StompPlugin, StompPlugin.SCHEMA)
        self.plugins.implement("emqx_delayed_publish", DelayedPublishPlugin,
                               DelayedPublishPlugin.SCHEMA)
        self.plugins.implement("emqx_coap", CoapPlugin.factory(broker_hub), CoapPlugin.SCHEMA)
        self.plugins.implement("emqx_lwm2m", Lwm2mPlugin.factory(broker_hub),
                               Lwm2mPlugin.SCHEMA)
        discover_plugins(self.plugins)
        etc_dir = config["plugins.etc_dir"]
        self.plugin_state = PluginPersistence(self.plugins, self.plugin_store,
                                              plugin_names(config["plugins.loaded"]),
                                              Path(etc_dir) if etc_dir else None)
        #: The plugins to load at start (set by `_start_plugins`).
        self.boot_plugins: list[str] = []
        self.plugins.implement("emqx_management",
                               ManagementPlugin.factory(self._apply_management),
                               ManagementPlugin.SCHEMA)
        self.api.services["plugins"] = self.plugins
        self.local.plugins = self.plugins
        self.local.forwarder = RouteDispatcher(self.api, build_table(PLUGIN_ROUTES)).forwarded
        self.api.services["listener_control"] = self
        self.api.services["cluster"] = self
        self.users = UserRegistry()
        self.dashboard = Dashboard(self.api, self.users, self.http_listeners, PLUGIN_ROUTES)
        self.plugins.implement("emqx_dashboard",
                               DashboardPlugin.factory(self._dashboard_up, self.dashboard.stop),
                               DashboardPlugin.SCHEMA)
        self.api.services["configs"] = RuntimeConfig(config, self._apply_config)
        acl_file = config["acl_file"]
        acl_path = Path(acl_file) if acl_file else self.data_dir / "acl.conf"
        self.acl = AclFile(self.broker, acl_path, write_default=not acl_file,
                           check_interval=config["acl_file_check_interval"])
        self.api.services["acl"] = self.acl
        self.tracer = Tracer(self.broker, self.data_dir / "trace",
                             config["trace.max_file_size"],
                             lambda: (conn for lst in self.listeners for conn in lst.connections))
        self.api.services["trace"] = self.tracer
        self.client_log = ClientLog(self.broker, config["log.clients"])

    def _apply_config(self) -> None:
        """A runtime config change (PUT /configs): new broker options, no restart."""
        options = broker_options(self.config)
        self.broker.reconfigure(options, zone_options(self.config, options))

    def _apply_management(self, settings: Mapping[str, Any]) -> None:
        self.api.max_row_limit = settings["management.max_row_limit"]

    def _listener_configs(self) -> list[ListenerConfig]:
        """Every `listeners.<kind>.<name>` with a bind address, as ListenerConfig."""
        out = []
        config = self.config
        for kind in LISTENER_KINDS:
            for name in config.listener_names(kind):
                prefix = f"listeners.{kind}.{name}"
                bind = config[f"{prefix}.bind"]
                if bind == "off":
                    continue
                try:
                    host, port = parse_bind(bind)
                except ValueError as exc:
                    raise ConfigError(f"{prefix}.bind: {exc}") from None
                tls = None
                if kind in ("ssl", "wss"):
                    tls = self._tls_options(prefix)
                    if tls is None:
                        log.info("listener mqtt:%s:%s not started: no certificate configured "
                                 "(%s.ssl_options.certfile)", kind, name, prefix)
                        continue
                web = kind in ("ws", "wss")
                out.append(ListenerConfig(
                    f"mqtt:{kind}:{name}", host, port, zone=config[f"{prefix}.zone"],
                    max_connections=config[f"{prefix}.max_connections"],
                    acceptors=config[f"{prefix}.acceptors"], kind=kind, tls=tls,
                    path=config[f"{prefix}.path"] if web else "/mqtt",
                    proxy_address_header=config[f"{prefix}.proxy_address_header"] if web else "",
                    peer_cert_as_username=config[f"{prefix}.peer_cert_as_username"] if tls else "",
                    peer_cert_as_clientid=config[f"{prefix}.peer_cert_as_clientid"] if tls else "",
                    max_conn_rate=config[f"{prefix}.max_conn_rate"],
                    max_auth_pending=config[f"{prefix}.max_auth_pending"],
                    read_budget=config[f"{prefix}.read_budget"],
                    backlog=config[f"{prefix}.backlog"],
                    transport=self._transport(config[f"{prefix}.transport"])
                    if kind == "tcp" else "loop",

                    reuse_port=config["node.reuse_port"]))
        return out

    @staticmethod
    def _transport(setting: str) -> str:
        """`listeners.tcp.*.transport`: "auto" is the lean transport when the hot path
        runs compiled (it then costs per message what uvloop's transports do, within
        1%), the loop's in pure Python (where the lean one costs 1-4% more per
        message): benchmarks/README.md, "The lean TCP transport"."""
        if setting == "auto":
            return "lean" if compiled.COMPILED else "loop"
        return setting

    def _tls_options(self, prefix: str) -> TlsOptions | None:
        opts = f"{prefix}.ssl_options"
        certfile = self.config[f"{opts}.certfile"]
        psk_ciphers = self.config[f"{opts}.psk_ciphers"]
        if not certfile and not psk_ciphers:
            return None
        return TlsOptions(certfile, self.config[f"{opts}.keyfile"],
                          self.config[f"{opts}.cacertfile"], self.config[f"{opts}.verify"],
                          self.config[f"{opts}.fail_if_no_peer_cert"],
                          self.config[f"{opts}.ciphers"], self.config[f"{opts}.versions"],
                          psk_ciphers)

    def _make_store(self) -> Store:
        if self.config["store.backend"] == "memory":
            return MemoryStore()
        return SQLiteStore(self.data_dir / "starling.db", self.config["store.sync"])

    def connection_usage(self) -> list[tuple[str, int, int]]:
        """(name, current, max) connections of each MQTT listener, for the alarm monitor."""
        return [(lst.name, lst.current_connections, lst.config.max_connections)
                for lst in self.listeners]

    def listener_infos(self) -> list[ListenerInfo]:
        infos = [ListenerInfo(lst.name.rsplit(":", 1)[0], lst.name, lst.bound[0], lst.bound[1],
                              lst.config.acceptors, lst.config.max_connections,
                              lst.current_connections, dict(lst.shutdown_count),
                              lst.server is not None,
                              lst.config.path if lst.name.startswith(("mqtt:ws:", "mqtt:wss:"))
                              else "")
                 for lst in self.listeners]
        infos += [ListenerInfo(h.name, h.name, h.bound[0], h.bound[1], 1, h.max_connections,
                               h.current_connections, dict(h.guard.shutdown_count))
                  for h in self.http_listeners]
        # The gateways' (plugins'), while loaded: every port the node serves.
        for describe in list(self.plugin_context.listeners.values()):
            g = describe()
            infos.append(ListenerInfo(g.protocol, g.name, g.host, g.port, 1, g.max_conns,
                                      g.current_conns, dict(g.shutdown_count)))
        return infos

    # -- MQTT listeners stopped and started at runtime (API, ctl) -------------------
    def listener_known(self, name: str) -> bool:
        return any(lst.name == name for lst in self.listeners)

    def listener_running(self, name: str) -> bool:
        return any(lst.name == name and lst.server is not None for lst in self.listeners)

    async def stop_listener(self, name: str) -> None:
        for lst in self.listeners:
            if lst.name == name:
                await lst.stop()

    async def start_listener(self, name: str) -> None:
        for lst in self.listeners:
            if lst.name == name:
                await lst.start()

    def _http_limits(self, prefix: str) -> HttpLimits:
        """`management.*` / `dashboard.*`: what an HTTP listener allows."""
        return HttpLimits(self.config[f"{prefix}.max_connections"],
                          self.config[f"{prefix}.max_connections_per_address"],
                          self.config[f"{prefix}.request_timeout"])

    async def _start_management(self) -> None:
        """Bind the management listener.  Its bootstrap app (and a generated secret)
        is made by `_bootstrap_app` once the whole node has started, so a start
        that fails leaves no secret behind."""
        bind = self.config["management.bind"]
        if bind == "off":
            return
        host, port = parse_bind(bind)
        await self.plugins.start(["emqx_management"])
        app = ManagementApp(self.api, build_table(PLUGIN_ROUTES), raw_routes=prometheus_routes(
            self.api, lambda: not self.config["prometheus.auth"]))
        listener = HttpListener(app, "http:management", host, port,
                                self._http_limits("management"),
                                reuse_port=self.config["node.reuse_port"])
        await listener.start()
        self.http_listeners.append(listener)

    async def _dashboard_up(self) -> None:
        """emqx_dashboard loaded: the default user, the users routes, the listener."""
        bind = self.config["dashboard.bind"]
        host: str | None = None
        port = 0
        if bind != "off":
            host, port = parse_bind(bind)
        await self.dashboard.start(host, port, self._http_limits("dashboard"),
                                   self.config["dashboard.default_user.login"],
                                   self.config["dashboard.default_user.password"],
                                   self.data_dir)

    async def _start_dashboard(self) -> None:
        """Load emqx_dashboard at start (active by default, as the seed shows); a
        listener that cannot start stops the node, as the other listeners do."""
        if "emqx_dashboard" not in self.boot_plugins:
            return  # unloaded through the API (remembered), or not in plugins.loaded
        try:
            await self.plugins.load("emqx_dashboard")
        except PluginError as exc:
            raise StartError(f"emqx_dashboard: {exc}") from None

    def _bootstrap_app(self) -> None:
        """The management API's bootstrap app, once everything else has started."""
        if self.config["management.bind"] != "off":
            self.apps.bootstrap(self.config["api.default_app_id"],
                                self.config["api.default_app_secret"], self.data_dir)

    def _write_runtime_file(self) -> None:
        """Where `starling ctl` finds this node: the management URL and credentials."""
        listener = next((h for h in self.http_listeners if h.name == "http:management"), None)
        app = self.apps.get(self.config["api.default_app_id"])
        self.runtime_file.write(self.name, listener.bound if listener else None,
                                app.app_id if app else "", app.secret if app else "")

    async def _start_plugins(self) -> None:
        """Plugin configs and the boot-time set (plugins.loaded, changed by what the API
        did since: `PluginPersistence`); load them — auth plugins before any MQTT
        listener accepts a client.  emqx_management and emqx_dashboard are loaded by
        their own steps, once the HTTP listeners can start."""
        try:
            self.boot_plugins = self.plugin_state.restore({"emqx_management": {
                "management.max_row_limit": self.config["management.max_row_limit"]}})
        except PluginError as exc:
            raise ConfigError(str(exc)) from None
        self.plugin_state.attach()
        later = ("emqx_management", "emqx_dashboard")
        now = [n for n in self.boot_plugins if n not in later]
        for name in now:
            if not self.plugins.get(name).implemented:
                log.info("plugin %s not loaded at start: not implemented yet", name)
        await self.plugins.start([n for n in now if self.plugins.get(n).implemented])

    async def start(self) -> None:
        """Start everything, or nothing: on any failure what was started is stopped
        again, the data directory unlocked, and no secret generated."""
        self.datadir.acquire()
        try:
            self.store.open()
            self.datadir.tighten()  # the store's files, created just now
            await self._start_services()
            self.datadir.tighten()  # acl.conf, secrets, plugin dirs (whatever the umask)
        except BaseException:
            await self.stop()
            raise
        startup_log.info("node started: %s (Starling %s, hot path %s)", self.name, __version__,
                         compiled.describe())

    async def _start_services(self) -> None:
        self.apps.attach(self.store.load_kv("apps"), self._kv_put, self._kv_delete)
        self.users.attach(self.store.load_kv(UserRegistry.TABLE), self._kv_put,
                          self._kv_delete)
        self.users.tokens.attach(self.store.load_kv(self.users.tokens.TABLE),
                                 self._kv_put, self._kv_delete)
        self.broker.banned.attach(self.store.load_kv("banned"), self._kv_put,
                                  self._kv_delete)
        self.broker.restore()
        await self.broker.start()
        self._broker_started = True
        await self._join_cluster()
        try:
            await self.acl.start()
        except AclFileError as exc:
            raise ConfigError(str(exc)) from None
        await self._start_plugins()
        self.client_log.start()
        listener_configs = self._listener_configs()
        warn_over_limit(((c.name, c.max_connections) for c in listener_configs),
                        raise_open_files_limit())
        for listener_config in listener_configs:
            try:
                listener = Listener(self.broker, listener_config)
            except (ValueError, OSError) as exc:  # TLS files or options
                raise ConfigError(f"listener {listener_config.name}: {exc}") from None
            try:
                await listener.start()
            except BindError as exc:
                raise StartError(str(exc)) from None
            self.listeners.append(listener)
        try:
            await self._start_management()
        except BindError as exc:
            raise StartError(str(exc)) from None
        await self._start_dashboard()
        self._bootstrap_app()
        self._write_runtime_file()

    def _kv_put(self, table: str, key: str, text: str) -> None:
        """A row of a store table changed here: to the store, and to the cluster's
        copy when the table is one every node shares."""
        self.journal.kv_put(table, key, text)
        if self.cluster is not None:
            self.cluster.tables.put(table, key, text)

    def _kv_delete(self, table: str, key: str) -> None:
        self.journal.kv_delete(table, key)
        if self.cluster is not None:
            self.cluster.tables.delete(table, key)

    async def _join_cluster(self) -> None:
        """`cluster.discovery = nats`: join before any listener accepts a client (NATS
        is loaded only here)."""
        if self.cluster_settings is None:
            return
        cluster = make_cluster(self.cluster_settings, self.broker, __version__,
                               self.journal.kv_put, self.journal.kv_delete, self.store.load_kv)
        cluster.tables.register("apps", self.apps.apply_row)
        cluster.tables.register("users", self.users.apply_row)
        cluster.tables.register("dashboard_tokens", self.users.tokens.apply_row)
        cluster.tables.register("banned", self.broker.banned.apply_row)
        cluster.tables.register_rest(self.plugin_store.apply_row)
        remote = remote_nodes(cluster, self.local)
        self.broker.attach_cluster(cluster)
        try:
            await cluster.start()
        except NameTaken as exc:
            self.broker.attach_cluster(None)
            raise ConfigError(str(exc)) from None
        except BaseException:
            self.broker.attach_cluster(None)
            raise
        self.cluster = cluster
        self.mgmt.remote = remote
        self.mgmt.timeout = self.cluster_settings.rpc_timeout

    async def leave_cluster(self) -> bool:
        """`starling ctl cluster leave`: the others forget this node at once (no
        Stopped entry) and it goes on as a lone node until its next start.  False
        when it is not in a cluster."""
        cluster = self.cluster
        if cluster is None:
            return False
        self.mgmt.remote = None
        self.broker.attach_cluster(None)
        self.cluster = None
        await cluster.stop(leave=True)
        log.info("left cluster %s: running alone until the next start", cluster.settings.name)
        return True

    async def stop(self) -> None:
        """Stop what runs (also after a start that failed half-way)."""
        self.runtime_file.remove()
        for listener in self.listeners:
            if listener.server is not None:
                listener.server.close()
        await asyncio.gather(*(h.stop() for h in self.http_listeners), return_exceptions=True)
        self.http_listeners.clear()
        self.tracer.stop_all()
        await self.plugins.stop()
        await self.acl.stop()
        if self._broker_started:
            self._broker_started = False
            await self.broker.stop()
        if self.cluster is not None:
            self.mgmt.remote = None
            await self.cluster.stop()
            self.cluster = None
        await asyncio.gather(*(listener.stop() for listener in self.listeners),
                             return_exceptions=True)
        self.listeners.clear()
        self.store.close()
        if self.datadir.locked:
            self.datadir.release()
            log.info("node stopped: %s", self.name)
