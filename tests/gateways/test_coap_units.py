"""emqx_coap's sans-IO pieces (URL scheme, /ps topics) and both gateways' config
values."""

from __future__ import annotations

from pathlib import Path

import pytest

from starling.gateways.coap.dtls_config import parse_certfile, parse_keyfile
from starling.gateways.coap.plugin import CoapPlugin
from starling.gateways.coap.pubsub import PsError, PsTopics, parse_create
from starling.gateways.coap.requests import Credentials, credentials, observable, publishable
from starling.gateways.coap.transport import parse_optional_listen
from starling.gateways.config import parse_listen
from starling.gateways.lwm2m.plugin import Lwm2mPlugin, parse_topic, parse_xml_dir
from starling.gateways.lwm2m.topics import TopicTemplates


def test_credentials_come_from_exact_query_prefixes() -> None:
    assert credentials(["c=dev", "u=alice", "p=s=cret", "x=1"]) == Credentials(
        "dev", "alice", "s=cret")
    assert credentials(["c=dev"]) == Credentials("dev", None, None)
    assert credentials(["client=dev", "u=a"]) is None
    assert credentials(["c="]) is None
    assert credentials(["c=first", "c=second"]) == Credentials("first", None, None)


def test_topics_and_filters() -> None:
    assert publishable("a/b") and not publishable("a/+") and not publishable("")
    assert observable("a/#") and observable("a/b") and not observable("a/#/b")


def test_ps_topics_keep_the_last_fresh_value() -> None:
    topics = PsTopics()
    assert topics.create("s/t", 50) and not topics.create("s/t", 50)
    with pytest.raises(PsError):
        topics.check("s/t", 0)
    assert not topics.store("s/t", b"1", 50, 10, now=100.0)
    assert topics.store("s/u", b"2", None, None, now=100.0)
    stored = topics.read("s/t")
    assert stored is not None and stored.fresh_for(105.0) == 5 and stored.fresh_for(111.0) == 0
    assert topics.delete("s") == 2 and topics.read("s/t") is None


def test_ps_create_payloads() -> None:
    assert parse_create(b"<sensors/temp>;ct=50") == ("sensors/temp", 50)
    assert parse_create(b'</x>;rt="t";ct="42"') == ("x", 42)
    assert parse_create(b"<x>") == ("x", None)
    for bad in (b"x;ct=1", b"<>;ct=1", b"<x>;ct=json"):
        with pytest.raises(PsError):
            parse_create(bad)


def test_listener_values() -> None:
    assert parse_listen("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_optional_listen("[::1]:5684") == ("::1", 5684)
    assert parse_optional_listen(" ") is None
    for bad in ("port", "70000", "1.2.3.4:x"):
        with pytest.raises(ValueError):
            parse_optional_listen(bad)


def test_config_values_are_refused_naming_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        parse_certfile("etc/certs/cert.pem")
    (tmp_path / "empty.pem").write_text("", "utf-8")
    with pytest.raises(ValueError, match="no PEM certificate"):
        parse_certfile(str(tmp_path / "empty.pem"))
    with pytest.raises(ValueError, match="no PEM private key"):
        parse_keyfile(str(tmp_path / "empty.pem"))
    assert parse_certfile("") == parse_keyfile(" ") == ""
    assert parse_xml_dir(str(tmp_path)) == str(tmp_path)
    with pytest.raises(ValueError, match="not a directory"):
        parse_xml_dir(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="wildcard"):
        parse_topic("up/+/resp")
    assert parse_topic("dn/#") == "dn/#"


def test_every_key_default_parses() -> None:
    for key in (*CoapPlugin.SCHEMA, *Lwm2mPlugin.SCHEMA):
        key.parse(key.default)


def test_topic_templates() -> None:
    topics = TopicTemplates()
    assert topics.expand("command", "dev1", "192.0.2.7") == "lwm2m/dev1/dn/#"
    assert TopicTemplates(mountpoint="", response="lwm2m/%e/%a/r").expand(
        "response", "d", "192.0.2.7") == "lwm2m/d/192.0.2.7/r"
