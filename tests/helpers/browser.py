"""A real browser for the dashboard tests: Python playwright driving Debian's
Chromium (`/usr/bin/chromium`, installed by scripts/test), never a browser that
`playwright install` would download.

Debian's Firefox ESR is driven through Marionette (`Firefox`).  Locally, a missing
browser or driver skips the test; under `STARLING_REQUIRE_SERVERS=1` (`.ci/run`) it
fails, as for the external servers (helpers/servers.py).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import socket
import subprocess
import tempfile
import time
import warnings
from typing import Any

import pytest

from .servers import REQUIRED, find_program, wait_for_port

#: Flags for a headless run as root in a container: no sandbox (root), no GPU, no
#: /dev/shm use (small in containers).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]


def sync_playwright() -> Any:
    """playwright's `sync_playwright()`; skip (or fail under CI) when not installed."""
    try:
        module = importlib.import_module("playwright.sync_api")
    except ImportError:
        message = "playwright is not installed (pip install -e '.[test]')"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    return module.sync_playwright()


def launch_chromium(playwright: Any) -> Any:
    """Debian's Chromium, headless."""
    executable = find_program("chromium")
    return playwright.chromium.launch(executable_path=executable, headless=True,
                                      args=CHROMIUM_ARGS)


class Firefox:
    """Debian's Firefox ESR, headless, driven through Marionette (Mozilla's own
    remote protocol, `marionette_driver` from PyPI): playwright cannot drive a
    stock Firefox, and geckodriver is not packaged.  One browser, one tab."""

    TIMEOUT = 15.0

    def __init__(self) -> None:
        try:
            with warnings.catch_warnings():  # mozinfo calls a deprecated `distro` function
                warnings.simplefilter("ignore", DeprecationWarning)
                marionette = importlib.import_module("marionette_driver.marionette")
        except ImportError:
            message = "marionette_driver is not installed (pip install -e '.[test]')"
            if REQUIRED:
                pytest.fail(message)
            pytest.skip(message)
        executable = find_program("firefox-esr")
        self._profile = tempfile.TemporaryDirectory(prefix="starling-firefox-")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        prefs = {"marionette.port": port, "browser.shell.checkDefaultBrowser": False,
                 "app.update.disabledForTesting": True,
                 "datareporting.policy.dataSubmissionEnabled": False,
                 "toolkit.telemetry.enabled": False,
                 "network.captive-portal-service.enabled": False,
                 "browser.safebrowsing.malware.enabled": False,
                 "browser.safebrowsing.phishing.enabled": False}
        with open(f"{self._profile.name}/user.js", "w") as f:
            for name, value in prefs.items():
                f.write(f"user_pref({json.dumps(name)}, {json.dumps(value)});\n")
        self._process = subprocess.Popen(
            [executable, "--headless", "--marionette", "--no-remote", "-profile",
             self._profile.name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            # Marionette's own wait for the port leaks a socket per refused attempt.
            wait_for_port(port, timeout=60)
            self.session = marionette.Marionette(host="127.0.0.1", port=port,
                                                 startup_timeout=60)
            self.session.start_session()
        except BaseException:
            self.close()
            raise

    def js(self, script: str, *args: Any) -> Any:
        return self.session.execute_script(script, script_args=list(args))

    def wait_for(self, script: str, *args: Any, what: str = "") -> Any:
        """Poll a script until it returns something truthy; that value."""
        deadline = time.monotonic() + self.TIMEOUT
        while True:
            value = self.js(script, *args)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out in Firefox waiting for {what or script}")
            time.sleep(0.1)

    def close(self) -> None:
        session = getattr(self, "session", None)
        if session is not None:
            with contextlib.suppress(Exception):
                session.delete_session()
            with contextlib.suppress(Exception):
                session.client.close()
        self._process.terminate()
        try:
            self._process.wait(10)
        except Exception:
            self._process.kill()
            self._process.wait()
        self._profile.cleanup()
