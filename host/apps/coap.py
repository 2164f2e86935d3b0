"""CoAP messages and resources, shared by CoAP over TLS (RFC 8323) and over UDP/DTLS (RFC 7252).

What the two transports have in common, sans-IO:

- the message model `CoapMessage` (code, token, options as (number, bytes) pairs, payload), the
  codes, option numbers and content formats, and the option encoding of RFC 7252 section 3.1
  (`encode_options` / `decode_options`); the transports add their own header in front
  (RFC 8323 3.2 Len/TKL frames in `host.apps.coap_tcp`, RFC 7252 3 Ver/T/TKL/Message ID in
  `host.apps.coap_udp`);
- `CoapResponder`: a request in, its response out, on the device's resources and
  `/.well-known/core` (RFC 6690), with Block1 uploads reassembled and representations fitted to
  the peer's message size in Block2 pieces (RFC 7959, `host.apps.coap_blockwise`).
"""
from __future__ import annotations

import enum
import hashlib
import json
import logging
from collections.abc import Callable, Iterable
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
from host.apps.device import RESOURCES, Device, Outcome, Resource

log = logging.getLogger(__name__)

PAYLOAD_MARKER = 0xFF
MAX_TOKEN_LENGTH = 8

# (nibble, extra bytes, offset): RFC 8323 3.2 for the frame length; RFC 7252 3.1 for option
# delta and length, where nibble 15 is reserved.
EXTENSIONS = ((13, 1, 13), (14, 2, 269), (15, 4, 65805))
MAX_OPTION_FIELD = 65804
MAX_OPTION_NUMBER = 0xFFFF

Option = tuple[int, bytes]


class CoapFormatError(ValueError):
    """Bytes that are not a well-formed CoAP message (RFC 7252 3, RFC 8323 3.2)."""


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
    INTERNAL_SERVER_ERROR = 0xA0        # 5.00
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
    MAX_AGE = 14
    URI_QUERY = 15
    ACCEPT = 17
    BLOCK2 = 23
    BLOCK1 = 27
    SIZE2 = 28
    SIZE1 = 60



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

def split_field(value: int, allow_four_bytes: bool) -> tuple[int, bytes]:
    """A length or delta as its 4-bit nibble and extended bytes."""
    if value < 13:
        return value, b""
    for nibble, size, offset in EXTENSIONS:
        if value - offset < 1 << (8 * size) and (nibble != 15 or allow_four_bytes):
            return nibble, (value - offset).to_bytes(size, "big")
    raise ValueError(f"{value} does not fit in an option field (at most {MAX_OPTION_FIELD})")


def read_field(nibble: int, data: bytes, pos: int) -> tuple[int, int] | None:
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
        delta, delta_ext = split_field(number - previous, allow_four_bytes=False)
        length, length_ext = split_field(len(value), allow_four_bytes=False)
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
        delta = read_field(delta_nibble, data, pos + 1)
        length = read_field(length_nibble, data, delta[1]) if delta else None
        if delta is None or length is None or length[1] + length[0] > len(data):
            raise CoapFormatError("option runs past the end of the message")
        number += delta[0]
        if number > MAX_OPTION_NUMBER:
            raise CoapFormatError(f"option number {number} is over {MAX_OPTION_NUMBER}")
        options.append((number, bytes(data[length[1]:length[1] + length[0]])))
        pos = length[1] + length[0]
    return tuple(options), b""


def core_link_format(resources: Iterable[Resource] = RESOURCES, observable: Iterable[str] = ()) -> bytes:
    """RFC 6690 links to the resources, for GET /.well-known/core; `obs` on the paths that take
    Observe (RFC 7641 6)."""
    watched = set(observable)
    links = [f'</{r.path}>;rt="{r.resource_type}";if="{r.interface}";ct={int(ContentFormat.JSON)};title="{r.title}"'
             + (";obs" if r.path in watched else "") for r in resources]
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
class CoapResponder:
    """Sans-IO: a request in, the response to send out (RFC 7252 5.8 methods on the device's
    resources, RFC 6690 `/.well-known/core`, RFC 7959 block-wise transfers).

    The transport says how its messages are measured and what the peer takes: `size_of(message)`
    is a message's size on the wire in bytes (header included), `limit()` the largest message
    the peer takes, `unsolicited_block2()` whether a response too large for it may go as its
    first Block2 block without the peer asking (always over UDP, RFC 7959 2.4; over TCP only
    after a Block-Wise-Transfer CSM, RFC 8323 5.3.2). Block1 uploads (one at a time) are bodies
    of at most `max_body` bytes.
    """

    device: Device
    max_body: int
    size_of: Callable[[CoapMessage], int]
    limit: Callable[[], int]
    unsolicited_block2: Callable[[], bool]
    client: str = "-"   # the client's address, in every log line
    link_format: bytes = field(default_factory=core_link_format)
    _upload: Block1Upload = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._upload = Block1Upload(self.max_body)

    def answer(self, request: CoapMessage) -> CoapMessage | None:
        """What goes back for a request: a Block1 upload is reassembled first (RFC 7959 2.5), then
        the response of `respond()` is fitted to `limit()` (the client's Max-Message-Size over TCP,
        RFC 8323 5.3.1; what one datagram carries over UDP, RFC 7252 4.6):

        - a request with Block2 gets that block (RFC 7959 2.4), smaller if the limit says so;
        - a response that fits goes whole;
        - one that does not, when `unsolicited_block2()` (UDP; TCP after the client's CSM announced
          Block-Wise-Transfer, RFC 8323 5.3.2), goes as its first Block2 block, the largest that
          fits, with ETag and Size2;
        - one that does not, to a TCP client that did not (it may not know Block2, a critical option),
          becomes 4.06 Not Acceptable with Size2 (RFC 7959 4): the client's own limit rules the
          representation out, as Accept can; 4.13 is about request bodies (RFC 7959 2.9.3);
        - any response drops its diagnostic payload if that is what keeps it over the limit;
          None if even that is too large (CoAP over TCP then aborts the connection).
        """
        try:
            block1 = block_option(request, OptionNumber.BLOCK1)
            block2 = block_option(request, OptionNumber.BLOCK2)
        except BlockError as exc:
            return self._within_limit(reply(request, Code.BAD_REQUEST, {"error": str(exc)}))
        if block1 is not None:
            outcome, body = self._upload.add((request.code, request.uri_path), block1, request.payload)
            if outcome is UploadOutcome.CONTINUE:
                return self._within_limit(CoapMessage(Code.CONTINUE, request.token,
                                                      ((OptionNumber.BLOCK1, block1.encode()),)))
            if outcome is not UploadOutcome.COMPLETE:
                return self._within_limit(upload_error(request, outcome, self._upload.max_body))
            request = replace(request, payload=body,
                              options=tuple(o for o in request.options if o[0] != OptionNumber.BLOCK1))
        response = self.respond(request)
        if block1 is not None:   # RFC 7959 2.3: the last block's Block1 comes back with M = 0
            response = replace(response, options=response.options + (
                (OptionNumber.BLOCK1, BlockOption(block1.num, False, block1.szx).encode()),))
        return self._fit(response, block2)

    def fit(self, response: CoapMessage, block2: BlockOption | None) -> CoapMessage | None:
        """A response made elsewhere (a slow resource's), fitted as `answer()` fits its own."""
        return self._fit(response, block2)

    def _fit(self, response: CoapMessage, block2: BlockOption | None) -> CoapMessage | None:
        representation = is_success(response.code) and bool(response.payload)
        if representation and block2 is not None:
            return self._block2(response, block2.offset, block2.szx)
        if self.size_of(response) <= self.limit():
            return response
        if representation and self.unsolicited_block2():
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
            return self._within_limit(reply(response, Code.BAD_OPTION, {"error": str(exc)}))
        options = response.options
        if not any(number == OptionNumber.ETAG for number, _ in options):
            options += ((OptionNumber.ETAG, hashlib.sha256(body).digest()[:ETAG_LENGTH]),)
        for size_exponent in range(min(szx, MAX_SZX), -1, -1):
            block = block_of(body, offset, size_exponent)
            extra = ((OptionNumber.SIZE2, encode_uint(len(body))),) if block.num == 0 else ()
            piece = CoapMessage(response.code, response.token, options + ((OptionNumber.BLOCK2, block.encode()),)
                                + extra, block_payload(body, block))
            if self.size_of(piece) <= self.limit():
                return piece
        return self._too_large(response)

    def _too_large(self, response: CoapMessage) -> CoapMessage | None:
        limit, size = self.limit(), len(response.payload)
        log.info("%s: CoAP: a %d-byte representation does not fit the client's Max-Message-Size %d", self.client,
                 size, limit)
        error = reply(response, Code.NOT_ACCEPTABLE,
                      {"error": f"{size} bytes do not fit Max-Message-Size {limit}: ask with Block2"})
        return self._within_limit(replace(error, options=error.options + ((OptionNumber.SIZE2, encode_uint(size)),)))

    def _within_limit(self, response: CoapMessage) -> CoapMessage | None:
        """The response, or without its diagnostic payload (RFC 7252 5.5.2) if only that way it
        fits the client's limit, or None."""
        if self.size_of(response) <= self.limit():
            return response
        bare = CoapMessage(response.code, response.token,
                           tuple(o for o in response.options if o[0] != OptionNumber.CONTENT_FORMAT))
        return bare if self.size_of(bare) <= self.limit() else None

    def respond(self, request: CoapMessage) -> CoapMessage:
        """The response to a request, with its token, whatever its size (see `answer()`)."""
        unsupported = unsupported_option(request)
        if unsupported is not None:
            return reply(request, Code.BAD_OPTION, {"error": f"option {unsupported} is not supported"})
        path = request.uri_path
        if path == WELL_KNOWN_CORE:
            if request.code != Code.GET:
                return reply(request, Code.METHOD_NOT_ALLOWED, {"error": "only GET on /.well-known/core"})
            return reply(request, Code.CONTENT, self.link_format, ContentFormat.LINK_FORMAT)
        return self._resource(request, path)

    def _resource(self, request: CoapMessage, path: str) -> CoapMessage:
        accept = request.first(OptionNumber.ACCEPT)
        if accept is not None and decode_uint(accept) != ContentFormat.JSON:
            return reply(request, Code.NOT_ACCEPTABLE, {"error": "only application/json (50)"})
        content_format = request.first(OptionNumber.CONTENT_FORMAT)
        if request.payload and content_format is not None and decode_uint(content_format) != ContentFormat.JSON:
            return reply(request, Code.UNSUPPORTED_CONTENT_FORMAT, {"error": "send application/json (50)"})
        code = known_code(request.code)
        method = code.name if code is not None else dotted(request.code)
        outcome = self.device.handle(method, path, request.payload)
        return reply(request, COAP_CODES[outcome.outcome], outcome.document)


def reply(request: CoapMessage, code: Code, body: dict[str, Any] | bytes,
          content_format: ContentFormat = ContentFormat.JSON) -> CoapMessage:
    """A response with the request's token: `body` as JSON (or the bytes as they are)."""
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    return CoapMessage(code, request.token, ((OptionNumber.CONTENT_FORMAT, encode_uint(content_format)),), payload)


def unsupported_option(request: CoapMessage) -> int | None:
    """The first critical option this server does not act on (RFC 7252 5.4.1: 4.02), or None."""
    return next((n for n, _ in request.options if is_critical(n) and n not in UNDERSTOOD_CRITICAL), None)


def block_option(request: CoapMessage, number: int) -> BlockOption | None:
    """The request's Block1 or Block2 option (RFC 7959 2.2), None if absent; BlockError if bad."""
    values = request.values(number)
    if len(values) > 1:
        raise BlockError(f"option {number} is not repeatable")
    return BlockOption.decode(values[0]) if values else None


def upload_error(request: CoapMessage, outcome: UploadOutcome, max_body: int) -> CoapMessage:
    """4.08, 4.13 (with Size1, RFC 7959 4) or 4.00 for a Block1 upload that cannot go on."""
    if outcome is UploadOutcome.TOO_LARGE:
        error = reply(request, Code.REQUEST_ENTITY_TOO_LARGE, {"error": f"bodies of at most {max_body} bytes"})
        return replace(error, options=error.options + ((OptionNumber.SIZE1, encode_uint(max_body)),))
    if outcome is UploadOutcome.INCOMPLETE:
        return reply(request, Code.REQUEST_ENTITY_INCOMPLETE, {"error": "a block out of order: start from NUM 0"})
    return reply(request, Code.BAD_REQUEST, {"error": "every block but the last fills its SZX size"})

