"""Test certificates made at test time with the `cryptography` package.

Nothing here is committed to the repository: a test asks for a `CA`, which
issues a server certificate for localhost / 127.0.0.1 and client certificates
with chosen subjects, and writes them as PEM files under the test's tmp dir.
EC P-256 keys keep generation fast.

    ca = CA.create(tmp_path, "Test CA")
    server = ca.issue_server()            # server.cert / server.key: Paths
    alice = ca.issue_client("alice")      # subject O=Starling Tests, CN=alice
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ORGANIZATION = "Starling Tests"


@dataclass(frozen=True)
class Issued:
    """A certificate and its key as PEM files, and facts about it."""

    cert: Path
    key: Path
    serial: int
    common_name: str

    def write_to(self, cert: Path, key: Path) -> None:
        """Replace `cert` and `key` with this pair (each file atomically)."""
        for src, dst in ((self.cert, cert), (self.key, key)):
            tmp = dst.with_name(dst.name + ".tmp")
            tmp.write_bytes(src.read_bytes())
            os.replace(tmp, dst)


def _name(common_name: str, organization: str | None, unit: str | None = None) -> x509.Name:
    """Subject in certificate order O, OU, CN (written CN first in RFC 4514)."""
    attrs = []
    if organization is not None:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    if unit is not None:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


class CA:
    """A self-signed certificate authority that issues leaf certificates."""

    def __init__(self, directory: Path, name: str, key: ec.EllipticCurvePrivateKey,
                 cert: x509.Certificate) -> None:
        self.directory = directory
        self.name = name
        self._key = key
        self._cert = cert
        self.cert = directory / f"{self._slug(name)}.crt"
        self.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    @staticmethod
    def _slug(text: str) -> str:
        return "".join(c if c.isalnum() else "_" for c in text).lower()

    @classmethod
    def create(cls, directory: Path, name: str = "Starling Test CA") -> CA:
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        subject = _name(name, ORGANIZATION)
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(directory, name, key, cert)

    def _issue(self, stem: str, subject: x509.Name, server: bool) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        serial = x509.random_serial_number()
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self._key.public_key()), critical=False)
        )
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            ]), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        cert_path = self.directory / f"{stem}.crt"
        key_path = self.directory / f"{stem}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key, key_path)
        common_name = subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        return Issued(cert_path, key_path, serial, str(common_name))

    def issue_server(self, common_name: str = "localhost", stem: str | None = None) -> Issued:
        """A server certificate valid for localhost and 127.0.0.1."""
        return self._issue(stem or f"server-{self._slug(common_name)}",
                           _name(common_name, ORGANIZATION), server=True)

    def issue_client(self, common_name: str, organization: str | None = ORGANIZATION,
                     unit: str | None = None, stem: str | None = None) -> Issued:
        """A client certificate with subject O=<organization>[,OU=<unit>],CN=<common_name>."""
        return self._issue(stem or f"client-{self._slug(common_name)}",
                           _name(common_name, organization, unit), server=False)


def peer_serial(der: bytes) -> int:
    """Serial number of a DER certificate (what `SSLSocket.getpeercert(True)` returns)."""
    return x509.load_der_x509_certificate(der).serial_number


def peer_common_name(der: bytes) -> str:
    cert = x509.load_der_x509_certificate(der)
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
