"""The cluster's parts against a real `nats-server -js`: calls between nodes,
the node list, replicated buckets, client-id ownership, the outbox."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from helpers.nats_server import NatsServer

from starling.broker import Message
from starling.cluster.connection import NatsConnection
from starling.cluster.errors import ClusterUnavailable, NameTaken
from starling.cluster.forwards import Target, decode
from starling.cluster.membership import Member, Membership
from starling.cluster.names import Names
from starling.cluster.outbox import Outbox
from starling.cluster.ownership import Ownership
from starling.cluster.replica import Replica
from starling.cluster.rpc import Refused, RemoteError, Rpc, Unreachable
from starling.cluster.settings import ClusterSettings, NatsSettings

pytestmark = pytest.mark.needs_server


def settings(url: str, node: str, cluster: str = "t", **changes: Any) -> ClusterSettings:
    values: dict[str, Any] = {"autoclean": 300.0, "heartbeat_interval": 0.2,
                              "node_timeout": 0.8, "rpc_timeout": 1.0}
    values.update(changes)
    return ClusterSettings(node, cluster, values["autoclean"], values["heartbeat_interval"],
                           values["node_timeout"], values["rpc_timeout"], 1 << 20,
                           NatsSettings((url,), 2.0))


def connection(url: str, on_up: Callable[[], Awaitable[None]] | None = None) -> NatsConnection:
    async def nothing() -> None:
        return None

    return NatsConnection(NatsSettings((url,), 2.0), "test", lambda: None, on_up or nothing,
                          lambda: None)


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 30))  # type: ignore[arg-type]


# -- connection -------------------------------------------------------------------------

def test_unreachable_nats_is_a_clear_error() -> None:
    async def main() -> None:
        conn = NatsConnection(NatsSettings(("nats://127.0.0.1:1",), 0.5), "t", lambda: None,
                              connection_up, lambda: None)
        with pytest.raises(ClusterUnavailable, match=r"cannot reach NATS at nats://127.0.0.1:1"
                                                     r".*cluster.nats.servers"):
            await conn.connect()

    async def connection_up() -> None:
        return None

    run(main())


# -- calls between nodes -----------------------------------------------------------------

def test_calls_answer_refuse_and_time_out(nats_server: NatsServer) -> None:
    async def main() -> None:
        a, b = connection(nats_server.url), connection(nats_server.url)
        await a.connect()
        await b.connect()
        names = Names("rpc")
        server = Rpc(b, names, "node-b", 1.0)

        async def echo(args: Any) -> Any:
            return {"got": args}

        async def refuse(args: Any) -> Any:
            raise Refused("not here")

        async def slow(args: Any) -> Any:
            await asyncio.sleep(5)
            return None

        server.register("echo", echo)
        server.register("refuse", refuse)
        server.register("slow", slow)
        await server.start()
        client = Rpc(a, names, "node-a", 0.5)
        assert await client.call("node-b", "echo", [1, "x"]) == {"got": [1, "x"]}
        with pytest.raises(RemoteError, match="not here"):
            await client.call("node-b", "refuse")
        with pytest.raises(RemoteError, match="bad request"):
            await client.call("node-b", "no-such-op")
        started = time.monotonic()
        with pytest.raises(Unreachable, match="no answer in time"):
            await client.call("node-b", "slow")
        assert time.monotonic() - started < 2
        with pytest.raises(Unreachable, match="not running"):
            await client.call("node-c", "echo")
        # one slow call does not hold up the others
        slow_call = asyncio.ensure_future(client.call("node-b", "slow", timeout=3))
        assert await client.call("node-b", "echo", 2) == {"got": 2}
        slow_call.cancel()
        results = await client.call_each(["node-b", "node-c"], "echo", 3)
        assert results["node-b"] == {"got": 3} and isinstance(results["node-c"], Unreachable)
        await server.stop()
        await a.close()
        await b.close()

    run(main())


# -- the node list -----------------------------------------------------------------------

class Node:
    """A membership with its own connection and RPC, recording what it sees."""

    def __init__(self, url: str, name: str, cluster: str = "m", **changes: Any) -> None:
        self.settings = settings(url, name, cluster, **changes)
        self.conn = connection(url)
        self.names = Names(cluster)
        self.rpc = Rpc(self.conn, self.names, name, 0.5)
        self.ups: list[str] = []
        self.downs: list[str] = []
        self.membership = Membership(self.conn, self.names, self.settings, f"inc-{name}",
                                     "1.0", lambda: 0, self._up, self.downs.append,
                                     lambda m: None)

    def _up(self, member: Member) -> None:
        self.ups.append(member.name)

    async def ping(self, node: str) -> bool:
        try:
            await self.rpc.call(node, "ping")
        except Unreachable:
            return False
        except RemoteError:
            return True
        return True

    async def start(self) -> Node:
        await self.conn.connect()
        await self.membership.join(self.ping)

        async def pong(args: Any) -> Any:
            return "pong"

        self.rpc.register("ping", pong)
        await self.rpc.start()
        await self.membership.start()
        return self

    async def stop(self, leave: bool = False) -> None:
        await self.membership.stop(leave)
        await self.rpc.stop()
        await self.conn.close()

    async def crash(self) -> None:
        """What kill -9 looks like to the others: no clean stop, the connection gone."""
        for task in self.membership._tasks:  # the heartbeat stops with the process
            task.cancel()
        await self.conn.nc.close()


def test_nodes_see_each_other_and_a_stop(nats_server: NatsServer) -> None:
    async def main() -> None:
        a = await Node(nats_server.url, "a@h", "m1").start()
        b = await Node(nats_server.url, "b@h", "m1").start()
        await eventually(lambda: a.membership.running_nodes() == ["b@h"])
        assert b.membership.running_nodes() == ["a@h"] and a.ups == ["b@h"]
        listing = {n["name"]: n["status"] for n in b.membership.listing()}
        assert listing == {"a@h": "Running", "b@h": "Running"}
        await b.stop()
        await eventually(lambda: a.downs == ["b@h"])
        assert {n["name"]: n["status"] for n in a.membership.listing()} == {
            "a@h": "Running", "b@h": "Stopped"}
        # a node of another cluster on the same NATS is not seen
        other = await Node(nats_server.url, "b@h", "m1-other").start()
        await asyncio.sleep(0.5)
        assert a.membership.running_nodes() == []
        await other.stop()
        await a.stop()

    run(main())


def test_a_taken_name_is_refused_and_a_dead_nodes_name_is_reused(
        nats_server: NatsServer) -> None:
    async def main() -> None:
        a = await Node(nats_server.url, "same", "m2").start()
        twin = Node(nats_server.url, "same", "m2")
        with pytest.raises(NameTaken, match=r"node\.name 'same' is already used by a running "
                                            r"node of cluster 'm2'"):
            await twin.start()
        await twin.conn.close()
        watcher = await Node(nats_server.url, "watcher", "m2").start()
        await eventually(lambda: watcher.membership.running_nodes() == ["same"])
        await a.crash()
        # silent for node_timeout: Stopped, routes dropped
        await eventually(lambda: watcher.downs == ["same"], timeout=3)
        again = await Node(nats_server.url, "same", "m2").start()  # the name is free again
        await eventually(lambda: watcher.membership.running_nodes() == ["same"])
        await again.stop()
        await watcher.stop()

    run(main())


def test_a_crashed_node_is_reused_at_once_when_it_does_not_answer(
        nats_server: NatsServer) -> None:
    async def main() -> None:
        a = await Node(nats_server.url, "quick", "m3", node_timeout=30.0).start()
        await a.crash()
        started = time.monotonic()
        again = await Node(nats_server.url, "quick", "m3", node_timeout=30.0).start()
        assert time.monotonic() - started < 3  # no wait for the heartbeat to age
        await again.stop()

    run(main())


def test_autoclean_forgets_a_stopped_node(nats_server: NatsServer) -> None:
    async def main() -> None:
        a = await Node(nats_server.url, "a", "m4", autoclean=0.6).start()
        b = await Node(nats_server.url, "b", "m4", autoclean=0.6).start()
        await eventually(lambda: a.membership.running_nodes() == ["b"])
        await b.stop()
        await eventually(lambda: [n["name"] for n in a.membership.listing()] == ["a"])
        late = await Node(nats_server.url, "late", "m4").start()  # b's record is gone
        assert [n["name"] for n in late.membership.listing()] == ["late", "a"]
        await late.stop(leave=True)  # leaving: forgotten at once
        await eventually(lambda: [n["name"] for n in a.membership.listing()] == ["a"])
        await a.stop()

    run(main())


# -- replicated buckets --------------------------------------------------------------------

class Mirror:
    """A node's local table, kept by a Replica."""

    def __init__(self, url: str, origin: str, bucket: str,
                 rows: dict[str, bytes] | None = None) -> None:
        self.rows: dict[str, bytes] = dict(rows or {})
        self.conn = connection(url, self._up)
        self.replica = Replica(self.conn, bucket, origin, self._apply, lambda: self.rows)

    async def _up(self) -> None:
        await self.replica.resync(2.0)

    def _apply(self, key: str, payload: bytes | None) -> None:
        if payload is None:
            self.rows.pop(key, None)
        else:
            self.rows[key] = payload

    def put(self, key: str, value: bytes) -> None:
        self.rows[key] = value
        self.replica.put(key, value)

    def delete(self, key: str) -> None:
        self.rows.pop(key, None)
        self.replica.delete(key)

    async def start(self) -> Mirror:
        await self.conn.connect()
        await self.replica.start(2.0)
        return self

    async def stop(self) -> None:
        await self.replica.stop()
        await self.conn.close()


def test_replicas_converge(nats_server: NatsServer) -> None:
    async def main() -> None:
        a = await Mirror(nats_server.url, "a", "rep1", {"old": b"from-a"}).start()
        b = await Mirror(nats_server.url, "b", "rep1").start()
        assert b.rows == {"old": b"from-a"}  # a's rows from before it joined
        odd = "dev ice/ü$#+.x" + "y" * 300
        a.put(odd, b"1")
        b.put("k", b"from-b")
        await eventually(lambda: a.rows == b.rows == {"old": b"from-a", odd: b"1",
                                                      "k": b"from-b"})
        b.delete(odd)
        await eventually(lambda: odd not in a.rows)
        # both write one key at once: they end up agreeing
        for i in range(20):
            a.put("race", b"a%d" % i)
            b.put("race", b"b%d" % i)
        await asyncio.sleep(0.5)
        await eventually(lambda: a.rows["race"] == b.rows["race"])
        # a newcomer gets everything, including that the deleted key is gone
        c = await Mirror(nats_server.url, "c", "rep1", {odd: b"stale"}).start()
        assert c.rows == a.rows
        for m in (a, b, c):
            await m.stop()

    run(main())


def test_a_replica_catches_up_after_nats_comes_back(tmp_path: Any) -> None:
    async def main() -> None:
        server = NatsServer(tmp_path / "nats").start()
        try:
            a = await Mirror(server.url, "a", "rep2").start()
            b = await Mirror(server.url, "b", "rep2").start()
            a.put("before", b"1")
            await eventually(lambda: b.rows.get("before") == b"1")
            server.stop()
            await asyncio.sleep(0.3)
            a.put("during", b"2")  # made while NATS is away: kept, sent later
            a.delete("before")
            assert a.rows == {"during": b"2"}
            server.start()
            try:
                await eventually(lambda: b.rows == {"during": b"2"}, timeout=15)
            except AssertionError:
                raise AssertionError(f"a {a.rows} {a.replica._pending} b {b.rows} "
                                     f"{b.replica.synced}") from None
            await a.stop()
            await b.stop()
        finally:
            server.close()

    run(main())


# -- client-id ownership ---------------------------------------------------------------------

def test_exactly_one_node_wins_a_claim_race(nats_server: NatsServer) -> None:
    async def main() -> None:
        conns = [connection(nats_server.url) for _ in range(3)]
        owners = []
        for i, conn in enumerate(conns):
            await conn.connect()
            owner = Ownership(conn, Names("own"), f"n{i}", 5.0)
            await owner.start()
            owners.append(owner)
        assert await owners[0].claim("c1") is None
        # n1 and n2 claim at once: the first write takes the id from n0, the second
        # from the first; no claim is lost, and the second is the owner
        r1, r2 = await asyncio.gather(owners[1].claim("c1"), owners[2].claim("c1"))
        assert (r1, r2) in (("n0", "n1"), ("n2", "n0"))
        last = "n2" if r1 == "n0" else "n1"
        # n0's late release does not delete the newer claim
        await owners[0].release("c1")
        assert await owners[0].claim("c1") == last
        for conn in conns:
            await conn.close()

    run(main())


def test_a_released_id_is_free(nats_server: NatsServer) -> None:
    async def main() -> None:
        conn = connection(nats_server.url)
        await conn.connect()
        a, b = Ownership(conn, Names("own2"), "a", 5.0), Ownership(conn, Names("own2"), "b", 5.0)
        await a.start()
        await b.start()
        assert await a.claim("dev ice.1") is None and a.holds("dev ice.1")
        await a.release("dev ice.1")
        assert await b.claim("dev ice.1") is None  # nobody held it
        assert await a.claim("dev ice.1") == "b"
        await conn.close()

    run(main())


# -- the outbox ------------------------------------------------------------------------------

def test_outbox_batches_in_order_and_drops_past_its_limit(nats_server: NatsServer) -> None:
    async def main() -> None:
        pub, sub = connection(nats_server.url), connection(nats_server.url)
        await pub.connect()
        await sub.connect()
        got: list[bytes] = []

        async def receive(msg: Any) -> None:
            got.append(msg.data)

        await sub.nc.subscribe("box", cb=receive)
        await sub.synced()
        dropped: list[int] = []
        forwarded: list[int] = []
        outbox = Outbox(pub, 64 * 1024, dropped.append, forwarded.append)
        outbox.start()
        to_box: list[Target] = [("box", True, ())]
        for i in range(100):
            outbox.batches.add(Message(f"t/{i % 3}", b"%03d" % i), to_box)
        await asyncio.sleep(0)  # the loop iteration ends: one batch
        await eventually(lambda: len(got) == 1)
        assert [(m.topic, m.payload) for _, _, m in decode(got[0])] == [
            (f"t/{i % 3}", b"%03d" % i) for i in range(100)]
        assert forwarded == [100]
        # more than the buffer holds in one go: the rest is dropped and counted
        for _ in range(100):
            outbox.batches.add(Message("t/0", b"x" * 1024), to_box)
        assert sum(dropped) == 100 - 62 and outbox.buffered > 62 * 1024
        await eventually(lambda: outbox.buffered == 0)
        await eventually(lambda: len(got) == 2)
        assert len(decode(got[1])) == 62 and forwarded == [100, 62]
        await outbox.stop()
        await pub.close()
        await sub.close()

    run(main())
