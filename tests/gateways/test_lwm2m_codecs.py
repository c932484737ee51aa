"""LwM2M content codecs and object definitions, sans-IO (starling.gateways.lwm2m)."""

from __future__ import annotations

import base64
import contextlib
import json
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from starling.gateways.lwm2m import tlv
from starling.gateways.lwm2m.content import (
    LWM2M_JSON,
    LWM2M_TLV,
    OCTET_STREAM,
    TEXT_PLAIN,
    ContentError,
    WriteItem,
    decode_content,
    encode_value,
    encode_write,
    split_links,
)
from starling.gateways.lwm2m.objectdb import (
    ObjectDefinitionError,
    load_directory,
    parse_object,
    standard_objects,
)
from starling.gateways.lwm2m.paths import PathError, format_path, parse_path
from starling.gateways.lwm2m.tlv import Tlv, TlvError, TlvKind

OBJECTS = standard_objects()


# -- TLV framing ---------------------------------------------------------------------

def test_tlv_decodes_the_specs_device_object_example() -> None:
    # LwM2M 1.0 §6.4.3.1 example: /3/0 read, resources 0 and 1 and multiple resource 6.
    payload = bytes.fromhex(
        "C800144F70656E204D6F62696C6520416C6C69616E6365"  # 0: "Open Mobile Alliance"
        "C801164C69676874776569676874204D324D20436C69656E74"  # 1: "Lightweight M2M Client"
        "8606410001410105")  # 6: [0]=1, [1]=5
    records = tlv.decode(payload)
    assert [(r.kind, r.ident) for r in records] == [
        (TlvKind.RESOURCE, 0), (TlvKind.RESOURCE, 1), (TlvKind.MULTIPLE_RESOURCE, 6)]
    assert records[0].data == b"Open Mobile Alliance"
    assert [(c.ident, c.data) for c in records[2].children] == [(0, b"\x01"), (1, b"\x05")]
    assert tlv.encode(records) == payload


def test_tlv_uses_wide_identifiers_and_lengths_when_needed() -> None:
    record = Tlv(TlvKind.RESOURCE, 5700, b"x" * 300)
    data = tlv.encode([record])
    assert data[0] == 0b11_1_10_000 and data[1:3] == (5700).to_bytes(2, "big")
    assert data[3:5] == (300).to_bytes(2, "big")
    assert tlv.decode(data) == [record]


@pytest.mark.parametrize("data", [b"\xc8", b"\xc8\x00", b"\xc8\x00\x05abc", b"\xe1\x00",
                                  b"\x08\x00\x03\xc1"])
def test_tlv_refuses_truncated_records(data: bytes) -> None:
    with pytest.raises(TlvError):
        tlv.decode(data)


leaves = st.builds(Tlv, st.sampled_from([TlvKind.RESOURCE, TlvKind.RESOURCE_INSTANCE]),
                   st.integers(0, 0xFFFF), st.binary(max_size=300))
records = st.recursive(
    leaves, lambda inner: st.builds(
        Tlv, st.sampled_from([TlvKind.OBJECT_INSTANCE, TlvKind.MULTIPLE_RESOURCE]),
        st.integers(0, 0xFFFF), st.lists(inner, max_size=4).map(tuple)), max_leaves=12)


@given(st.lists(records, max_size=4))
def test_tlv_round_trips(items: list[Tlv]) -> None:
    assert tlv.decode(tlv.encode(items)) == items


@given(st.binary(max_size=64))
def test_tlv_decoder_never_fails_other_than_with_tlv_error(data: bytes) -> None:
    with contextlib.suppress(TlvError):
        tlv.decode(data)


@pytest.mark.parametrize(("number", "width"), [(0, 1), (127, 1), (-128, 1), (128, 2),
                                               (70000, 4), (-70000, 4), (2**40, 8)])
def test_integers_use_the_widths_the_spec_allows(number: int, width: int) -> None:
    data = tlv.encode_integer(number)
    assert len(data) == width
    assert tlv.decode_integer(data) == number


def test_values_decode_by_type() -> None:
    assert tlv.decode_float(struct.pack(">f", 1.5)) == 1.5
    assert tlv.decode_boolean(b"\x01") is True
    assert tlv.decode_objlnk(tlv.encode_objlnk(3, 1)) == (3, 1)
    with pytest.raises(TlvError):
        tlv.decode_integer(b"\x00\x00\x01")
    with pytest.raises(TlvError):
        tlv.decode_boolean(b"\x02")


# -- paths and object definitions ----------------------------------------------------

def test_paths() -> None:
    assert parse_path("/3/0/13") == (3, 0, 13)
    assert parse_path("3/0/") == (3, 0)
    assert format_path((3, 0, 6, 1)) == "/3/0/6/1"
    for bad in ("", "/a/0", "/1/2/3/4/5", "/70000"):
        with pytest.raises(PathError):
            parse_path(bad)


def test_the_standard_objects_0_to_7_are_shipped() -> None:
    assert OBJECTS.ids() == [0, 1, 2, 3, 4, 5, 6, 7]
    device = OBJECTS.get(3)
    assert device is not None and device.name == "Device" and not device.multiple
    assert device.resources[13].type == "Time"
    assert device.resources[4].operations == "E"
    assert device.resources[6].multiple
    assert OBJECTS.by_name("Connectivity Monitoring") is OBJECTS.get(4)


def test_object_definitions_load_from_a_directory(tmp_path: Path) -> None:
    (tmp_path / "custom.xml").write_text(
        "<LWM2M><Object><Name>Temp</Name><ObjectID>3303</ObjectID>"
        "<MultipleInstances>Multiple</MultipleInstances><Resources>"
        "<Item ID='5700'><Name>Sensor Value</Name><Operations>R</Operations>"
        "<Type>Float</Type></Item></Resources></Object></LWM2M>")
    database = load_directory(tmp_path)
    assert database.ids() == [3303]
    resource = database.resource(3303, 5700)
    assert resource is not None and resource.type == "Float"


@pytest.mark.parametrize("text", [
    "<LWM2M><Object>", "<Other/>", "<LWM2M><Object><ObjectID>x</ObjectID></Object></LWM2M>",
    "<LWM2M><Object><ObjectID>9</ObjectID><Resources><Item ID='1'><Type>Number</Type>"
    "</Item></Resources></Object></LWM2M>"])
def test_bad_object_definitions_are_refused_naming_the_file(text: str) -> None:
    with pytest.raises(ObjectDefinitionError, match=r"bad\.xml"):
        parse_object(text, "bad.xml")


def test_a_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ObjectDefinitionError, match="not a directory"):
        load_directory(tmp_path / "nope")


# -- uplink content ------------------------------------------------------------------

def device_tlv() -> bytes:
    return tlv.encode([
        Tlv(TlvKind.RESOURCE, 0, b"Open Mobile Alliance"),
        Tlv(TlvKind.MULTIPLE_RESOURCE, 6, (Tlv(TlvKind.RESOURCE_INSTANCE, 0, b"\x01"),
                                           Tlv(TlvKind.RESOURCE_INSTANCE, 1, b"\x05"))),
        Tlv(TlvKind.RESOURCE, 9, b"\xff"),  # battery level -1: integers are signed
        Tlv(TlvKind.RESOURCE, 13, tlv.encode_integer(1_700_000_000)),
        Tlv(TlvKind.RESOURCE, 22, tlv.encode_objlnk(3, 1)),
        Tlv(TlvKind.RESOURCE, 99, b"\x00\x01"),  # not in the definition: opaque
    ])


def test_tlv_content_is_read_with_the_definitions() -> None:
    assert decode_content(LWM2M_TLV, device_tlv(), (3, 0), OBJECTS) == [
        {"path": "/3/0/0", "value": "Open Mobile Alliance"},
        {"path": "/3/0/6/0", "value": 1},
        {"path": "/3/0/6/1", "value": 5},
        {"path": "/3/0/9", "value": -1},
        {"path": "/3/0/13", "value": 1_700_000_000},
        {"path": "/3/0/22", "value": "3:1"},
        {"path": "/3/0/99", "value": "AAE="},
    ]


def test_tlv_object_level_read_nests_instances() -> None:
    payload = tlv.encode([Tlv(TlvKind.OBJECT_INSTANCE, 0, (
        Tlv(TlvKind.RESOURCE, 1, tlv.encode_integer(300)),
        Tlv(TlvKind.RESOURCE, 6, b"\x01")))])
    assert decode_content(LWM2M_TLV, payload, (1,), OBJECTS) == [
        {"path": "/1/0/1", "value": 300}, {"path": "/1/0/6", "value": True}]


def test_tlv_of_a_single_resource_and_of_resource_instances() -> None:
    single = tlv.encode([Tlv(TlvKind.RESOURCE, 9, b"\x5a")])
    assert decode_content(LWM2M_TLV, single, (3, 0, 9), OBJECTS) == [
        {"path": "/3/0/9", "value": 90}]
    instances = tlv.encode([Tlv(TlvKind.RESOURCE_INSTANCE, 0, b"\x01"),
                            Tlv(TlvKind.RESOURCE_INSTANCE, 1, b"\x05")])
    assert decode_content(LWM2M_TLV, instances, (3, 0, 6), OBJECTS) == [
        {"path": "/3/0/6/0", "value": 1}, {"path": "/3/0/6/1", "value": 5}]


def test_tlv_and_text_need_a_definition_of_the_object() -> None:
    with pytest.raises(ContentError, match="no definition of object 3303"):
        decode_content(LWM2M_TLV, b"\xc1\x00\x01", (3303, 0), OBJECTS)
    with pytest.raises(ContentError, match="no definition of object 3303"):
        decode_content(TEXT_PLAIN, b"21.5", (3303, 0, 5700), OBJECTS)


def test_plain_text_is_typed_by_the_definition() -> None:
    assert decode_content(TEXT_PLAIN, b"90", (3, 0, 9), OBJECTS) == [
        {"path": "/3/0/9", "value": 90}]
    assert decode_content(None, b"1", (1, 0, 6), OBJECTS) == [{"path": "/1/0/6", "value": True}]
    assert decode_content(TEXT_PLAIN, b"-43.5", (6, 0, 0), OBJECTS)[0]["value"] == -43.5
    assert decode_content(TEXT_PLAIN, b"Starling", (3, 0, 0), OBJECTS)[0]["value"] == "Starling"
    with pytest.raises(ContentError):
        decode_content(TEXT_PLAIN, b"many", (3, 0, 9), OBJECTS)
    with pytest.raises(ContentError):
        decode_content(TEXT_PLAIN, b"x", (3, 0), OBJECTS)


def test_opaque_content_is_base64() -> None:
    assert decode_content(OCTET_STREAM, b"\x00\xff", (5, 0, 0), OBJECTS) == [
        {"path": "/5/0/0", "value": base64.b64encode(b"\x00\xff").decode()}]


def test_lwm2m_json_needs_no_definition() -> None:
    payload = json.dumps({"bn": "/3303/0/", "e": [
        {"n": "5700", "v": 21.5}, {"n": "5701", "sv": "Cel"}, {"n": "5850", "bv": True},
        {"n": "5750/0", "ov": "1:2"}]}).encode()
    assert decode_content(LWM2M_JSON, payload, (3303, 0), OBJECTS) == [
        {"path": "/3303/0/5700", "value": 21.5}, {"path": "/3303/0/5701", "value": "Cel"},
        {"path": "/3303/0/5850", "value": True}, {"path": "/3303/0/5750/0", "value": "1:2"}]
    single = json.dumps({"bn": "/3/0/9", "e": [{"v": 80}]}).encode()
    assert decode_content(LWM2M_JSON, single, (3, 0, 9), OBJECTS) == [
        {"path": "/3/0/9", "value": 80}]


@pytest.mark.parametrize("payload", [b"{", b"[]", b'{"e": [{"n": "1"}]}', b'{"bn": 3, "e": []}'])
def test_bad_lwm2m_json_is_refused(payload: bytes) -> None:
    with pytest.raises(ContentError):
        decode_content(LWM2M_JSON, payload, (3, 0), OBJECTS)


def test_unknown_content_formats_are_refused() -> None:
    with pytest.raises(ContentError, match="unsupported content format 60"):
        decode_content(60, b"\xa0", (3, 0), OBJECTS)


def test_discover_links_split_into_entries() -> None:
    assert split_links(b"</3/0/7>;dim=8;pmin=10,</3/0/8>, </3/0/9>") == [
        "</3/0/7>;dim=8;pmin=10", "</3/0/8>", "</3/0/9>"]


# -- downlink values -----------------------------------------------------------------

def test_a_single_write_is_one_resource_record() -> None:
    payload = encode_write((3, 0, 13), [WriteItem((), "Integer", "1700000000")], OBJECTS)
    assert tlv.decode(payload) == [
        Tlv(TlvKind.RESOURCE, 13, tlv.encode_integer(1_700_000_000))]


def test_a_batch_write_to_an_instance_and_to_a_multiple_resource() -> None:
    items = [WriteItem((13,), "Integer", 12345), WriteItem((14,), "String", "+02"),
             WriteItem((15,), None, "Europe/Paris")]  # type from the definition
    assert tlv.decode(encode_write((3, 0), items, OBJECTS)) == [
        Tlv(TlvKind.RESOURCE, 13, tlv.encode_integer(12345)),
        Tlv(TlvKind.RESOURCE, 14, b"+02"), Tlv(TlvKind.RESOURCE, 15, b"Europe/Paris")]
    multi = encode_write((2, 0, 2), [WriteItem((1,), "Integer", 15),
                                     WriteItem((2,), "Integer", 1)], OBJECTS)
    assert tlv.decode(multi) == [Tlv(TlvKind.MULTIPLE_RESOURCE, 2, (
        Tlv(TlvKind.RESOURCE_INSTANCE, 1, b"\x0f"), Tlv(TlvKind.RESOURCE_INSTANCE, 2, b"\x01")))]


def test_create_nests_resources_in_their_instance() -> None:
    items = [WriteItem((0, 1), "String", "coap://fw"), WriteItem((0, 4), "Boolean", "true")]
    assert tlv.decode(encode_write((5,), items, OBJECTS)) == [
        Tlv(TlvKind.OBJECT_INSTANCE, 0, (Tlv(TlvKind.RESOURCE, 1, b"coap://fw"),
                                         Tlv(TlvKind.RESOURCE, 4, b"\x01")))]


@pytest.mark.parametrize(("kind", "value", "data"), [
    ("Integer", -1, b"\xff"), ("Time", "60", b"\x3c"), ("Float", "1.5", struct.pack(">d", 1.5)),
    ("Boolean", "false", b"\x00"), ("Boolean", True, b"\x01"), ("Objlnk", "3:1",
                                                                 b"\x00\x03\x00\x01"),
    ("String", "é", "é".encode()), ("Opaque", "raw", b"raw")])
def test_values_encode_by_type(kind: str, value: object, data: bytes) -> None:
    assert encode_value(kind, value) == data


@pytest.mark.parametrize(("kind", "value"), [
    ("Integer", "ten"), ("Integer", 1.5), ("Integer", True), ("Float", "nan"), ("Float", None),
    ("Boolean", "yes"), ("Objlnk", "3"), ("String", 5), ("Colour", "red")])
def test_bad_values_are_refused(kind: str, value: object) -> None:
    with pytest.raises(ContentError):
        encode_value(kind, value)


def test_writes_need_a_type_or_a_definition() -> None:
    with pytest.raises(ContentError, match="no type given"):
        encode_write((3303, 0), [WriteItem((5700,), None, 1)], OBJECTS)
    with pytest.raises(ContentError, match="given twice"):
        encode_write((3, 0), [WriteItem((6,), "Integer", 1), WriteItem((6, 0), "Integer", 1)],
                     OBJECTS)
