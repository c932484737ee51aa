"""What the fuzzers found that their replay cannot show: inputs naming hosts other
than 127.0.0.1, which `targets.api_json` does not send (no network here), checked
on the functions that failed, without any connection."""

from __future__ import annotations

import asyncio

import pytest

from starling.rules.errors import RuleError
from starling.rules.resources import WEB_HOOK, check_config, probe


def test_a_url_the_http_client_refuses_is_a_bad_argument() -> None:
    """POST /resources with {"url": "http://063.0.0.1:9/x"} was a 500: the URL passed
    the config check (urlsplit) but not the web hook client (httpx) at start."""
    with pytest.raises(RuleError) as caught:
        check_config(WEB_HOOK, {"url": "http://063.0.0.1:9/x"})
    assert caught.value.status == 400
    assert "063.0.0.1" in str(caught.value)


def test_probe_of_a_host_idna_refuses_is_unreachable() -> None:
    """POST /resources?test=true with {"url": "http://1270..0.1:9/x"} was a 500: the
    name lookup raised UnicodeError (an empty label) out of the probe."""
    assert asyncio.run(probe("http://1270..0.1:9/x")) is False
