"""The broker core: sessions, routing, retained messages, hooks, metrics.

Knows nothing of sockets or HTTP.  Outside this package, import from here
only (`from starling.broker import Broker`), never from a submodule.
"""

from __future__ import annotations

from .acl import (
    ACL_ACTIONS,
    DEFAULT_ACL_CONF,
    AclCache,
    AclExplanation,
    AclMatch,
    AclRule,
    AclStep,
    AclSubject,
    AclSyntaxError,
    InternalAcl,
    TopicRule,
    Who,
    explain_acl,
    match_rules,
    parse_acl,
    topic_matches,
)
from .alarms import Alarm, AlarmMonitor, Alarms, SystemSampler
from .banned import BAN_KINDS, Ban, Banned
from .broker import DISCARDED, Broker
from .channel import Channel, Connection
from .client import CLOSED, CONNECTED, CONNECTING, NEW, Client, ClientHost
from .clock import Clock, Timer
from .cluster import ClusterLink, GroupKey
from .hooks import (
    STOP,
    HookPoint,
    Hooks,
    OnClientAuthenticate,
    OnClientCheckAcl,
    OnClientConnack,
    OnClientConnect,
    OnClientConnected,
    OnClientDisconnected,
    OnClientEnhancedAuthenticate,
    OnClientSubscribe,
    OnClientUnsubscribe,
    OnMessageAcked,
    OnMessageDelivered,
    OnMessageDropped,
    OnMessagePublish,
    OnSession,
    OnSessionSubscribed,
    OnSessionTerminated,
    OnSessionUnsubscribed,
    Stop,
)
from .info import PROTOCOL_MQTT, AuthResult, AuthStep, ClientInfo
from .journal import Journal
from .memory import ConnectionMemory
from .message import Message
from .metrics import ALL_METRICS, EXTRA_METRICS, SEED_METRICS
from .options import BrokerOptions
from .outlet import Outlet
from .queries import BrokerQueries
from .retained import RetainerSettings
from .router import Router
from .session import Session
from .snapshots import ConnectionSnapshot, SessionSnapshot, SubscriptionSnapshot
from .stats import STAT_NAMES
from .sys_topics import format_datetime, format_uptime

__all__ = [
    "ACL_ACTIONS",
    "ALL_METRICS",
    "BAN_KINDS",
    "CLOSED",
    "CONNECTED",
    "CONNECTING",
    "DEFAULT_ACL_CONF",
    "DISCARDED",
    "EXTRA_METRICS",
    "NEW",
    "PROTOCOL_MQTT",
    "SEED_METRICS",
    "STAT_NAMES",
    "STOP",
    "AclCache",
    "AclExplanation",
    "AclMatch",
    "AclRule",
    "AclStep",
    "AclSubject",
    "AclSyntaxError",
    "Alarm",
    "AlarmMonitor",
    "Alarms",
    "AuthResult",
    "AuthStep",
    "Ban",
    "Banned",
    "Broker",
    "BrokerOptions",
    "BrokerQueries",
    "Channel",
    "Client",
    "ClientHost",
    "ClientInfo",
    "Clock",
    "ClusterLink",
    "Connection",
    "ConnectionMemory",
    "ConnectionSnapshot",
    "GroupKey",
    "HookPoint",
    "Hooks",
    "InternalAcl",
    "Journal",
    "Message",
    "OnClientAuthenticate",
    "OnClientCheckAcl",
    "OnClientConnack",
    "OnClientConnect",
    "OnClientConnected",
    "OnClientDisconnected",
    "OnClientEnhancedAuthenticate",
    "OnClientSubscribe",
    "OnClientUnsubscribe",
    "OnMessageAcked",
    "OnMessageDelivered",
    "OnMessageDropped",
    "OnMessagePublish",
    "OnSession",
    "OnSessionSubscribed",
    "OnSessionTerminated",
    "OnSessionUnsubscribed",
    "Outlet",
    "RetainerSettings",
    "Router",
    "Session",
    "SessionSnapshot",
    "Stop",
    "SubscriptionSnapshot",
    "SystemSampler",
    "Timer",
    "TopicRule",
    "Who",
    "explain_acl",
    "format_datetime",
    "format_uptime",
    "match_rules",
    "parse_acl",
    "topic_matches",
]
