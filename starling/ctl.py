"""``starling ctl``: operate a running node through its management REST API,
as ``emqx_ctl`` does for EMQ X.

It talks HTTP to the node's API (`/api/v3/`) with the standard library only,
so it works wherever Starling itself is installed.  Where it connects, and as
whom, is resolved in this order (first found wins): flags; environment
(``STARLING_API_URL``, ``STARLING_APP_ID``, ``STARLING_APP_SECRET``); the file
``<data_dir>/management.json`` that a running node writes (its real management
URL, port 0 included, and its bootstrap app's credentials); the node's
configuration (``management.bind``, ``api.default_app_id``,
``api.default_app_secret``, else the file ``<data_dir>/api_secret``).  The data
directory is ``--data-dir``, else ``STARLING_DATA_DIR``, else ``node.data_dir``.

The configuration is read as ``starling start`` reads it (``--config FILE``,
``--data-dir DIR``, ``--set KEY=VALUE``).  Output is a readable table by
default; ``--json`` prints the API's ``data`` as JSON.  Exit status: 0 on
success, 1 when the node or the API refuses or fails (the API's message is
printed), 2 for a usage error.  docs/ctl.md has every command.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from .config import Config, ConfigError
from .ctl_client import (
    API_PREFIX,
    DEFAULT_TIMEOUT,
    ApiClient,
    CtlError,
    Output,
    col,
    details,
    failing_as,
    need,
    node_of,
    q,
    table,
    text,
)
from .ctl_ops import add_commands
from .runtime_file import RuntimeFile

# -- where and as whom ---------------------------------------------------------------------

def _url_from_bind(bind: str) -> str:
    if bind == "off":
        raise CtlError("the management API is off on this node (management.bind = off); "
                       "pass --url to reach another node")
    host, sep, port = bind.rpartition(":")
    if not sep:
        host, port = "", bind
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "*"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if port in ("", "0"):
        raise CtlError(f"management.bind is {bind!r}: the port is chosen at start; "
                       "pass --url with the port the node logged")
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def normalize_url(url: str) -> str:
    """Accept ``host:port``, ``http://host:port`` or ``.../api/v3``; return the base."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    if url.endswith(API_PREFIX):
        url = url[: -len(API_PREFIX)]
    return url


def _load_config(args: argparse.Namespace) -> Config:
    extra: dict[str, Any] = {}
    if getattr(args, "data_dir", None):
        extra["node.data_dir"] = args.data_dir
    try:
        return Config.load(getattr(args, "config", None), getattr(args, "set", None) or (),
                           extra)
    except ConfigError as exc:
        raise CtlError(f"configuration error: {exc}", 2) from None


def data_dir_of(args: argparse.Namespace, env: Mapping[str, str],
                cfg: Callable[[], Config]) -> Path:
    """The node's data directory: ``--data-dir``, ``STARLING_DATA_DIR``, else the
    configuration's ``node.data_dir`` (``data`` by default)."""
    given = getattr(args, "data_dir", None) or env.get("STARLING_DATA_DIR")
    return Path(given) if given else Path(cfg()["node.data_dir"])


def resolve_target(args: argparse.Namespace,
                   environ: Mapping[str, str] | None = None) -> tuple[str, str, str]:
    """(base URL, app id, secret) from flags, environment, the running node's
    ``<data_dir>/management.json``, then the node's configuration."""
    env = os.environ if environ is None else environ
    config: Config | None = None

    def cfg() -> Config:
        nonlocal config
        if config is None:
            config = _load_config(args)
        return config

    url = getattr(args, "url", None) or env.get("STARLING_API_URL")
    runtime = RuntimeFile(data_dir_of(args, env, cfg))
    local = runtime.read()
    if local is not None and not local.running and not url:
        raise CtlError(f"no node is running on data dir {runtime.path.parent} (pid "
                       f"{local.pid}, which wrote {runtime.path.name}, has exited)")
    if local is not None and not local.url:
        local = None  # its management API is off
    if url:
        base = normalize_url(url)
    elif local is not None:
        base = local.url
    else:
        base = _url_from_bind(cfg()["management.bind"])
    app_id = (getattr(args, "app_id", None) or env.get("STARLING_APP_ID")
              or (local.app_id if local else "") or cfg()["api.default_app_id"])
    secret = getattr(args, "secret", None) or env.get("STARLING_APP_SECRET")
    if not secret and local is not None and app_id == local.app_id:
        secret = local.secret
    if not secret:
        secret = cfg()["api.default_app_secret"]
    if not secret:
        path = data_dir_of(args, env, cfg) / "api_secret"
        try:
            secret = path.read_text().strip()
        except OSError:
            secret = ""
    return base, app_id, secret


# -- HTTP ----------------------------------------------------------------------------------





# -- output --------------------------------------------------------------------------------













# -- commands ------------------------------------------------------------------------------

def cmd_status(api: ApiClient, args: argparse.Namespace, out: Output) -> None:
    with failing_as("Node is not running"):
        body = api.status_text()
    lines = body.splitlines()
    words = lines[0].split() if lines else []
    running = len(lines) > 1 and lines[1].rstrip().endswith(" is running")
    if out.json({"node": words[1] if len(words) > 1 else "", "status": words[-1] if words
                 else "", "running": running}):
        return
    out.out.write(body if body.endswith("\n") else body + "\n")
    if not running:
        raise CtlError("the broker is not running", 1)


def cmd_broker(api: ApiClient, args: argparse.Namespace, out: Output) -> None:
    what = args.what or "info"
    if what == "info":
        data = api.data("GET", "/brokers/")
        if out.json(data):
            return
        for i, broker in enumerate(data or []):
            if i:
                out.out.write("\n")
            details({k: broker[k] for k in ("node", "sysdescr", "version", "uptime", "datetime")
                     if k in broker}, out.out)
        return
    path, field = ("/stats/", None) if what == "stats" else ("/metrics/", "metrics")
    data = api.data("GET", path)
    if out.json(data):
        return
    for i, entry in enumerate(data or []):
        values = dict(entry[field]) if field else {k: v for k, v in entry.items()
                                                   if k != "node"}
        if i:
            out.out.write("\n")
        out.out.write(f"node : {entry.get('node', '')}\n")
        details(dict(sorted(values.items())), out.out)


def cmd_cluster(api: ApiClient, args: argparse.Namespace, out: Output) -> None:
    if args.what == "leave":
        node = node_of(api, args)
        with failing_as(f"leave {node}"):
            api.data("PUT", f"/nodes/{q(node)}/leave")
        out.out.write(f"{node} left the cluster\n")
        return
    data = api.data("GET", "/nodes/")
    if out.json(data):
        return
    table(data or [], [col("node"), col("status", "node_status"), col("version"),
                       col("uptime"), col("connections"), col("memory_used"),
                       col("load1")], out.out)


CONNECTION_COLUMNS = [
    col("client_id"), col("username"),
    ("peername", lambda r: f"{r.get('ipaddress', '')}:{r.get('port', '')}"),
    ("protocol", lambda r: f"{r.get('proto_name', '')}/{r.get('proto_ver', '')}"),
    col("clean_start"), col("keepalive"), col("connected_at"),
]


def cmd_clients(api: ApiClient, args: argparse.Namespace, out: Output) -> None:
    action = args.action or "list"
    if action == "list":
        rows = api.get_all("/connections/")
        if not out.json(rows):
            table(rows, CONNECTION_COLUMNS, out.out)
    elif action == "show":
        found = api.data("GET", f"/connections/{q(need(args, 'client_id'))}") or []
        if not found:
            raise CtlError(f"client {args.client_id!r} is not connected")
        if not out.json(found[0]):
            details(found[0], out.out)
    else:  # kick
        client_id = need(args, "client_id")
        with failing_as(f"kick {client_id}"):
            api.call("DELETE", f"/connections/{q(client_id)}")
        out.message(f"kicked {client_id}")


SESSION_COLUMNS = [
    col("client_id"), col("clean_start"), col("expiry_interval"),
    col("subscriptions", "subscriptions_count"),
    ("inflight", lambda r: f"{r.get('inflight_len', 0)}/{r.get('max_inflight', 0)}"),
    ("mqueue", lambda r: f"{r.get('mqueue_len', 0)}/{r.get('max_mqueue', 0)}"),
    col("dropped", "mqueue_dropped"), col("created_at"),
]


def cmd_sessions(api: ApiClient, args: argparse.Namespace, out: Output) -> None:
    if (args.action or "list") == "list":
        rows = api.get_all("/sessions/")
        if not out.json(rows):
            table(rows, SESSION_COLUMNS, out.out)
        return
    found = api.data("GET", f"/sessions/{q(need(args, 'client_id'))}") or []
    if not found:
        raise CtlError(f"no session for client {args.client_id!r}")
    if not out.json(found[0]):
        details(found[0], out.out)


def cmd_routes(api: ApiClient, args: argparse.Namespace, out: Output) -> None:
    if (args.action or "list") == "list":
        rows = api.get_all("/routes/")
    else:
        rows = api.data("GET", f"/routes/{q(need(args, 'topic'))}") or []
        if not rows and not out.as_json:
            raise CtlError(f"no route for {args.topic!r}")
    if not out.json(rows):
        table(rows, [col("topic"), col("node")], out.out)


def cmd_subscriptions(api: ApiClient, args: argparse.Namespace, out: Output) -> None:
    if (args.action or "list") == "list":
        rows = api.get_all("/subscriptions/")
    else:
        rows = api.data("GET", f"/subscriptions/{q(need(args, 'client_id'))}") or []
    if not out.json(rows):
        table(rows, [col("client_id"), col("topic"), col("qos"), col("node")], out.out)




def cmd_plugins(api: ApiClient, args: argparse.Namespace, out: Output) -> None:
    action = args.action or "list"
    node = q(node_of(api, args))
    if action == "list":
        rows = api.data("GET", f"/nodes/{node}/plugins/") or []
        if not out.json(rows):
            table(rows, [col("name"), col("version"), col("type"), col("active"),
                         col("description")], out.out)
        return
    name = need(args, "name")
    with failing_as(f"{action} plugin {name}"):
        api.call("PUT", f"/nodes/{node}/plugins/{q(name)}/{action}")
    out.message(f"Plugin {name} {action}ed successfully.")


def cmd_configs(api: ApiClient, args: argparse.Namespace, out: Output) -> None:
    if (args.action or "list") == "list":
        rows = api.data("GET", f"/nodes/{q(node_of(api, args))}/configs/") or []
        if not out.json(rows):
            table(rows, [col("key"), col("value"), col("type", "datatpye"), col("app")],
                  out.out)
        return
    key, value = need(args, "key"), need(args, "value")
    with failing_as(f"set {key}"):
        api.call("PUT", f"/configs/{q(args.app)}", body={"key": key, "value": value})
    out.message(f"{key} = {value}")


def cmd_listeners(api: ApiClient, args: argparse.Namespace, out: Output) -> None:
    action = args.action or "list"
    if action in ("stop", "start"):
        name = need(args, "name")
        with failing_as(f"{action} {name}"):
            api.call("PUT", f"/nodes/{q(node_of(api, args))}/listeners/{q(name)}/{action}")
        out.message(f"{name} {'stopped' if action == 'stop' else 'started'}")
        return
    data = api.data("GET", "/listeners/") or []
    if out.json(data):
        return
    rows = [{"node": entry.get("node", ""), **listener}
            for entry in data for listener in entry.get("listeners", [])]
    table(rows, [col("node"), col("protocol"), col("listen_on"), col("acceptors"),
                 col("max_conns"), col("current_conns"), col("shutdown_count")], out.out)


def cmd_acl(api: ApiClient, args: argparse.Namespace, out: Output) -> None:
    """The ACL file (docs/acl.md): show its rules, reload it, explain a decision."""
    action = args.action or "show"
    if action == "show":
        data = api.data("GET", "/acl/") or {}
        if out.json(data):
            return
        details({k: v for k, v in data.items() if k != "rules"}, out.out)
        out.out.write("\n")
        table(data.get("rules") or [], [col("line"), col("rule")], out.out)
    elif action == "reload":
        data = api.data("PUT", "/acl/reload") or {}
        if not out.json(data):
            out.message(f"ACL file {data.get('file')} reloaded: {data.get('rules')} rules.")
    else:  # explain
        query = {"action": need(args, "what"), "topic": need(args, "topic")}
        for name in ("client_id", "username", "ipaddr", "zone"):
            if getattr(args, name, None):
                query[name] = getattr(args, name)
        data = api.data("GET", "/acl/explain", query) or {}
        if not out.json(data):
            out.message(f"{data.get('decision')}: {data.get('reason')}")


BAN_KINDS = {"client_id": "client_id", "clientid": "client_id", "username": "username",
             "ip_address": "ip_address", "ip": "ip_address", "peerhost": "ip_address"}


def _until_text(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
    return text(value)


def cmd_banned(api: ApiClient, args: argparse.Namespace, out: Output) -> None:
    action = args.action or "list"
    if action == "list":
        rows = api.get_all("/banned/")
        if not out.json(rows):
            table(rows, [col("who"), col("as"), col("reason"), col("by"),
                         ("until", lambda r: _until_text(r.get("until")))], out.out)
        return
    kind = BAN_KINDS.get(need(args, "kind"))
    if kind is None:
        raise CtlError(f"'as' must be one of client_id, username, ip_address, "
                       f"not {args.kind!r}", 2)
    who = need(args, "who")
    if action == "add":
        body: dict[str, Any] = {"who": who, "as": kind}
        for name in ("reason", "desc", "by"):
            if getattr(args, name, None) is not None:
                body[name] = getattr(args, name)
        if args.until is not None:
            body["until"] = args.until
        elif args.duration is not None:
            body["until"] = int(time.time() + args.duration)
        data = api.data("POST", "/banned/", body=body)
        if not out.json(data):
            out.message(f"banned {kind} {who}")
    else:
        api.call("DELETE", f"/banned/{q(who)}", {"as": kind})
        out.message(f"removed the ban on {kind} {who}")


APP_STATUS = {"true": True, "enable": True, "enabled": True, "run": True, "on": True,
              "false": False, "disable": False, "disabled": False, "stop": False, "off": False}


def _lookup_app(api: ApiClient, app_id: str) -> dict[str, Any]:
    with failing_as(f"app {app_id!r}"):
        found = api.data("GET", f"/apps/{q(app_id)}")
    if not found or not isinstance(found, dict):
        raise CtlError(f"app {app_id!r} not found")
    return found


def cmd_mgmt(api: ApiClient, args: argparse.Namespace, out: Output) -> None:
    action = args.action or "list"
    if action == "list":
        rows = api.data("GET", "/apps/") or []
        if not out.json(rows):
            table(rows, [col("app_id"), col("name"), col("status"), col("expired"),
                         col("desc")], out.out)
        return
    app_id = need(args, "target_app")
    if action == "insert":
        body: dict[str, Any] = {"app_id": app_id, "name": args.name or app_id,
                                "desc": args.desc or "Application user", "status": True}
        if args.app_secret:
            body["secret"] = args.app_secret
        data = api.data("POST", "/apps/", body=body)
        if not out.json(data):
            out.message(f"AppSecret: {(data or {}).get('secret', '')}")
    elif action == "lookup":
        found = _lookup_app(api, app_id)
        if not out.json(found):
            details(found, out.out)
    elif action == "update":
        found = _lookup_app(api, app_id)
        # PUT replaces every field (EMQ X), so send the current ones with the changes.
        body = {k: found.get(k) for k in ("name", "desc", "status", "expired")}
        if args.status is not None:
            status = APP_STATUS.get(args.status.lower())
            if status is None:
                raise CtlError(f"status must be enable or disable, not {args.status!r}", 2)
            body["status"] = status
        for name in ("name", "desc"):
            if getattr(args, name, None) is not None:
                body[name] = getattr(args, name)
        if args.expired is not None:
            body["expired"] = None if args.expired in ("", "never") else int(args.expired)
        if body["expired"] in (None, "undefined"):
            body.pop("expired")
        api.call("PUT", f"/apps/{q(app_id)}", body=body)
        out.message(f"updated app {app_id}")
    else:  # delete
        api.call("DELETE", f"/apps/{q(app_id)}")
        out.message(f"deleted app {app_id}")


def _admin_password(args: argparse.Namespace) -> str:
    """The password argument; `-` (or none) reads it from the terminal or stdin, so it
    need not appear in the process list or the shell history."""
    if args.password and args.password != "-":
        return str(args.password)
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise CtlError("missing argument: password", 2)
    return password


def cmd_admins(api: ApiClient, args: argparse.Namespace, out: Output) -> None:
    """Dashboard users (emqx_ctl admins), through the users routes of the API."""
    action = args.action or "list"
    if action == "list":
        rows = api.data("GET", "/users/") or []
        if not out.json(rows):
            table(rows, [col("username"), col("tags")], out.out)
        return
    username = need(args, "username")
    with failing_as(f"admins {action} {username}", keep_status=True):
        if action == "add":
            api.call("POST", "/users/", body={"username": username,
                                              "password": _admin_password(args),
                                              "tags": args.tags or ""})
            out.message(f"added dashboard user {username}")
        elif action == "passwd":
            api.call("PUT", f"/users/{q(username)}", body={"password": _admin_password(args)})
            out.message(f"changed the password of {username}")
        else:  # del
            api.call("DELETE", f"/users/{q(username)}")
            out.message(f"deleted dashboard user {username}")


def cmd_trace(api: ApiClient, args: argparse.Namespace, out: Output) -> None:
    """EMQ X's `emqx_ctl trace`: start client <id> <file> | start topic <filter> <file> |
    stop [client <id> | topic <filter>] | list."""
    action = args.action or "list"
    if action == "list":
        rows = api.data("GET", "/trace") or []
        if not out.json(rows):
            table(rows, [col("type"), col("name"), col("file"), col("size"),
                         col("started_at")], out.out)
        return
    if action == "start":
        kind, name, file_name = need(args, "kind"), need(args, "name"), need(args, "file")
        with failing_as(f"trace {kind} {name}"):
            data = api.data("POST", "/trace", body={"type": kind, "name": name,
                                                    "file": file_name})
        if not out.json(data):
            out.message(f"trace {kind} {name} started: {(data or {}).get('file')}")
        return
    if args.kind is None:  # stop: every trace
        stopped = []
        for row in api.data("GET", "/trace") or []:
            with failing_as(f"stop trace {row['type']} {row['name']}"):
                stopped.append(api.data(
                    "DELETE", f"/trace/{q(row['type'])}/{q(row['name'])}"))
        if not out.json(stopped):
            out.message(f"{len(stopped)} trace{'s' if len(stopped) != 1 else ''} stopped")
        return
    kind, name = need(args, "kind"), need(args, "name")
    with failing_as(f"stop trace {kind} {name}"):
        data = api.data("DELETE", f"/trace/{q(kind)}/{q(name)}")
    if not out.json(data):
        out.message(f"trace {kind} {name} stopped: {(data or {}).get('file')}")




# -- the parser ----------------------------------------------------------------------------

def _common() -> argparse.ArgumentParser:
    """Options accepted before or after the command (`default=SUPPRESS` lets a later
    parser not overwrite what an earlier one parsed)."""
    common = argparse.ArgumentParser(add_help=False)
    s = argparse.SUPPRESS
    common.add_argument("--url", default=s, help="API base URL, e.g. http://127.0.0.1:8080 "
                        "(env STARLING_API_URL; default from management.bind)")
    common.add_argument("--app-id", default=s, help="app id (env STARLING_APP_ID; default "
                        "api.default_app_id)")
    common.add_argument("--secret", default=s, help="app secret (env STARLING_APP_SECRET; "
                        "default api.default_app_secret or <data_dir>/api_secret)")
    common.add_argument("--config", type=Path, default=s, help="the node's TOML configuration")
    common.add_argument("--data-dir", default=s, help="the node's data directory")
    common.add_argument("--set", action="append", default=s, metavar="KEY=VALUE",
                        help="a configuration key, as for 'starling start'")
    common.add_argument("--node", default=s, help="node name for node-scoped calls "
                        "(default: the node the URL reaches)")
    common.add_argument("--timeout", type=float, default=s, help="HTTP timeout in seconds")
    common.add_argument("--json", action="store_true", default=s,
                        help="print the API's data as JSON")
    return common


def parser() -> argparse.ArgumentParser:
    common = _common()
    p = argparse.ArgumentParser(
        prog="starling ctl", parents=[common],
        description="Operate a running Starling node through its management API "
                    "(the emqx_ctl of Starling).")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str, func: Callable[..., None]) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        cmd.set_defaults(func=func)
        return cmd

    add("status", "is the node running", cmd_status)
    broker = add("broker", "broker info; 'broker stats' and 'broker metrics'", cmd_broker)
    broker.add_argument("what", nargs="?", choices=["info", "stats", "metrics"])
    cluster = add("cluster", "the nodes of the cluster; 'cluster leave [NODE]' makes a node "
                  "leave it", cmd_cluster)
    cluster.add_argument("what", nargs="?", choices=["status", "leave"])
    cluster.add_argument("node", nargs="?", help="with leave: the node (default: the one "
                         "the ctl talks to)")

    clients = add("clients", "list, show or kick connected clients", cmd_clients)
    clients.add_argument("action", nargs="?", choices=["list", "show", "kick"])
    clients.add_argument("client_id", nargs="?")

    sessions = add("sessions", "list or show sessions (offline persistent ones too)",
                   cmd_sessions)
    sessions.add_argument("action", nargs="?", choices=["list", "show"])
    sessions.add_argument("client_id", nargs="?")

    routes = add("routes", "list routes, or show the route of a topic", cmd_routes)
    routes.add_argument("action", nargs="?", choices=["list", "show"])
    routes.add_argument("topic", nargs="?")

    subs = add("subscriptions", "list subscriptions, or show a client's", cmd_subscriptions)
    subs.add_argument("action", nargs="?", choices=["list", "show"])
    subs.add_argument("client_id", nargs="?")

    plugins = add("plugins", "list, load, unload or reload plugins", cmd_plugins)
    plugins.add_argument("action", nargs="?", choices=["list", "load", "unload", "reload"])
    plugins.add_argument("name", nargs="?")

    listeners = add("listeners", "list the node's listeners, or stop/start one by name "
                    "(e.g. mqtt:tcp:default)", cmd_listeners)
    listeners.add_argument("action", nargs="?", choices=["list", "stop", "start"])
    listeners.add_argument("name", nargs="?")

    acl = add("acl", "the ACL file: show its rules, reload it, explain a decision", cmd_acl)
    acl.add_argument("action", nargs="?", choices=["show", "reload", "explain"])
    acl.add_argument("what", nargs="?", metavar="publish|subscribe")
    acl.add_argument("topic", nargs="?")
    acl.add_argument("--client-id", dest="client_id")
    acl.add_argument("--username")
    acl.add_argument("--ipaddr")
    acl.add_argument("--zone")

    configs = add("configs", "list runtime settings, or set one without a restart",
                  cmd_configs)
    configs.add_argument("action", nargs="?", choices=["list", "set"])
    configs.add_argument("key", nargs="?")
    configs.add_argument("value", nargs="?")
    configs.add_argument("--app", default="emqx", help="the app owning the key (emqx)")

    banned = add("banned", "list, add or delete bans (as: client_id, username, ip_address)",
                 cmd_banned)
    banned.add_argument("action", nargs="?", choices=["list", "add", "del", "delete"])
    banned.add_argument("kind", nargs="?", metavar="as")
    banned.add_argument("who", nargs="?")
    banned.add_argument("--reason")
    banned.add_argument("--desc")
    banned.add_argument("--by")
    until = banned.add_mutually_exclusive_group()
    until.add_argument("--until", type=int, help="end of the ban, epoch seconds")
    until.add_argument("--duration", type=float, help="length of the ban in seconds")

    mgmt = add("mgmt", "management API apps: list, insert, lookup, update, delete", cmd_mgmt)
    mgmt.add_argument("action", nargs="?",
                      choices=["list", "insert", "lookup", "update", "delete"])
    mgmt.add_argument("target_app", nargs="?", metavar="app_id")
    mgmt.add_argument("name_or_status", nargs="?", metavar="NAME|STATUS",
                      help="insert: the app's name; update: enable or disable")
    mgmt.add_argument("--name", dest="name_opt", help="display name")
    mgmt.add_argument("--desc", help="description")
    mgmt.add_argument("--app-secret", help="insert: the secret (generated when absent)")
    mgmt.add_argument("--expired", help="update: expiry, epoch seconds, or 'never'")

    admins = add("admins", "dashboard users: list, add, passwd, del", cmd_admins)
    admins.add_argument("action", nargs="?", choices=["list", "add", "passwd", "del"])
    admins.add_argument("username", nargs="?")
    admins.add_argument("password", nargs="?")
    admins.add_argument("tags", nargs="?", help="add: the user's tags (default empty)")

    trace = add("trace", "trace a client's packets or a topic's messages to a file: "
                "start client <id> <file>, start topic <filter> <file>, "
                "stop [client <id> | topic <filter>], list", cmd_trace)
    trace.add_argument("action", nargs="?", choices=["list", "start", "stop"])
    trace.add_argument("kind", nargs="?", choices=["client", "topic"])
    trace.add_argument("name", nargs="?", metavar="client_id|topic")
    trace.add_argument("file", nargs="?", help="start: a file name, written under "
                       "<data_dir>/trace on the node")

    add_commands(add)  # recon, reloader, luahook (ctl_ops)
    return p


def _fix_mgmt(args: argparse.Namespace) -> None:
    """`mgmt insert ID NAME` / `mgmt update ID STATUS`: one positional, two meanings."""
    if getattr(args, "func", None) is not cmd_mgmt:
        return
    extra = args.name_or_status
    args.name = args.name_opt
    args.status = None
    if args.action == "insert" and extra is not None and args.name is None:
        args.name = extra
    elif args.action == "update":
        args.status = extra


def main(argv: Sequence[str] | None = None, stdout: TextIO | None = None,
         stderr: TextIO | None = None) -> int:
    out_stream = stdout or sys.stdout
    err_stream = stderr or sys.stderr
    try:
        args = parser().parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code) if isinstance(exc.code, int) else 2
    _fix_mgmt(args)
    try:
        base, app_id, secret = resolve_target(args)
        api = ApiClient(base, app_id, secret, getattr(args, "timeout", DEFAULT_TIMEOUT))
        args.func(api, args, Output(getattr(args, "json", False), out_stream))
    except CtlError as exc:
        err_stream.write(f"starling ctl: {exc.message}\n")
        return exc.status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `starling ctl clients | head`
        if stdout is None:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 0
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
