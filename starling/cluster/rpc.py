"""Calls between nodes over NATS request/reply, always with a timeout.

Each node serves ``starling.<cluster>.rpc.<node>``; a request is JSON
``{"op": name, "args": ...}`` and the answer ``{"ok": result}`` or
``{"error": text}``.  A node that is not there (no responders) or does not
answer in time raises `Unreachable`: callers report it, nothing waits for
longer than the timeout.  Requests are answered concurrently, so one slow
handler does not hold the others up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from .connection import NatsConnection
from .names import Names

log = logging.getLogger(__name__)

Handler = Callable[[Any], Awaitable[Any]]


class Unreachable(Exception):
    """The node did not answer (stopped, cut off, or too slow)."""

    def __init__(self, node: str, why: str) -> None:
        super().__init__(f"node {node} is unreachable: {why}")
        self.node = node


class RemoteError(Exception):
    """The node answered with an error; `data` is what its handler's `Refused` carried."""

    def __init__(self, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.data = data


class Refused(Exception):
    """Raised by a handler: answered as an error with this text and `data` (no
    traceback logged)."""

    def __init__(self, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.data = data


class Rpc:
    def __init__(self, conn: NatsConnection, names: Names, node: str, timeout: float) -> None:
        self.conn = conn
        self.names = names
        self.node = node
        self.timeout = timeout
        self._handlers: dict[str, Handler] = {}
        self._sub: Subscription | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def register(self, op: str, handler: Handler) -> None:
        self._handlers[op] = handler

    async def start(self) -> None:
        self._sub = await self.conn.nc.subscribe(self.names.rpc(self.node), cb=self._serve)
        await self.conn.synced()  # the server knows we answer before anyone asks

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._sub.unsubscribe()
            self._sub = None
        for task in list(self._tasks):
            task.cancel()

    # -- serving ---------------------------------------------------------------------
    async def _serve(self, msg: Msg) -> None:
        task = asyncio.get_running_loop().create_task(self._answer(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, msg: Msg) -> None:
        try:
            request = json.loads(msg.data)
            op = request["op"]
            handler = self._handlers[op]
        except (ValueError, KeyError, TypeError):
            reply: dict[str, Any] = {"error": "bad request"}
        else:
            try:
                reply = {"ok": await handler(request.get("args"))}
            except Refused as exc:
                reply = {"error": str(exc), "data": exc.data}
            except Exception:
                log.exception("cluster: call %s failed", op)
                reply = {"error": f"{op} failed on {self.node}"}
        if msg.reply:
            with contextlib.suppress(nats.errors.Error):  # link down: the caller times out
                await msg.respond(json.dumps(reply, separators=(",", ":")).encode())

    # -- calling -----------------------------------------------------------------------
    async def call(self, node: str, op: str, args: Any = None,
                   timeout: float | None = None) -> Any:
        """`op` on `node`; raise Unreachable or RemoteError."""
        data = json.dumps({"op": op, "args": args}, separators=(",", ":")).encode()
        try:
            msg = await self.conn.nc.request(self.names.rpc(node), data,
                                             timeout=timeout or self.timeout)
        except nats.errors.NoRespondersError:
            raise Unreachable(node, "not running") from None
        except nats.errors.TimeoutError:
            raise Unreachable(node, "no answer in time") from None
        except nats.errors.Error as exc:
            raise Unreachable(node, str(exc) or type(exc).__name__) from None
        try:
            reply = json.loads(msg.data)
        except ValueError:
            raise RemoteError(f"node {node}: answer is not JSON") from None
        if "error" in reply:
            raise RemoteError(str(reply["error"]), reply.get("data"))
        return reply.get("ok")

    async def call_each(self, nodes: Iterable[str], op: str, args: Any = None,
                        timeout: float | None = None) -> dict[str, Any]:
        """`op` on every node at once: node -> result, or the Unreachable /
        RemoteError it raised."""
        names = list(nodes)
        results = await asyncio.gather(*(self.call(n, op, args, timeout) for n in names),
                                       return_exceptions=True)
        out: dict[str, Any] = {}
        for name, result in zip(names, results, strict=True):
            if isinstance(result, BaseException) and not isinstance(
                    result, (Unreachable, RemoteError)):
                raise result
            out[name] = result
        return out
