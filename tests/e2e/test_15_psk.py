"""TLS-PSK: an ssl listener with `ssl_options.psk_ciphers` and the `emqx_psk_file`
plugin's keys, driven by Debian's mosquitto clients (`--psk`, `--psk-identity`)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import API_SETTINGS
from tests.e2e.test_13_transports import (  # noqa: F401  (pki is a fixture)
    client_ctx,
    listener,
    pki,
    tls_listener,
)
from tests.helpers.clients import PahoClient, uid, wait_until

NODE = "starling@127.0.0.1"
PSK_CIPHERS = "PSK-AES128-CBC-SHA,PSK-AES256-CBC-SHA"
# EMQ X's psk.txt: the secret's bytes are the key; mosquitto wants them in hex.
PSK_FILE = "# identity:secret\nclient1:1234\n\nclient2:abcd\nbroken line\n"
KEY1, KEY2 = b"1234".hex(), b"abcd".hex()

pytest.importorskip("sslpsk3", reason="pip install 'starling-mqtt[psk]'")


def psk_node(make_node: Any, tmp_path: Path, ssl_listener: dict[str, str] | None = None) -> Any:
    """A node whose data directory holds psk.txt (the plugin's default path)."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "psk.txt").write_text(PSK_FILE)
    if ssl_listener is None:
        ssl_listener = listener("ssl", ssl_options__psk_ciphers=PSK_CIPHERS)
    return make_node({**API_SETTINGS, **ssl_listener,
                      "plugins.loaded": "emqx_management,emqx_psk_file"}, data_dir=data_dir)


def mosquitto(tool: str, node: Any, *args: str, identity: str = "client1", key: str = KEY1,
              timeout: float = 10) -> subprocess.CompletedProcess[str]:
    host, port = node.listeners["mqtt:ssl:default"]
    return subprocess.run(
        [tool, "-h", host, "-p", str(port), "--psk-identity", identity, "--psk", key, *args],
        capture_output=True, text=True, timeout=timeout)


def pub(node: Any, topic: str, message: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return mosquitto("mosquitto_pub", node, "-t", topic, "-m", message, "-q", "1", **kwargs)


def test_psk_clients_publish_and_subscribe(make_node, tmp_path) -> None:
    node = psk_node(make_node, tmp_path)
    topic = f"psk/{uid()}"
    host, port = node.listeners["mqtt:ssl:default"]
    sub = subprocess.Popen(
        ["mosquitto_sub", "-h", host, "-p", str(port), "--psk-identity", "client2", "--psk",
         KEY2, "-t", topic, "-C", "1", "-i", uid("sub")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with node.api() as api:
            wait_until(lambda: any(s["topic"] == topic for s in
                                   api.get("/subscriptions/").json()["data"]),
                       message="the PSK subscriber is subscribed")
        assert pub(node, topic, "over psk").returncode == 0
        out, err = sub.communicate(timeout=10)
        assert out.strip() == "over psk", err
    finally:
        sub.kill()
        sub.wait()


@pytest.mark.parametrize("identity, key", [("client1", KEY2), ("nobody", KEY1)])
def test_wrong_key_or_unknown_identity_is_refused(make_node, tmp_path, identity, key) -> None:
    node = psk_node(make_node, tmp_path)
    result = pub(node, "psk/x", "no", identity=identity, key=key)
    assert result.returncode != 0
    assert "TLS error" in result.stderr, result.stderr  # refused in the handshake


def test_tls13_psk(make_node, tmp_path) -> None:
    node = psk_node(make_node, tmp_path)
    result = mosquitto("mosquitto_pub", node, "-t", "psk/13", "-m", "x",
                       "--tls-version", "tlsv1.3")
    assert result.returncode == 0, result.stderr


def test_unloading_the_plugin_refuses_psk_and_loading_restores(make_node, tmp_path) -> None:
    node = psk_node(make_node, tmp_path)
    with node.api() as api:
        assert api.put(f"/nodes/{NODE}/plugins/emqx_psk_file/unload").json()["code"] == 0
        assert pub(node, "psk/x", "no").returncode != 0
        assert api.put(f"/nodes/{NODE}/plugins/emqx_psk_file/load").json()["code"] == 0
    assert pub(node, "psk/x", "yes").returncode == 0


def test_a_changed_file_is_read_again(make_node, tmp_path) -> None:
    node = psk_node(make_node, tmp_path)
    assert pub(node, "psk/x", "no", identity="client3", key=b"new".hex()).returncode != 0
    (tmp_path / "data" / "psk.txt").write_text(PSK_FILE + "client3:new\n")
    time.sleep(1.2)  # the file is checked at most once a second
    assert pub(node, "psk/x", "yes", identity="client3", key=b"new".hex()).returncode == 0


def test_a_missing_file_refuses_the_load(make_node, tmp_path) -> None:
    node = make_node({**API_SETTINGS, **listener("ssl", ssl_options__psk_ciphers=PSK_CIPHERS)})
    with node.api() as api:
        assert api.put(f"/nodes/{NODE}/plugin_configs/emqx_psk_file",
                       json={"psk.file.path": str(tmp_path / "absent.txt")}).json()["code"] == 0
        body = api.put(f"/nodes/{NODE}/plugins/emqx_psk_file/load").json()
        assert body["code"] != 0
    node.wait_log(r"emqx_psk_file cannot load")
    node.wait_log(r"absent\.txt")


def test_certificate_and_psk_clients_share_a_listener(make_node, tmp_path, pki) -> None:  # noqa: F811
    node = psk_node(make_node, tmp_path,
                    tls_listener(pki, ssl_options__psk_ciphers=PSK_CIPHERS))
    host, port = node.listeners["mqtt:ssl:default"]
    client = PahoClient(host, port)
    client.client.tls_set_context(client_ctx(pki))
    client.client.tls_insecure_set(True)
    try:
        assert client.connect()[0] == 0
        topic = f"mixed/{uid()}"
        client.subscribe(topic, qos=1)
        assert pub(node, topic, "from psk").returncode == 0
        assert client.get(timeout=10).payload == b"from psk"
    finally:
        client.close()
