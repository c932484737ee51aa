"""The LwM2M registration interface, sans-IO: Register / Update query strings and
object-link payloads → `Registration`, or the CoAP code refusing them.

``POST /rd?ep=dev1&lt=300&lwm2m=1.0&b=U`` with ``</>;rt="oma.lwm2m",</1/0>,</3/0>``
registers endpoint ``dev1`` for 300 s with objects ``/1/0`` and ``/3/0``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

BAD_REQUEST = 0x80
FORBIDDEN = 0x83
NOT_FOUND = 0x84
PRECONDITION_FAILED = 0x8C
#: Bindings whose devices sleep between updates: commands wait for the next uplink.
QUEUE_BINDINGS = frozenset({"UQ", "SQ", "UQS"})
#: The query keys with a meaning of their own; any other ``k=v`` is kept as is.
KNOWN_KEYS = ("ep", "lt", "lwm2m", "b", "sms")


class RegistrationRefused(ValueError):
    """A register / update request answered with an error `code`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


@dataclass(frozen=True, slots=True)
class Links:
    """A registration payload: ``alternatePath`` and ``objectList`` (both absent
    when the payload is empty, as in EMQ X's register message)."""

    alternate_path: str = "/"
    objects: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Registration:
    endpoint: str
    lifetime: int
    version: str
    binding: str | None = None
    sms: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)
    links: Links | None = None

    @property
    def alternate_path(self) -> str:
        return "/" if self.links is None else self.links.alternate_path

    @property
    def queue_mode(self) -> bool:
        return self.binding in QUEUE_BINDINGS

    def message_data(self) -> dict[str, Any]:
        """``data`` of the register / update message, EMQ X's keys in EMQ X's order."""
        data: dict[str, Any] = {"ep": self.endpoint, "lt": self.lifetime, "lwm2m": self.version}
        if self.binding is not None:
            data["b"] = self.binding
        if self.sms is not None:
            data["sms"] = self.sms
        data.update(self.extra)
        if self.links is not None:
            data["alternatePath"] = self.links.alternate_path
            data["objectList"] = list(self.links.objects)
        return data


@dataclass(frozen=True, slots=True)
class Update:
    lifetime: int | None = None
    binding: str | None = None
    sms: str | None = None
    links: Links | None = None


def parse_query(items: Sequence[str]) -> dict[str, str]:
    """Uri-Query options as a dict; an item without ``=`` is refused (4.00)."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise RegistrationRefused(BAD_REQUEST, f"query item {item!r} is not key=value")
        out[key] = value
    return out


def parse_links(payload: bytes) -> Links | None:
    """The object links of a register / update payload (None when it is empty)."""
    text = payload.decode("utf-8", "replace").strip()
    if not text:
        return None
    alternate = "/"
    paths: list[str] = []
    for link in text.split(","):
        target, _, params = link.strip().partition(";")
        path = target.strip().strip("<>").strip()
        if not path:
            continue
        if 'rt="oma.lwm2m"' in params.replace(" ", "") or "rt=oma.lwm2m" in params:
            alternate = path if path.startswith("/") else "/" + path
            continue
        paths.append(path)
    alternate = alternate.rstrip("/") or "/"
    if alternate != "/":
        paths = [p[len(alternate):] if p.startswith(alternate + "/") else p for p in paths]
    return Links(alternate, tuple(paths))


def parse_register(query: Sequence[str], payload: bytes, lifetime_min: int,
                   lifetime_max: int) -> Registration:
    params = parse_query(query)
    endpoint = params.get("ep", "")
    if not endpoint:
        raise RegistrationRefused(BAD_REQUEST, "register without an endpoint name (ep)")
    if "lt" not in params:
        raise RegistrationRefused(BAD_REQUEST, "register without a lifetime (lt)")
    lifetime = _lifetime(params["lt"], lifetime_min, lifetime_max)
    version = params.get("lwm2m", "1.0")
    if version != "1" and not version.startswith("1."):
        raise RegistrationRefused(PRECONDITION_FAILED, f"unsupported LwM2M version {version!r}")
    extra = {k: v for k, v in params.items() if k not in KNOWN_KEYS}
    return Registration(endpoint, lifetime, version, params.get("b"), params.get("sms"),
                        extra, parse_links(payload))


def parse_update(query: Sequence[str], payload: bytes, lifetime_min: int,
                 lifetime_max: int) -> Update:
    params = parse_query(query)
    lifetime = (_lifetime(params["lt"], lifetime_min, lifetime_max)
                if "lt" in params else None)
    return Update(lifetime, params.get("b"), params.get("sms"), parse_links(payload))


def apply_update(registration: Registration, update: Update) -> Registration:
    return replace(
        registration,
        lifetime=registration.lifetime if update.lifetime is None else update.lifetime,
        binding=registration.binding if update.binding is None else update.binding,
        sms=registration.sms if update.sms is None else update.sms,
        links=registration.links if update.links is None else update.links)


def _lifetime(text: str, low: int, high: int) -> int:
    try:
        lifetime = int(text)
    except ValueError:
        raise RegistrationRefused(BAD_REQUEST, f"lifetime {text!r} is not a number") from None
    if not low <= lifetime <= high:
        raise RegistrationRefused(BAD_REQUEST,
                                  f"lifetime {lifetime} outside [{low}, {high}] seconds")
    return lifetime
