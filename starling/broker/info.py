"""The values the core hands to hooks, plugins, rules and the API about a client.

`ClientInfo` is a frozen copy of who a client is, whatever its protocol (MQTT
over any transport, or a gateway's MQTT-SN, STOMP, CoAP, LwM2M device): what
EMQ X v3 passes as ``Credentials`` / ``ClientInfo``.  Callbacks can keep it,
queue it or read it later; it never changes under them and reaches no live
object of the core.  `AuthResult` and `AuthStep` are the accumulators of the
authentication hooks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from starling.mqtt import ReasonCode

#: `ClientInfo.protocol` of the MQTT listeners (TCP, TLS, WebSocket).
PROTOCOL_MQTT: Final = "mqtt"


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """Who a client is (EMQ X's ClientInfo): built by the core, never changed.

    Before the client is connected (`client.connect`, `client.authenticate`,
    the will's ACL check) `connected_at` is None and `is_superuser` is what
    authentication has decided so far."""

    client_id: str
    username: str | None
    #: The client's address; `peerport` its port ("" / 0 when unknown).
    peerhost: str
    peerport: int
    #: "mqtt", or a gateway's ("mqtt-sn", "stomp", "coap", "lwm2m").
    protocol: str = PROTOCOL_MQTT
    #: MQTT's protocol level (3, 4, 5), or the gateway protocol's version.
    proto_ver: int = 4
    #: As EMQ X's API shows it: "MQTT", "MQIsdp" (3.1), or the gateway's name.
    proto_name: str = "MQTT"
    #: The listener it came through, e.g. "mqtt:tcp:default".
    listener: str = ""
    zone: str = "external"
    clean_start: bool = True
    #: Seconds; 0 = none.
    keepalive: int = 0
    #: Epoch seconds of the successful connect; None while connecting.
    connected_at: float | None = None
    is_superuser: bool = False
    is_bridge: bool = False
    #: Subject of the client certificate (TLS), None without one.
    peercert: str | None = None
    #: What the client presented, for authentication and the auth plugins'
    #: ``%P`` placeholder; never shown in a repr (logs).
    password: bytes | None = field(default=None, repr=False)


@dataclass(slots=True)
class AuthResult:
    """The accumulator of the `client.authenticate` hook."""

    reason_code: ReasonCode = ReasonCode.SUCCESS
    anonymous: bool = True
    superuser: bool = False


@dataclass(slots=True)
class AuthStep:
    """What a `client.enhanced_authenticate` callback answers for one AUTH step
    (MQTT 5.0 §4.12): ``continue`` (send `data` back in AUTH 0x18 and wait for
    the client's next AUTH), ``success`` or ``failure``."""

    status: str
    data: bytes | None = None
    superuser: bool = False
