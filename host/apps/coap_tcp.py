"""CoAP over TLS (RFC 8323) on a TLS session whose handshake ran in the card.

Three layers, the first two sans-IO:

- The message format: `encode_message` / `decode_message` for RFC 8323 section 3.2 frames
  (Len/TKL nibble, 1/2/4-byte extended length, Code, Token, Options, 0xFF and Payload), with the
  RFC 7252 option encoding written here. Options are kept as (number, bytes) pairs because in
  signalling messages their meaning depends on the code (option 2 is Max-Message-Size in a CSM,
  Custody in a Ping, Bad-CSM-Option in an Abort).
- `CoapTcpConnection`: bytes in, bytes out. It sends its CSM first, insists on the client's CSM
  first, answers Ping with Pong, ends on Release and Abort, aborts on malformed or oversized
  messages, and answers requests on the device's resources and `/.well-known/core`. Every
  message it sends fits the client's Max-Message-Size (RFC 8323 5.3.1): representations go in
  Block2 pieces (RFC 7959 2.4, `host.apps.coap_blockwise`) when the client asks with Block2 or
  announced Block-Wise-Transfer in its CSM (RFC 8323 5.3.2); Block1 uploads are reassembled.
- `coap_tcp_application(tandem)`: pumps records between a `RecordLayer` and the connection.
"""
from __future__ import annotations

import enum
import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from host.apps.coap_blockwise import (
    MAX_SZX,
    Block1Upload,
    BlockError,
    BlockOption,
    UploadOutcome,
    block_of,
    block_payload,
)
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
    CONTINUE = 0x5F                     # 2.31 (RFC 7959 2.9.1)
    BAD_REQUEST = 0x80                  # 4.00
    BAD_OPTION = 0x82                   # 4.02
    NOT_FOUND = 0x84                    # 4.04
    METHOD_NOT_ALLOWED = 0x85           # 4.05
    NOT_ACCEPTABLE = 0x86               # 4.06
    REQUEST_ENTITY_INCOMPLETE = 0x88    # 4.08 (RFC 7959 2.9.2)
    REQUEST_ENTITY_TOO_LARGE = 0x8D     # 4.13 (RFC 7959 2.9.3)
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


def is_success(code: int) -> bool:
    return code >> 5 == 2


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
    SIZE2 = 28
    SIZE1 = 60


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
                       OptionNumber.URI_QUERY, OptionNumber.ACCEPT, OptionNumber.BLOCK2, OptionNumber.BLOCK1}
ETAG_LENGTH = 4   # of the SHA-256 of a representation sent in blocks (RFC 7959 2.4: ETag keeps them together)


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

    What it sends fits the client's Max-Message-Size (RFC 8323 5.3.1), see `answer()`.
    """

    device: Device
    max_message_size: int = MAX_MESSAGE_SIZE
    client: str = "-"   # the client's address, in every log line
    closed: bool = field(default=False, init=False)
    peer: PeerSettings | None = field(default=None, init=False)   # None until the client's CSM
    requests: int = field(default=0, init=False)
    _buffer: bytearray = field(default_factory=bytearray, repr=False)
    _out: bytearray = field(default_factory=bytearray, repr=False)
    _upload: Block1Upload = field(init=False, repr=False)   # bodies up to our own Max-Message-Size

    def __post_init__(self) -> None:
        self._upload = Block1Upload(self.max_message_size)
        # RFC 8323 5.3: each side's first message is its CSM. No Block-Wise-Transfer option: with a
        # Max-Message-Size over 1152 it would offer BERT (5.3.2), which we do not do; block-wise
        # transfers still work when the client asks with Block1 or Block2 (RFC 7959).
        self._send(CoapMessage(Code.CSM, options=((CSM_MAX_MESSAGE_SIZE, encode_uint(self.max_message_size)),)))

    def data_to_send(self) -> bytes:
        out, self._out = bytes(self._out), bytearray()
        return out

    def receive_eof(self) -> None:
        if self._buffer and not self.closed:
            log.info("%s: CoAP: the client ended the stream inside a message", self.client)
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

    @property
    def peer_max_message_size(self) -> int:
        """The largest message the client takes (RFC 8323 5.3.1: 1152 until its CSM says)."""
        return self.peer.max_message_size if self.peer is not None else DEFAULT_MAX_MESSAGE_SIZE

    def _abort(self, reason: str, bad_csm_option: int | None = None) -> None:
        """RFC 8323 5.6; the diagnostic payload is cut to the client's Max-Message-Size (an Abort
        too large even without it goes out anyway: the connection ends either way)."""
        log.info("%s: CoAP: aborting the connection: %s", self.client, reason)
        options = () if bad_csm_option is None else ((ABORT_BAD_CSM_OPTION, encode_uint(bad_csm_option)),)
        abort = CoapMessage(Code.ABORT, options=options, payload=reason.encode())
        while abort.payload and (excess := message_size(abort) - self.peer_max_message_size) > 0:
            abort = replace(abort, payload=abort.payload[:-excess])
        self._send(abort)
        self.closed = True

    def _handle(self, message: CoapMessage) -> None:
        if message.code == Code.ABORT:   # never answered, whatever it carries
            log.info("%s: CoAP: the client aborted: %s", self.client, message.payload.decode("utf-8", "replace"))
            self.closed = True
        elif self.peer is None and message.code != Code.CSM:
            self._abort(f"expected a CSM (7.01) first, got {dotted(message.code)}")
        elif is_signalling(message.code):
            self._signal(message)
        elif is_request(message.code):
            self.requests += 1
            response = self.answer(message)
            if response is None:
                self._abort(f"Max-Message-Size {self.peer_max_message_size} is too small for any response")
            else:
                self._send(response)
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
            log.info("%s: CoAP: the client released the connection", self.client)
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

    def answer(self, request: CoapMessage) -> CoapMessage | None:
        """What goes back for a request: a Block1 upload is reassembled first (RFC 7959 2.5), then
        the response of `respond()` is fitted to the client's Max-Message-Size (RFC 8323 5.3.1):

        - a request with Block2 gets that block (RFC 7959 2.4), smaller if the limit says so;
        - a response that fits goes whole;
        - one that does not, to a client that announced Block-Wise-Transfer (RFC 8323 5.3.2),
          goes as its first Block2 block, the largest that fits, with ETag and Size2;
        - one that does not, to a client that did not (it may not know Block2, a critical option),
          becomes 4.06 Not Acceptable with Size2 (RFC 7959 4): the client's own limit rules the
          representation out, as Accept can; 4.13 is about request bodies (RFC 7959 2.9.3);
        - any response drops its diagnostic payload if that is what keeps it over the limit;
          None if even that is too large (the connection is then aborted).
        """
        try:
            block1 = block_option(request, OptionNumber.BLOCK1)
            block2 = block_option(request, OptionNumber.BLOCK2)
        except BlockError as exc:
            return self._within_limit(_reply(request, Code.BAD_REQUEST, {"error": str(exc)}))
        if block1 is not None:
            outcome, body = self._upload.add((request.code, request.uri_path), block1, request.payload)
            if outcome is UploadOutcome.CONTINUE:
                return self._within_limit(CoapMessage(Code.CONTINUE, request.token,
                                                      ((OptionNumber.BLOCK1, block1.encode()),)))
            if outcome is not UploadOutcome.COMPLETE:
                return self._within_limit(_upload_error(request, outcome, self._upload.max_body))
            request = replace(request, payload=body,
                              options=tuple(o for o in request.options if o[0] != OptionNumber.BLOCK1))
        response = self.respond(request)
        if block1 is not None:   # RFC 7959 2.3: the last block's Block1 comes back with M = 0
            response = replace(response, options=response.options + (
                (OptionNumber.BLOCK1, BlockOption(block1.num, False, block1.szx).encode()),))
        return self._fit(response, block2)

    def _fit(self, response: CoapMessage, block2: BlockOption | None) -> CoapMessage | None:
        representation = is_success(response.code) and bool(response.payload)
        if representation and block2 is not None:
            return self._block2(response, block2.offset, block2.szx)
        if message_size(response) <= self.peer_max_message_size:
            return response
        if representation and self.peer is not None and self.peer.block_wise_transfer:
            return self._block2(response, 0, MAX_SZX)
        if representation:
            return self._too_large(response)
        return self._within_limit(response)

    def _block2(self, response: CoapMessage, offset: int, szx: int) -> CoapMessage | None:
        """The block of the representation at `offset`, in the largest size up to SZX whose
        message fits (RFC 7959 2.4); ETag on every block, Size2 on the first (RFC 7959 4)."""
        body = response.payload
        try:
            block_of(body, offset, szx)
        except BlockError as exc:
            return self._within_limit(_reply(response, Code.BAD_OPTION, {"error": str(exc)}))
        options = response.options
        if not any(number == OptionNumber.ETAG for number, _ in options):
            options += ((OptionNumber.ETAG, hashlib.sha256(body).digest()[:ETAG_LENGTH]),)
        for size_exponent in range(min(szx, MAX_SZX), -1, -1):
            block = block_of(body, offset, size_exponent)
            extra = ((OptionNumber.SIZE2, encode_uint(len(body))),) if block.num == 0 else ()
            piece = CoapMessage(response.code, response.token, options + ((OptionNumber.BLOCK2, block.encode()),)
                                + extra, block_payload(body, block))
            if message_size(piece) <= self.peer_max_message_size:
                return piece
        return self._too_large(response)

    def _too_large(self, response: CoapMessage) -> CoapMessage | None:
        limit, size = self.peer_max_message_size, len(response.payload)
        log.info("%s: CoAP: a %d-byte representation does not fit the client's Max-Message-Size %d", self.client,
                 size, limit)
        error = _reply(response, Code.NOT_ACCEPTABLE,
                       {"error": f"{size} bytes do not fit Max-Message-Size {limit}: ask with Block2"})
        return self._within_limit(replace(error, options=error.options + ((OptionNumber.SIZE2, encode_uint(size)),)))

    def _within_limit(self, response: CoapMessage) -> CoapMessage | None:
        """The response, or without its diagnostic payload (RFC 7252 5.5.2) if only that way it
        fits the client's limit, or None."""
        if message_size(response) <= self.peer_max_message_size:
            return response
        bare = CoapMessage(response.code, response.token,
                           tuple(o for o in response.options if o[0] != OptionNumber.CONTENT_FORMAT))
        return bare if message_size(bare) <= self.peer_max_message_size else None

    def respond(self, request: CoapMessage) -> CoapMessage:
        """The response to a request, with its token, whatever its size (see `answer()`)."""
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


def message_size(message: CoapMessage) -> int:
    """What Max-Message-Size counts: the whole frame, header included (RFC 8323 5.3.1)."""
    return len(encode_message(message))


def block_option(request: CoapMessage, number: int) -> BlockOption | None:
    """The request's Block1 or Block2 option (RFC 7959 2.2), None if absent; BlockError if bad."""
    values = request.values(number)
    if len(values) > 1:
        raise BlockError(f"option {number} is not repeatable")
    return BlockOption.decode(values[0]) if values else None


def _upload_error(request: CoapMessage, outcome: UploadOutcome, max_body: int) -> CoapMessage:
    """4.08, 4.13 (with Size1, RFC 7959 4) or 4.00 for a Block1 upload that cannot go on."""
    if outcome is UploadOutcome.TOO_LARGE:
        error = _reply(request, Code.REQUEST_ENTITY_TOO_LARGE, {"error": f"bodies of at most {max_body} bytes"})
        return replace(error, options=error.options + ((OptionNumber.SIZE1, encode_uint(max_body)),))
    if outcome is UploadOutcome.INCOMPLETE:
        return _reply(request, Code.REQUEST_ENTITY_INCOMPLETE, {"error": "a block out of order: start from NUM 0"})
    return _reply(request, Code.BAD_REQUEST, {"error": "every block but the last fills its SZX size"})


# -- the application ----------------------------------------------------------------------------

def coap_tcp_application(tandem: Any, device: Device | None = None) -> Application:
    """The CoAP-over-TLS application for `GenericServer`: one connection core per TLS session."""
    shared = device or process_device()

    async def application(layer: RecordLayer, info: SessionInfo) -> None:
        connection = CoapTcpConnection(shared, client=info.peer)
        await pump(connection, layer)
        log.info("%s: CoAP session ended after %d request(s)", info.peer, connection.requests)

    return application
