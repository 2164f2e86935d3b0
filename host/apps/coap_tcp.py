"""CoAP over TLS (RFC 8323) on a TLS session whose handshake ran in the card.

Three layers, the first two sans-IO:

- The message format: `encode_message` / `decode_message` for RFC 8323 section 3.2 frames
  (Len/TKL nibble, 1/2/4-byte extended length, Code, Token, Options, 0xFF and Payload), with the
  RFC 7252 option encoding written here. Options are kept as (number, bytes) pairs because in
  signalling messages their meaning depends on the code (option 2 is Max-Message-Size in a CSM,
  Custody in a Ping, Bad-CSM-Option in an Abort).
- `CoapTcpConnection`: bytes in, bytes out. It sends its CSM first, insists on the client's CSM
  first, answers Ping with Pong, ends on Release and Abort, aborts on malformed or oversized
  messages, and answers requests on the device's resources and `/.well-known/core`.
- `coap_tcp_application(tandem)`: pumps records between a `RecordLayer` and the connection.
"""
from __future__ import annotations

import enum
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from host.apps.device import RESOURCES, Device, Outcome, process_device
from host.apps.pump import pump
from host.se_tls import Application, SessionInfo
from host.tls.record_layer import RecordLayer

log = logging.getLogger(__name__)

PAYLOAD_MARKER = 0xFF
MAX_TOKEN_LENGTH = 8
MAX_MESSAGE_SIZE = 8192          # what our CSM announces, and what we accept
DEFAULT_MAX_MESSAGE_SIZE = 1152  # RFC 8323 5.3.1: the peer's limit until its CSM says otherwise
# (nibble, extra bytes, offset): RFC 8323 3.2 for the frame length; RFC 7252 3.1 for option
# delta and length, where nibble 15 is reserved.
EXTENSIONS = ((13, 1, 13), (14, 2, 269), (15, 4, 65805))
MAX_OPTION_FIELD = 65804
MAX_OPTION_NUMBER = 0xFFFF

Option = tuple[int, bytes]


class CoapFormatError(ValueError):
    """Bytes that are not a well-formed CoAP-over-TCP message (the connection is aborted)."""


class Code(enum.IntEnum):
    """CoAP codes as class << 5 | detail; `dotted` gives the c.dd form."""

    EMPTY = 0x00
    GET = 0x01
    POST = 0x02
    PUT = 0x03
    DELETE = 0x04
    FETCH = 0x05
    PATCH = 0x06
    IPATCH = 0x07
    CHANGED = 0x44                      # 2.04
    CONTENT = 0x45                      # 2.05
    BAD_REQUEST = 0x80                  # 4.00
    BAD_OPTION = 0x82                   # 4.02
    NOT_FOUND = 0x84                    # 4.04
    METHOD_NOT_ALLOWED = 0x85           # 4.05
    NOT_ACCEPTABLE = 0x86               # 4.06
    UNSUPPORTED_CONTENT_FORMAT = 0x8F   # 4.15
    CSM = 0xE1                          # 7.01
    PING = 0xE2                         # 7.02
    PONG = 0xE3                         # 7.03
    RELEASE = 0xE4                      # 7.04
    ABORT = 0xE5                        # 7.05


def known_code(code: int) -> Code | None:
    try:
        return Code(code)
    except ValueError:
        return None


def dotted(code: int) -> str:
    return f"{code >> 5}.{code & 0x1F:02d}"


def is_request(code: int) -> bool:
    return 0 < code < 0x20


def is_signalling(code: int) -> bool:
    return code >> 5 == 7


class OptionNumber(enum.IntEnum):
    """Request and response options (RFC 7252 5.10, RFC 7959, RFC 7641)."""

    IF_MATCH = 1
    URI_HOST = 3
    ETAG = 4
    IF_NONE_MATCH = 5
    OBSERVE = 6
    URI_PORT = 7
    URI_PATH = 11
    CONTENT_FORMAT = 12
    URI_QUERY = 15
    ACCEPT = 17
    BLOCK2 = 23
    BLOCK1 = 27


# Signalling options (RFC 8323 5.3-5.6): numbers are scoped by the signalling code.
CSM_MAX_MESSAGE_SIZE = 2
CSM_BLOCK_WISE_TRANSFER = 4
PING_CUSTODY = 2
RELEASE_ALTERNATIVE_ADDRESS = 2
RELEASE_HOLD_OFF = 4
ABORT_BAD_CSM_OPTION = 2
SIGNAL_OPTIONS = {
    Code.CSM: {CSM_MAX_MESSAGE_SIZE, CSM_BLOCK_WISE_TRANSFER},
    Code.PING: {PING_CUSTODY},
    Code.PONG: {PING_CUSTODY},
    Code.RELEASE: {RELEASE_ALTERNATIVE_ADDRESS, RELEASE_HOLD_OFF},
    Code.ABORT: {ABORT_BAD_CSM_OPTION},
}
# Critical request options this server acts on (or may safely ignore: host, port, query).
UNDERSTOOD_CRITICAL = {OptionNumber.URI_HOST, OptionNumber.URI_PORT, OptionNumber.URI_PATH,
                       OptionNumber.URI_QUERY, OptionNumber.ACCEPT}


class ContentFormat(enum.IntEnum):
    LINK_FORMAT = 40
    JSON = 50


def is_critical(number: int) -> bool:
    return number & 1 == 1


def encode_uint(value: int) -> bytes:
    """RFC 7252 3.2: a uint option value in as few bytes as possible (0 is empty)."""
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def decode_uint(value: bytes) -> int:
    return int.from_bytes(value, "big")


@dataclass(frozen=True)
class CoapMessage:
    code: int
    token: bytes = b""
    options: tuple[Option, ...] = ()    # any order; encoded sorted by number, repeats kept in order
    payload: bytes = b""

    def values(self, number: int) -> list[bytes]:
        return [value for n, value in self.options if n == number]

    def first(self, number: int) -> bytes | None:
        return next(iter(self.values(number)), None)

    @property
    def uri_path(self) -> str:
        return "/".join(v.decode("utf-8", "replace") for v in self.values(OptionNumber.URI_PATH))


# -- the message format -------------------------------------------------------------------------

def _split_field(value: int, allow_four_bytes: bool) -> tuple[int, bytes]:
    """A length or delta as its 4-bit nibble and extended bytes."""
    if value < 13:
        return value, b""
    for nibble, size, offset in EXTENSIONS:
        if value - offset < 1 << (8 * size) and (nibble != 15 or allow_four_bytes):
            return nibble, (value - offset).to_bytes(size, "big")
    raise ValueError(f"{value} does not fit in an option field (at most {MAX_OPTION_FIELD})")


def _read_field(nibble: int, data: bytes, pos: int) -> tuple[int, int] | None:
    """The value of a nibble with its extended bytes at data[pos:], and the next position."""
    if nibble < 13:
        return nibble, pos
    _, size, offset = EXTENSIONS[nibble - 13]
    if len(data) < pos + size:
        return None
    return int.from_bytes(data[pos:pos + size], "big") + offset, pos + size


def encode_options(options: Iterable[Option]) -> bytes:
    out = bytearray()
    previous = 0
    for number, value in sorted(options, key=lambda option: option[0]):
        if not 0 <= number <= MAX_OPTION_NUMBER:
            raise ValueError(f"option number {number} is not in 0..{MAX_OPTION_NUMBER}")
        delta, delta_ext = _split_field(number - previous, allow_four_bytes=False)
        length, length_ext = _split_field(len(value), allow_four_bytes=False)
        out += bytes([delta << 4 | length]) + delta_ext + length_ext + value
        previous = number
    return bytes(out)


def decode_options(data: bytes) -> tuple[tuple[Option, ...], bytes]:
    """Options and payload of the bytes after the token; CoapFormatError if malformed."""
    options: list[Option] = []
    number, pos = 0, 0
    while pos < len(data):
        if data[pos] == PAYLOAD_MARKER:
            if pos + 1 == len(data):
                raise CoapFormatError("payload marker followed by no payload")
            return tuple(options), bytes(data[pos + 1:])
        delta_nibble, length_nibble = data[pos] >> 4, data[pos] & 0x0F
        if delta_nibble == 15 or length_nibble == 15:
            raise CoapFormatError("option nibble 15 is reserved")
        delta = _read_field(delta_nibble, data, pos + 1)
        length = _read_field(length_nibble, data, delta[1]) if delta else None
        if delta is None or length is None or length[1] + length[0] > len(data):
            raise CoapFormatError("option runs past the end of the message")
        number += delta[0]
        if number > MAX_OPTION_NUMBER:
            raise CoapFormatError(f"option number {number} is over {MAX_OPTION_NUMBER}")
        options.append((number, bytes(data[length[1]:length[1] + length[0]])))
        pos = length[1] + length[0]
    return tuple(options), b""


def encode_message(message: CoapMessage) -> bytes:
    """RFC 8323 3.2: Len|TKL, extended length, Code, Token, Options, 0xFF and Payload."""
    if len(message.token) > MAX_TOKEN_LENGTH:
        raise ValueError(f"a token has at most {MAX_TOKEN_LENGTH} bytes")
    body = encode_options(message.options)
    if message.payload:
        body += bytes([PAYLOAD_MARKER]) + message.payload
    length, length_ext = _split_field(len(body), allow_four_bytes=True)
    return bytes([length << 4 | len(message.token)]) + length_ext + bytes([message.code]) + message.token + body


def frame_size(buffer: bytes | bytearray) -> int | None:
    """How many bytes the first message in buffer takes, None if its header is incomplete."""
    if not buffer:
        return None
    token_length = buffer[0] & 0x0F
    if token_length > MAX_TOKEN_LENGTH:
        raise CoapFormatError(f"token length {token_length} is over {MAX_TOKEN_LENGTH}")
    length = _read_field(buffer[0] >> 4, bytes(buffer[:5]), 1)
    if length is None:
        return None
    return length[1] + 1 + token_length + length[0]


def decode_message(buffer: bytes | bytearray) -> tuple[CoapMessage, int] | None:
    """The first message in buffer and the bytes it took, None if it is not complete yet."""
    size = frame_size(buffer)
    if size is None or len(buffer) < size:
        return None
    code_at = _header_size(buffer)
    token_end = code_at + 1 + (buffer[0] & 0x0F)
    options, payload = decode_options(bytes(buffer[token_end:size]))
    return CoapMessage(buffer[code_at], bytes(buffer[code_at + 1:token_end]), options, payload), size


def _header_size(buffer: bytes | bytearray) -> int:
    """Bytes before the code: the Len|TKL byte and the extended length."""
    nibble = buffer[0] >> 4
    return 1 + (EXTENSIONS[nibble - 13][1] if nibble >= 13 else 0)


# -- the connection -----------------------------------------------------------------------------

@dataclass
class PeerSettings:
    """What the client's CSM said (RFC 8323 5.3)."""

    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    block_wise_transfer: bool = False


def core_link_format() -> bytes:
    """RFC 6690 links to the device's resources, for GET /.well-known/core."""
    links = [f'</{r.path}>;rt="{r.resource_type}";if="{r.interface}";ct={int(ContentFormat.JSON)};title="{r.title}"'
             for r in RESOURCES]
    return ",".join(links).encode()


COAP_CODES = {
    Outcome.CONTENT: Code.CONTENT,
    Outcome.CHANGED: Code.CHANGED,
    Outcome.BAD_REQUEST: Code.BAD_REQUEST,
    Outcome.NOT_FOUND: Code.NOT_FOUND,
    Outcome.METHOD_NOT_ALLOWED: Code.METHOD_NOT_ALLOWED,
}
WELL_KNOWN_CORE = ".well-known/core"


@dataclass
class CoapTcpConnection:
    """Sans-IO server side of one CoAP-over-TLS connection.

    Its CSM waits in `data_to_send()` from the start; then `receive_data()` bytes from the client
    and send what `data_to_send()` gives. `closed` turns true on Release, Abort (either side) or
    the end of the stream; what is left to send (an Abort) still has to go out.
    """

    device: Device
    max_message_size: int = MAX_MESSAGE_SIZE
    closed: bool = field(default=False, init=False)
    peer: PeerSettings | None = field(default=None, init=False)   # None until the client's CSM
    requests: int = field(default=0, init=False)
    _buffer: bytearray = field(default_factory=bytearray, repr=False)
    _out: bytearray = field(default_factory=bytearray, repr=False)

    def __post_init__(self) -> None:
        # RFC 8323 5.3: each side's first message is its CSM; we do not offer BERT.
        self._send(CoapMessage(Code.CSM, options=((CSM_MAX_MESSAGE_SIZE, encode_uint(self.max_message_size)),)))

    def data_to_send(self) -> bytes:
        out, self._out = bytes(self._out), bytearray()
        return out

    def receive_eof(self) -> None:
        if self._buffer and not self.closed:
            log.info("CoAP: the client ended the stream inside a message")
        self.closed = True

    def receive_data(self, data: bytes) -> None:
        self._buffer += data
        while not self.closed:
            try:
                message = self._next_message()
            except CoapFormatError as exc:
                self._abort(f"malformed message: {exc}")
                return
            if message is None:
                return
            self._handle(message)

    def _next_message(self) -> CoapMessage | None:
        size = frame_size(self._buffer)
        if size is not None and size > self.max_message_size:
            raise CoapFormatError(f"a message of {size} bytes is over the {self.max_message_size}-byte limit")
        decoded = decode_message(self._buffer)
        if decoded is None:
            return None
        message, used = decoded
        del self._buffer[:used]
        return message

    def _send(self, message: CoapMessage) -> None:
        self._out += encode_message(message)

    def _abort(self, reason: str, bad_csm_option: int | None = None) -> None:
        log.info("CoAP: aborting the connection: %s", reason)
        options = () if bad_csm_option is None else ((ABORT_BAD_CSM_OPTION, encode_uint(bad_csm_option)),)
        self._send(CoapMessage(Code.ABORT, options=options, payload=reason.encode()))
        self.closed = True

    def _handle(self, message: CoapMessage) -> None:
        if message.code == Code.ABORT:   # never answered, whatever it carries
            log.info("CoAP: the client aborted: %s", message.payload.decode("utf-8", "replace"))
            self.closed = True
        elif self.peer is None and message.code != Code.CSM:
            self._abort(f"expected a CSM (7.01) first, got {dotted(message.code)}")
        elif is_signalling(message.code):
            self._signal(message)
        elif is_request(message.code):
            self.requests += 1
            self._send(self.respond(message))
        else:
            log.debug("CoAP: ignored a message with code %s", dotted(message.code))

    def _signal(self, message: CoapMessage) -> None:
        code = known_code(message.code)
        known = SIGNAL_OPTIONS.get(code) if code is not None else None
        if known is None:
            self._abort(f"unknown signalling code {dotted(message.code)}")
            return
        unknown = [n for n, _ in message.options if is_critical(n) and n not in known]
        if unknown:
            self._abort(f"unknown critical option {unknown[0]} in {dotted(message.code)}",
                        unknown[0] if message.code == Code.CSM else None)
        elif message.code == Code.CSM:
            self._settle(message)
        elif message.code == Code.PING:
            custody = tuple((n, v) for n, v in message.options if n == PING_CUSTODY)
            self._send(CoapMessage(Code.PONG, message.token, custody))
        elif message.code == Code.RELEASE:
            log.info("CoAP: the client released the connection")
            self.closed = True

    def _settle(self, csm: CoapMessage) -> None:
        """A CSM updates the settings it names; the others keep their values (RFC 8323 5.3)."""
        peer = self.peer or PeerSettings()
        for number, value in csm.options:
            if number == CSM_MAX_MESSAGE_SIZE:
                peer.max_message_size = decode_uint(value)
            elif number == CSM_BLOCK_WISE_TRANSFER:
                peer.block_wise_transfer = True
        self.peer = peer

    def respond(self, request: CoapMessage) -> CoapMessage:
        """The response to a request, with its token."""
        unsupported = [n for n, _ in request.options if is_critical(n) and n not in UNDERSTOOD_CRITICAL]
        if unsupported:
            return _reply(request, Code.BAD_OPTION, {"error": f"option {unsupported[0]} is not supported"})
        path = request.uri_path
        if path == WELL_KNOWN_CORE:
            if request.code != Code.GET:
                return _reply(request, Code.METHOD_NOT_ALLOWED, {"error": "only GET on /.well-known/core"})
            return _reply(request, Code.CONTENT, core_link_format(), ContentFormat.LINK_FORMAT)
        return self._resource(request, path)

    def _resource(self, request: CoapMessage, path: str) -> CoapMessage:
        accept = request.first(OptionNumber.ACCEPT)
        if accept is not None and decode_uint(accept) != ContentFormat.JSON:
            return _reply(request, Code.NOT_ACCEPTABLE, {"error": "only application/json (50)"})
        content_format = request.first(OptionNumber.CONTENT_FORMAT)
        if request.payload and content_format is not None and decode_uint(content_format) != ContentFormat.JSON:
            return _reply(request, Code.UNSUPPORTED_CONTENT_FORMAT, {"error": "send application/json (50)"})
        code = known_code(request.code)
        method = code.name if code is not None else dotted(request.code)
        reply = self.device.handle(method, path, request.payload)
        return _reply(request, COAP_CODES[reply.outcome], reply.document)


def _reply(request: CoapMessage, code: Code, body: dict[str, Any] | bytes,
           content_format: ContentFormat = ContentFormat.JSON) -> CoapMessage:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    return CoapMessage(code, request.token, ((OptionNumber.CONTENT_FORMAT, encode_uint(content_format)),), payload)


# -- the application ----------------------------------------------------------------------------

def coap_tcp_application(tandem: Any, device: Device | None = None) -> Application:
    """The CoAP-over-TLS application for `GenericServer`: one connection core per TLS session."""
    shared = device or process_device()

    async def application(layer: RecordLayer, info: SessionInfo) -> None:
        connection = CoapTcpConnection(shared)
        await pump(connection, layer)
        log.info("%s: CoAP session ended after %d request(s)", info.peer, connection.requests)

    return application
