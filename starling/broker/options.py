"""The broker's tunables, with EMQ X v3's zone defaults.

The node builds one `BrokerOptions` from its configuration (`starling.config`),
and one per zone (`zone.<name>.*` keys over the node-wide values); a channel
reads its zone's.  The core never parses configuration itself.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BrokerOptions:
    node_name: str = "starling@127.0.0.1"
    version: str = "0.1.0"
    sysdescr: str = "Starling MQTT Broker"
    # -- MQTT protocol (emqx.conf `mqtt.*` / zone) --------------------------
    max_packet_size: int = 1024 * 1024
    max_clientid_len: int = 65535
    max_topic_levels: int = 0  #: 0 = unlimited
    allow_anonymous: bool = True
    keepalive_multiplier: float = 1.5
    idle_timeout: float = 15.0  #: seconds a new connection may wait before CONNECT
    wildcard_subscription: bool = True
    retain_available: bool = True
    #: Accept U+0001-U+001F, U+007F-U+009F in topics, filters, will topics and client ids.
    allow_control_characters: bool = False
    # -- MQTT 5.0 -----------------------------------------------------------
    server_keepalive: int = 0  #: 0 = the client's keepalive; else imposed (Server Keep Alive)
    max_topic_alias: int = 65535  #: client->server aliases accepted; 0 = none
    server_topic_alias: bool = False  #: assign server->client aliases (5.0 clients)
    shared_subscription: bool = True
    shared_subscription_strategy: str = "random"  #: random|round_robin|sticky|hash
    message_expiry_interval: float = 0.0  #: cap on how long a message is kept; 0 = none
    response_information: str = ""  #: sent when a 5.0 client asks; "" = never
    # -- sessions ----------------------------------------------------------
    session_expiry_interval: float = 7200.0  #: seconds an offline persistent session lives
    max_inflight: int = 32
    max_mqueue_len: int = 1000  #: 0 = unlimited
    #: Topic and payload bytes a session's queue may hold; 0 = unlimited.
    max_mqueue_bytes: int = 16 * 1024 * 1024
    mqueue_store_qos0: bool = True
    max_awaiting_rel: int = 100  #: 0 = unlimited
    await_rel_timeout: float = 300.0
    #: Resend an unacknowledged QoS 1/2 message after this long (MQTT 3.x only; 0 = never).
    retry_interval: float = 20.0
    #: A persistent session resumes only for its owner, its subscriptions checked
    #: against the resumer's ACL again (`Broker.resumable_by`); False = EMQ X v3.
    strict_resume: bool = True
    upgrade_qos: bool = False
    max_subscriptions: int = 0  #: 0 = unlimited
    # -- per-client limits (zone `publish_limit`, `rate_limit.conn_bytes_in`) ----------
    #: (PUBLISH packets, seconds): past it the connection is not read for a while.
    publish_limit: tuple[int, float] | None = None
    #: (bytes, seconds), likewise.
    bytes_in_limit: tuple[int, float] | None = None
    enable_ban: bool = True  #: refuse banned clients (zone `enable_ban`)
    # -- ACL (emqx.conf `acl_*`, zone `enable_acl`) ----------------------------
    acl_nomatch: str = "allow"  #: allow | deny: the decision when no ACL rule matches
    acl_deny_action: str = "ignore"  #: ignore | disconnect
    enable_acl_cache: bool = True
    acl_cache_max_size: int = 32  #: entries per connection
    acl_cache_ttl: float = 60.0  #: seconds
    #: Check each message a wildcard subscription delivers against the subscriber's
    #: subscribe ACL for its topic (Mosquitto's read check); False = EMQ X v3.
    acl_deliver_check: bool = True
    #: Delivery decisions remembered per connection (then forgotten all at once).
    acl_deliver_cache_max_size: int = 1000
    #: Zones whose clients are not ACL-checked (`zone.<name>.enable_acl = off`).
    acl_disabled_zones: frozenset[str] = frozenset({"internal"})
    #: Clients may publish to $SYS/# (and have a will there); off, as Mosquitto,
    #: whatever the ACL says; on in zone internal (`zone.<name>.allow_sys_publish`).
    allow_sys_publish: bool = False
    # -- $SYS --------------------------------------------------------------
    sys_interval: float = 60.0  #: 0 disables the periodic $SYS messages
    sys_heartbeat: float = 1.0
    presence_qos: int = 1
    # -- alarm monitors (percentages; EMQ X os_mon defaults) ------------------
    alarm_check_interval: float = 60.0  #: seconds between checks; 0 disables the monitors
    cpu_high_watermark: float = 80.0
    cpu_low_watermark: float = 60.0
    sysmem_high_watermark: float = 70.0
    #: The whole broker process's RSS (EMQ X's 5% was per Erlang process).
    procmem_high_watermark: float = 50.0
    connections_high_watermark: float = 80.0  #: of a listener's max_connections
    connections_low_watermark: float = 60.0
