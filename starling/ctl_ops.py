"""``starling ctl recon | reloader | luahook``: the commands of the operator
plugins emqx_recon, emqx_reloader and emqx_lua_hook (docs/ctl.md), over the
same management API as every other ``ctl`` command.  Each answers
``... plugin <name> is not loaded`` (exit 1) while its plugin is not loaded."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from .ctl_client import (
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
)

AddCommand = Callable[[str, str, Callable[..., None]], argparse.ArgumentParser]


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested objects as dotted keys, for `key : value` output."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        elif not isinstance(value, list):
            out[f"{prefix}{key}"] = value
    return out


def cmd_recon(api: ApiClient, args: argparse.Namespace, out: Output) -> None:
    base = f"/nodes/{q(node_of(api, args))}/recon"
    what = args.what or "summary"
    query: dict[str, Any] = {}
    if args.limit is not None:
        query["limit"] = args.limit
    if what == "summary":
        data = api.data("GET", base) or {}
        if not out.json(data):
            details(_flat(data), out.out)
    elif what == "tasks":
        data = api.data("GET", base + "/tasks", query) or {}
        if not out.json(data):
            out.message(f"{data.get('total', 0)} tasks, {data.get('distinct', 0)} distinct")
            table(data.get("groups") or [], [col("count"), col("coroutine")], out.out)
    elif what == "memory":
        if args.client_id:
            query["clientid"] = args.client_id
        data = api.data("GET", base + "/memory", query) or {}
        if not out.json(data):
            details(_flat({k: v for k, v in data.items() if k != "top"}), out.out)
            table(data.get("top") or [], [col("clientid"), col("memory"), col("channel"),
                                          col("transport"), col("send_pend"), col("session"),
                                          col("mqueue_len"), col("inflight_len")], out.out)
    else:
        query["by"] = args.by
        rows = api.data("GET", base + "/top", query) or []
        if not out.json(rows):
            table(rows, [col("clientid"), col(args.by), col("rate"), col("recv_msg"),
                         col("send_msg"), col("recv_oct"), col("send_oct"), col("peerhost")],
                  out.out)


def cmd_reloader(api: ApiClient, args: argparse.Namespace, out: Output) -> None:
    base = f"/nodes/{q(node_of(api, args))}/reloader"
    if (args.action or "status") == "status":
        data = api.data("GET", base) or {}
        if out.json(data):
            return
        details({k: v for k, v in data.items() if k != "modules"}, out.out)
        table(data.get("modules") or [], [col("module"), col("status"), col("plugins"),
                                          col("reloads"), col("error")], out.out)
        return
    body = {"module": args.module} if args.module else None
    with failing_as(f"reload {args.module}"):
        results = api.data("PUT", base + "/reload", body=body) or []
    if out.json(results):
        return
    if not results:
        out.message("no module changed")
    for row in results:
        line = f"{row['module']}: {row['result']}"
        out.message(line + (f" ({row['error']})" if row.get("error") else ""))
    if any(row["result"] == "failed" for row in results):
        raise CtlError("some modules failed to reload; their old code is kept")


def cmd_luahook(api: ApiClient, args: argparse.Namespace, out: Output) -> None:
    base = f"/nodes/{q(node_of(api, args))}/lua_hook"
    action = args.action or "list"
    if action == "list":
        data = api.data("GET", base) or {}
        if not out.json(data):
            table(data.get("scripts") or [], [col("script"), col("status"), col("hooks"),
                                              col("calls"), col("errors"), col("dropped"),
                                              col("rewritten"), col("error")], out.out)
        return
    if action == "reload" and not args.script:
        rows = api.data("PUT", base + "/reload") or []
        if not out.json(rows):
            table(rows, [col("script"), col("status"), col("hooks"), col("error")], out.out)
        return
    script = need(args, "script")
    with failing_as(f"{action} {script}"):
        api.call("PUT", f"{base}/scripts/{q(script)}/{action}")
    out.message(f"{action.capitalize()} {script} successfully.")


def add_commands(add: AddCommand) -> None:
    """Add the commands to `starling ctl`'s parser (`add(name, help, func)`)."""
    recon = add("recon", "runtime inspection (emqx_recon): summary, tasks, memory, top",
                cmd_recon)
    recon.add_argument("what", nargs="?", choices=["summary", "tasks", "memory", "top"])
    recon.add_argument("--by", default="recv_msg",
                       choices=["recv_msg", "send_msg", "recv_oct", "send_oct", "recv_pkt",
                                "send_pkt", "send_pend"],
                       help="top: the counter to rank connections by")
    recon.add_argument("--limit", type=int, help="rows to show")
    recon.add_argument("--client-id", dest="client_id", help="memory: one client only")

    reloader = add("reloader", "plugin modules reloaded from a directory (emqx_reloader): "
                   "status, or reload changed modules now", cmd_reloader)
    reloader.add_argument("action", nargs="?", choices=["status", "reload"])
    reloader.add_argument("module", nargs="?", help="reload: this module even if unchanged")

    luahook = add("luahook", "Lua hook scripts (emqx_lua_hook): list, load, unload, reload, "
                  "enable, disable", cmd_luahook)
    luahook.add_argument("action", nargs="?",
                         choices=["list", "load", "unload", "reload", "enable", "disable"])
    luahook.add_argument("script", nargs="?", help="a script name (test or test.lua); "
                         "'reload' without one reloads the directory")
