"""TLS for the ssl and wss listeners: contexts from EMQ X-style `ssl_options`,
client-certificate identities, and certificate files reloaded when they change.

Reloading: every `RELOAD_INTERVAL` seconds the files' modification times are
checked; when one changed, `load_cert_chain` (and the CA list) are loaded
again into the *same* `SSLContext`, which new handshakes use at once and open
connections are not disturbed by (eclipse/mosquitto#2038 asked for this).

TLS-PSK (`ssl_options.psk_ciphers`, keys from the `emqx_psk_file` plugin):
Python 3.11's `ssl` has no PSK server callback (it arrives in 3.13), so a
listener with PSK ciphers uses `sslpsk3`'s context, which installs OpenSSL's
callback on each connection; the optional extra `starling-mqtt[psk]` brings it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

log = logging.getLogger(__name__)

RELOAD_INTERVAL = 5.0

_VERSIONS = {"tlsv1.2": ssl.TLSVersion.TLSv1_2, "tlsv1.3": ssl.TLSVersion.TLSv1_3}
#: Attribute names as EMQ X (esockd_ssl) writes them in a subject DN.
_SHORT = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU",
          "countryName": "C", "stateOrProvinceName": "ST", "localityName": "L",
          "emailAddress": "EMAILADDRESS", "domainComponent": "DC", "surname": "SN",
          "givenName": "GIVENNAME", "initials": "INITIALS", "title": "TITLE",
          "generationQualifier": "GENERATIONQUALIFIER", "serialNumber": "SERIALNUMBER",
          "pseudonym": "PSEUDONYM", "streetAddress": "STREET", "userId": "UID"}


@dataclass(frozen=True, slots=True)
class TlsOptions:
    certfile: str
    keyfile: str
    cacertfile: str = ""
    verify: str = "verify_none"  #: verify_none | verify_peer
    fail_if_no_peer_cert: bool = False
    ciphers: str = ""
    versions: str = "tlsv1.2,tlsv1.3"
    #: TLS 1.2 PSK cipher suites (EMQ X's `psk_ciphers`, comma- or colon-separated);
    #: set, the listener also accepts TLS-PSK clients (then certfile is optional).
    psk_ciphers: str = ""


#: identity -> key, or None for an unknown identity (the handshake then fails).
PskLookup = Callable[[str], bytes | None]


class _PskUnavailable(ValueError):
    pass


def _psk_context_class() -> type[ssl.SSLContext]:
    """sslpsk3's SSLContext, with its per-connection set-up done once per
    handshake (asyncio drives a handshake in several `do_handshake` calls; setting
    the accept state again half-way through breaks it)."""
    try:
        from sslpsk3 import sslpsk3 as psk  # type: ignore[import-untyped]
    except ImportError:
        raise _PskUnavailable("ssl_options.psk_ciphers needs the sslpsk3 package: "
                              "pip install 'starling-mqtt[psk]'") from None

    class PskObject(ssl.SSLObject):
        _psk_id: int | None = None

        def do_handshake(self) -> None:
            if self._psk_id is None:
                raw = psk.get_ssl_socket(self)
                self._psk_id = psk._sslpsk3.sslpsk3_set_accept_state(raw)
                psk._sslpsk3.sslpsk3_set_psk_server_callback(raw)
                psk._sslpsk3.sslpsk3_use_psk_identity_hint(raw, "")
                psk.psk_contexts[self._psk_id] = self.context
            try:
                super().do_handshake()
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                raise
            except BaseException:
                psk.psk_contexts.pop(self._psk_id, None)
                raise
            psk.psk_contexts.pop(self._psk_id, None)  # sslpsk3 would keep it forever

    class PskContext(psk.SSLPSKContext):  # type: ignore[misc]
        sslobject_class = PskObject

    return cast(type[ssl.SSLContext], PskContext)


class TlsContext:
    """An SSLContext built from TlsOptions that reloads its files when they change."""

    def __init__(self, options: TlsOptions, psk_lookup: PskLookup | None = None) -> None:
        self.options = options
        self._psk_lookup = psk_lookup
        #: TLS-PSK handshakes refused for an unknown identity.
        self.psk_refused = 0
        #: The context the listener was created with.  Each handshake is switched
        #: (in the SNI callback, which OpenSSL runs for every ClientHello) to
        #: `_current`, rebuilt from the files on each reload: a rebuilt context
        #: also forgets CAs removed from `cacertfile`, which reloading into a live
        #: context cannot do (OpenSSL's trust store only grows).
        self.context = self._build()
        self._current = self.context
        self.context.sni_callback = self._pick_context
        self._mtimes = self._stat()
        self._timer: asyncio.TimerHandle | None = None
        self.reloads = 0

    def _build(self) -> ssl.SSLContext:
        o = self.options
        ctx: ssl.SSLContext
        if o.psk_ciphers:
            psk_ctx: Any = _psk_context_class()(ssl.PROTOCOL_TLS_SERVER)
            psk_ctx.set_psk_server_callback(self._psk_key)
            ctx = psk_ctx
        else:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        versions = [_VERSIONS[v.strip().lower()] for v in o.versions.split(",")
                    if v.strip().lower() in _VERSIONS]
        if not versions:
            raise ValueError(f"ssl_options.versions: none of {o.versions!r} is supported")
        ctx.minimum_version = min(versions)
        ctx.maximum_version = max(versions)
        ciphers = o.ciphers
        if o.psk_ciphers:
            psk_ciphers = o.psk_ciphers.replace(",", ":")
            ciphers = f"{ciphers or 'DEFAULT'}:{psk_ciphers}" if o.certfile else psk_ciphers
        if ciphers:
            try:
                ctx.set_ciphers(ciphers)
            except ssl.SSLError:
                raise ValueError(f"ssl_options.ciphers: no cipher can be selected from "
                                 f"{ciphers!r}") from None
        self._load(ctx)
        if o.verify == "verify_peer":
            ctx.verify_mode = ssl.CERT_REQUIRED if o.fail_if_no_peer_cert else ssl.CERT_OPTIONAL
        elif o.verify != "verify_none":
            raise ValueError(f"ssl_options.verify must be verify_none or verify_peer, "
                             f"not {o.verify!r}")
        return ctx

    def _load(self, ctx: ssl.SSLContext) -> None:
        o = self.options
        for path in (o.certfile, o.keyfile, o.cacertfile):
            if path:  # the ssl module's own error would not say which file is missing
                with open(path, "rb"):
                    pass
        if o.certfile:  # a PSK-only listener has none
            ctx.load_cert_chain(o.certfile, o.keyfile or None)
        if o.cacertfile:
            ctx.load_verify_locations(o.cacertfile)

    def _psk_key(self, identity: str | None) -> bytes:
        """OpenSSL asks for the key of `identity` (b"" refuses the handshake)."""
        key = self._psk_lookup(identity) if self._psk_lookup and identity else None
        if not key:
            self.psk_refused += 1
            log.info("TLS-PSK: unknown identity %r", identity)
            return b""
        return key

    def _stat(self) -> tuple[float, ...]:
        paths = [p for p in (self.options.certfile, self.options.keyfile,
                             self.options.cacertfile) if p]
        return tuple(os.stat(p).st_mtime if os.path.exists(p) else 0.0 for p in paths)

    def start_watching(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(RELOAD_INTERVAL, self._check)

    def stop_watching(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        self.start_watching()
        mtimes = self._stat()
        if mtimes == self._mtimes:
            return
        self._mtimes = mtimes
        try:
            # A fresh context: a load that fails half-way (new certificate, key not
            # yet replaced) leaves the one in use untouched.
            fresh = self._build()
        except (OSError, ssl.SSLError, ValueError) as exc:
            log.error("TLS files changed but cannot be loaded (keeping the old ones): %s", exc)
            return
        self._current = fresh
        self.reloads += 1
        log.info("reloaded TLS certificate %s", self.options.certfile)

    def _pick_context(self, sslobj: ssl.SSLObject, server_name: str | None,
                      context: ssl.SSLContext) -> None:
        if self._current is not context:
            sslobj.context = self._current


def _escape(value: str) -> str:
    """An attribute value escaped as RFC 4514 (and esockd_ssl) do."""
    out = []
    raw = value.encode("utf-8")
    for i, byte in enumerate(raw):
        char = chr(byte)
        if (i == 0 and char in " #") or (i == len(raw) - 1 and char == " ") \
                or char in '"+,;<>\\':
            out.append("\\" + char)
        elif byte < 32 or byte >= 126:
            out.append(f"\\{byte:02X}")
        else:
            out.append(char)
    return "".join(out)


def subject_of(peercert: dict[str, Any] | None) -> tuple[str, str] | None:
    """(distinguished name, common name) of a verified client certificate.

    The DN is written as EMQ X writes it (esockd_ssl, RFC 4514): the most
    specific RDN first, e.g. ``CN=alice,O=Example``, multi-valued RDNs joined
    with ``+``; several common names are joined with ``,``.
    """
    if not peercert:
        return None
    rdns: list[str] = []
    common_names: list[str] = []
    for rdn in peercert.get("subject", ()):
        rdns.append("+".join(f"{_SHORT.get(name, name)}={_escape(value)}"
                             for name, value in rdn))
        common_names += [value for name, value in rdn if name == "commonName"]
    return ",".join(reversed(rdns)), ",".join(common_names)
