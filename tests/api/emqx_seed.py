"""What the seed document (spec/emqx-rest-api-v3.md) shows, as data for the API
suites: its route listing (`GET /api/v3/`) and the field sets of its examples."""

from __future__ import annotations

#: The seed's `GET /api/v3/` response, in its order: (name, method, path, descr).
SEED_ROUTES: tuple[tuple[str, str, str, str], ...] = (
    ("list_clientid", "GET", "/auth_clientid", "List available clientid in the cluster"),
    ("lookup_clientid", "GET", "/auth_clientid/:clientid", "Lookup clientid in the cluster"),
    ("add_clientid", "POST", "/auth_clientid", "Add clientid in the cluster"),
    ("update_clientid", "PUT", "/auth_clientid/:clientid", "Update clientid in the cluster"),
    ("delete_clientid", "DELETE", "/auth_clientid/:clientid", "Delete clientid in the cluster"),
    ("list_username", "GET", "/auth_username", "List available username in the cluster"),
    ("lookup_username", "GET", "/auth_username/:username", "Lookup username in the cluster"),
    ("add_username", "POST", "/auth_username", "Add username in the cluster"),
    ("update_username", "PUT", "/auth_username/:username", "Update username in the cluster"),
    ("delete_username", "DELETE", "/auth_username/:username", "Delete username in the cluster"),
    ("auth_user", "POST", "/auth", "Authenticate an user"),
    ("create_user", "POST", "/users/", "Create an user"),
    ("list_users", "GET", "/users/", "List users"),
    ("update_user", "PUT", "/users/:name", "Update an user"),
    ("delete_user", "DELETE", "/users/:name", "Delete an user"),
    ("change_pwd", "PUT", "/change_pwd/:username", "Change password for an user"),
    ("list_all_alarms", "GET", "/alarms/present", "List all alarms"),
    ("list_node_alarms", "GET", "/alarms/present/:node", "List alarms of a node"),
    ("list_all_alarm_history", "GET", "/alarms/history", "List all alarm history"),
    ("list_node_alarm_history", "GET", "/alarms/history/:node", "List alarm history of a node"),
    ("add_app", "POST", "/apps/", "Add Application"),
    ("del_app", "DELETE", "/apps/:appid", "Delete Application"),
    ("list_apps", "GET", "/apps/", "List Applications"),
    ("lookup_app", "GET", "/apps/:appid", "Lookup Application"),
    ("update_app", "PUT", "/apps/:appid", "Update Application"),
    ("list_banned", "GET", "/banned/", "List banned"),
    ("create_banned", "POST", "/banned/", "Create banned"),
    ("delete_banned", "DELETE", "/banned/:who", "Delete banned"),
    ("list_brokers", "GET", "/brokers/", "A list of brokers in the cluster"),
    ("get_broker", "GET", "/brokers/:node", "Get broker info of a node"),
    ("get_all_configs", "GET", "/configs/", "Get all configs"),
    ("get_all_configs", "GET", "/nodes/:node/configs/", "Get all configs of a node"),
    ("update_config", "PUT", "/configs/:app", "Update config of an application in the cluster"),
    ("update_node_config", "PUT", "/nodes/:node/configs/:app",
     "Update config of an application on a node"),
    ("get_plugin_configs", "GET", "/nodes/:node/plugin_configs/:plugin",
     "Get configurations of a plugin on the node"),
    ("update_plugin_configs", "PUT", "/nodes/:node/plugin_configs/:plugin",
     "Update configurations of a plugin on the node"),
    ("list_connections", "GET", "/connections/", "A list of connections in the cluster"),
    ("list_node_connections", "GET", "nodes/:node/connections/",
     "A list of connections on a node"),
    ("lookup_node_connections", "GET", "nodes/:node/connections/:clientid",
     "Lookup a connection on node"),
    ("lookup_connections", "GET", "/connections/:clientid", "Lookup a connection in the cluster"),
    ("lookup_node_connection_via_username", "GET", "/nodes/:node/connection/username/:username",
     "Lookup a connection via username in the cluster "),
    ("lookup_connection_via_username", "GET", "/connection/username/:username",
     "Lookup a connection via username on a node "),
    ("kickout_connection", "DELETE", "/connections/:clientid", "Kick out a connection"),
    ("list_listeners", "GET", "/listeners/", "A list of listeners in the cluster"),
    ("list_node_listeners", "GET", "/nodes/:node/listeners", "A list of listeners on the node"),
    ("list_all_metrics", "GET", "/metrics/", "A list of metrics of all nodes in the cluster"),
    ("list_node_metrics", "GET", "/nodes/:node/metrics/", "A list of metrics of a node"),
    ("list_nodes", "GET", "/nodes/", "A list of nodes in the cluster"),
    ("get_node", "GET", "/nodes/:node", "Lookup a node in the cluster"),
    ("list_all_plugins", "GET", "/plugins/", "List all plugins in the cluster"),
    ("list_node_plugins", "GET", "/nodes/:node/plugins/", "List all plugins on a node"),
    ("load_plugin", "PUT", "/nodes/:node/plugins/:plugin/load", "Load a plugin"),
    ("unload_plugin", "PUT", "/nodes/:node/plugins/:plugin/unload", "Unload a plugin"),
    ("reload_plugin", "PUT", "/nodes/:node/plugins/:plugin/reload", "Reload a plugin"),
    ("mqtt_subscribe", "POST", "/mqtt/subscribe", "Subscribe a topic"),
    ("mqtt_publish", "POST", "/mqtt/publish", "Publish a MQTT message"),
    ("mqtt_unsubscribe", "POST", "/mqtt/unsubscribe", "Unsubscribe a topic"),
    ("list_routes", "GET", "/routes/", "List routes"),
    ("lookup_routes", "GET", "/routes/:topic", "Lookup routes to a topic"),
    ("list_sessions", "GET", "/sessions/", "A list of sessions in the cluster"),
    ("list_node_sessions", "GET", "nodes/:node/sessions/", "A list of sessions on a node"),
    ("lookup_session", "GET", "/sessions/:clientid", "Lookup a session in the cluster"),
    ("lookup_node_session", "GET", "nodes/:node/sessions/:clientid",
     "Lookup a session on the node"),
    ("clean_presisent_session", "DELETE", "/sessions/persistent/:clientid",
     "Clean a persistent session in the cluster"),
    ("clean_node_presisent_session", "DELETE", "nodes/:node/sessions/persistent/:clientid",
     "Clean a persistent session on the node"),
    ("list_stats", "GET", "/stats/", "A list of stats of all nodes in the cluster"),
    ("lookup_node_stats", "GET", "/nodes/:node/stats/", "A list of stats of a node"),
    ("list_subscriptions", "GET", "/subscriptions/", "A list of subscriptions in the cluster"),
    ("list_node_subscriptions", "GET", "/nodes/:node/subscriptions/",
     "A list of subscriptions on a node"),
    ("lookup_client_subscriptions", "GET", "/subscriptions/:clientid",
     "A list of subscriptions of a client"),
    ("lookup_client_subscriptions_with_node", "GET", "/nodes/:node/subscriptions/:clientid",
     "A list of subscriptions of a client on the node"),
    ("create_rule", "POST", "/rules/", "Create a rule"),
    ("list_rules", "GET", "/rules/", "A list of all rules"),
    ("show_rule", "GET", "/rules/:id", "Show a rule"),
    ("delete_rule", "DELETE", "/rules/:id", "Delete a rule"),
    ("list_actions", "GET", "/actions/", "A list of all actions"),
    ("show_action", "GET", "/actions/:name", "Show an action"),
    ("list_resources", "GET", "/resources/", "A list of all resources"),
    ("create_resource", "POST", "/resources/", "Create a resource"),
    ("show_resource", "GET", "/resources/:id", "Show a resource"),
    ("get_resource_status", "GET", "/resource_status/:id", "Get status of a resource"),
    ("start_resource", "POST", "/resources/:id", "Start a resource"),
    ("delete_resource", "DELETE", "/resources/:id", "Delete a resource"),
    ("list_resource_types", "GET", "/resource_types/", "List all resource types"),
    ("show_resource_type", "GET", "/resource_types/:name", "Show a resource type"),
    ("list_resources_by_type", "GET", "/resource_types/:type/resources",
     "List all resources of a resource type"),
    ("list_events", "GET", "/rule_events/", "List all events with detailed info"),
)

#: Seed routes whose resources this suite covers (the others have their own suites).
IMPLEMENTED = frozenset({
    "list_clientid", "lookup_clientid", "add_clientid", "update_clientid", "delete_clientid",
    "list_username", "lookup_username", "add_username", "update_username", "delete_username",
    "add_app", "del_app", "list_apps", "lookup_app", "update_app",
    "list_brokers", "get_broker",
    "list_connections", "list_node_connections", "lookup_node_connections",
    "lookup_connections", "lookup_node_connection_via_username",
    "lookup_connection_via_username", "kickout_connection",
    "list_listeners", "list_node_listeners",
    "list_all_metrics", "list_node_metrics",
    "list_nodes", "get_node",
    "mqtt_subscribe", "mqtt_publish", "mqtt_unsubscribe",
    "list_routes", "lookup_routes",
    "list_sessions", "list_node_sessions", "lookup_session", "lookup_node_session",
    "clean_presisent_session", "clean_node_presisent_session",
    "list_stats", "lookup_node_stats",
    "list_subscriptions", "list_node_subscriptions", "lookup_client_subscriptions",
    "lookup_client_subscriptions_with_node",
    "create_rule", "list_rules", "show_rule", "delete_rule", "list_actions", "show_action",
    "list_resources", "create_resource", "show_resource", "get_resource_status",
    "start_resource", "delete_resource", "list_resource_types", "show_resource_type",
    "list_resources_by_type", "list_events",
})

#: EMQ X 3.2.4+ routes beyond the seed (facts §2.1), served too.
BATCH_ROUTES = (
    ("mqtt_subscribe_batch", "POST", "/mqtt/subscribe_batch", "Batch subscribes topics"),
    ("mqtt_publish_batch", "POST", "/mqtt/publish_batch", "Batch publish MQTT messages"),
    ("mqtt_unsubscribe_batch", "POST", "/mqtt/unsubscribe_batch", "Batch unsubscribes topics"),
)

CONNECTION_FIELDS = frozenset({
    "clean_start", "client_id", "conn_mod", "connected_at", "heap_size", "ipaddress",
    "is_bridge", "keepalive", "mailbox_len", "node", "peercert", "port", "proto_name",
    "proto_ver", "recv_cnt", "recv_msg", "recv_oct", "recv_pkt", "reductions", "send_cnt",
    "send_msg", "send_oct", "send_pend", "send_pkt", "username", "zone",
})

SESSION_FIELDS = frozenset({
    "awaiting_rel_len", "binding", "clean_start", "client_id", "created_at", "deliver_msg",
    "enqueue_msg", "expiry_interval", "heap_size", "inflight_len", "mailbox_len",
    "max_awaiting_rel", "max_inflight", "max_mqueue", "max_subscriptions", "mqueue_dropped",
    "mqueue_len", "node", "reductions", "subscriptions_count", "username",
})

SUBSCRIPTION_FIELDS = frozenset({"client_id", "node", "qos", "topic"})
ROUTE_FIELDS = frozenset({"node", "topic"})

BROKER_FIELDS = frozenset({
    "datetime", "node_status", "otp_release", "sysdescr", "uptime", "version"})

NODE_FIELDS = frozenset({
    "connections", "load1", "load15", "load5", "max_fds", "memory_total", "memory_used",
    "name", "node_status", "otp_release", "process_available", "process_used", "uptime",
    "version",
})

LISTENER_FIELDS = frozenset({
    "acceptors", "current_conns", "listen_on", "max_conns", "protocol", "shutdown_count"})

#: The 43 metrics of the seed's `GET /metrics/` example.
SEED_METRICS = frozenset({
    "bytes/received", "packets/pubrel/sent", "packets/pubcomp/missed", "packets/sent",
    "packets/pubrel/received", "messages/qos1/received", "packets/publish/received",
    "packets/auth", "messages/qos0/received", "packets/pubcomp/received", "packets/unsuback",
    "packets/pubrec/missed", "messages/qos1/sent", "messages/qos2/sent", "bytes/sent",
    "messages/received", "messages/dropped", "messages/qos2/received", "packets/connect",
    "messages/qos0/sent", "packets/disconnect/received", "packets/pubrec/sent",
    "packets/publish/sent", "packets/pubrec/received", "packets/received",
    "packets/unsubscribe", "packets/subscribe", "packets/disconnect/sent", "packets/pingresp",
    "messages/qos2/dropped", "packets/puback/missed", "packets/pingreq", "packets/connack",
    "packets/pubrel/missed", "messages/sent", "packets/suback", "messages/retained",
    "packets/puback/sent", "packets/puback/received", "messages/qos2/expired",
    "messages/forward", "messages/expired", "packets/pubcomp/sent",
})

#: The 18 stats of the seed's `GET /stats/` example.
SEED_STATS = frozenset({
    "subscriptions/shared/max", "subscriptions/max", "subscribers/max", "topics/count",
    "subscriptions/count", "topics/max", "sessions/persistent/max", "connections/max",
    "subscriptions/shared/count", "sessions/persistent/count", "retained/count",
    "routes/count", "sessions/count", "retained/max", "sessions/max", "routes/max",
    "subscribers/count", "connections/count",
})
