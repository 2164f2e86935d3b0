"""CoAP over TLS (RFC 8323): the TCP framing as pure functions, a sans-IO connection that
answers requests and signals, and the application that runs it over a card's TLS session.
Options are encoded and decoded with aiocoap's option machinery; the framing is written here."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from aiocoap.numbers.codes import Code
from aiocoap.numbers.contentformat import ContentFormat
from aiocoap.options import Options

from .device import BadRequest, Device, shared_device, MethodNotAllowed, NotFound, RESOURCES
from .record_layer import RecordLayer

log = logging.getLogger(__name__)

# RFC 8323 5.3.1: CSM options.
OPTION_MAX_MESSAGE_SIZE = 2
MAX_MESSAGE_SIZE = 16384
PAYLOAD_MARKER = 0xFF
JSON = ContentFormat.JSON if hasattr(ContentFormat, "JSON") else 50
LINK_FORMAT = 40


class CoapFramingError(ValueError):
    """Bytes that are not a CoAP-over-TCP message; the connection is aborted."""


@dataclass
class CoapMessage:
    code: int
    token: bytes = b""
    options: Options = field(default_factory=Options)
    payload: bytes = b""

    def body(self) -> bytes:
        encoded = self.options.encode()
        return encoded + (bytes([PAYLOAD_MARKER]) + self.payload if self.payload else b"")


def encode_frame(message: CoapMessage) -> bytes:
    """RFC 8323 3.2: Len+TKL nibbles, extended length, Code, Token, Options and Payload."""
    body = message.body()
    n = len(body)
    if len(message.token) > 8:
        raise ValueError("a token has at most 8 bytes")
    if n < 13:
        head, ext = n, b""
    elif n < 269:
        head, ext = 13, bytes([n - 13])
    elif n < 65805:
        head, ext = 14, (n - 269).to_bytes(2, "big")
    else:
        head, ext = 15, (n - 65805).to_bytes(4, "big")
    return bytes([head << 4 | len(message.token)]) + ext + bytes([message.code]) + message.token + body


def decode_frame(buffer: bytes) -> tuple[CoapMessage, int] | None:
    """The first message in buffer and the bytes it used, or None if it is not complete yet."""
    if not buffer:
        return None
    head, tkl = buffer[0] >> 4, buffer[0] & 0x0F
    if tkl > 8:
        raise CoapFramingError(f"token length {tkl} over 8")
    ext = {13: 1, 14: 2, 15: 4}.get(head, 0)
    if len(buffer) < 1 + ext:
        return None
    length = head if not ext else int.from_bytes(buffer[1:1 + ext], "big") + {1: 13, 2: 269, 4: 65805}[ext]
    start = 1 + ext
    total = start + 1 + tkl + length
    if total > MAX_MESSAGE_SIZE + 16:
        raise CoapFramingError(f"message of {length} bytes over the {MAX_MESSAGE_SIZE}-byte limit")
    if len(buffer) < total:
        return None
    code, token = buffer[start], bytes(buffer[start + 1:start + 1 + tkl])
    options = Options()
    try:
        rest = options.decode(bytes(buffer[start + 1 + tkl:total]))
    except Exception as exc:  # aiocoap raises its own error types for bad options
        raise CoapFramingError(f"bad options: {exc}") from None
    return CoapMessage(code, token, options, bytes(rest)), total


class CoapTcpConnection:
    """Sans-IO: receive_data() bytes, then take the answers from data_to_send()."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self._buffer = bytearray()
        self._out = bytearray()
        self.closed = False
        self.peer_csm_seen = False
        csm = CoapMessage(int(Code.CSM))
        csm.options.add_option(_uint_option(OPTION_MAX_MESSAGE_SIZE, MAX_MESSAGE_SIZE))
        self._out += encode_frame(csm)   # RFC 8323 5.3: each side sends its CSM first

    def data_to_send(self) -> bytes:
        out, self._out = bytes(self._out), bytearray()
        return out

    def receive_data(self, data: bytes) -> None:
        self._buffer += data
        while not self.closed and (decoded := decode_frame(bytes(self._buffer))) is not None:
            message, used = decoded
            del self._buffer[:used]
            self._handle(message)

    def _send(self, message: CoapMessage) -> None:
        self._out += encode_frame(message)

    def _handle(self, message: CoapMessage) -> None:
        code = Code(message.code)
        if code == Code.CSM:
            self.peer_csm_seen = True
        elif code == Code.PING:
            self._send(CoapMessage(int(Code.PONG), message.token))
        elif code in (Code.RELEASE, Code.ABORT):
            self.closed = True
        elif code == Code.PONG or code == Code.EMPTY:
            pass
        elif code.is_request():
            self._send(self._respond(code, message))
        else:
            log.info("CoAP: ignored message with code %s", code)

    def _respond(self, code: Code, request: CoapMessage) -> CoapMessage:
        path = "/".join(request.options.uri_path)
        method = code.name
        if path == ".well-known/core" and method == "GET":
            links = ",".join(f'</{p}>;ct=50' for p in RESOURCES)
            return self._reply(Code.CONTENT, request, links.encode(), LINK_FORMAT)
        try:
            document = self.device.handle(method, path, request.payload)
        except NotFound:
            return self._reply(Code.NOT_FOUND, request, b"")
        except MethodNotAllowed:
            return self._reply(Code.METHOD_NOT_ALLOWED, request, b"")
        except BadRequest as exc:
            return self._reply(Code.BAD_REQUEST, request, str(exc).encode())
        result = Code.CHANGED if method == "PUT" else Code.CONTENT
        return self._reply(result, request, json.dumps(document).encode(), JSON)

    @staticmethod
    def _reply(code: Code, request: CoapMessage, payload: bytes, content_format: int | None = None) -> CoapMessage:
        reply = CoapMessage(int(code), request.token, Options(), payload)
        if content_format is not None and payload:
            reply.options.content_format = content_format
        return reply


def _uint_option(number: int, value: int) -> Any:
    from aiocoap.optiontypes import UintOption

    return UintOption(number, value)


def coap_tcp_application(tandem: Any) -> Any:
    device = shared_device()

    async def application(layer: RecordLayer, info: Any) -> None:
        connection = CoapTcpConnection(device)
        await layer.send(await layer.encrypt(connection.data_to_send()))
        while not connection.closed and (record := await layer.recv()) is not None:
            try:
                connection.receive_data(await layer.decrypt(record))
            except CoapFramingError as exc:
                log.info("%s: %s", info.peer, exc)
                return
            out = connection.data_to_send()
            if out:
                await layer.send(await layer.encrypt(out))

    return application
