"""The real CoAP clients the gateway tests drive, and a loop thread to host a
gateway's resource tree in-process.

- libcoap's ``coap-client-notls`` / ``coap-client-openssl`` (Debian `libcoap3-bin`)
- ``aiocoap-client`` (PyPI `aiocoap`)

A missing tool skips the test locally and fails it under `.ci/run`
(`helpers.servers.find_program`).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from helpers.servers import find_program

T = TypeVar("T")


def coap_client(*args: str, timeout: float = 10.0, dtls: bool = False) -> tuple[str, str]:
    """Run libcoap's client once; (stdout, stderr)."""
    program = find_program("coap-client-openssl" if dtls else "coap-client-notls")
    done = subprocess.run([program, "-B", str(int(timeout)), *args], capture_output=True,
                          text=True, timeout=timeout + 10)
    return done.stdout, done.stderr


def start_coap_client(*args: str, timeout: float = 30.0,
                      dtls: bool = False) -> subprocess.Popen[str]:
    """libcoap's client in the background (observing); read its stdout."""
    program = find_program("coap-client-openssl" if dtls else "coap-client-notls")
    return subprocess.Popen([program, "-B", str(int(timeout)), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def aiocoap_client(*args: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    program = find_program("aiocoap-client")
    return subprocess.run([program, *args], capture_output=True, text=True, timeout=timeout)


def start_aiocoap_client(*args: str) -> subprocess.Popen[str]:
    """aiocoap-client in the background, stderr (where it shows notifications) merged
    into stdout."""
    program = find_program("aiocoap-client")
    return subprocess.Popen([program, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))


def read_until(proc: subprocess.Popen[str], text: str, timeout: float = 15.0) -> str:
    """What `proc` printed until `text` appeared (AssertionError if it ends or takes
    longer).  Read a character at a time: aiocoap-client ends no line when its
    output is not a terminal."""
    assert proc.stdout is not None
    seen: list[str] = []
    found = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        while (char := proc.stdout.read(1)):
            seen.append(char)
            if char == text[-1:] and "".join(seen).endswith(text):
                break
        found.set()

    threading.Thread(target=read, daemon=True).start()
    if not found.wait(timeout) or text not in "".join(seen):
        raise AssertionError(f"{text!r} not printed; got {''.join(seen)!r}")
    return "".join(seen)


class LibraryObserver:
    """An observation made with the aiocoap library, in its own loop thread.

    aiocoap-client shows only the first response of an observation (aiocoap
    issue 395, open in 0.4.17), so notifications are read through the library
    the CLI is built on."""

    def __init__(self, url: str, non: bool = False) -> None:
        import aiocoap
        self.thread = LoopThread()
        self.payloads: list[bytes] = []
        self.codes: list[str] = []

        async def start() -> Any:
            self.context = await aiocoap.Context.create_client_context()
            request = aiocoap.Message(code=aiocoap.GET, uri=url, observe=0,
                                      transport_tuning=aiocoap.Unreliable if non else aiocoap.Reliable)
            self.request = self.context.request(request)
            first = await self.request.response
            self.codes.append(str(first.code))
            self.task = asyncio.ensure_future(self._collect())
            return first

        self.first = self.thread.run(start())

    async def _collect(self) -> None:
        try:
            async for notification in self.request.observation:
                self.codes.append(str(notification.code))
                self.payloads.append(notification.payload)
        except Exception as exc:
            self.codes.append(type(exc).__name__)

    def cancel(self) -> None:
        """Lose interest: aiocoap resets the next notification."""
        self.thread.call(self.request.observation.cancel)

    def close(self) -> None:
        async def shutdown() -> None:
            self.task.cancel()
            await self.context.shutdown()
        self.thread.run(shutdown())
        self.thread.stop()


class LoopThread:
    """An asyncio loop in a daemon thread, for servers a synchronous test talks to."""

    def __init__(self, uvloop: bool = False) -> None:
        """`uvloop`: the node's event loop rather than asyncio's own."""
        if uvloop:
            import uvloop as uv
            self.loop = uv.new_event_loop()
        else:
            self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 20.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, func: Any, *args: Any) -> Any:
        async def call() -> Any:
            return func(*args)
        return self.run(call())

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()
