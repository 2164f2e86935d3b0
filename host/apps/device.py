"""The device behind the TLS servers (the paper's smart plug), shared by HTTPS and CoAP.

Sans-IO: `Device.handle(method, path, body)` gives a protocol-neutral `Reply`; the HTTP and CoAP
cores map its `Outcome` to their own status codes. Resources:

- `sensors/temperature` (GET): a simulated sensor, `{"celsius": 21.5, "time": "...Z"}`;
- `actuators/plug` (GET, PUT `{"on": true}`): the plug's state, kept for the life of the process.

`Status.of(tandem)` is what the status pages show: cards, identity, and the last session.
All calls happen on the event loop's thread, so the device needs no lock.
"""
from __future__ import annotations

import enum
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

TEMPERATURE = "sensors/temperature"
PLUG = "actuators/plug"
BASE_CELSIUS = 21.5
SWING_CELSIUS = 0.5       # the simulated room warms and cools by this much ...
PERIOD_SECONDS = 600.0    # ... over ten minutes


class Outcome(enum.Enum):
    """What became of a request, before any protocol gives it a number."""

    CONTENT = "content"                 # HTTP 200, CoAP 2.05
    CHANGED = "changed"                 # HTTP 200, CoAP 2.04
    BAD_REQUEST = "bad request"         # HTTP 400, CoAP 4.00
    NOT_FOUND = "not found"             # HTTP 404, CoAP 4.04
    METHOD_NOT_ALLOWED = "not allowed"  # HTTP 405, CoAP 4.05


@dataclass(frozen=True)
class Reply:
    outcome: Outcome
    document: dict[str, Any]
    allowed: tuple[str, ...] = ()       # the resource's methods, for METHOD_NOT_ALLOWED

    def json(self) -> bytes:
        return json.dumps(self.document).encode()


@dataclass(frozen=True)
class Resource:
    """A path, its methods, and its CoRE link attributes (RFC 6690 rt, CoRE interface if)."""

    path: str
    methods: tuple[str, ...]
    title: str
    resource_type: str
    interface: str


RESOURCES = (
    Resource(TEMPERATURE, ("GET",), "Temperature sensor", "temperature-c", "core.s"),
    Resource(PLUG, ("GET", "PUT"), "Plug", "plug", "core.a"),
)


class BadPayload(ValueError):
    """The body of a PUT does not say what the resource expects."""


def utc_iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_plug_state(body: bytes) -> bool:
    """`{"on": true}` or `{"on": false}`; anything else raises BadPayload with a reason."""
    try:
        document = json.loads(body)
    except UnicodeDecodeError:
        raise BadPayload("the body is not UTF-8 text") from None
    except RecursionError:   # "[[[[..." deeper than the parser's stack
        raise BadPayload("the body's JSON is nested too deeply") from None
    except ValueError:   # JSONDecodeError, and numbers over Python's 4300-digit limit
        raise BadPayload("the body is not JSON") from None   # the parser's words name its internals
    if not isinstance(document, dict) or set(document) != {"on"} or not isinstance(document["on"], bool):
        raise BadPayload('expected {"on": true} or {"on": false}')
    return bool(document["on"])


@dataclass
class Device:
    """One per server process, so the plug's state outlives TLS sessions."""

    clock: Callable[[], float] = time.time
    plug_on: bool = False
    started: float = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def temperature(self) -> dict[str, Any]:
        """A slow sine around 21.5 degrees: exactly 21.5 when the device starts."""
        now = self.clock()
        phase = 2 * math.pi * (now - self.started) / PERIOD_SECONDS
        return {"celsius": round(BASE_CELSIUS + SWING_CELSIUS * math.sin(phase), 1), "time": utc_iso(now)}

    def plug(self) -> dict[str, Any]:
        return {"on": self.plug_on}

    def resource(self, path: str) -> Resource | None:
        path = path.strip("/")
        return next((r for r in RESOURCES if r.path == path), None)

    def handle(self, method: str, path: str, body: bytes = b"") -> Reply:
        """A request on a resource path (with or without slashes around it)."""
        resource = self.resource(path)
        if resource is None:
            return Reply(Outcome.NOT_FOUND, {"error": f"no resource at /{path.strip('/')}"})
        if method not in resource.methods:
            return Reply(Outcome.METHOD_NOT_ALLOWED, {"error": f"{method} is not allowed on /{resource.path}"},
                         resource.methods)
        if resource.path == TEMPERATURE:
            return Reply(Outcome.CONTENT, self.temperature())
        if method == "GET":
            return Reply(Outcome.CONTENT, self.plug())
        try:
            self.plug_on = parse_plug_state(body)
        except BadPayload as exc:
            return Reply(Outcome.BAD_REQUEST, {"error": str(exc)})
        return Reply(Outcome.CHANGED, self.plug())


_process_device: Device | None = None


def process_device() -> Device:
    """The process's one device: HTTPS and CoAP clients switch the same plug."""
    global _process_device
    if _process_device is None:
        _process_device = Device()
    return _process_device


@dataclass(frozen=True)
class LastSession:
    peer: str
    card: str
    suite: str
    record_mode: str
    handshake_ms: float
    apdus: int
    bytes_to_card: int
    bytes_from_card: int
    client_subject: str | None = None


@dataclass(frozen=True)
class Status:
    """The status page's content, read from a TlsTandem (any object with its attributes)."""

    cards: list[str]
    identity: str
    subject: str
    record_mode: str
    last_session: LastSession | None
    plug_on: bool
    # The commonName of the client certificate the card verified for the session asking (None: none).
    client_subject: str | None = None

    @classmethod
    def of(cls, tandem: Any, device: Device, client_subject: str | None = None) -> Status:
        subject = getattr(tandem, "identity_subject", "")
        if callable(subject):
            subject = subject()
        last = getattr(tandem, "last_session", None)
        return cls(cards=[str(slot.name) for slot in getattr(tandem, "slots", [])],
                   identity=str(getattr(tandem, "identity", "")), subject=str(subject or ""),
                   record_mode=str(getattr(tandem, "record_mode", "")),
                   last_session=None if last is None else LastSession(
                       peer=last.peer, card=last.card, suite=last.suite_name, record_mode=last.record_mode,
                       handshake_ms=round(last.handshake_seconds * 1000, 1), apdus=last.apdus,
                       bytes_to_card=last.bytes_to_card, bytes_from_card=last.bytes_from_card,
                       client_subject=getattr(last, "client_subject", None)),
                   plug_on=device.plug_on, client_subject=client_subject)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
