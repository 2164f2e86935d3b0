"""CoAP over UDP and DTLS (RFC 7252 messaging, RFC 7641 Observe) on the device's resources.

Three layers, the first two sans-IO:

- The datagram format (RFC 7252 3): `encode_datagram` / `decode_datagram` for Ver|T|TKL, Code,
  Message ID, Token, then the options and payload of `host.apps.coap` (shared with CoAP over
  TCP). `UdpFormatError` keeps the header it could read, so that a malformed Confirmable
  message can still be rejected with a matching Reset (RFC 7252 4.2).
- `CoapUdpEndpoint`: the server's side of one client endpoint (one address and port, or one
  DTLS association). Datagrams and the time in (`receive_datagram(data, now)`, `on_timer(now)`),
  datagrams out (`datagrams_to_send()`), `next_deadline()` for the edge's timer. It answers
  requests with the shared `CoapResponder`:
    * CON -> piggybacked ACK; a request still unanswered after `ack_delay` (a slow resource) gets
      an empty ACK and later its response as a separate CON (RFC 7252 5.2.1, 5.2.2);
    * NON -> NON response with a fresh Message ID (5.2.3);
    * deduplication by Message ID (4.5): a duplicate CON gets the same ACK again, from a cache
      kept EXCHANGE_LIFETIME (CON) or NON_LIFETIME (NON), at most `MAX_EXCHANGES` entries;
    * retransmission of its own CONs (separate responses, CON notifications) until ACK or RST:
      ACK_TIMEOUT 2 s times a random factor up to 1.5, doubled, MAX_RETRANSMIT 4 (4.2, 4.8);
      NSTART 1: one CON outstanding, the others wait (4.7);
    * Reset: CON pings, CONs with a reserved code class or a format error, and responses we never
      asked for are rejected with RST (4.2); ACK and RST are matched by Message ID;
    * Observe (RFC 7641) on `/sensors/temperature`: a GET with Observe 0 registers its token, one
      with Observe 1 or an RST to a notification cancels it; notifications when the reading
      changes (and at least every `Max-Age`), NON, with a CON every `con_interval` to see that the
      client is still there (4.5); a CON notification never acknowledged ends the observation;
    * Block2 for representations larger than a datagram (RFC 7959 2.4, `host.apps.coap`), Block1
      uploads reassembled.
  Slow resources are the edge's: the endpoint hands a `SlowRequest` to the edge (`work()`) and
  takes its result back with `complete()`.
- `coap_udp_application(device)`: a `host.dtls` application (the association interface:
  `recv()`, `send()`, `close()`) that runs one endpoint per association, so the same code
  serves `coaps://` (DTLS, `host.dtls.DtlsServer`) and `coap://` (`host.apps.udp.UdpServer`).

The slow resource is `/sensors/temperature/average`: the mean of `AVERAGE_SAMPLES` readings taken
`AVERAGE_INTERVAL` seconds apart, longer than the client's ACK timer.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import logging
import random
import statistics
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from host.apps.coap import (
    MAX_TOKEN_LENGTH,
    PAYLOAD_MARKER,
    CoapFormatError,
    CoapMessage,
    CoapResponder,
    Code,
    ContentFormat,
    OptionNumber,
    block_option,
    core_link_format,
    decode_options,
    decode_uint,
    dotted,
    encode_options,
    encode_uint,
    is_request,
    is_success,
    reply,
    unsupported_option,
)
from host.apps.coap_blockwise import BlockError
from host.apps.device import RESOURCES, TEMPERATURE, Device, Resource, process_device, utc_iso
from host.dtls import DtlsAssociation
from host.se_tls import SessionInfo
from host.tls.record_layer import PeerClosed

log = logging.getLogger(__name__)

VERSION = 1
HEADER_SIZE = 4
MAX_MESSAGE_ID = 0xFFFF
# RFC 7252 4.6: a message fits one datagram; 1152 bytes of message when the path MTU is unknown.
DEFAULT_MAX_MESSAGE_SIZE = 1152
MIN_MESSAGE_SIZE = 128          # below this a 16-byte Block2 piece with its options may not fit
MAX_BODY = 8192                 # Block1 uploads
MAX_EXCHANGES = 128             # Message IDs remembered per endpoint (deduplication)
OBSERVE_SEQUENCE_MODULO = 1 << 24   # RFC 7641 4.4: a 24-bit sequence number
DEFAULT_MAX_AGE = 60            # RFC 7252 5.10.5


class MessageType(enum.IntEnum):
    """RFC 7252 3: T."""

    CON = 0
    NON = 1
    ACK = 2
    RST = 3


@dataclass(frozen=True)
class TransmissionParameters:
    """RFC 7252 4.8 (seconds); the defaults are the RFC's."""

    ack_timeout: float = 2.0
    ack_random_factor: float = 1.5
    max_retransmit: int = 4
    exchange_lifetime: float = 247.0
    non_lifetime: float = 145.0


@dataclass(frozen=True)
class UdpMessage:
    """One datagram's message: the RFC 7252 3 header fields and the shared `CoapMessage`."""

    type: MessageType
    message_id: int
    message: CoapMessage

    @property
    def empty(self) -> bool:
        return self.message.code == Code.EMPTY


class UdpFormatError(CoapFormatError):
    """A datagram that is no well-formed CoAP message; `type` and `message_id` are None when not
    even the 4-byte header was there."""

    def __init__(self, reason: str, type_: MessageType | None = None, message_id: int | None = None) -> None:
        super().__init__(reason)
        self.type = type_
        self.message_id = message_id


class VersionError(UdpFormatError):
    """Ver is not 1: RFC 7252 3 says such messages are silently ignored."""


def encode_datagram(message: UdpMessage) -> bytes:
    """RFC 7252 3: Ver|T|TKL, Code, Message ID, Token, Options, 0xFF and Payload."""
    token = message.message.token
    if len(token) > MAX_TOKEN_LENGTH:
        raise ValueError(f"a token has at most {MAX_TOKEN_LENGTH} bytes")
    if not 0 <= message.message_id <= MAX_MESSAGE_ID:
        raise ValueError(f"Message ID {message.message_id} is not in 0..{MAX_MESSAGE_ID}")
    body = encode_options(message.message.options)
    if message.message.payload:
        body += bytes([PAYLOAD_MARKER]) + message.message.payload
    header = bytes([VERSION << 6 | message.type << 4 | len(token), message.message.code])
    return header + message.message_id.to_bytes(2, "big") + token + body


def decode_datagram(data: bytes) -> UdpMessage:
    """The message of one datagram; UdpFormatError (VersionError for Ver != 1) if malformed
    (RFC 7252 3, 4.1: an Empty message is the 4-byte header alone)."""
    if len(data) < HEADER_SIZE:
        raise UdpFormatError(f"{len(data)} bytes are less than the 4-byte header")
    type_, message_id = MessageType(data[0] >> 4 & 0x3), int.from_bytes(data[2:4], "big")
    if data[0] >> 6 != VERSION:
        raise VersionError(f"version {data[0] >> 6}", type_, message_id)
    token_length, code = data[0] & 0x0F, data[1]
    if token_length > MAX_TOKEN_LENGTH:
        raise UdpFormatError(f"token length {token_length} is over {MAX_TOKEN_LENGTH}", type_, message_id)
    if code == Code.EMPTY and len(data) > HEADER_SIZE:
        raise UdpFormatError("an Empty message has bytes after its Message ID", type_, message_id)
    if len(data) < HEADER_SIZE + token_length:
        raise UdpFormatError("the token runs past the end of the datagram", type_, message_id)
    try:
        options, payload = decode_options(data[HEADER_SIZE + token_length:])
    except CoapFormatError as exc:
        raise UdpFormatError(str(exc), type_, message_id) from None
    token = bytes(data[HEADER_SIZE:HEADER_SIZE + token_length])
    return UdpMessage(type_, message_id, CoapMessage(code, token, options, payload))


def datagram_size(message: CoapMessage) -> int:
    """A message's size on the wire as CoAP over UDP sends it (what `CoapResponder` measures)."""
    return len(encode_datagram(UdpMessage(MessageType.ACK, 0, message)))


# -- the endpoint --------------------------------------------------------------------------------

AVERAGE = "sensors/temperature/average"
AVERAGE_SAMPLES = 4
AVERAGE_INTERVAL = 1.0   # seconds between samples: 3 s in all, past the client's 2-3 s ACK timer
AVERAGE_RESOURCE = Resource(AVERAGE, ("GET",), "Temperature averaged over 3 s", "temperature-c", "core.s")
UDP_RESOURCES = (*RESOURCES, AVERAGE_RESOURCE)
OBSERVABLE = (TEMPERATURE,)


@dataclass(frozen=True)
class SlowRequest:
    """A request the edge answers in its own time: `key` goes back with `complete()`."""

    key: int
    path: str
    request: CoapMessage


@dataclass
class _Exchange:
    """A Message ID seen from the client (RFC 7252 4.5): what was answered, until `expires`."""

    expires: float
    answer: bytes | None = None    # the ACK (piggybacked or empty) of a CON, resent for a duplicate


@dataclass
class _Pending:
    """A request whose response is the edge's (a slow resource)."""

    received: UdpMessage
    ack_at: float | None          # when its empty ACK goes (CON not yet acknowledged), else None


@dataclass
class _Transmission:
    """One of our CONs (RFC 7252 4.2): retransmitted at `next_at` until ACK, RST or the last try."""

    datagram: bytes
    message_id: int
    token: bytes
    timeout: float
    next_at: float
    retransmissions: int = 0
    observation: bool = False


@dataclass
class _Observation:
    """An RFC 7641 observer of the temperature: its registration request and what it was told."""

    request: CoapMessage
    celsius: float | None
    sent_at: float
    con_at: float                  # when the last CON notification went (4.5)
    sequence: int = 0


@dataclass
class CoapUdpEndpoint:
    """Sans-IO server side of one CoAP-over-UDP client endpoint (see the module docstring).

    `receive_datagram(data, now)` and `on_timer(now)` (at `next_deadline()`), then send every
    datagram of `datagrams_to_send()` and run every `SlowRequest` of `work()`, giving its result
    to `complete()`. Times are seconds on one monotonic clock; `rng` draws the ACK timeouts' random
    factor and the first Message ID.
    """

    device: Device
    client: str = "-"   # the client's address, in every log line
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    params: TransmissionParameters = field(default_factory=TransmissionParameters)
    ack_delay: float = 1.0          # a request not answered by then gets an empty ACK (5.2.2)
    observe_interval: float = 1.0   # how often observed resources are read
    con_interval: float = 30.0      # notifications go CON at least this often (RFC 7641 4.5)
    max_age: int = DEFAULT_MAX_AGE  # notifications at least this often (seconds)
    rng: random.Random = field(default_factory=random.Random)
    requests: int = field(default=0, init=False)
    _responder: CoapResponder = field(init=False, repr=False)
    _out: list[bytes] = field(default_factory=list, init=False, repr=False)
    _work: list[SlowRequest] = field(default_factory=list, init=False, repr=False)
    _seen: collections.OrderedDict[int, _Exchange] = field(default_factory=collections.OrderedDict, init=False,
                                                           repr=False)
    _pending: dict[int, _Pending] = field(default_factory=dict, init=False, repr=False)
    _next_key: int = field(default=0, init=False, repr=False)
    _next_mid: int = field(init=False, repr=False)
    _outstanding: _Transmission | None = field(default=None, init=False, repr=False)
    _queue: collections.deque[tuple[CoapMessage, bool]] = field(default_factory=collections.deque, init=False,
                                                               repr=False)
    _observations: dict[bytes, _Observation] = field(default_factory=dict, init=False, repr=False)
    _notified: collections.OrderedDict[int, bytes] = field(default_factory=collections.OrderedDict, init=False,
                                                            repr=False)  # NON notifications' Message IDs -> token
    _observe_at: float | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_message_size < MIN_MESSAGE_SIZE:
            raise ValueError(f"a CoAP endpoint needs messages of at least {MIN_MESSAGE_SIZE} bytes, "
                             f"not {self.max_message_size}")
        self._responder = CoapResponder(self.device, MAX_BODY, datagram_size, lambda: self.max_message_size,
                                        lambda: True, self.client,
                                        core_link_format(UDP_RESOURCES, OBSERVABLE))
        self._next_mid = self.rng.randrange(MAX_MESSAGE_ID + 1)   # RFC 7252 4.4: a random start

    # -- the edge's side ----------------------------------------------------------------------

    def datagrams_to_send(self) -> list[bytes]:
        out, self._out = self._out, []
        return out

    def work(self) -> list[SlowRequest]:
        work, self._work = self._work, []
        return work

    @property
    def observers(self) -> int:
        return len(self._observations)

    def next_deadline(self) -> float | None:
        times = [p.ack_at for p in self._pending.values() if p.ack_at is not None]
        if self._outstanding is not None:
            times.append(self._outstanding.next_at)
        if self._observe_at is not None:
            times.append(self._observe_at)
        return min(times, default=None)

    def on_timer(self, now: float) -> None:
        """Empty ACKs whose time has come, retransmissions, and the observed resources' check."""
        for pending in self._pending.values():
            if pending.ack_at is not None and pending.ack_at <= now:
                pending.ack_at = None
                self._acknowledge(pending.received, CoapMessage(Code.EMPTY), now, empty=True)
        transmission = self._outstanding
        if transmission is not None and transmission.next_at <= now:
            if transmission.retransmissions >= self.params.max_retransmit:
                log.info("%s: CoAP: no ACK for message %d after %d retransmissions: given up", self.client,
                         transmission.message_id, transmission.retransmissions)
                self._give_up(transmission, now)
            else:
                transmission.retransmissions += 1
                transmission.timeout *= 2
                transmission.next_at = now + transmission.timeout
                self._out.append(transmission.datagram)
        if self._observe_at is not None and self._observe_at <= now:
            self._notify(now)

    def receive_datagram(self, data: bytes, now: float) -> None:
        """One datagram from the client (RFC 7252 4.2-4.5)."""
        self._forget_expired(now)
        try:
            received = decode_datagram(data)
        except VersionError:
            return   # RFC 7252 3: silently ignored
        except UdpFormatError as exc:
            log.info("%s: CoAP: malformed message: %s", self.client, exc)
            if exc.type is MessageType.CON and exc.message_id is not None:
                self._reset(exc.message_id)
            return
        code = received.message.code
        if received.type in (MessageType.ACK, MessageType.RST):
            if received.empty:   # we send no requests: an ACK with a response matches nothing
                self._acknowledged(received, now)
            return
        if received.empty:   # CON: a CoAP ping (4.3); NON: never empty; both rejected
            if received.type is MessageType.CON:
                self._reset(received.message_id)
            return
        if not is_request(code):
            log.debug("%s: CoAP: rejected a %s message with code %s", self.client, received.type.name, dotted(code))
            if received.type is MessageType.CON:
                self._reset(received.message_id)   # a response we never asked for, or a reserved class
            return
        self._request(received, now)

    def complete(self, key: int, response: CoapMessage, now: float) -> None:
        """The edge's response to `SlowRequest` `key` (its token is set here)."""
        pending = self._pending.pop(key, None)
        if pending is None:
            return
        request = pending.received.message
        try:
            block2 = block_option(request, OptionNumber.BLOCK2)
        except BlockError:
            block2 = None
        fitted = self._responder.fit(replace(response, token=request.token), block2)
        if fitted is None:   # not possible with MIN_MESSAGE_SIZE: a bare 5.00 always fits
            fitted = CoapMessage(Code.INTERNAL_SERVER_ERROR, request.token)
        if pending.received.type is MessageType.NON:
            self._send(MessageType.NON, fitted)
        elif pending.ack_at is not None:   # still within ack_delay: piggybacked after all
            self._acknowledge(pending.received, fitted, now)
        else:
            self._send_confirmable(fitted, now)   # RFC 7252 5.2.2: the separate response

    # -- requests -----------------------------------------------------------------------------

    def _request(self, received: UdpMessage, now: float) -> None:
        exchange = self._seen.get(received.message_id)
        if exchange is not None:   # RFC 7252 4.5: a duplicate
            if received.type is MessageType.CON and exchange.answer is not None:
                log.info("%s: CoAP: duplicate CON %d answered from the cache", self.client, received.message_id)
                self._out.append(exchange.answer)
            return
        lifetime = self.params.exchange_lifetime if received.type is MessageType.CON else self.params.non_lifetime
        self._seen[received.message_id] = _Exchange(now + lifetime)
        while len(self._seen) > MAX_EXCHANGES:
            self._seen.popitem(last=False)
        self.requests += 1
        request = received.message
        path = request.uri_path.strip("/")
        if path == AVERAGE:
            refusal = self._slow_refusal(request)
            if refusal is None:
                key, self._next_key = self._next_key, self._next_key + 1
                ack_at = now + self.ack_delay if received.type is MessageType.CON else None
                self._pending[key] = _Pending(received, ack_at)
                self._work.append(SlowRequest(key, path, request))
                return
            response: CoapMessage | None = refusal
        else:
            observe = request.first(OptionNumber.OBSERVE)
            response = self._responder.answer(request)
            if response is not None and observe is not None and request.code == Code.GET:
                response = self._observe(request, decode_uint(observe), response, now)
        if response is None:
            response = CoapMessage(Code.INTERNAL_SERVER_ERROR, request.token)
        if received.type is MessageType.CON:
            self._acknowledge(received, response, now)
        else:
            self._send(MessageType.NON, response)

    def _slow_refusal(self, request: CoapMessage) -> CoapMessage | None:
        """What `CoapResponder.respond()` would refuse of a request on a slow resource."""
        unsupported = unsupported_option(request)
        if unsupported is not None:
            return reply(request, Code.BAD_OPTION, {"error": f"option {unsupported} is not supported"})
        if request.code != Code.GET:
            return reply(request, Code.METHOD_NOT_ALLOWED, {"error": f"only GET on /{AVERAGE}"})
        accept = request.first(OptionNumber.ACCEPT)
        if accept is not None and decode_uint(accept) != ContentFormat.JSON:
            return reply(request, Code.NOT_ACCEPTABLE, {"error": "only application/json (50)"})
        return None

    def _acknowledge(self, received: UdpMessage, response: CoapMessage, now: float, empty: bool = False) -> None:
        """The ACK of a CON (piggybacked, or empty when `empty`), kept for its duplicates."""
        datagram = encode_datagram(UdpMessage(MessageType.ACK, received.message_id, response))
        exchange = self._seen.get(received.message_id)
        if exchange is not None:
            exchange.answer = datagram
        self._out.append(datagram)

    def _reset(self, message_id: int) -> None:
        self._out.append(encode_datagram(UdpMessage(MessageType.RST, message_id, CoapMessage(Code.EMPTY))))

    def _forget_expired(self, now: float) -> None:
        while self._seen:
            message_id, exchange = next(iter(self._seen.items()))
            if exchange.expires > now:
                return
            del self._seen[message_id]

    # -- our messages -------------------------------------------------------------------------

    def _message_id(self) -> int:
        message_id, self._next_mid = self._next_mid, (self._next_mid + 1) & MAX_MESSAGE_ID
        return message_id

    def _send(self, type_: MessageType, message: CoapMessage) -> int:
        message_id = self._message_id()
        self._out.append(encode_datagram(UdpMessage(type_, message_id, message)))
        return message_id

    def _send_confirmable(self, message: CoapMessage, now: float, observation: bool = False) -> None:
        """A CON now, or after the one outstanding (NSTART 1, RFC 7252 4.7); a newer notification
        for the same token takes the place of one still waiting (RFC 7641 4.5.2)."""
        if self._outstanding is not None:
            if observation:
                self._queue = collections.deque(
                    (m, o) for m, o in self._queue if not (o and m.token == message.token))
            self._queue.append((message, observation))
            return
        message_id = self._message_id()
        datagram = encode_datagram(UdpMessage(MessageType.CON, message_id, message))
        timeout = self.rng.uniform(self.params.ack_timeout, self.params.ack_timeout * self.params.ack_random_factor)
        self._outstanding = _Transmission(datagram, message_id, message.token, timeout, now + timeout,
                                          observation=observation)
        self._out.append(datagram)

    def _acknowledged(self, received: UdpMessage, now: float) -> None:
        """An ACK or RST from the client, matched to our CON (or a NON notification) by Message ID."""
        transmission = self._outstanding
        if transmission is not None and transmission.message_id == received.message_id:
            self._outstanding = None
            if received.type is MessageType.RST:
                log.info("%s: CoAP: the client reset message %d", self.client, received.message_id)
                if transmission.observation:
                    self._cancel(transmission.token, "the client reset a notification")
            self._next_confirmable(now)
        elif received.type is MessageType.RST and received.message_id in self._notified:
            self._cancel(self._notified.pop(received.message_id), "the client reset a notification")

    def _give_up(self, transmission: _Transmission, now: float) -> None:
        self._outstanding = None
        if transmission.observation:
            self._cancel(transmission.token, "a CON notification was never acknowledged")
        self._next_confirmable(now)

    def _next_confirmable(self, now: float) -> None:
        if self._queue and self._outstanding is None:
            message, observation = self._queue.popleft()
            if observation and message.token not in self._observations:
                self._next_confirmable(now)
                return
            self._send_confirmable(message, now, observation)

    # -- Observe (RFC 7641) -------------------------------------------------------------------

    def _observe(self, request: CoapMessage, value: int, response: CoapMessage, now: float) -> CoapMessage:
        """Registers (Observe 0) or cancels (1) the request's token; the response of a registration
        carries Observe with the sequence number (RFC 7641 2, 3.1, 4.1)."""
        if request.uri_path.strip("/") != TEMPERATURE or not is_success(response.code):
            return response   # RFC 7641 4.1: not observable here: a plain response
        if value == 1:
            self._cancel(request.token, "the client deregistered")
            return response
        if value != 0:
            return response
        celsius = self.device.temperature()["celsius"]
        observation = _Observation(request, celsius, now, now)
        self._observations[request.token] = observation
        log.info("%s: CoAP: observing /%s (%d observer(s))", self.client, TEMPERATURE, len(self._observations))
        if self._observe_at is None:
            self._observe_at = now + self.observe_interval
        return self._with_observe(response, observation)

    def _with_observe(self, response: CoapMessage, observation: _Observation) -> CoapMessage:
        options = tuple(o for o in response.options if o[0] != OptionNumber.OBSERVE)
        return replace(response, options=options + ((OptionNumber.OBSERVE, encode_uint(observation.sequence)),
                                                    (OptionNumber.MAX_AGE, encode_uint(self.max_age))))

    def _cancel(self, token: bytes, reason: str) -> None:
        if self._observations.pop(token, None) is not None:
            log.info("%s: CoAP: observation of /%s ended: %s", self.client, TEMPERATURE, reason)
        if not self._observations:
            self._observe_at = None

    def _notify(self, now: float) -> None:
        """A notification to every observer whose reading changed or whose Max-Age runs out."""
        self._observe_at = now + self.observe_interval
        document = self.device.temperature()
        for token, observation in list(self._observations.items()):
            if document["celsius"] == observation.celsius and now - observation.sent_at < self.max_age * 0.9:
                continue
            observation.celsius, observation.sent_at = document["celsius"], now
            observation.sequence = (observation.sequence + 1) % OBSERVE_SEQUENCE_MODULO
            response = self._responder.fit(reply(observation.request, Code.CONTENT, document), None)
            if response is None:
                continue
            notification = self._with_observe(response, observation)
            if now - observation.con_at >= self.con_interval:
                observation.con_at = now
                self._send_confirmable(notification, now, observation=True)
            else:
                self._notified[self._send(MessageType.NON, notification)] = token
                while len(self._notified) > MAX_EXCHANGES:
                    self._notified.popitem(last=False)


# -- the slow resource ---------------------------------------------------------------------------

async def average_temperature(device: Device, samples: int = AVERAGE_SAMPLES,
                              interval: float = AVERAGE_INTERVAL) -> dict[str, Any]:
    """The mean of `samples` readings `interval` seconds apart, and when the last was taken."""
    readings = []
    for i in range(samples):
        if i:
            await asyncio.sleep(interval)
        readings.append(device.temperature()["celsius"])
    return {"celsius": round(statistics.fmean(readings), 2), "samples": samples,
            "seconds": round(interval * (samples - 1), 3), "time": utc_iso(device.clock())}


# -- the application -----------------------------------------------------------------------------

Application = Callable[[DtlsAssociation, SessionInfo], Awaitable[None]]


@dataclass
class CoapUdpSettings:
    """What `coap_udp_application` gives each endpoint (tests shorten the slow parts)."""

    params: TransmissionParameters = field(default_factory=TransmissionParameters)
    ack_delay: float = 1.0
    observe_interval: float = 1.0
    con_interval: float = 30.0
    average_samples: int = AVERAGE_SAMPLES
    average_interval: float = AVERAGE_INTERVAL


def coap_udp_application(device: Device | None = None, settings: CoapUdpSettings | None = None) -> Application:
    """The CoAP-over-DTLS (or plain UDP) application: one `CoapUdpEndpoint` per association.

    It runs until the association ends: the client's close_notify or new handshake (`PeerClosed`),
    or the transport's idle expiry (`TimeoutError` from `recv()`)."""
    shared = device or process_device()
    chosen = settings or CoapUdpSettings()

    async def application(association: DtlsAssociation, info: SessionInfo) -> None:
        endpoint = CoapUdpEndpoint(shared, client=info.peer,
                                   max_message_size=min(DEFAULT_MAX_MESSAGE_SIZE, association.max_payload),
                                   params=chosen.params, ack_delay=chosen.ack_delay,
                                   observe_interval=chosen.observe_interval, con_interval=chosen.con_interval)
        reason = await serve_endpoint(endpoint, association, chosen)
        log.info("%s: CoAP association ended after %d request(s): %s", info.peer, endpoint.requests, reason)

    return application


async def serve_endpoint(endpoint: CoapUdpEndpoint, association: DtlsAssociation, settings: CoapUdpSettings) -> str:
    """Moves datagrams between the association and the endpoint, runs its timers and its slow
    requests, until the association ends; returns why it ended."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[tuple[int, CoapMessage] | bytes | BaseException] = asyncio.Queue()
    slow: set[asyncio.Task[None]] = set()

    async def read() -> None:
        while True:
            try:
                events.put_nowait(await association.recv())
            except (PeerClosed, TimeoutError, OSError) as exc:
                events.put_nowait(exc)
                return

    async def run(request: SlowRequest) -> None:
        try:
            document = await average_temperature(endpoint.device, settings.average_samples,
                                                 settings.average_interval)
            response = reply(request.request, Code.CONTENT, document)
        except Exception:   # noqa: BLE001 - one failed reading is a 5.00, never the end of the association
            log.exception("%s: CoAP: /%s failed", endpoint.client, request.path)
            response = reply(request.request, Code.INTERNAL_SERVER_ERROR, {"error": "the reading failed"})
        events.put_nowait((request.key, response))

    reader = asyncio.ensure_future(read())
    try:
        while True:
            for datagram in endpoint.datagrams_to_send():
                await association.send(datagram)
            for request in endpoint.work():
                task = asyncio.ensure_future(run(request))
                slow.add(task)
                task.add_done_callback(slow.discard)
            deadline = endpoint.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                event = await asyncio.wait_for(events.get(), timeout)
            except TimeoutError:
                endpoint.on_timer(loop.time())
                continue
            if isinstance(event, bytes):
                endpoint.receive_datagram(event, loop.time())
            elif isinstance(event, BaseException):
                return "idle" if isinstance(event, TimeoutError) else (str(event) or type(event).__name__)
            else:
                endpoint.complete(event[0], event[1], loop.time())
            endpoint.on_timer(loop.time())
    finally:
        reader.cancel()
        for task in list(slow):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
