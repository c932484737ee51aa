#!/usr/bin/env python3
"""Write the starting corpus of each target into corpus/<target>/ (files named by
their SHA-1, as libFuzzer names its own): valid MQTT traffic of every packet type
at each protocol level, the rule statements the SQL tests use (recorded while
tests/rules/test_sql.py runs), and a valid body for each API route.

    PYTHONPATH=$PWD python3 tests/fuzz/make_seeds.py
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))

import targets  # noqa: E402

from starling.mqtt import (  # noqa: E402
    Auth,
    Connack,
    Connect,
    Disconnect,
    Packet,
    Pingreq,
    Pingresp,
    PropertyId,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    SubscriptionOptions,
    Unsuback,
    Unsubscribe,
    Will,
    encode,
)


def write(target: str, data: bytes) -> None:
    directory = HERE / "corpus" / target
    directory.mkdir(parents=True, exist_ok=True)
    (directory / hashlib.sha1(data).hexdigest()).write_bytes(data)


def mqtt_packets(level: int) -> list[Packet]:
    props = {PropertyId.USER_PROPERTY: [("k", "v")], PropertyId.MESSAGE_EXPIRY_INTERVAL: 5,
             PropertyId.TOPIC_ALIAS: 3, PropertyId.CONTENT_TYPE: "text/plain"}
    v5 = level == 5
    return [
        Connect(client_id="fuzz", protocol_level=level,
                protocol_name="MQIsdp" if level == 3 else "MQTT", username="u", password=b"p",
                will=Will("w/t", b"x", 1, True, {PropertyId.WILL_DELAY_INTERVAL: 1} if v5 else {}),
                properties={PropertyId.SESSION_EXPIRY_INTERVAL: 10,
                            PropertyId.AUTHENTICATION_METHOD: "m"} if v5 else {}),
        Connect(client_id="", protocol_level=level, clean_start=False, keepalive=0,
                protocol_name="MQIsdp" if level == 3 else "MQTT"),
        Connack(False, 0),
        Publish("a/b", b"payload", 1, packet_id=1, properties=props if v5 else {}),
        Publish("c", b"", 2, True, True, 2,
                properties={PropertyId.SUBSCRIPTION_IDENTIFIER: [7]} if v5 else {}),
        Publish("q0", b"\x00\xff", 0),
        Subscribe(3, [("a/+", SubscriptionOptions(1, v5, False, 1 if v5 else 0)),
                      ("#", SubscriptionOptions(2))],
                  {PropertyId.SUBSCRIPTION_IDENTIFIER: [1]} if v5 else {}),
        Subscribe(4, [("$share/g/s/#", SubscriptionOptions(0))]),
        Suback(3, [0, 1, 0x80]),
        Unsubscribe(4, ["a/+", "#"]),
        Unsuback(4, [0] if v5 else []),
        Puback(1, 0x10 if v5 else 0, {PropertyId.REASON_STRING: "r"} if v5 else {}),
        Pubrec(2), Pubrel(2), Pubcomp(2),
        Pingreq(), Pingresp(),
        Disconnect(0x04 if v5 else 0, {PropertyId.REASON_STRING: "bye"} if v5 else {}),
        *([Auth(0x18, {PropertyId.AUTHENTICATION_METHOD: "m"})] if v5 else []),
    ]


def mqtt_seeds() -> None:
    # The first three bytes choose level (0, 3, 4, 5), size limit and cuts.
    for choice, level in ((0, 0), (1, 3), (2, 4), (3, 5)):
        wire = level or 4
        stream = b""
        for packet in mqtt_packets(wire):
            try:
                one = encode(packet, wire)
            except Exception:  # a packet this level cannot carry
                continue
            stream += one
            write("mqtt_decoder", bytes([choice, 0, 0]) + one)
        write("mqtt_decoder", bytes([choice, 0, 5]) + stream)


RECORDER = '''
import starling.rules, starling.rules.sql
seen = []
real = starling.rules.sql.parse_sql
def recording(sql, *a, **k):
    seen.append(sql)
    return real(sql, *a, **k)
starling.rules.parse_sql = starling.rules.sql.parse_sql = recording
def pytest_sessionfinish(session):
    import json, os
    with open(os.environ["SQL_SEEDS_OUT"], "w") as f:
        json.dump([s for s in seen if isinstance(s, str)], f)
'''


def sql_seeds() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "sql_recorder.py").write_text(RECORDER)
        out = Path(tmp) / "seen.json"
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "sql_recorder",
                        "-p", "no:cacheprovider", str(ROOT / "tests/rules/test_sql.py")],
                       env={**__import__("os").environ, "SQL_SEEDS_OUT": str(out),
                            "PYTHONPATH": f"{tmp}:{ROOT}"},
                       check=False, capture_output=True)
        statements = sorted(set(json.loads(out.read_text())))
    for sql in statements:
        write("rule_sql", sql.encode())
    write("rule_sql", b'SELECT payload.a as a, payload.b.c[2].d FROM "t/#" WHERE a > 0\x00'
                      b'{"a": 1, "b": {"c": [1, {"d": 2}]}}')


API_SEEDS: dict[str, object] = {
    "/api/v3/mqtt/publish": {"topic": "t/a", "payload": "hi", "qos": 1, "retain": False,
                             "clientid": "api"},
    "/api/v3/mqtt/publish_batch": [{"topic": "t/a", "payload": "aGk=", "encoding": "base64",
                                    "clientid": "api"}],
    "/api/v3/mqtt/subscribe": {"topic": "t/#", "qos": 1, "clientid": "c1"},
    "/api/v3/mqtt/subscribe_batch": [{"topics": "a,b", "qos": 0, "clientid": "c1"}],
    "/api/v3/mqtt/unsubscribe": {"topic": "t/#", "clientid": "c1"},
    "/api/v3/mqtt/unsubscribe_batch": [{"topic": "t/#", "clientid": "c1"}],
    "/api/v3/rules": {"rawsql": 'select * from "t/#"', "actions": [
        {"name": "do_nothing", "params": {}}], "description": "d"},
    "/api/v3/rules?test=true": {"rawsql": 'select payload.x as x from "t/#"',
                                "ctx": {"payload": '{"x": 1}', "topic": "t/a"}},
    "/api/v3/rules/rule:fuzz": {"rawsql": 'select * from "t/#"', "enabled": False},
    "/api/v3/resources": {"type": "web_hook", "config": {"url": "http://127.0.0.1:9/x"},
                          "description": "r"},
    "/api/v3/resources?test=true": {"type": "web_hook",
                                    "config": {"url": "http://127.0.0.1:9/x"}},
    "/api/v3/banned": {"who": "c9", "as": "client_id", "reason": "r", "desc": "d",
                       "until": 4102444800},
    "/api/v3/apps": {"app_id": "fuzzapp", "name": "n", "secret": "s", "desc": "d",
                     "status": True, "expired": "undefined"},
    "/api/v3/apps/fuzzapp": {"name": "n2", "desc": "d", "status": False, "expired": 4102444800},
    "/api/v3/configs": {"mqtt.max_packet_size": 2048},
    "/api/v3/nodes/starling@127.0.0.1/plugin_configs/emqx_web_hook": {"api.url": "http://x/"},
    "/api/v3/users": {"username": "u2", "password": "p", "tags": "t"},
    "/api/v3/change_pwd/admin": {"old_pwd": "public", "new_pwd": "p2"},
    "/api/v3/acl": {"rules": []},
}


def api_seeds() -> None:
    for index, (_method, target) in enumerate(targets.API_BODIES):
        body = API_SEEDS.get(target, {})
        write("api_json", bytes([index]) + json.dumps(body).encode())
    write("api_json", bytes([0]) + b'{"topic": "t", "payload": ')


def channel_seeds() -> None:
    """Ordinary sessions of two clients, as the channel target takes them."""
    def stream(level: int, *packets: Packet) -> bytes:
        return b"".join(encode(p, level) for p in packets)

    sub = SubscriptionOptions
    for level in (4, 5):
        v5 = level == 5
        alias = {PropertyId.TOPIC_ALIAS: 1} if v5 else {}
        a = stream(level,
                   Connect(client_id="a", protocol_level=level, keepalive=30,
                           will=Will("w/a", b"gone", 1, False)),
                   Subscribe(1, [("t/#", sub(2)), ("$share/g/s/+", sub(1))]),
                   Publish("t/a", b"q0", 0), Publish("t/a", b"q1", 1, packet_id=2),
                   Publish("t/a", b"q2", 2, packet_id=3), Pubrel(3),
                   Publish("t/r", b"kept", 1, True, packet_id=4),
                   Puback(1), Pubrec(2), Pubcomp(2),
                   Unsubscribe(5, ["t/#"]), Pingreq())
        b = stream(level,
                   Connect(client_id="b", protocol_level=level, clean_start=False,
                           properties={PropertyId.SESSION_EXPIRY_INTERVAL: 60} if v5 else {}),
                   Subscribe(1, [("t/+", sub(1)), ("s/x", sub(0))]),
                   Publish("t/b", b"hello", 1, packet_id=1, properties=alias),
                   Publish("s/x", b"shared", 2, packet_id=2), Pubrel(2),
                   Puback(1), Puback(2), Pubrec(3), Pubcomp(3),
                   Disconnect())
        write("channel", a + targets.CHANNEL_SPLIT + b)
        write("channel", a)
        write("channel", stream(level, Connect(client_id="", protocol_level=level),
                                Publish("t/z", b"", 1, packet_id=9)) + targets.CHANNEL_SPLIT + b)
    write("channel", stream(4, Publish("before/connect", b"x")))
    write("channel", stream(4, Connect(client_id="dup"), Connect(client_id="dup")))
    write("channel", stream(4, Connect(client_id="same")) + targets.CHANNEL_SPLIT
          + stream(4, Connect(client_id="same"), Pingreq()))


if __name__ == "__main__":
    mqtt_seeds()
    sql_seeds()
    api_seeds()
    channel_seeds()
    for target in targets.TARGETS:
        count = len(list((HERE / "corpus" / target).iterdir()))
        print(f"{target}: {count} files")
