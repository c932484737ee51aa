"""Node configuration: one flat table of dotted keys, each with a default.

Sources, later ones winning: built-in defaults → the TOML file given with
``--config`` (nested tables are flattened: ``[session] max_inflight = 64`` is
``session.max_inflight``) → ``--set KEY=VALUE`` on the command line.  Values
given as strings are converted by the key's kind: durations (``"2h"``,
``"300s"``, ``"500ms"``, plain seconds), sizes (``"1MB"``, ``"64KB"``, plain
bytes), booleans (``true/false/on/off``), bind addresses (``"0.0.0.0:1883"``,
``"1883"``, or ``"off"``).  An unknown key is an error, so typos do not pass
silently.  docs/configuration.md documents every key (a test checks it).
"""

from __future__ import annotations

import ipaddress
import math
import re
import socket
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A configuration file or value that cannot be used."""


@dataclass(frozen=True, slots=True)
class Setting:
    """One key: its default, its kind (str | int | float | bool | duration | size |
    bind | rate) and what values it takes: `low`/`high` bound numbers (`open_low`:
    `low` itself excluded), `choices` lists the only strings allowed."""

    key: str
    default: Any
    kind: str
    doc: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    open_low: bool = False



SETTINGS: tuple[Setting, ...] = (
    Setting("node.name", "starling@127.0.0.1", "str", "Node name, shown in the API and $SYS."),
    Setting("node.data_dir", "data", "str", "Directory for the node's persistent data."),
    Setting("log.level", "info", "str", "debug, info, warning or error.",
            choices=("debug", "info", "warning", "error")),
    Setting("log.clients", True, "bool",
            "Log each client's connect, refusal and disconnect (at info) and bad input "
            "(at warning), on the logger starling.clients."),
    Setting("node.reuse_port", False, "bool",
            "Bind every listener with SO_REUSEPORT, so several nodes on one machine share "
            "its ports (set by starling start --workers)."),
    # MQTT listeners (EMQX's later key names).
    Setting("listeners.tcp.default.bind", "0.0.0.0:1883", "bind", "External MQTT/TCP listener."),
    Setting("listeners.tcp.default.zone", "external", "str", "Zone of the listener."),
    Setting("listeners.tcp.default.max_connections", 1024000, "int",
            "Connections beyond this are refused and counted.", low=1),
    Setting("listeners.tcp.default.acceptors", 8, "int", "Reported acceptor count.", low=1),
    Setting("listeners.tcp.internal.bind", "127.0.0.1:11883", "bind",
            "Internal MQTT/TCP listener."),
    Setting("listeners.tcp.internal.zone", "internal", "str", "Zone of the listener."),
    Setting("listeners.tcp.internal.max_connections", 1024000, "int",
            "Connections beyond this are refused and counted.", low=1),
    Setting("listeners.tcp.internal.acceptors", 4, "int", "Reported acceptor count.", low=1),
    Setting("listeners.ssl.default.bind", "0.0.0.0:8883", "bind",
            "MQTT over TLS; starts only once a certificate and key are configured."),
    Setting("listeners.ws.default.bind", "0.0.0.0:8083", "bind", "MQTT over WebSocket."),
    Setting("listeners.wss.default.bind", "0.0.0.0:8084", "bind",
            "MQTT over secure WebSocket; starts only once a certificate and key are configured."),
    # Any listener, including more of each kind: listeners.<kind>.<name>.<field>,
    # where <kind> is tcp, ssl, ws or wss and <name> is yours (e.g. listeners.tcp.lan.bind).
    *(setting for kind in ("tcp", "ssl", "ws", "wss") for setting in (
        Setting(f"listeners.{kind}.*.bind", "off", "bind",
                "Bind address of a listener named by you; off = not started."),
        Setting(f"listeners.{kind}.*.zone", "external", "str", "Zone of the listener."),
        Setting(f"listeners.{kind}.*.max_connections",
                102400 if kind != "tcp" else 1024000, "int",
                "Connections beyond this are refused and counted.", low=1),
        Setting(f"listeners.{kind}.*.max_conn_rate", 0, "int",
                "New connections accepted per second; 0 = unlimited.", low=0),
        Setting(f"listeners.{kind}.*.max_auth_pending", 1024, "int",
                "Connections waiting for the authentication chain (a slow backend) at "
                "once; a CONNECT beyond it is refused: server busy. 0 = unlimited.", low=0),
        Setting(f"listeners.{kind}.*.backlog", 4096, "int",
                "Connections the kernel holds for the listener before the node accepts them "
                "(listen(2); capped by net.core.somaxconn).", low=1),
        Setting(f"listeners.{kind}.*.read_budget", 64 * 1024, "size",
                "Bytes one connection may bring in before it lets the others be served "
                "(reading resumes on the event loop's next turn).", low=1),
        Setting(f"listeners.{kind}.*.acceptors", 4, "int", "Reported acceptor count.", low=1),
    )),
    Setting("listeners.tcp.*.transport", "auto", "str",
            "lean: the listener serves its sockets through one epoll with a small "
            "transport each (~1 KiB less per connection than the event loop's); "
            "loop: the event loop's (uvloop's) own transports; auto: lean when the "
            "hot path runs compiled, else loop.",
            choices=("auto", "lean", "loop")),
    *(setting for kind in ("ssl", "wss") for setting in (
        Setting(f"listeners.{kind}.*.ssl_options.certfile", "", "str",
                "Server certificate (PEM); the chain may follow it in the file."),
        Setting(f"listeners.{kind}.*.ssl_options.keyfile", "", "str", "Its private key (PEM)."),
        Setting(f"listeners.{kind}.*.ssl_options.cacertfile", "", "str",
                "CA certificates (PEM) that client certificates are checked against."),
        Setting(f"listeners.{kind}.*.ssl_options.verify", "verify_none", "str",
                "verify_peer asks for a client certificate and checks it; verify_none does not.",
                choices=("verify_none", "verify_peer")),
        Setting(f"listeners.{kind}.*.ssl_options.fail_if_no_peer_cert", False, "bool",
                "With verify_peer: refuse clients that send no certificate."),
        Setting(f"listeners.{kind}.*.ssl_options.ciphers", "", "str",
                "OpenSSL cipher list for TLS 1.2 (TLS 1.3 suites are OpenSSL's); empty = default."),
        Setting(f"listeners.{kind}.*.ssl_options.versions", "tlsv1.2,tlsv1.3", "str",
                "Accepted TLS versions: tlsv1.2, tlsv1.3."),
        Setting(f"listeners.{kind}.*.ssl_options.psk_ciphers", "", "str",
                "TLS-PSK cipher suites (e.g. PSK-AES128-CBC-SHA); set, the listener accepts "
                "PSK clients with keys from emqx_psk_file, and certfile becomes optional."),
        Setting(f"listeners.{kind}.*.peer_cert_as_username", "", "str",
                "cn or dn: use the client certificate's common name / subject as user name.",
                choices=("", "cn", "dn")),
        Setting(f"listeners.{kind}.*.peer_cert_as_clientid", "", "str",
                "cn or dn: use it as client id.", choices=("", "cn", "dn")),
    )),
    *(setting for kind in ("ws", "wss") for setting in (
        Setting(f"listeners.{kind}.*.path", "/mqtt", "str", "HTTP path of the WebSocket endpoint."),
        Setting(f"listeners.{kind}.*.proxy_address_header", "", "str",
                "Behind a proxy: the header with the client's address, e.g. X-Forwarded-For."),
    )),
    Setting("management.bind", "0.0.0.0:8080", "bind", "Management REST API listener."),
    Setting("management.max_connections", 512, "int", "Concurrent HTTP connections.", low=1),
    Setting("management.max_connections_per_address", 64, "int",
            "Concurrent HTTP connections from one IP address (beyond: 503); 0 = no limit.",
            low=0),
    Setting("management.request_timeout", 10.0, "duration",
            "Time a client has to send a complete request (from connecting, or from the "
            "previous response); past it the connection is closed. 0 = no limit.", low=0),
    Setting("management.max_row_limit", 10000, "int",
            "Default page size (_limit) of paginated API lists (emqx_management's key).", low=1),
    Setting("management.metric_names", "slash", "str",
            "Stat and metric names in /stats, /metrics and the Prometheus scrape: slash "
            "(EMQ X 3.1's, the seed's: connections/count) or dot (EMQ X 3.2's: "
            "connections.count, packets.connect.received).", choices=("slash", "dot")),
    Setting("prometheus.auth", False, "bool",
            "Whether GET /api/v3/prometheus/stats asks for API credentials."),
    Setting("api.default_app_id", "admin", "str",
            "App id of the bootstrap management API application."),
    Setting("api.default_app_secret", "", "str",
            "Its secret; empty = generated at first start into <data_dir>/api_secret."),
    Setting("dashboard.bind", "0.0.0.0:18083", "bind",
            "Dashboard listener (emqx_dashboard): the API with dashboard user credentials."),
    Setting("dashboard.max_connections", 512, "int",
            "Concurrent HTTP connections to the dashboard listener.", low=1),
    Setting("dashboard.max_connections_per_address", 64, "int",
            "Concurrent dashboard connections from one IP address; 0 = no limit.", low=0),
    Setting("dashboard.request_timeout", 10.0, "duration",
            "Time a dashboard client has to send a complete request; 0 = no limit.", low=0),
    Setting("dashboard.default_user.login", "admin", "str",
            "Name of the default dashboard user, created when absent."),
    Setting("dashboard.default_user.password", "", "str",
            "Its initial password; empty = generated at first start into "
            "<data_dir>/dashboard_password."),
    Setting("trace.max_file_size", 10 * 1024 * 1024, "size",
            "Largest trace file (starling ctl trace); at it the trace stops.",
            low=1024, high=1 << 34),
    # Plugins (docs/ctl.md, "Plugins").
    Setting("plugins.loaded",
            "emqx_dashboard,emqx_management,emqx_recon,emqx_retainer,emqx_rule_engine", "str",
            "Plugins loaded at start (comma-separated EMQ X names) unless a load or unload "
            "through the API or ctl, which is remembered in the store, says otherwise."),
    Setting("plugins.etc_dir", "", "str",
            "Directory of EMQ X v3 plugin conf files (<plugin>.conf, e.g. "
            "emqx_auth_clientid.conf), read at start; empty = none."),
    # Cluster (docs/cluster.md): EMQ X's cluster.* names, NATS as the engine.
    Setting("cluster.discovery", "manual", "str",
            "manual: a lone node (no NATS); nats: join the cluster named cluster.name "
            "through the NATS servers in cluster.nats.servers.", choices=("manual", "nats")),
    Setting("cluster.name", "starling", "str",
            "Cluster name (letters, digits, - and _): nodes with different names never mix, "
            "even on the same NATS servers."),
    Setting("cluster.autoclean", 300.0, "duration",
            "How long a node that stopped or vanished is listed as Stopped before it is "
            "forgotten; 0 = never.", low=0, high=31536000),
    Setting("cluster.heartbeat_interval", 1.0, "duration",
            "How often a node tells the others it is alive.", low=0, open_low=True, high=3600),
    Setting("cluster.node_timeout", 3.0, "duration",
            "A node not heard from for this long is Stopped: its routes are dropped.",
            low=0, open_low=True, high=3600),
    Setting("cluster.rpc_timeout", 2.0, "duration",
            "How long a node waits for another to answer a call (API views, kick, takeover); "
            "a node that does not answer is reported unreachable.",
            low=0, open_low=True, high=3600),
    Setting("cluster.forward_buffer", 16 * 1024 * 1024, "size",
            "Bytes of messages for other nodes held while NATS is slow or unreachable; "
            "beyond it messages are dropped and counted (messages/forward/dropped).",
            low=65536, high=17179869184),
    Setting("cluster.nats.servers", "nats://127.0.0.1:4222", "str",
            "NATS servers with JetStream, comma-separated nats:// or tls:// URLs."),
    Setting("cluster.nats.replicas", 1, "int",
            "JetStream replicas of the cluster's buckets: 1 with one nats-server, 3 with a "
            "NATS cluster of three or more servers (a bucket survives a server then).",
            low=1, high=5),
    Setting("cluster.nats.connect_timeout", 5.0, "duration",
            "How long a starting node tries to reach NATS before it gives up.",
            low=0, open_low=True, high=3600),
    Setting("cluster.nats.user", "", "str", "NATS user name; empty = none."),
    Setting("cluster.nats.password", "", "str", "Its password (never logged)."),
    Setting("cluster.nats.token", "", "str", "NATS authentication token; empty = none."),
    Setting("cluster.nats.credentials", "", "str",
            "NATS user credentials file (.creds, JWT and NKey seed); empty = none."),
    Setting("cluster.nats.tls.cacertfile", "", "str",
            "CA certificates (PEM) the NATS server certificate is checked against; set, "
            "the connection uses TLS."),
    Setting("cluster.nats.tls.certfile", "", "str",
            "Client certificate (PEM) for NATS servers that ask for one."),
    Setting("cluster.nats.tls.keyfile", "", "str", "Its private key (PEM)."),
    # Store.
    Setting("store.backend", "sqlite", "str",
            "sqlite (a file in the data dir) or memory (nothing survives a restart).",
            choices=("sqlite", "memory")),
    Setting("store.durability", "durable", "str",
            "durable: acknowledge a QoS 1/2 message for a persistent session, or a retained "
            "message, only after it is committed; relaxed: commit every store.commit_interval.",
            choices=("durable", "relaxed")),
    Setting("store.commit_interval", 0.1, "duration", "Commit interval in relaxed mode.",
            low=0, open_low=True, high=3600),
    Setting("store.sync", "normal", "str",
            "normal: commits survive a crash of the process; full: also power loss (fsync).",
            choices=("normal", "full")),
    # MQTT protocol.
    Setting("mqtt.max_packet_size", 1024 * 1024, "size",
            "Largest packet accepted; a larger one closes the connection.", low=1, high=268435456),
    Setting("mqtt.max_clientid_len", 65535, "int", "Longer client ids are refused.",
            low=1, high=65535),
    Setting("mqtt.max_topic_levels", 0, "int",
            "Topics and filters with more levels are refused (PUBLISH dropped and "
            "acknowledged, SUBACK 0x80). 0 = unlimited.", low=0, high=65535),
    Setting("mqtt.allow_anonymous", True, "bool",
            "Let clients in that no auth plugin recognises."),
    Setting("mqtt.keepalive_multiplier", 1.5, "float",
            "A client silent for keepalive x this is disconnected.",
            low=0, open_low=True, high=100),
    Setting("mqtt.idle_timeout", 15.0, "duration",
            "How long a new connection may take to send CONNECT.",
            low=0, open_low=True, high=86400),
    Setting("mqtt.retain_available", True, "bool", "Store and deliver retained messages."),
    Setting("mqtt.allow_control_characters", False, "bool",
            "Accept control characters (U+0001-U+001F, U+007F-U+009F) in topic names, "
            "filters, will topics and client ids; off: the connection is closed (client "
            "ids: CONNACK 2 / 0x85), as Mosquitto does."),
    Setting("mqtt.wildcard_subscription", True, "bool",
            "Allow subscriptions with + and # (refused with 0x80 / 0xA2 when off)."),
    Setting("mqtt.server_keepalive", 0, "int",
            "MQTT 5.0 Server Keep Alive imposed on 5.0 clients; 0 = off (the client's value).",
            low=0, high=65535),
    Setting("mqtt.max_topic_alias", 65535, "int",
            "Topic Alias Maximum announced to 5.0 clients (client-to-server aliases); 0 = none.",
            low=0, high=65535),
    Setting("mqtt.server_topic_alias", False, "bool",
            "Give topics aliases on the way to 5.0 clients that accept them (saves bandwidth "
            "for long topics; each message is then encoded per subscriber)."),
    Setting("mqtt.shared_subscription", True, "bool",
            "Serve $share/<group>/<filter> and $queue/<filter> subscriptions."),
    Setting("mqtt.shared_subscription_strategy", "random", "str",
            "How a shared group picks its member: random, round_robin, sticky or hash "
            "(by publisher client id).", choices=("random", "round_robin", "sticky", "hash")),
    Setting("mqtt.message_expiry_interval", 0.0, "duration",
            "Longest time a message is held for delivery (also for 3.x clients); 0 = no limit.",
            low=0, high=4294967295),
    Setting("mqtt.response_information", "", "str",
            "Response Information sent to 5.0 clients that request it; empty = none."),
    # Sessions.
    Setting("session.expiry_interval", 7200.0, "duration",
            "How long an offline persistent session is kept.", low=0, high=4294967295),
    Setting("session.max_inflight", 32, "int",
            "QoS 1/2 messages sent and not yet acknowledged, per client.", low=0, high=65535),
    Setting("session.max_mqueue_len", 1000, "int",
            "Queued messages per session; beyond it one is dropped (the oldest QoS 0 "
            "first). 0 = unlimited.", low=0),
    Setting("session.max_mqueue_bytes", 16 * 1024 * 1024, "size",
            "Topic and payload bytes queued per session (online behind a full socket, or "
            "offline); beyond it one is dropped (the oldest QoS 0 first). 0 = unlimited.",
            low=0),
    Setting("session.mqueue_store_qos0", True, "bool",
            "Queue QoS 0 messages for offline persistent sessions."),
    Setting("session.max_awaiting_rel", 100, "int",
            "Incoming QoS 2 messages awaiting PUBREL, per client. 0 = unlimited.", low=0),
    Setting("session.await_rel_timeout", 300.0, "duration",
            "After this an incoming QoS 2 message awaiting PUBREL is forgotten.",
            low=0, open_low=True),
    Setting("session.strict_resume", True, "bool",
            "A persistent session resumes only for the user name (or, without one, the "
            "client certificate) it belongs to, otherwise a new one starts; the "
            "subscriptions it brings back are checked against that user's ACL again. "
            "false = EMQ X v3: any client with the client id resumes it as it is."),
    Setting("session.retry_interval", 20.0, "duration",
            "Resend unacknowledged QoS 1/2 messages after this long, on the same "
            "connection (MQTT 3.x only; MQTT 5.0 forbids it). 0 disables.", low=0),
    # ACL (EMQ X v3's emqx.conf names; docs/acl.md).
    Setting("acl_file", "", "str",
            "The ACL rules file, in EMQ X's acl.conf syntax; empty = <data_dir>/acl.conf, "
            "written with EMQ X's default rules at first start."),
    Setting("acl_file_check_interval", 5.0, "duration",
            "How often the ACL file is checked for changes (reloaded when it changed); "
            "0 = only on request (PUT /api/v3/acl/reload).", low=0),
    Setting("acl_nomatch", "allow", "str",
            "allow or deny: the decision when no ACL rule or plugin matches.",
            choices=("allow", "deny")),
    Setting("acl_deny_action", "ignore", "str",
            "ignore (refuse the PUBLISH/SUBSCRIBE only) or disconnect (also close the "
            "connection) when ACL denies.", choices=("ignore", "disconnect")),
    Setting("enable_acl_cache", True, "bool", "Cache ACL decisions per connection."),
    Setting("acl_cache_max_size", 32, "int", "ACL decisions cached per connection.", low=0),
    Setting("acl_cache_ttl", 60.0, "duration", "How long a cached ACL decision is used.", low=0),
    Setting("acl_deliver_check", True, "bool",
            "A message a wildcard subscription (+, #, also shared) would deliver, retained "
            "ones included, is delivered only if the subscriber may subscribe to its topic; "
            "decided once per connection and topic. false = EMQ X v3 (the filter alone)."),
    Setting("acl_deliver_cache_max_size", 1000, "int",
            "Delivery decisions remembered per connection (acl_deliver_check); when full "
            "they are all forgotten.", low=1),
    Setting("zone.external.enable_acl", True, "bool",
            "Check ACL for clients of zone external (any zone not listed here: on)."),
    Setting("zone.internal.enable_acl", False, "bool",
            "Check ACL for clients of zone internal (the internal listener)."),
    Setting("mqtt.allow_sys_publish", False, "bool",
            "Let clients publish to $SYS/# (and set wills there); false: refused whatever the "
            "ACL says (PUBACK 0x87 for MQTT 5.0, dropped for 3.x), as Mosquitto does. "
            "true = EMQ X v3."),
    Setting("zone.internal.allow_sys_publish", True, "bool",
            "Clients of zone internal (the internal listener) may publish to $SYS/#."),
    *(Setting(f"zone.*.{field}", None, kind, doc) for field, kind, doc in (
        ("enable_acl", "bool", "Check ACL for the zone's clients (unset: on)."),
        ("enable_ban", "bool", "Refuse banned clients of the zone (unset: on)."),
        ("allow_sys_publish", "bool",
         "Let the zone's clients publish to $SYS/# (unset: mqtt.allow_sys_publish)."),
        ("allow_anonymous", "bool", "Let clients without credentials in."),
        ("acl_deny_action", "str", "ignore or disconnect when ACL denies."),
        ("max_packet_size", "size", "Largest MQTT packet accepted from the zone's clients."),
        ("max_clientid_len", "int", "Longest client id accepted."),
        ("max_topic_levels", "int", "Most topic levels; 0 = no limit."),
        ("max_topic_alias", "int", "Client-to-server topic aliases accepted (5.0)."),
        ("retain_available", "bool", "Accept retained messages."),
        ("allow_control_characters", "bool",
         "Accept control characters in topics, filters and client ids."),
        ("wildcard_subscription", "bool", "Accept wildcard subscriptions."),
        ("shared_subscription", "bool", "Accept shared subscriptions."),
        ("server_keepalive", "int", "Keep alive imposed on 5.0 clients; 0 = the client's."),
        ("keepalive_backoff", "float",
         "EMQ X's keepalive backoff: a client is dropped after keepalive x backoff x 2 "
         "silent seconds (0.75 = the 1.5 x of mqtt.keepalive_multiplier); more than 0."),
        ("idle_timeout", "duration", "How long a new connection may wait before CONNECT."),
        ("max_subscriptions", "int", "Subscriptions per client; 0 = no limit."),
        ("upgrade_qos", "bool", "Deliver at the subscription's QoS, not the message's."),
        ("max_inflight", "int", "Unacknowledged QoS 1/2 deliveries per session."),
        ("retry_interval", "duration", "Resend an unacknowledged QoS 1/2 message (3.x)."),
        ("max_awaiting_rel", "int", "QoS 2 messages awaiting PUBREL per session."),
        ("await_rel_timeout", "duration", "How long a QoS 2 message awaits its PUBREL."),
        ("session_expiry_interval", "duration",
         "How long an offline persistent 3.x session lives."),
        ("max_mqueue_len", "int", "Messages queued per session; 0 = no limit."),
        ("max_mqueue_bytes", "size", "Bytes queued per session; 0 = no limit."),
        ("mqueue_store_qos0", "bool", "Queue QoS 0 messages for offline sessions."),
        ("publish_limit", "rate",
         "PUBLISH packets a client may send: COUNT,PERIOD (e.g. 100,10s); past it the "
         "connection is not read until the bucket refills (EMQ X's publish_limit)."),
        ("rate_limit.conn_bytes_in", "rate",
         "Bytes a client may send: SIZE,PERIOD (e.g. 100KB,10s); past it the connection "
         "is not read until the bucket refills."),
    )),
    # $SYS.
    Setting("broker.sys_interval", 60.0, "duration",
            "Interval of $SYS version/stats/metrics messages; 0 disables them.", low=0),
    Setting("broker.sys_heartbeat", 1.0, "duration",
            "Interval of $SYS uptime/datetime messages; 0 disables them.", low=0),
    Setting("broker.presence_qos", 1, "int", "QoS of $SYS client connected/disconnected events.",
            low=0, high=2),
    # Alarm monitors (thresholds in percent).
    Setting("alarm.check_interval", 60.0, "duration",
            "How often the alarm monitors check CPU, memory and connections; 0 disables them.",
            low=0),
    Setting("alarm.cpu_high_watermark", 80.0, "float",
            "cpu_high_watermark is raised when CPU busy reaches this percentage "
            "(over 100: never).", low=0),
    Setting("alarm.cpu_low_watermark", 60.0, "float",
            "... and cleared when CPU busy falls below this one.", low=0, high=100),
    Setting("alarm.sysmem_high_watermark", 70.0, "float",
            "system_memory_high_watermark: percentage of memory in use (raised at or "
            "above, cleared below; over 100: never).", low=0),
    Setting("alarm.procmem_high_watermark", 50.0, "float",
            "process_memory_high_watermark: the broker's resident memory as a percentage "
            "of the system's (over 100: never).", low=0),
    Setting("alarm.connections_high_watermark", 80.0, "float",
            "too_many_connections is raised when a listener holds this percentage of its "
            "max_connections (over 100: never).", low=0),
    Setting("alarm.connections_low_watermark", 60.0, "float",
            "... and cleared when every listener is below this one.", low=0, high=100),
)

#: Zone keys take the values of the node-wide key they override.
_ZONE_LIKE = {
    "acl_deny_action": "acl_deny_action", "max_packet_size": "mqtt.max_packet_size",
    "max_clientid_len": "mqtt.max_clientid_len", "max_topic_levels": "mqtt.max_topic_levels",
    "max_topic_alias": "mqtt.max_topic_alias", "server_keepalive": "mqtt.server_keepalive",
    "keepalive_backoff": "mqtt.keepalive_multiplier", "idle_timeout": "mqtt.idle_timeout",
    "max_subscriptions": "session.max_mqueue_len", "max_inflight": "session.max_inflight",
    "retry_interval": "session.retry_interval", "max_awaiting_rel": "session.max_awaiting_rel",
    "await_rel_timeout": "session.await_rel_timeout",
    "session_expiry_interval": "session.expiry_interval",
    "max_mqueue_len": "session.max_mqueue_len", "max_mqueue_bytes": "session.max_mqueue_bytes",
}


def _with_zone_limits(settings: tuple[Setting, ...]) -> tuple[Setting, ...]:
    by_key = {s.key: s for s in settings}
    out = []
    for s in settings:
        like = by_key.get(_ZONE_LIKE.get(s.key.removeprefix("zone.*."), ""))
        if s.key.startswith("zone.*.") and like is not None:
            s = replace(s, low=like.low, high=like.high, choices=like.choices,
                        open_low=like.open_low)
        out.append(s)
    return tuple(out)


SETTINGS = _with_zone_limits(SETTINGS)
_BY_KEY = {s.key: s for s in SETTINGS}
#: Other names for a setting: EMQX's later `mqtt.*` spellings of the session limits.
ALIASES = {
    "mqtt.max_inflight": "session.max_inflight",
    "mqtt.session_expiry_interval": "session.expiry_interval",
    "mqtt.max_mqueue_len": "session.max_mqueue_len",
    "mqtt.max_awaiting_rel": "session.max_awaiting_rel",
    "mqtt.await_rel_timeout": "session.await_rel_timeout",
    "mqtt.retry_interval": "session.retry_interval",
}
#: Per-listener settings, by the key with the listener name replaced by "*".
_PATTERNS = {s.key: s for s in SETTINGS if "*" in s.key}
LISTENER_KINDS = ("tcp", "ssl", "ws", "wss")


def _pattern_of(key: str) -> str | None:
    """`listeners.tcp.lan.bind` -> `listeners.tcp.*.bind`, `zone.lan.max_inflight` ->
    `zone.*.max_inflight` (if that is a setting)."""
    parts = key.split(".")
    pattern = None
    if len(parts) >= 4 and parts[0] == "listeners" and parts[1] in LISTENER_KINDS:
        pattern = ".".join([parts[0], parts[1], "*", *parts[3:]])
    elif len(parts) >= 3 and parts[0] == "zone":
        pattern = ".".join(["zone", "*", *parts[2:]])
    return pattern if pattern in _PATTERNS else None

_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|h|d|w)?\s*$", re.IGNORECASE)
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}
_SIZE = re.compile(r"^\s*([0-9]+)\s*(b|kb|k|mb|m|gb|g)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {None: 1, "b": 1, "k": 1024, "kb": 1024, "m": 1 << 20, "mb": 1 << 20,
               "g": 1 << 30, "gb": 1 << 30}


def parse_duration(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"bad duration {value!r}: must be 0 or more seconds")
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ConfigError(f"bad duration {value!r} (e.g. 30s, 500ms, 2h)")
    unit = match.group(2).lower() if match.group(2) else None
    return float(match.group(1)) * _DURATION_UNITS[unit]


def parse_size(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ConfigError(f"bad size {value!r}: must be 0 or more bytes")
        return value
    match = _SIZE.match(str(value))
    if not match:
        raise ConfigError(f"bad size {value!r} (e.g. 1MB, 64KB, 1024)")
    unit = match.group(2).lower() if match.group(2) else None
    return int(match.group(1)) * _SIZE_UNITS[unit]


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "on", "yes", "1"):
        return True
    if text in ("false", "off", "no", "0"):
        return False
    raise ConfigError(f"bad boolean {value!r} (true/false)")


def parse_rate(value: Any) -> tuple[int, float]:
    """EMQ X's `COUNT,PERIOD` limits (`100,10s`, `100KB,1m`) -> (amount, seconds)."""
    if isinstance(value, (list, tuple)) and len(value) == 2:
        amount, period = value
    else:
        amount, sep, period = str(value).partition(",")
        if not sep:
            raise ConfigError(f"bad rate {value!r} (e.g. 100,10s or 100KB,1m)")
    count, seconds = parse_size(amount), parse_duration(period)
    if count <= 0 or seconds <= 0:
        raise ConfigError(f"bad rate {value!r}: amount and period must be positive")
    return count, seconds


def parse_int(value: Any) -> int:
    """An integer: a number without a fraction, or its decimal text (not a boolean)."""
    if isinstance(value, bool):
        raise ConfigError(f"expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?[0-9]+\s*", value):
        return int(value)
    raise ConfigError(f"expected an integer, got {value!r}")


def parse_float(value: Any) -> float:
    """A finite number (not a boolean)."""
    if isinstance(value, bool):
        raise ConfigError(f"expected a number, got {value!r}")
    try:
        number = float(value) if isinstance(value, (int, float, str)) else math.nan
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise ConfigError(f"expected a number, got {value!r}")
    return number


def parse_host(host: str) -> str:
    """An IP address, or a name this machine can resolve (so a typo fails at start,
    not at bind time, and never binds somewhere unexpected)."""
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    if not host or any(c.isspace() for c in host):
        raise ConfigError(f"bad host {host!r}")
    try:
        socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise ConfigError(f"host {host!r} is neither an IP address nor a name that "
                          "resolves") from None
    return host


def parse_port(value: Any, low: int = 0) -> int:
    """A TCP port: `low` (0 = any free port, for binding) to 65535."""
    port = parse_int(value) if not isinstance(value, str) or value.strip() else -1
    if not low <= port <= 65535:
        raise ConfigError(f"port {str(value).strip() or '(none)'} is not in {low}-65535")
    return port


def parse_bind(value: Any, default_host: str = "0.0.0.0") -> tuple[str, int]:
    """`"0.0.0.0:1883"`, `"1883"`, `1883` or `"[::1]:1883"` -> (host, port), checked."""
    if isinstance(value, int) and not isinstance(value, bool):
        return default_host, parse_port(value)
    if not isinstance(value, str):
        raise ConfigError(f"expected HOST:PORT or PORT, got {value!r}")
    text = value.strip()
    if text.isdigit():
        return default_host, parse_port(text)
    host, sep, port = text.rpartition(":")
    if not sep:
        raise ConfigError(f"expected HOST:PORT or PORT, got {value!r}")
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ConfigError(f"write an IPv6 address in brackets, e.g. [::1]:1883, "
                          f"got {value!r}")
    return (parse_host(host) if host else default_host), parse_port(port)


def _scalar_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ConfigError(f"expected a string, got {value!r}")


def _bind_text(value: Any) -> str:
    if isinstance(value, str) and value.strip().lower() in ("off", "false", "disabled", ""):
        return "off"
    host, port = parse_bind(value)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_PARSERS: dict[str, Callable[[Any], Any]] = {
    "rate": parse_rate, "duration": parse_duration, "size": parse_size, "bool": parse_bool,
    "int": parse_int, "float": parse_float, "bind": _bind_text, "str": _scalar_text,
}


def _limit_problem(setting: Setting, value: Any) -> str:
    """Why `value` is outside the setting's range or choices ("" if it is not)."""
    if setting.choices:
        if value not in setting.choices:
            shown = ", ".join(c or '""' for c in setting.choices)
            return f"{value!r} is not one of {shown}"
        return ""
    if setting.low is None or isinstance(value, (bool, str, tuple)):
        return ""
    low, high = setting.low, setting.high
    too_low = value <= low if setting.open_low else value < low
    if too_low or (high is not None and value > high):
        if high is None:
            bound = f"more than {_num(low)}" if setting.open_low else f"at least {_num(low)}"
        elif setting.open_low:
            bound = f"more than {_num(low)} and at most {_num(high)}"
        else:
            bound = f"{_num(low)} to {_num(high)}"
        return f"must be {bound}, got {_num(value)}"
    return ""


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def check_value(setting: Setting, value: Any, key: str | None = None) -> Any:
    """`value` converted to the setting's kind and checked against its range and
    choices; a `ConfigError` naming the key otherwise.  The one check every source of
    configuration goes through (file, --set, PUT /configs)."""
    key = key or setting.key
    if value is None and setting.default is None:
        return None  # a zone key left unset: the node-wide value applies
    try:
        parse: Callable[[Any], Any] = _PARSERS.get(setting.kind) or _scalar_text
        converted = parse(value)
    except (ConfigError, ValueError, TypeError) as exc:
        raise ConfigError(f"{key}: {exc}") from None
    if setting.choices and isinstance(converted, str):
        converted = converted.strip().lower()
    problem = _limit_problem(setting, converted)
    if problem:
        raise ConfigError(f"{key}: {problem}")
    return converted


def _flatten(table: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in table.items():
        full = f"{prefix}{key}"
        if isinstance(value, Mapping) and full not in _BY_KEY and _pattern_of(full) is None:
            yield from _flatten(value, full + ".")
        else:
            yield full, value


class Config:
    """Resolved settings; read with ``config["session.max_inflight"]``."""

    def __init__(self, overrides: Mapping[str, Any] | None = None) -> None:
        self._values: dict[str, Any] = {s.key: s.default for s in SETTINGS if "*" not in s.key}
        for key, value in (overrides or {}).items():
            self.set(key, value)

    def set(self, key: str, value: Any) -> None:
        key = ALIASES.get(key, key)
        setting = _BY_KEY.get(key)
        if setting is None or "*" in key:
            pattern = _pattern_of(key)
            if pattern is None:
                raise ConfigError(f"unknown configuration key {key!r}")
            setting = _PATTERNS[pattern]
        self._values[key] = check_value(setting, value, key)

    def __getitem__(self, key: str) -> Any:
        key = ALIASES.get(key, key)
        if key in self._values:
            return self._values[key]
        pattern = _pattern_of(key)
        if pattern is None:
            raise KeyError(key)
        return _PATTERNS[pattern].default

    def listener_names(self, kind: str) -> list[str]:
        """Listeners of a kind that have a bind address set (defaults included)."""
        prefix = f"listeners.{kind}."
        names = [key[len(prefix):-len(".bind")] for key in self._values
                 if key.startswith(prefix) and key.endswith(".bind")
                 and key.count(".") == 3]
        return list(dict.fromkeys(names))

    def zone_names(self) -> list[str]:
        """`external`, `internal` and every zone a `zone.<name>.*` key names."""
        names = ["external", "internal"]
        names += [key.split(".")[1] for key in self._values if key.startswith("zone.")]
        return list(dict.fromkeys(names))

    def zone_settings(self, zone: str) -> dict[str, Any]:
        """The `zone.<zone>.*` keys that are set, by field (`max_inflight`, ...)."""
        prefix = f"zone.{zone}."
        return {key[len(prefix):]: value for key, value in self._values.items()
                if key.startswith(prefix) and value is not None}

    def items(self) -> Iterable[tuple[str, Any]]:
        return self._values.items()

    @classmethod
    def load(cls, path: Path | None = None, sets: Iterable[str] = (),
             extra: Mapping[str, Any] | None = None) -> Config:
        """Defaults, then the TOML file, then `extra` (CLI flags), then `--set` pairs."""
        config = cls()
        if path is not None:
            try:
                with open(path, "rb") as f:
                    table = tomllib.load(f)
            except OSError as exc:
                raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{path}: {exc}") from None
            for key, value in _flatten(table):
                config.set(key, value)
        for key, value in (extra or {}).items():
            config.set(key, value)
        for item in sets:
            key, sep, value = item.partition("=")
            if not sep:
                raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
            config.set(key.strip(), value.strip())
        return config
