"""A DTLS client in front of a plain-CoAP test device: OpenSSL's DTLS client
(through pyOpenSSL) with a client certificate, relaying datagrams.

aiocoap's only DTLS client is tinydtls with pre-shared keys, so the LwM2M test
device (helpers.lwm2m_device, on aiocoap) cannot speak certificate DTLS
itself.  The relay can: the device talks plain CoAP to `address`, and every
datagram goes on through one DTLS association with the gateway, and back;
requests the gateway sends to the device come through the same association.

    relay = DtlsRelay(("127.0.0.1", gateway_port), cert, key, ca)
    device = TestDevice("ep", relay.address)
"""

from __future__ import annotations

import select
import socket
import threading
from pathlib import Path

from OpenSSL import SSL


class DtlsRelay:
    def __init__(self, gateway: tuple[str, int], cert: Path, key: Path, ca: Path) -> None:
        context = SSL.Context(SSL.DTLS_CLIENT_METHOD)
        context.use_certificate_chain_file(str(cert).encode())
        context.use_privatekey_file(str(key).encode())
        context.load_verify_locations(str(ca).encode())
        context.set_verify(SSL.VERIFY_PEER, None)
        context.set_options(SSL.OP_NO_QUERY_MTU)
        self.context = context
        self.gateway = gateway
        self.plain = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.plain.bind(("127.0.0.1", 0))
        self.secure = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.secure.bind(("127.0.0.1", 0))
        self.secure.connect(gateway)
        self.device: tuple[str, int] | None = None
        self.handshakes = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.connection = self._handshake()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        """Where the device sends its plain CoAP."""
        host, port = self.plain.getsockname()
        return str(host), int(port)

    def _flush(self, connection: SSL.Connection) -> None:
        while True:
            try:
                self.secure.send(connection.bio_read(65536))
            except SSL.WantReadError:
                return

    def _handshake(self) -> SSL.Connection:
        """A new association from the same address (a device that rebooted)."""
        connection = SSL.Connection(self.context, None)
        connection.set_ciphertext_mtu(1400)
        connection.set_connect_state()
        while True:
            try:
                connection.do_handshake()
                break
            except SSL.WantReadError:
                self._flush(connection)
            timeout = connection.DTLSv1_get_timeout() or 1.0
            ready, _, _ = select.select([self.secure], [], [], timeout)
            if ready:
                connection.bio_write(self.secure.recv(65536))
            else:
                connection.DTLSv1_handle_timeout()
        self._flush(connection)
        self.handshakes += 1
        return connection

    def rehandshake(self) -> None:
        with self._lock:
            self.connection = self._handshake()

    def _run(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.plain, self.secure], [], [], 0.1)
            with self._lock:
                if self.plain in ready:
                    data, self.device = self.plain.recvfrom(65536)  # only this thread reads it
                    self.connection.send(data)
                    self._flush(self.connection)
                if self.secure in ready:
                    self._from_gateway()

    def _from_gateway(self) -> None:
        try:
            self.connection.bio_write(self.secure.recv(65536, socket.MSG_DONTWAIT))
        except OSError:  # taken by a handshake meanwhile
            return
        while True:
            try:
                data = self.connection.recv(65536)
            except (SSL.WantReadError, SSL.ZeroReturnError):
                break
            if self.device is not None:
                self.plain.sendto(data, self.device)
        self._flush(self.connection)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.plain.close()
        self.secure.close()
