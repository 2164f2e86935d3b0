"""CoAP over TLS (RFC 8323) on a TLS session whose handshake ran in the card.

Three layers, the first two sans-IO:

- The message format: `encode_message` / `decode_message` for RFC 8323 section 3.2 frames
  (Len/TKL nibble, 1/2/4-byte extended length, Code, Token, Options, 0xFF and Payload), with the
  RFC 7252 option encoding of `host.apps.coap` (shared with CoAP over UDP). Options are kept as
  (number, bytes) pairs because in signalling messages their meaning depends on the code
  (option 2 is Max-Message-Size in a CSM, Custody in a Ping, Bad-CSM-Option in an Abort).
- `CoapTcpConnection`: bytes in, bytes out. It sends its CSM first, insists on the client's CSM
  first, answers Ping with Pong, ends on Release and Abort, aborts on malformed or oversized
  messages, and answers requests with the shared `CoapResponder` (device resources and
  `/.well-known/core`). Every
  message it sends fits the client's Max-Message-Size (RFC 8323 5.3.1): representations go in
  Block2 pieces (RFC 7959 2.4, `host.apps.coap_blockwise`) when the client asks with Block2 or
  announced Block-Wise-Transfer in its CSM (RFC 8323 5.3.2); Block1 uploads are reassembled.
- `coap_tcp_application(tandem)`: pumps records between a `RecordLayer` and the connection.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any

from host.apps.coap import (
    EXTENSIONS,
    MAX_TOKEN_LENGTH,
    PAYLOAD_MARKER,
    CoapFormatError,
    CoapMessage,
    CoapResponder,
    Code,
    decode_options,
    decode_uint,
    dotted,
    encode_options,
    encode_uint,
    is_critical,
    is_request,
    is_signalling,
    known_code,
    read_field,
    split_field,
)
from host.apps.device import Device, process_device
from host.apps.pump import pump
from host.se_tls import Application, SessionInfo
from host.tls.record_layer import RecordLayer

log = logging.getLogger(__name__)

MAX_MESSAGE_SIZE = 8192          # what our CSM announces, and what we accept
DEFAULT_MAX_MESSAGE_SIZE = 1152  # RFC 8323 5.3.1: the peer's limit until its CSM says otherwise


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


# -- the message format -------------------------------------------------------------------------

def encode_message(message: CoapMessage) -> bytes:
    """RFC 8323 3.2: Len|TKL, extended length, Code, Token, Options, 0xFF and Payload."""
    if len(message.token) > MAX_TOKEN_LENGTH:
        raise ValueError(f"a token has at most {MAX_TOKEN_LENGTH} bytes")
    body = encode_options(message.options)
    if message.payload:
        body += bytes([PAYLOAD_MARKER]) + message.payload
    length, length_ext = split_field(len(body), allow_four_bytes=True)
    return bytes([length << 4 | len(message.token)]) + length_ext + bytes([message.code]) + message.token + body


def frame_size(buffer: bytes | bytearray) -> int | None:
    """How many bytes the first message in buffer takes, None if its header is incomplete."""
    if not buffer:
        return None
    token_length = buffer[0] & 0x0F
    if token_length > MAX_TOKEN_LENGTH:
        raise CoapFormatError(f"token length {token_length} is over {MAX_TOKEN_LENGTH}")
    length = read_field(buffer[0] >> 4, bytes(buffer[:5]), 1)
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



@dataclass
class CoapTcpConnection:
    """Sans-IO server side of one CoAP-over-TLS connection.

    Its CSM waits in `data_to_send()` from the start; then `receive_data()` bytes from the client
    and send what `data_to_send()` gives. `closed` turns true on Release, Abort (either side) or
    the end of the stream; what is left to send (an Abort) still has to go out.

    What it sends fits the client's Max-Message-Size (RFC 8323 5.3.1), see `CoapResponder.answer()`.
    """

    device: Device
    max_message_size: int = MAX_MESSAGE_SIZE
    client: str = "-"   # the client's address, in every log line
    closed: bool = field(default=False, init=False)
    peer: PeerSettings | None = field(default=None, init=False)   # None until the client's CSM
    requests: int = field(default=0, init=False)
    _buffer: bytearray = field(default_factory=bytearray, repr=False)
    _out: bytearray = field(default_factory=bytearray, repr=False)
    _responder: CoapResponder = field(init=False, repr=False)   # bodies up to our own Max-Message-Size

    def __post_init__(self) -> None:
        self._responder = CoapResponder(self.device, self.max_message_size, message_size,
                                        lambda: self.peer_max_message_size, self._block_wise, self.client)
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

    def _block_wise(self) -> bool:
        """Whether the client announced Block-Wise-Transfer in its CSM (RFC 8323 5.3.2)."""
        return self.peer is not None and self.peer.block_wise_transfer

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
            response = self._responder.answer(message)
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


def message_size(message: CoapMessage) -> int:
    """What Max-Message-Size counts: the whole frame, header included (RFC 8323 5.3.1)."""
    return len(encode_message(message))


# -- the application ----------------------------------------------------------------------------

def coap_tcp_application(tandem: Any, device: Device | None = None) -> Application:
    """The CoAP-over-TLS application for `GenericServer`: one connection core per TLS session."""
    shared = device or process_device()

    async def application(layer: RecordLayer, info: SessionInfo) -> None:
        connection = CoapTcpConnection(shared, client=info.peer)
        await pump(connection, layer)
        log.info("%s: CoAP session ended after %d request(s)", info.peer, connection.requests)

    return application
