"""Counters of what really happened, under the seed document's metric names.

The names are EMQ X 3.1's (``packets/publish/received``), which the REST API
and $SYS publish as they are.  The hot path increments the dict directly
(``counters[PUBLISH_RECEIVED] += 1``): a plain int in a dict, no call.
Names beyond the seed (EMQ X 3.2's additions and Starling's own) are listed
separately and documented in docs/metrics.md.
"""

from __future__ import annotations

#: The 43 metrics of the seed's GET /metrics example, in its order of meaning.
SEED_METRICS: tuple[str, ...] = (
    "bytes/received",
    "bytes/sent",
    "packets/received",
    "packets/sent",
    "packets/connect",
    "packets/connack",
    "packets/publish/received",
    "packets/publish/sent",
    "packets/puback/received",
    "packets/puback/sent",
    "packets/puback/missed",
    "packets/pubrec/received",
    "packets/pubrec/sent",
    "packets/pubrec/missed",
    "packets/pubrel/received",
    "packets/pubrel/sent",
    "packets/pubrel/missed",
    "packets/pubcomp/received",
    "packets/pubcomp/sent",
    "packets/pubcomp/missed",
    "packets/subscribe",
    "packets/suback",
    "packets/unsubscribe",
    "packets/unsuback",
    "packets/pingreq",
    "packets/pingresp",
    "packets/disconnect/received",
    "packets/disconnect/sent",
    "packets/auth",
    "messages/received",
    "messages/sent",
    "messages/qos0/received",
    "messages/qos0/sent",
    "messages/qos1/received",
    "messages/qos1/sent",
    "messages/qos2/received",
    "messages/qos2/sent",
    "messages/qos2/expired",
    "messages/qos2/dropped",
    "messages/retained",
    "messages/dropped",
    "messages/expired",
    "messages/forward",
)

#: EMQ X 3.2 additions (in the seed's `/` spelling) and Starling's own.
EXTRA_METRICS: tuple[str, ...] = (
    "packets/connack/error",
    "packets/connack/auth_error",
    "packets/publish/error",
    "packets/publish/auth_error",
    #: PUBLISHes and wills to $SYS/# refused (mqtt.allow_sys_publish); PUBLISHes
    #: are also counted in packets/publish/auth_error
    "packets/publish/sys_denied",
    "packets/auth/sent",
    "packets/malformed",  #: frames refused by the decoder (connection closed)
    "auth/mqtt/anonymous",
    # emqx_auth_clientid / emqx_auth_username (EMQ X 3.2's auth.clientid.success ...)
    "auth/clientid/success",
    "auth/clientid/failure",
    "auth/clientid/ignore",
    "auth/username/success",
    "auth/username/failure",
    "auth/username/ignore",
    "messages/delayed",
    # Clustering (docs/cluster.md): messages from other nodes, and for them but dropped.
    "messages/forward/received",
    "messages/forward/dropped",
    "sessions/expired",  #: offline sessions discarded because their expiry passed
    #: messages dropped from (or not let into) a full session queue: max_mqueue_len or
    #: max_mqueue_bytes (EMQ X 4.3's delivery.dropped.queue_full); also in messages/dropped
    "delivery/dropped/queue_full",
    #: persistent sessions discarded, not resumed: the client was not their owner
    "sessions/not_resumed",
    "client/acl/allow",  #: ACL decisions: allowed (EMQ X 4's client.acl.allow)
    "client/acl/deny",  #: ... denied
    "client/acl/cache_hit",  #: ... answered from the connection's ACL cache
    #: deliveries through a wildcard subscription the subscriber's ACL refused
    #: (acl_deliver_check); also counted in messages/dropped
    "delivery/dropped/acl_denied",
    # emqx_web_hook: events forwarded (EMQ X 3.2's web_hook.<event>), and what became of them
    "web_hook/client_connected",
    "web_hook/client_disconnected",
    "web_hook/client_subscribe",
    "web_hook/client_unsubscribe",
    "web_hook/session_subscribed",
    "web_hook/session_unsubscribed",
    "web_hook/message_publish",
    "web_hook/message_delivered",
    "web_hook/message_acked",
    "web_hook/sent",  #: requests the web server answered
    "web_hook/failed",  #: requests given up after their retries
    "web_hook/retried",  #: retries of failed requests
    "web_hook/dropped",  #: bodies dropped: queue full, or still queued at unload
    # The protocol gateways (docs/gateways.md): what they refused, by protocol
    "gateway/mqttsn/malformed",
    "gateway/mqttsn/dropped",
    "gateway/mqttsn/rate_limited",
    "gateway/mqttsn/refused",
    "gateway/stomp/malformed",
    "gateway/stomp/refused",
)

ALL_METRICS: tuple[str, ...] = SEED_METRICS + EXTRA_METRICS

# Names the core increments, as constants so a typo is an import error.
BYTES_RECEIVED = "bytes/received"
BYTES_SENT = "bytes/sent"
PACKETS_RECEIVED = "packets/received"
PACKETS_SENT = "packets/sent"
PACKETS_MALFORMED = "packets/malformed"
MESSAGES_RECEIVED = "messages/received"
MESSAGES_SENT = "messages/sent"
MESSAGES_DROPPED = "messages/dropped"
MESSAGES_DROPPED_QUEUE_FULL = "delivery/dropped/queue_full"
MESSAGES_RETAINED = "messages/retained"
MESSAGES_EXPIRED = "messages/expired"
QOS_RECEIVED = ("messages/qos0/received", "messages/qos1/received", "messages/qos2/received")
QOS_SENT = ("messages/qos0/sent", "messages/qos1/sent", "messages/qos2/sent")
ACL_ALLOW = "client/acl/allow"
ACL_DENY = "client/acl/deny"
ACL_CACHE_HIT = "client/acl/cache_hit"
DELIVERY_DROPPED_ACL = "delivery/dropped/acl_denied"


def new_counters() -> dict[str, int]:
    return dict.fromkeys(ALL_METRICS, 0)
