"""emqx_auth_jwt on a live node: tokens made at test time with pyjwt and
`cryptography` keys (HS256/384/512 with a secret, RS256/ES256 with a PEM public
key or a JWKS file); exp/nbf, claims checked against client id / user name,
the token in the user name field, ACL from the `acl` claim with real
publishes and subscriptions; a bad key file refuses the load; unload removes
the check (docs/auth-backends.md#jwt)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from helpers.api import err, ok
from helpers.clients import PahoClient, uid, wait_until
from helpers.http_receiver import HttpReceiver
from paho.mqtt.client import MQTTv5
from test_auth_clientid_username import BAD_PASSWORD, OK, connect

PLUGIN = "emqx_auth_jwt"
SECRET = "test-hmac-secret-of-at-least-64-bytes-for-hs512-0123456789abcdef"


@pytest.fixture(scope="module")
def node(api_node: Any) -> Any:
    """The module's node, with the API on (`api` is tests/plugins/conftest.py's)."""
    return api_node


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two RSA keys and an EC key; PEM files of their public halves, a JWKS file."""
    out: dict[str, Any] = {}
    folder = tmp_path_factory.mktemp("jwt-keys")
    out["rsa"] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    out["rsa2"] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    out["ec"] = ec.generate_private_key(ec.SECP256R1())
    for name in ("rsa", "rsa2", "ec"):
        pem = out[name].public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        path = folder / f"{name}.pem"
        path.write_bytes(pem)
        out[f"{name}_pem"] = str(path)
    jwks = {"keys": [
        {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(out["rsa"].public_key())),
         "kid": "k-rsa", "alg": "RS256", "use": "sig"},
        {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(out["ec"].public_key())),
         "kid": "k-ec", "alg": "ES256", "use": "sig"},
    ]}
    (folder / "jwks.json").write_text(json.dumps(jwks))
    out["jwks"] = str(folder / "jwks.json")
    bad = folder / "bad.pem"
    bad.write_text("-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n")
    out["bad_pem"] = str(bad)
    return out


def configure(api: httpx.Client, node: Any, values: dict[str, str]) -> None:
    ok(api.put(f"/nodes/{node.name}/plugin_configs/{PLUGIN}", json=values))


DEFAULTS = {"auth.jwt.secret": SECRET, "auth.jwt.pubkey": "", "auth.jwt.jwks": "",
            "auth.jwt.from": "password", "auth.jwt.verify_claims": "off",
            "auth.jwt.acl_claim_name": "acl"}


@pytest.fixture
def loaded(node: Any, api: httpx.Client) -> Iterator[None]:
    configure(api, node, DEFAULTS)
    ok(api.put(f"/nodes/{node.name}/plugins/{PLUGIN}/load"))
    yield
    active = {p["name"]: p["active"] for p in ok(api.get("/plugins/"))[0]["plugins"]}
    if active[PLUGIN]:
        ok(api.put(f"/nodes/{node.name}/plugins/{PLUGIN}/unload"))


def hs(claims: dict[str, Any], alg: str = "HS256", secret: str = SECRET) -> str:
    """An HMAC token; other secrets are padded to pyjwt's minimum length."""
    return jwt.encode(claims, secret.ljust(64, "-"), algorithm=alg)


def test_hmac_tokens_exp_and_nbf(node: Any, loaded: None) -> None:
    now = int(time.time())
    for alg in ("HS256", "HS384", "HS512"):
        assert connect(node, uid("c"), "u", hs({"sub": "x"}, alg)) == OK, alg
    assert connect(node, uid("c"), "u", hs({"exp": now + 600})) == OK
    assert connect(node, uid("c"), "u", hs({}, secret="another-secret")) == BAD_PASSWORD
    assert connect(node, uid("c"), "u", hs({"exp": now - 10})) == BAD_PASSWORD
    assert connect(node, uid("c"), "u", hs({"nbf": now + 600})) == BAD_PASSWORD
    assert connect(node, uid("c"), "u", hs({}, secret="x"), protocol=MQTTv5) == BAD_PASSWORD
    # alg "none" is never accepted
    unsigned = jwt.encode({"sub": "x"}, None, algorithm="none")
    assert connect(node, uid("c"), "u", unsigned) == BAD_PASSWORD
    # no token, or a password that is no JWT at all: ignored (allow_anonymous decides)
    assert connect(node, uid("c"), "u", None) == OK
    assert connect(node, uid("c"), "u", "plain-password") == OK


def test_public_key_and_jwks(node: Any, api: httpx.Client, keys: dict[str, Any],
                             loaded: None) -> None:
    rs = jwt.encode({"sub": "x"}, keys["rsa"], algorithm="RS256")
    es = jwt.encode({"sub": "x"}, keys["ec"], algorithm="ES256")
    other = jwt.encode({"sub": "x"}, keys["rsa2"], algorithm="RS256")
    # No public key configured: key-signed tokens are refused.
    assert connect(node, uid("c"), "u", rs) == BAD_PASSWORD
    configure(api, node, {"auth.jwt.pubkey": keys["rsa_pem"]})
    assert connect(node, uid("c"), "u", rs) == OK
    assert connect(node, uid("c"), "u", other) == BAD_PASSWORD
    assert connect(node, uid("c"), "u", hs({})) == OK  # the secret still works for HS*
    configure(api, node, {"auth.jwt.pubkey": keys["ec_pem"]})
    assert connect(node, uid("c"), "u", es) == OK
    assert connect(node, uid("c"), "u", rs) == BAD_PASSWORD
    # An HS256 token "signed" with the public key (alg confusion) is refused.
    pem = Path(keys["ec_pem"]).read_text()
    assert connect(node, uid("c"), "u", raw_hs256({"sub": "x"}, pem.encode())) == BAD_PASSWORD
    configure(api, node, {"auth.jwt.pubkey": "", "auth.jwt.jwks": keys["jwks"],
                          "auth.jwt.secret": ""})
    assert connect(node, uid("c"), "u",
                   jwt.encode({}, keys["rsa"], algorithm="RS256",
                              headers={"kid": "k-rsa"})) == OK
    assert connect(node, uid("c"), "u",
                   jwt.encode({}, keys["ec"], algorithm="ES256",
                              headers={"kid": "k-ec"})) == OK
    assert connect(node, uid("c"), "u",
                   jwt.encode({}, keys["rsa"], algorithm="RS256",
                              headers={"kid": "k-ec"})) == BAD_PASSWORD
    assert connect(node, uid("c"), "u",
                   jwt.encode({}, keys["rsa2"], algorithm="RS256",
                              headers={"kid": "k-unknown"})) == BAD_PASSWORD
    # secret emptied: HMAC tokens are refused
    assert connect(node, uid("c"), "u", hs({})) == BAD_PASSWORD


def test_verify_claims_and_token_in_username(node: Any, api: httpx.Client,
                                             loaded: None) -> None:
    configure(api, node, {"auth.jwt.verify_claims": "on",
                          "auth.jwt.verify_claims.username": "%u",
                          "auth.jwt.verify_claims.clientid": "%c",
                          "auth.jwt.verify_claims.iss": "starling-tests"})
    client_id = uid("c")
    good = {"username": "alice", "clientid": client_id, "iss": "starling-tests"}
    assert connect(node, client_id, "alice", hs(good)) == OK
    assert connect(node, client_id, "bob", hs(good)) == BAD_PASSWORD
    assert connect(node, uid("other"), "alice", hs(good)) == BAD_PASSWORD
    assert connect(node, client_id, "alice", hs({**good, "iss": "else"})) == BAD_PASSWORD
    missing = {"username": "alice", "clientid": client_id}
    assert connect(node, client_id, "alice", hs(missing)) == BAD_PASSWORD
    configure(api, node, {"auth.jwt.verify_claims": "off"})
    assert connect(node, client_id, "bob", hs(missing)) == OK
    configure(api, node, {"auth.jwt.from": "username"})
    assert connect(node, uid("c"), hs({}), "whatever") == OK
    assert connect(node, uid("c"), hs({}, secret="bad"), "whatever") == BAD_PASSWORD


def raw_hs256(claims: dict[str, Any], key: bytes) -> str:
    """HS256 by hand, with a key pyjwt would refuse to sign with (a PEM public key)."""
    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")
    signing_input = b64(b'{"alg":"HS256","typ":"JWT"}') + b"." + b64(json.dumps(claims).encode())
    signature = hmac.new(key, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + b64(signature)).decode()


def token_client(node: Any, claims: dict[str, Any]) -> PahoClient:
    client = PahoClient(node.host, node.port, client_id=uid("jc"))
    client.client.username_pw_set("user", hs(claims))
    client.connect()
    return client


def test_acl_from_the_acl_claim(node: Any, loaded: None) -> None:
    base = uid("t")
    watcher = token_client(node, {"acl": {"sub": [f"{base}/#"]}})
    pub = token_client(node, {"acl": {"pub": [f"{base}/allowed/+"],
                                      "all": [f"{base}/both"],
                                      "sub": [f"{base}/mine"]}})
    plain = token_client(node, {"sub": "no acl claim"})
    try:
        assert watcher.subscribe(f"{base}/#", qos=1) == [1]
        assert watcher.subscribe(f"other-{base}", qos=1) == [0x80]
        assert pub.subscribe(f"{base}/mine", qos=1) == [1]
        assert pub.subscribe(f"{base}/both", qos=1) == [1]
        assert pub.subscribe(f"{base}/allowed/x", qos=1) == [0x80]
        pub.publish(f"{base}/denied", b"no", qos=1)
        pub.publish(f"{base}/allowed/1", b"yes", qos=1)
        pub.publish(f"{base}/both", b"both", qos=1)
        got = watcher.get_many(2)
        assert [(m.topic, m.payload) for m in got] == [
            (f"{base}/allowed/1", b"yes"), (f"{base}/both", b"both")]
        # Without the claim, ACL is left to the other sources (acl_nomatch allows).
        plain.publish(f"{base}/free", b"free", qos=1)
        assert watcher.get().payload == b"free"
        assert watcher.drain() == []
    finally:
        for client in (watcher, pub, plain):
            client.close()


def test_an_expired_token_loses_its_acl(node: Any, loaded: None) -> None:
    base = uid("t")
    client = token_client(node, {"exp": int(time.time()) + 2, "acl": {"all": [f"{base}/#"]}})
    try:
        assert client.subscribe(f"{base}/a", qos=1) == [1]
        time.sleep(2.5)
        assert client.subscribe(f"{base}/b", qos=1) == [0x80]
    finally:
        client.close()


def test_a_bad_key_file_refuses_the_load(node: Any, api: httpx.Client,
                                         keys: dict[str, Any]) -> None:
    configure(api, node, {**DEFAULTS, "auth.jwt.pubkey": keys["bad_pem"]})
    try:
        err(api.put(f"/nodes/{node.name}/plugins/{PLUGIN}/load"), 400)
        node.wait_log("no PEM public key")
        active = {p["name"]: p["active"] for p in ok(api.get("/plugins/"))[0]["plugins"]}
        assert not active[PLUGIN]
    finally:
        configure(api, node, {"auth.jwt.pubkey": ""})


def test_unload_removes_the_check_and_metrics(node: Any, api: httpx.Client,
                                              loaded: None) -> None:
    before = ok(api.get(f"/nodes/{node.name}/metrics/"))
    assert connect(node, uid("c"), "u", hs({})) == OK
    assert connect(node, uid("c"), "u", hs({}, secret="bad")) == BAD_PASSWORD
    assert connect(node, uid("c"), "u", "not-a-jwt") == OK
    after = ok(api.get(f"/nodes/{node.name}/metrics/"))
    for name in ("success", "failure", "ignore"):
        assert after[f"auth/jwt/{name}"] - before[f"auth/jwt/{name}"] == 1, name
    ok(api.put(f"/nodes/{node.name}/plugins/{PLUGIN}/unload"))
    assert connect(node, uid("c"), "u", hs({}, secret="bad")) == OK
    assert not [line for line in node.log_lines if SECRET in line]


def test_jwks_from_a_url_fetched_again(node: Any, api: httpx.Client, keys: dict[str, Any],
                                       loaded: None) -> None:
    def jwk(key: Any, kid: str) -> dict[str, Any]:
        return {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())),
                "kid": kid, "alg": "RS256"}

    served = {"keys": [jwk(keys["rsa"], "first")]}
    server = HttpReceiver(lambda req: (200, json.dumps(served))).start()
    try:
        configure(api, node, {"auth.jwt.jwks": f"{server.url}/jwks",
                              "auth.jwt.jwks.refresh_interval": "1s"})
        first = jwt.encode({}, keys["rsa"], algorithm="RS256", headers={"kid": "first"})
        second = jwt.encode({}, keys["rsa2"], algorithm="RS256", headers={"kid": "second"})
        assert connect(node, uid("c"), "u", first) == OK
        assert connect(node, uid("c"), "u", second) == BAD_PASSWORD
        served["keys"] = [jwk(keys["rsa2"], "second")]  # the issuer rotates its key
        wait_until(lambda: connect(node, uid("c"), "u", second) == OK, timeout=20,
                   interval=0.5, message="the rotated key fetched")
        assert connect(node, uid("c"), "u", first) == BAD_PASSWORD
    finally:
        configure(api, node, {"auth.jwt.jwks": ""})
        server.stop()
