"""The little the host reads of handshake messages (RFC 5246 7.4): the card builds and checks
them all; the host only reports what the card chose and notices the alerts it sent.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from host.tls.numbers import HANDSHAKE_HEADER_SIZE, ContentType, ExtensionType, HandshakeType
from host.tls.records import RecordError, split_records

__all__ = ["HANDSHAKE_HEADER_SIZE", "Resumption", "ServerHello", "alert_in", "client_hello_resumption",
           "server_hello_of", "suite_of_server_flight"]



@dataclass(frozen=True)
class ServerHello:
    """RFC 5246 7.4.1.3, up to compression_method (the extensions are not needed here)."""

    server_version: int
    random: bytes
    session_id: bytes
    cipher_suite: int
    compression_method: int

    @classmethod
    def parse(cls, body: bytes) -> ServerHello:
        """`body`: the message after its 4-byte handshake header. ValueError if truncated."""
        if len(body) < 35:
            raise ValueError(f"ServerHello of {len(body)} bytes is truncated")
        version = struct.unpack(">H", body[:2])[0]
        random, sid_length = body[2:34], body[34]
        rest = body[35 + sid_length:]
        if len(rest) < 3:
            raise ValueError("ServerHello ends before its cipher_suite")
        suite, compression = struct.unpack(">HB", rest[:3])
        return cls(version, random, body[35:35 + sid_length], suite, compression)


@dataclass(frozen=True)
class Resumption:
    """What a ClientHello offers to resume (RFC 5246 7.4.1.2 session_id, RFC 5077 3.2 ticket)."""

    session_id: bytes = b""
    ticket: bytes = b""


def client_hello_resumption(flight: bytes) -> Resumption:
    """The session_id and session ticket of the ClientHello in `flight` (its plaintext records, as
    the client sent them); empty ones where it has none or cannot be read (the card judges it)."""
    try:
        message = b"".join(r.fragment for r in split_records(flight)
                           if r.content_type == ContentType.HANDSHAKE)
    except RecordError:
        return Resumption()
    if message[:1] != bytes([HandshakeType.CLIENT_HELLO]):
        return Resumption()
    body = message[HANDSHAKE_HEADER_SIZE:HANDSHAKE_HEADER_SIZE + int.from_bytes(message[1:4], "big")]
    try:
        p = 34
        session_id = body[p + 1:p + 1 + body[p]]
        p += 1 + body[p]
        p += 2 + int.from_bytes(body[p:p + 2], "big")   # cipher_suites
        p += 1 + body[p]                               # compression_methods
        end = p + 2 + int.from_bytes(body[p:p + 2], "big")
        p += 2
        while p + 4 <= min(end, len(body)):
            kind, length = struct.unpack(">HH", body[p:p + 4])
            if kind == ExtensionType.SESSION_TICKET:
                return Resumption(bytes(session_id), bytes(body[p + 4:p + 4 + length]))
            p += 4 + length
        return Resumption(bytes(session_id))
    except IndexError:
        return Resumption()


def server_hello_of(flight: bytes) -> ServerHello | None:
    """The ServerHello of a plaintext server flight (records), if it starts one."""
    for record in split_records(flight):
        body = record.fragment
        if record.content_type == ContentType.HANDSHAKE and body[:1] == bytes([HandshakeType.SERVER_HELLO]):
            try:
                return ServerHello.parse(body[HANDSHAKE_HEADER_SIZE:])
            except ValueError:
                return None
    return None


def suite_of_server_flight(flight: bytes) -> int:
    """The cipher suite the card chose, read from its plaintext ServerHello; 0 if none."""
    hello = server_hello_of(flight)
    return hello.cipher_suite if hello else 0


def alert_in(flight: bytes) -> int | None:
    """The description of the first plaintext alert in a flight, None if it has none."""
    for record in split_records(flight):
        if record.content_type == ContentType.ALERT and len(record.fragment) == 2:
            return record.fragment[1]
    return None
