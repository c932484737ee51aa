"""DTLS 1.2 with X.509 certificates, sans-IO: OpenSSL (through pyOpenSSL) over
memory, one `DtlsSession` per peer, datagrams in and out as bytes.

Python's `ssl` module has no DTLS, and aiocoap's DTLS server (tinydtls) speaks
pre-shared keys only; pyOpenSSL exposes OpenSSL's DTLS on memory BIOs, so the
asyncio adapter (`dtls_x509`) owns the socket and this module the protocol:

- `accept` answers a first ClientHello with a HelloVerifyRequest carrying a
  cookie (RFC 6347 §4.2.1) and keeps nothing; only a ClientHello that returns
  a valid cookie, which proves the client receives at its address, makes a
  `DtlsSession`.  The cookie is an HMAC of the address under a secret that
  changes every `COOKIE_LIFETIME` seconds (the previous one still accepted).
- OpenSSL writes each record to memory; `outgoing` packs whole records into
  datagrams of at most `mtu` bytes, so a certificate flight fragmented by
  OpenSSL leaves as several datagrams rather than one too large for the path.
- Retransmission of handshake flights is OpenSSL's: the adapter calls
  `on_timeout` when `timeout()` says so.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from OpenSSL import SSL

from starling.transport import TlsOptions

#: A cookie's secret is replaced this often (seconds).
COOKIE_LIFETIME = 300.0
#: OpenSSL's DTLS1_2_VERSION (pyOpenSSL names only the TLS versions): no DTLS 1.0.
_DTLS1_2 = 0xFEFD
_RECORD_HEADER = 13  # type, version (2), epoch (2), sequence (6), length (2)
_HANDSHAKE = 22
_CLIENT_HELLO = 1
#: Largest read from OpenSSL's memory BIO at once.
_READ = 1 << 16

Address = tuple[str, int]


class DtlsError(Exception):
    """The session is over: a fatal alert, a failed handshake, or the peer's close_notify."""


class DtlsClosed(DtlsError):
    """The peer ended the session (close_notify): an ordinary end."""


def is_client_hello(datagram: bytes) -> bool:
    """A datagram opening with a ClientHello of epoch 0: a client starting afresh."""
    return (len(datagram) > _RECORD_HEADER and datagram[0] == _HANDSHAKE
            and datagram[3:5] == b"\0\0" and datagram[_RECORD_HEADER] == _CLIENT_HELLO)


def pack_datagrams(data: bytes, mtu: int) -> list[bytes]:
    """Records OpenSSL wrote back to back, grouped into datagrams of at most `mtu`
    bytes; a record is never split (a record larger than `mtu` goes alone)."""
    datagrams: list[bytes] = []
    current = bytearray()
    offset = 0
    while offset + _RECORD_HEADER <= len(data):
        end = offset + _RECORD_HEADER + int.from_bytes(data[offset + 11:offset + 13], "big")
        record = data[offset:end]
        offset = end
        if current and len(current) + len(record) > mtu:
            datagrams.append(bytes(current))
            current.clear()
        current += record
    if current:
        datagrams.append(bytes(current))
    return datagrams


class CookieJar:
    """Stateless HelloVerifyRequest cookies: HMAC-SHA256 of the client's address."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._secrets = [os.urandom(32), os.urandom(32)]  # current, previous
        self._rotated = clock()

    def _rotate(self) -> None:
        if self.clock() - self._rotated >= COOKIE_LIFETIME:
            self._secrets = [os.urandom(32), self._secrets[0]]
            self._rotated = self.clock()

    @staticmethod
    def _mac(secret: bytes, address: Address) -> bytes:
        return hmac.new(secret, f"{address[0]}|{address[1]}".encode(), hashlib.sha256).digest()

    def make(self, address: Address) -> bytes:
        self._rotate()
        return self._mac(self._secrets[0], address)

    def check(self, address: Address, cookie: bytes) -> bool:
        self._rotate()
        return any(hmac.compare_digest(self._mac(secret, address), cookie)
                   for secret in self._secrets)


def _address(connection: SSL.Connection) -> Address:
    address: Address = connection.get_app_data()
    return address


def server_context(options: TlsOptions, cookies: CookieJar) -> SSL.Context:
    """OpenSSL's DTLS server context from `options` (the files already checked
    readable by the config).  `ValueError` says what is wrong and with which file."""
    context = SSL.Context(SSL.DTLS_SERVER_METHOD)
    context.set_min_proto_version(_DTLS1_2)
    # No MTU discovery on a memory BIO: OpenSSL fragments to `set_ciphertext_mtu`.
    context.set_options(SSL.OP_NO_QUERY_MTU | SSL.OP_NO_RENEGOTIATION)
    try:
        context.use_certificate_chain_file(os.fsencode(options.certfile))
    except SSL.Error:
        raise ValueError(f"{options.certfile}: no PEM certificate in it") from None
    try:
        context.use_privatekey_file(os.fsencode(options.keyfile or options.certfile))
    except SSL.Error:
        raise ValueError(f"{options.keyfile or options.certfile}: no PEM private key "
                         "in it") from None
    try:
        context.check_privatekey()
    except SSL.Error:
        raise ValueError(f"{options.keyfile}: the key does not match the certificate "
                         f"{options.certfile}") from None
    if options.ciphers:
        try:
            context.set_cipher_list(options.ciphers.replace(",", ":").encode())
        except SSL.Error:
            raise ValueError(f"no cipher can be selected from {options.ciphers!r}") from None
    if options.cacertfile:
        try:
            context.load_verify_locations(os.fsencode(options.cacertfile))
        except SSL.Error:
            raise ValueError(f"{options.cacertfile}: no PEM CA certificate in it") from None
    if options.verify == "verify_peer":
        mode = SSL.VERIFY_PEER
        if options.fail_if_no_peer_cert:
            mode |= SSL.VERIFY_FAIL_IF_NO_PEER_CERT
        context.set_verify(mode, None)
    context.set_cookie_generate_callback(lambda c: cookies.make(_address(c)))
    context.set_cookie_verify_callback(lambda c, cookie: cookies.check(_address(c), cookie))
    return context


@dataclass(slots=True)
class Accepted:
    """What `accept` made of a ClientHello: the datagrams to answer with, and the
    session when the ClientHello carried a valid cookie."""

    replies: list[bytes]
    session: DtlsSession | None


class DtlsSession:
    """One peer's DTLS association, from its verified ClientHello on."""

    def __init__(self, connection: SSL.Connection, mtu: int) -> None:
        self.connection = connection
        self.mtu = mtu
        self.established = False

    @classmethod
    def accept(cls, context: SSL.Context, address: Address, datagram: bytes,
               mtu: int) -> Accepted:
        """Run the cookie exchange on a ClientHello from `address`."""
        connection = SSL.Connection(context, None)
        connection.set_app_data(address)
        connection.set_ciphertext_mtu(mtu)
        connection.set_accept_state()
        connection.bio_write(datagram)
        session = cls(connection, mtu)
        try:
            connection.DTLSv1_listen()
        except SSL.WantReadError:  # no valid cookie: a HelloVerifyRequest was written
            return Accepted(session.outgoing(), None)
        except SSL.Error:
            return Accepted([], None)
        session._advance()
        return Accepted(session.outgoing(), session)

    def receive(self, datagram: bytes) -> list[bytes]:
        """Feed one datagram; the application data (CoAP messages) it carried.
        `DtlsError` when the association is over."""
        self.connection.bio_write(datagram)
        if not self.established:
            self._advance()
            if not self.established:
                return []
        plaintexts = []
        while True:
            try:
                plaintexts.append(self.connection.recv(_READ))
            except SSL.WantReadError:
                return plaintexts
            except SSL.ZeroReturnError:
                raise DtlsClosed("closed by the peer") from None
            except SSL.Error as exc:
                raise DtlsError(_reason(exc)) from None

    def _advance(self) -> None:
        try:
            self.connection.do_handshake()
        except SSL.WantReadError:
            return
        except SSL.Error as exc:
            raise DtlsError(_reason(exc)) from None
        self.established = True

    def send(self, plaintext: bytes) -> None:
        """Seal one CoAP message; the record waits in `outgoing`."""
        try:
            self.connection.send(plaintext)
        except SSL.Error as exc:
            raise DtlsError(_reason(exc)) from None

    def outgoing(self) -> list[bytes]:
        """The datagrams OpenSSL wrote since the last call."""
        chunks = []
        while True:
            try:
                chunks.append(self.connection.bio_read(_READ))
            except SSL.WantReadError:
                break
        return pack_datagrams(b"".join(chunks), self.mtu) if chunks else []

    def timeout(self) -> float | None:
        """Seconds until OpenSSL wants `on_timeout` (a flight to retransmit)."""
        return self.connection.DTLSv1_get_timeout()

    def on_timeout(self) -> None:
        try:
            self.connection.DTLSv1_handle_timeout()
        except SSL.Error as exc:
            raise DtlsError(_reason(exc)) from None

    def close(self) -> None:
        """Queue a close_notify alert (sent with `outgoing`)."""
        if self.established:
            with contextlib.suppress(SSL.Error):
                self.connection.shutdown()

    def peer_subject(self) -> str | None:
        """The client certificate's subject (``CN=...,O=...``), when it sent one."""
        cert = self.connection.get_peer_certificate(as_cryptography=True)
        return None if cert is None else cert.subject.rfc4514_string()


def _reason(exc: SSL.Error) -> str:
    """OpenSSL's reason strings, for the log ("certificate verify failed")."""
    reasons = [entry[2] for entry in exc.args[0] if isinstance(entry, tuple) and len(entry) > 2] \
        if exc.args and isinstance(exc.args[0], list) else []
    return ", ".join(str(r) for r in reasons) or type(exc).__name__
