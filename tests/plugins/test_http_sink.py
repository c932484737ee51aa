"""HttpSink against real local HTTP servers: delivery, retries, drops, the alarm.

The sink runs in this process's event loop (it is a library piece shared by
the web hook plugin and the rule engine); the servers are real sockets.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
from helpers.http_receiver import HangingServer, HttpReceiver
from helpers.servers import free_port

from starling.broker import Alarms
from starling.plugins import HttpSink


async def until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def run(coro: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(coro())  # type: ignore[arg-type]


def test_bodies_arrive_as_sent() -> None:
    with HttpReceiver() as server:
        async def main() -> None:
            sink = HttpSink("t", server.url + "/hook", headers={"X-Token": "abc"})
            await sink.start()
            assert sink.submit({"action": "x", "n": 1})
            assert sink.submit("plain text")
            assert sink.submit(b"\x00raw")
            await until(lambda: sink.stats.sent == 3)
            await sink.stop()
            assert sink.stats.to_dict() == {"queued": 0, "sent": 3, "failed": 0,
                                             "retried": 0, "dropped": 0}
        run(main)
        bodies = sorted(r.body for r in server.requests)
        assert bodies == sorted([b"\x00raw", b'{"action":"x","n":1}', b"plain text"])
        for request in server.requests:
            assert request.method == "POST"
            assert request.path == "/hook"
            assert request.headers["x-token"] == "abc"
            assert request.headers["content-type"] == "application/json"


def test_method_and_content_type_can_be_changed() -> None:
    with HttpReceiver() as server:
        async def main() -> None:
            sink = HttpSink("t", server.url, method="put",
                            headers={"Content-Type": "text/plain"})
            await sink.start()
            sink.submit("hi")
            await until(lambda: sink.stats.sent == 1)
            await sink.stop()
        run(main)
        assert server.requests[0].method == "PUT"
        assert server.requests[0].headers["content-type"] == "text/plain"


def test_server_errors_are_retried_client_errors_are_not() -> None:
    with HttpReceiver() as server:
        server.statuses = [500, 503]  # then 200

        async def main() -> None:
            sink = HttpSink("t", server.url, retry_backoff=0.01, pool_size=1)
            await sink.start()
            sink.submit({"a": 1})
            await until(lambda: sink.stats.sent == 1)
            assert sink.stats.retried == 2
            server.status = 404
            sink.submit({"a": 2})
            await until(lambda: sink.stats.sent == 2)
            assert sink.stats.retried == 2 and sink.stats.failed == 0
            await sink.stop()
        run(main)
        assert len(server.requests) == 4


def test_full_queue_drops_and_counts_without_waiting() -> None:
    with HangingServer() as server:
        async def main() -> None:
            sink = HttpSink("t", server.url, pool_size=1, queue_size=3, timeout=30,
                            drain_timeout=0.1)
            await sink.start()
            results = [sink.submit({"n": i}) for i in range(10)]  # no await in between
            assert results == [True] * 3 + [False] * 7
            assert sink.stats.dropped == 7
            assert sink.stats.queued == 3
            await until(lambda: server.accepted >= 1)  # the worker took one and hangs
            assert sink.submit({"n": 10}) is True  # its slot was freed
            started = time.monotonic()
            await sink.stop()
            assert time.monotonic() - started < 10  # stop does not wait for the hung request
            assert sink.stats.dropped == 7 + 4  # 3 left queued + the one in flight
            assert sink.submit({"late": True}) is False
            assert sink.stats.dropped == 12
        run(main)


def test_alarm_while_down_cleared_when_it_answers_again() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    alarms = Alarms()

    async def main() -> None:
        counters: dict[str, int] = {}
        sink = HttpSink("down", url, max_retries=2, retry_backoff=0.01, alarms=alarms,
                        counters=counters, counter_prefix="hook/")
        await sink.start()
        sink.submit({"n": 1})
        await until(lambda: sink.stats.failed == 1)
        assert sink.stats.retried == 2
        assert [a.id for a in alarms.present()] == ["webhook_down/down"]
        assert str(port) in alarms.present()[0].desc
        with HttpReceiver(port=port) as server:
            sink.submit({"n": 2})
            await until(lambda: sink.stats.sent == 1)
            assert alarms.present() == []
            assert [a.id for a in alarms.history()] == ["webhook_down/down"]
            assert [r.json() for r in server.requests] == [{"n": 2}]
            await sink.stop()
        assert counters == {"hook/failed": 1, "hook/retried": 2, "hook/sent": 1}
    run(main)


def test_timeouts_count_as_down_and_stop_clears_the_alarm() -> None:
    raised: list[tuple[str, str]] = []
    cleared: list[str] = []
    with HangingServer() as server:
        async def main() -> None:
            sink = HttpSink("slow", server.url, timeout=0.2, max_retries=0,
                            alarms=(lambda i, d: raised.append((i, d)), cleared.append),
                            alarm_id="resource_down/r1")
            await sink.start()
            sink.submit("x")
            await until(lambda: sink.stats.failed == 1)
            assert sink.down
            assert raised and raised[0][0] == "resource_down/r1"
            assert "timeout" in raised[0][1]
            await sink.stop()
            assert cleared == ["resource_down/r1"]
        run(main)


def test_credentials_in_the_url_never_reach_the_alarm() -> None:
    alarms = Alarms()

    async def main() -> None:
        url = f"http://user:s3cret@127.0.0.1:{free_port()}/"
        sink = HttpSink("c", url, max_retries=0, alarms=alarms)
        await sink.start()
        sink.submit("x")
        await until(lambda: sink.stats.failed == 1)
        assert "s3cret" not in alarms.present()[0].desc
        await sink.stop()
    run(main)


@pytest.mark.parametrize("url", ["ftp://example.com/", "not a url", "http://"])
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        HttpSink("bad", url)


def test_each_body_reports_its_outcome_once() -> None:
    """`submit(body, done)`: done(True) for a 2xx answer, done(False) for any other
    answer, for a body that failed all its attempts and for one still queued at stop."""
    outcomes: dict[str, list[bool]] = {}

    def done(key: str) -> Callable[[bool], None]:
        return lambda ok: outcomes.setdefault(key, []).append(ok)

    with HttpReceiver() as server:
        server.statuses = [200, 404]

        async def answered() -> None:
            sink = HttpSink("t", server.url, pool_size=1)
            await sink.start()
            sink.submit("a", done("ok"))
            sink.submit("b", done("404"))
            sink.submit("c")  # no callback: fine
            await until(lambda: sink.stats.sent == 3)
            await sink.stop()
        run(answered)

    async def unreachable() -> None:
        sink = HttpSink("t", f"http://127.0.0.1:{free_port()}/", max_retries=1,
                        retry_backoff=0.01)
        await sink.start()
        sink.submit("d", done("refused"))
        await until(lambda: sink.stats.failed == 1)
        await sink.stop()
    run(unreachable)

    with HangingServer() as hanging:
        async def stopped() -> None:
            sink = HttpSink("t", hanging.url, pool_size=1, timeout=30, drain_timeout=0.1)
            await sink.start()
            sink.submit("e", done("in flight"))
            sink.submit("f", done("queued"))
            await until(lambda: hanging.accepted >= 1)
            await sink.stop()
        run(stopped)
    assert outcomes == {"ok": [True], "404": [False], "refused": [False],
                        "in flight": [False], "queued": [False]}
