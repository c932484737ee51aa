"""The certificate DTLS keys of emqx_coap and emqx_lwm2m: their schema, their
values checked as they are set (a file that is not PEM is refused naming its
key), the `TlsOptions` a listener is built from, and the `DtlsLimits` on its
per-peer state.

Set a certificate file and the DTLS listener speaks X.509 (`dtls_x509`);
leave it empty and it speaks pre-shared keys (aiocoap's tinydtls server).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from starling.config import parse_bool
from starling.plugins import ConfigKey, parse_choice
from starling.transport import TlsOptions


@dataclass(frozen=True, slots=True)
class DtlsLimits:
    """How much per-peer state a certificate DTLS listener keeps (`dtls_x509`;
    docs/gateways.md, "DTLS"): peers silent for `idle_timeout` seconds are
    dropped, and so are handshakes unfinished after `handshake_timeout`."""

    idle_timeout: float = 300.0
    #: Associations per client IP address (devices behind one NAT share one).
    per_address: int = 256
    total: int = 10000
    handshake_timeout: float = 30.0
    #: Largest datagram sent: Ethernet's 1500 less IPv6 and UDP headers, with room.
    mtu: int = 1400


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as exc:
        raise ValueError(f"cannot read {path!r}: {exc.strerror}") from None


def _certificates(data: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        return []


def _private_key(data: bytes) -> Any:
    """The PEM private key in `data` (a certificate may come first), or None."""
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise ValueError("the private key is encrypted; give it unencrypted") from None
    except ValueError:
        return None


def parse_certfile(value: str) -> str:
    """Empty, or a readable PEM file holding a certificate (its chain may follow)."""
    path = value.strip()
    if path and not _certificates(_read(path)):
        raise ValueError(f"{path!r} holds no PEM certificate")
    return path


def parse_keyfile(value: str) -> str:
    """Empty, or a readable PEM file holding an unencrypted private key."""
    path = value.strip()
    if path and _private_key(_read(path)) is None:
        raise ValueError(f"{path!r} holds no PEM private key")
    return path


def parse_ciphers(value: str) -> str:
    """An OpenSSL cipher list (commas or colons); empty: OpenSSL's default."""
    text = value.strip()
    if text:
        from OpenSSL import SSL
        try:
            SSL.Context(SSL.DTLS_SERVER_METHOD).set_cipher_list(text.replace(",", ":").encode())
        except SSL.Error:
            raise ValueError(f"no cipher can be selected from {text!r}") from None
    return text


@dataclass(frozen=True, slots=True)
class DtlsKeys:
    """The names of one gateway's certificate DTLS keys (they differ: EMQ X v3.2
    named emqx_lwm2m's files ``lwm2m.certfile`` / ``lwm2m.keyfile``)."""

    port: str
    certfile: str
    keyfile: str
    cacertfile: str
    verify: str
    fail_if_no_peer_cert: str
    ciphers: str

    @classmethod
    def under(cls, prefix: str, files: str | None = None) -> DtlsKeys:
        """``<prefix>.port`` ... ``<prefix>.ciphers``; the cert and key files under
        `files` when given."""
        return cls(f"{prefix}.port", f"{files or prefix}.certfile",
                   f"{files or prefix}.keyfile", f"{prefix}.cacertfile", f"{prefix}.verify",
                   f"{prefix}.fail_if_no_peer_cert", f"{prefix}.ciphers")

    def schema(self) -> tuple[ConfigKey, ...]:
        """The keys but `port` (each gateway says what an empty port means)."""
        return (
            ConfigKey(self.certfile, "",
                      "Server certificate (PEM, chain may follow): set, the DTLS listener "
                      "takes X.509 certificates instead of pre-shared keys.",
                      parse_certfile, required=False),
            ConfigKey(self.keyfile, "",
                      f"Private key (PEM) of {self.certfile}; empty: read from that file.",
                      parse_keyfile, required=False),
            ConfigKey(self.cacertfile, "",
                      "CA certificates (PEM) that client certificates are checked against.",
                      parse_certfile, required=False),
            ConfigKey(self.verify, "verify_none", "verify_peer: ask for a client certificate.",
                      parse_choice("verify_none", "verify_peer")),
            ConfigKey(self.fail_if_no_peer_cert, "false",
                      "With verify_peer: refuse clients without a certificate.", parse_bool),
            ConfigKey(self.ciphers, "", "OpenSSL cipher list; empty: OpenSSL's default.",
                      parse_ciphers, required=False),
        )

    def options(self, settings: Mapping[str, Any]) -> TlsOptions | None:
        """The certificate set-up the settings ask for; None for pre-shared keys.
        `ValueError` naming the key when the keys do not fit together."""
        certfile, keyfile = settings[self.certfile], settings[self.keyfile]
        cacertfile, verify = settings[self.cacertfile], settings[self.verify]
        if not certfile:
            for key, unused in ((self.keyfile, keyfile), (self.cacertfile, cacertfile),
                                (self.verify, verify == "verify_peer")):
                if unused:
                    raise ValueError(f"{key} needs {self.certfile} (pre-shared keys have "
                                     "no certificates)")
            return None
        if verify == "verify_peer" and not cacertfile:
            raise ValueError(f"{self.cacertfile}: needed with {self.verify} = verify_peer "
                             "(the CAs client certificates are checked against)")
        self._check_pair(certfile, keyfile)
        return TlsOptions(certfile, keyfile or certfile, cacertfile, verify,
                          settings[self.fail_if_no_peer_cert], settings[self.ciphers])

    def _check_pair(self, certfile: str, keyfile: str) -> None:
        key = _private_key(_read(keyfile or certfile))
        if key is None:
            raise ValueError(f"{self.keyfile}: needed, {self.certfile} holds no private key")
        certificate = _certificates(_read(certfile))[0]
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        if certificate.public_key().public_bytes(serialization.Encoding.DER, spki) != \
                key.public_key().public_bytes(serialization.Encoding.DER, spki):
            raise ValueError(f"{self.keyfile}: the key does not match the certificate in "
                             f"{self.certfile}")
