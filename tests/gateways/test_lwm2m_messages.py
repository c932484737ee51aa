"""LwM2M commands, answers and registrations, sans-IO (starling.gateways.lwm2m)."""

from __future__ import annotations

import json

import pytest

from starling.gateways.lwm2m import tlv
from starling.gateways.lwm2m.commands import CommandError, parse_command, translate
from starling.gateways.lwm2m.content import LINK_FORMAT, LWM2M_TLV, TEXT_PLAIN, ContentError
from starling.gateways.lwm2m.objectdb import standard_objects
from starling.gateways.lwm2m.registration import (
    BAD_REQUEST,
    PRECONDITION_FAILED,
    Links,
    RegistrationRefused,
    apply_update,
    parse_links,
    parse_register,
    parse_update,
)
from starling.gateways.lwm2m.replies import (
    code_message,
    code_string,
    event,
    notification,
    response,
    separate_ack,
)
from starling.gateways.lwm2m.tlv import Tlv, TlvKind

OBJECTS = standard_objects()


def command(msg_type: str, **data: object) -> bytes:
    return json.dumps({"reqID": 7, "msgType": msg_type, "data": data}).encode()


def test_read_discover_observe_cancel_and_delete() -> None:
    read = translate(parse_command(command("read", path="/3/0/0")), OBJECTS)
    assert (read.method, read.path, read.observe, read.accept) == ("GET", ("3", "0", "0"),
                                                                   None, None)
    assert translate(parse_command(command("discover", path="/3/0")), OBJECTS).accept == \
        LINK_FORMAT
    assert translate(parse_command(command("observe", path="/3/0/9")), OBJECTS).observe == 0
    assert translate(parse_command(command("cancel-observe", path="/3/0/9")),
                     OBJECTS).observe == 1
    assert translate(parse_command(command("delete", path="/5/0")), OBJECTS).method == "DELETE"


def test_writes_become_tlv_puts_and_posts() -> None:
    single = translate(parse_command(command("write", path="/3/0/13", type="Integer",
                                             value=1_700_000_000)), OBJECTS)
    assert (single.method, single.content_format) == ("PUT", LWM2M_TLV)
    assert tlv.decode(single.payload) == [Tlv(TlvKind.RESOURCE, 13,
                                              tlv.encode_integer(1_700_000_000))]
    batch = translate(parse_command(command("write", basePath="/3/0/", content=[
        {"path": "13", "type": "Integer", "value": "12345"},
        {"path": "14", "type": "String", "value": "87x"}])), OBJECTS)
    assert (batch.method, batch.path) == ("POST", ("3", "0"))
    resource = translate(parse_command(command("write", basePath="/3/0/6", content=[
        {"path": "0", "type": "Integer", "value": 1}])), OBJECTS)
    assert (resource.method, resource.path) == ("PUT", ("3", "0", "6"))
    create = translate(parse_command(command("create", basePath="/5", content=[
        {"path": "/0/1", "type": "String", "value": "coap://x"}])), OBJECTS)
    assert (create.method, create.path) == ("POST", ("5",))


def test_execute_sends_its_arguments_as_text() -> None:
    with_args = translate(parse_command(command("execute", path="/3/0/4", args="2,7")), OBJECTS)
    assert (with_args.method, with_args.payload, with_args.content_format) == (
        "POST", b"2,7", TEXT_PLAIN)
    for args in (None, "undefined"):
        bare = translate(parse_command(command("execute", path="/3/0/4", args=args)), OBJECTS)
        assert bare.payload == b"" and bare.content_format is None


def test_write_attributes_become_query_options() -> None:
    request = translate(parse_command(command("write-attr", path="/3/0/9", pmin="1", pmax=5,
                                              gt=None, lt=42.2)), OBJECTS)
    assert (request.method, request.query, request.payload) == (
        "PUT", ("pmin=1", "pmax=5", "lt=42.2"), b"")
    with pytest.raises(ContentError):
        translate(parse_command(command("write-attr", path="/3/0/9", pmin="soon")), OBJECTS)


def test_the_alternate_path_prefixes_every_request() -> None:
    request = translate(parse_command(command("read", path="/3/0")), OBJECTS, "/lwm2m")
    assert request.path == ("lwm2m", "3", "0")


@pytest.mark.parametrize("payload", [b"not json", b"[1]", b'{"msgType": "reboot"}',
                                     b'{"msgType": "read", "data": 3}', b"\xff"])
def test_what_is_not_a_command_is_dropped(payload: bytes) -> None:
    with pytest.raises(CommandError):
        parse_command(payload)


@pytest.mark.parametrize("payload", [
    command("read"), command("read", path="/x/0"), command("write", path="/3/0", value=1,
                                                            type="Integer"),
    command("write", path="/3/0/13", type="Integer", value="soon"),
    command("write", basePath="/3", content=[{"path": "0/1", "type": "String", "value": "x"}]),
    command("write", basePath="/3/0", content=[]), command("create", basePath="/5/0", content=[
        {"path": "1", "type": "String", "value": "x"}])])
def test_commands_with_bad_paths_or_values_are_answered_bad_request(payload: bytes) -> None:
    with pytest.raises(ContentError):
        translate(parse_command(payload), OBJECTS)


def test_answers_echo_the_command_with_data_replaced() -> None:
    cmd = parse_command(json.dumps({"reqID": 1, "cacheID": "x", "msgType": "read",
                                    "data": {"path": "/3/0"}}).encode())
    content = [{"path": "/3/0/0", "value": "Open Mobile Alliance"}]
    assert response(cmd, 0x45, content) == {
        "reqID": 1, "cacheID": "x", "msgType": "read",
        "data": {"reqPath": "/3/0", "code": "2.05", "codeMsg": "content", "content": content}}
    assert response(cmd, 0x81)["data"] == {"reqPath": "/3/0", "code": "4.01",
                                           "codeMsg": "uauthorized"}
    assert notification(cmd, 3, 0x45, content)["seqNum"] == 3
    assert notification(cmd, 3, 0x45, content)["msgType"] == "notify"
    assert separate_ack(cmd) == {"reqID": 1, "cacheID": "x", "msgType": "ack",
                                 "data": {"path": "/3/0"}}
    batch = parse_command(command("write", basePath="/3/0", content=[]))
    assert response(batch, 0x44)["data"]["reqPath"] == "/3/0"


def test_code_strings() -> None:
    assert [code_string(c) for c in (0x41, 0x44, 0x84, 0xA4)] == ["2.01", "2.04", "4.04", "5.04"]
    assert code_message(0x85) == "method_not_allowed"


# -- registration --------------------------------------------------------------------

def test_register_with_links_and_custom_keys() -> None:
    reg = parse_register(["ep=ep1", "lt=300", "lwm2m=1.0", "b=U", "imei=42"],
                         b'</>;rt="oma.lwm2m",</1/0>,</2/0>;ver=1.0,</3/0>', 1, 86400)
    assert reg.message_data() == {"ep": "ep1", "lt": 300, "lwm2m": "1.0", "b": "U",
                                  "imei": "42", "alternatePath": "/",
                                  "objectList": ["/1/0", "/2/0", "/3/0"]}
    assert event("register", reg.message_data())["msgType"] == "register"
    assert not reg.queue_mode


def test_an_alternate_path_is_stripped_from_the_links() -> None:
    assert parse_links(b'</lwm2m>;rt="oma.lwm2m";ct=11543,</lwm2m/1/0>,</lwm2m/3/0>') == \
        Links("/lwm2m", ("/1/0", "/3/0"))
    assert parse_links(b"") is None


def test_an_empty_payload_leaves_out_the_link_keys() -> None:
    data = parse_register(["ep=e", "lt=60", "b=UQ"], b"", 1, 86400).message_data()
    assert "objectList" not in data and "alternatePath" not in data
    assert parse_register(["ep=e", "lt=60", "b=UQ"], b"", 1, 86400).queue_mode


@pytest.mark.parametrize(("query", "code"), [
    (["lt=60"], BAD_REQUEST), (["ep=e"], BAD_REQUEST), (["ep=e", "lt=0"], BAD_REQUEST),
    (["ep=e", "lt=86401"], BAD_REQUEST), (["ep=e", "lt=sixty"], BAD_REQUEST),
    (["ep=e", "lt=60", "bogus"], BAD_REQUEST), (["ep=e", "lt=60", "lwm2m=2.0"],
                                                PRECONDITION_FAILED)])
def test_bad_registrations_are_refused(query: list[str], code: int) -> None:
    with pytest.raises(RegistrationRefused) as refused:
        parse_register(query, b"", 1, 86400)
    assert refused.value.code == code


def test_updates_change_what_they_carry() -> None:
    reg = parse_register(["ep=e", "lt=60", "b=U"], b"</1/0>", 1, 86400)
    bare = apply_update(reg, parse_update([], b"", 1, 86400))
    assert bare == reg
    moved = apply_update(reg, parse_update(["lt=120", "b=UQ"], b"</1/0>,</3/0>", 1, 86400))
    assert (moved.lifetime, moved.binding, moved.links) == (120, "UQ", Links("/", ("/1/0",
                                                                                  "/3/0")))
    with pytest.raises(RegistrationRefused):
        parse_update(["lt=0"], b"", 1, 86400)
