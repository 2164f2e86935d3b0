"""DTLS 1.2 records and handshake fragments (RFC 6347 4.1, 4.2.2-4.2.3), the stateless cookie
(4.2.1), the host's record protection with an anti-replay window (4.1.2.6). Sans-IO."""
from __future__ import annotations

import hashlib
import hmac
import os
import struct
import time
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM

from host.tls.numbers import DTLS10, DTLS12, DTLS_HS_HEADER_SIZE, DTLS_RECORD_HEADER_SIZE, CipherSuite, ContentType
from host.tls.protection import SessionKeys

RECORD_HEADER_SIZE = DTLS_RECORD_HEADER_SIZE
HS_HEADER_SIZE = DTLS_HS_HEADER_SIZE
HS_CLIENT_HELLO = 1
HS_HELLO_VERIFY_REQUEST = 3
HS_FINISHED = 20
_RECORD = struct.Struct(">BHH6sH")
_AAD = struct.Struct(">QBHH")
WINDOW = 64
# The CCM_8 suites (8-byte tag): ECDHE-ECDSA (RFC 7251) and PSK (RFC 6655, RFC 7925's mandatory one).
CCM_8_SUITES = frozenset({CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, 0xC0A8})


class DtlsError(ValueError):
    """A datagram that does not parse as DTLS records: dropped (RFC 6347 4.1.2.7)."""


@dataclass(frozen=True)
class DtlsRecord:
    content_type: int
    version: int
    epoch: int
    seq: int            # the 48-bit sequence_number
    fragment: bytes

    @property
    def seq_num(self) -> int:
        """epoch || sequence_number: the AEAD's seq_num (RFC 6347 4.1.2.1)."""
        return (self.epoch << 48) | self.seq

    def encode(self) -> bytes:
        return record_bytes(self.content_type, self.epoch, self.seq, self.fragment, self.version)


def record_bytes(content_type: int, epoch: int, seq: int, fragment: bytes, version: int = DTLS12) -> bytes:
    return _RECORD.pack(content_type, version, epoch, seq.to_bytes(6, "big"), len(fragment)) + fragment


def parse_datagram(data: bytes) -> list[DtlsRecord]:
    """The records of one datagram (RFC 6347 4.1: several may share one); DtlsError if any is cut."""
    records = []
    p = 0
    while p < len(data):
        if len(data) - p < RECORD_HEADER_SIZE:
            raise DtlsError("a record header is cut short")
        content_type, version, epoch, seq, length = _RECORD.unpack_from(data, p)
        if version >> 8 != 0xFE:
            raise DtlsError(f"version {version:#06x} is not DTLS")
        start = p + RECORD_HEADER_SIZE
        if start + length > len(data):
            raise DtlsError("a record is cut short")
        records.append(DtlsRecord(content_type, version, epoch, int.from_bytes(seq, "big"), data[start:start + length]))
        p = start + length
    return records


@dataclass(frozen=True)
class HandshakeFragment:
    msg_type: int
    length: int
    message_seq: int
    offset: int
    body: bytes

    @property
    def whole(self) -> bool:
        return self.offset == 0 and len(self.body) == self.length


def parse_fragments(fragment: bytes) -> list[HandshakeFragment]:
    """The handshake fragments of one record of epoch 0 (RFC 6347 4.2.2)."""
    out = []
    p = 0
    while p < len(fragment):
        if len(fragment) - p < HS_HEADER_SIZE:
            raise DtlsError("a handshake header is cut short")
        msg_type = fragment[p]
        length = int.from_bytes(fragment[p + 1:p + 4], "big")
        seq = int.from_bytes(fragment[p + 4:p + 6], "big")
        offset = int.from_bytes(fragment[p + 6:p + 9], "big")
        frag_len = int.from_bytes(fragment[p + 9:p + 12], "big")
        start = p + HS_HEADER_SIZE
        if start + frag_len > len(fragment) or offset + frag_len > length:
            raise DtlsError("a handshake fragment is cut short or beyond its message")
        out.append(HandshakeFragment(msg_type, length, seq, offset, fragment[start:start + frag_len]))
        p = start + frag_len
    return out


def fragment_bytes(msg_type: int, length: int, seq: int, offset: int, body: bytes) -> bytes:
    return (bytes([msg_type]) + length.to_bytes(3, "big") + seq.to_bytes(2, "big")
            + offset.to_bytes(3, "big") + len(body).to_bytes(3, "big") + body)


def whole_message(f: HandshakeFragment) -> bytes:
    return fragment_bytes(f.msg_type, f.length, f.message_seq, 0, f.body)


@dataclass
class MessageAssembler:
    """The client's handshake messages from fragments in any order, duplicates dropped
    (RFC 6347 4.2.3): `add` takes a fragment, `pop` returns the next whole message in
    message_seq order (its DTLS form, unfragmented) or None."""

    next_seq: int
    max_length: int = 16384
    _parts: dict[int, tuple[int, int, bytearray, set[int]]] = field(default_factory=dict)

    def add(self, f: HandshakeFragment) -> None:
        if f.message_seq < self.next_seq or f.message_seq > self.next_seq + 8 or f.length > self.max_length:
            return   # an old message (a retransmission) or too far ahead
        msg_type, length, buf, have = self._parts.setdefault(
            f.message_seq, (f.msg_type, f.length, bytearray(f.length), set()))
        if (msg_type, length) != (f.msg_type, f.length):
            raise DtlsError(f"fragments of message {f.message_seq} disagree on its type or length")
        buf[f.offset:f.offset + len(f.body)] = f.body
        have.update(range(f.offset, f.offset + len(f.body)))

    def pop(self) -> bytes | None:
        part = self._parts.get(self.next_seq)
        if part is None or len(part[3]) != part[1]:
            return None
        del self._parts[self.next_seq]
        msg = HandshakeFragment(part[0], part[1], self.next_seq, 0, bytes(part[2]))
        self.next_seq += 1
        return whole_message(msg)


def split_client_hello(body: bytes) -> tuple[bytes, bytes]:
    """(cookie, the ClientHello body without its cookie) of a DTLS ClientHello body (RFC 6347
    4.2.1: client_version, random, session_id<0..32>, cookie<0..2^8-1>, ...)."""
    p = 2 + 32
    if len(body) < p + 1:
        raise DtlsError("ClientHello cut short")
    p += 1 + body[p]
    if len(body) < p + 1:
        raise DtlsError("ClientHello cut short")
    n = body[p]
    if len(body) < p + 1 + n:
        raise DtlsError("ClientHello cut short")
    return body[p + 1:p + 1 + n], body[:p] + body[p + 1 + n:]


class CookieJar:
    """Stateless cookies (RFC 6347 4.2.1): HMAC-SHA256 under the host's own secret, changed every
    `rotate` seconds (the previous one still accepted), over the client's address and port and
    its ClientHello without the cookie. 0 bytes of state per client."""

    SIZE = 32

    def __init__(self, rotate: float = 300.0, clock: type[time.struct_time] | None = None) -> None:
        self.rotate = rotate
        self._secrets = [os.urandom(32), os.urandom(32)]
        self._since = time.monotonic()

    def _turn(self) -> None:
        if time.monotonic() - self._since > self.rotate:
            self._secrets = [os.urandom(32), self._secrets[0]]
            self._since = time.monotonic()

    @staticmethod
    def _mac(secret: bytes, address: tuple[str, int], hello: bytes) -> bytes:
        peer = f"{address[0]}|{address[1]}|".encode()
        return hmac.new(secret, peer + hello, hashlib.sha256).digest()

    def cookie(self, address: tuple[str, int], hello_without_cookie: bytes) -> bytes:
        self._turn()
        return self._mac(self._secrets[0], address, hello_without_cookie)

    def valid(self, address: tuple[str, int], hello_without_cookie: bytes, cookie: bytes) -> bool:
        self._turn()
        return any(hmac.compare_digest(self._mac(s, address, hello_without_cookie), cookie) for s in self._secrets)


def hello_verify_request(client_hello: HandshakeFragment, record_seq: int, cookie: bytes) -> bytes:
    """The HelloVerifyRequest datagram (RFC 6347 4.2.1): message_seq and record sequence number
    those of the ClientHello (4.2.1: the server stays stateless)."""
    body = DTLS10.to_bytes(2, "big") + bytes([len(cookie)]) + cookie
    msg = fragment_bytes(HS_HELLO_VERIFY_REQUEST, len(body), client_hello.message_seq, 0, body)
    return record_bytes(ContentType.HANDSHAKE, 0, record_seq, msg)


def fragment_flight(messages: list[bytes], room: int) -> list[bytes]:
    """Handshake records' fragments (12-byte header + body) of whole DTLS messages, each at most
    `room` bytes (RFC 6347 4.2.3)."""
    out = []
    for message in messages:
        msg_type, length = message[0], int.from_bytes(message[1:4], "big")
        seq = int.from_bytes(message[4:6], "big")
        body = message[HS_HEADER_SIZE:]
        step = max(1, room - HS_HEADER_SIZE)
        offset = 0
        while True:
            piece = body[offset:offset + step]
            out.append(fragment_bytes(msg_type, length, seq, offset, piece))
            offset += len(piece)
            if offset >= length:
                break
    return out


class ReplayWindow:
    """RFC 6347 4.1.2.6: the highest seq_num accepted and a 64-bit bitmap behind it."""

    def __init__(self) -> None:
        self.top = -1
        self.bits = 0

    def fresh(self, seq: int) -> bool:
        if seq > self.top:
            return True
        back = self.top - seq
        return back < WINDOW and not (self.bits >> back) & 1

    def accept(self, seq: int) -> None:
        if seq > self.top:
            shift = seq - self.top
            self.bits = ((self.bits << shift) | 1) & ((1 << WINDOW) - 1) if shift < WINDOW else 1
            self.top = seq
        else:
            self.bits |= 1 << (self.top - seq)


class HostDtlsProtection:
    """Epoch 1's records with the keys the card exported (tandem mode): AEAD suites (GCM, CCM,
    CCM_8), nonce salt || epoch || sequence_number, AAD epoch || sequence_number, type, version,
    length (RFC 6347 4.1.2.1, RFC 5288 3, RFC 6655 3); the replay window on received records."""

    def __init__(self, keys: SessionKeys) -> None:
        self.keys = keys
        if keys.suite == CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256:
            self._read: AESGCM | AESCCM = AESGCM(keys.client_key)
            self._write: AESGCM | AESCCM = AESGCM(keys.server_key)
            self.tag = 16
        else:
            self.tag = 8 if keys.suite in CCM_8_SUITES else 16
            self._read = AESCCM(keys.client_key, tag_length=self.tag)
            self._write = AESCCM(keys.server_key, tag_length=self.tag)
        self.epoch = keys.write_seq >> 48
        self.window = ReplayWindow()
        if keys.read_seq & ((1 << 48) - 1):
            self.window.accept(keys.read_seq - 1)   # the client's Finished

    @property
    def overhead(self) -> int:
        return RECORD_HEADER_SIZE + 8 + self.tag

    def protect(self, content_type: int, data: bytes) -> bytes:
        seq = self.keys.write_seq
        self.keys.write_seq += 1
        explicit = seq.to_bytes(8, "big")
        aad = _AAD.pack(seq, content_type, DTLS12, len(data))
        sealed = self._write.encrypt(self.keys.server_iv + explicit, data, aad)
        return record_bytes(content_type, seq >> 48, seq & ((1 << 48) - 1), explicit + sealed)

    def unprotect(self, record: DtlsRecord) -> bytes | None:
        """The plaintext, or None for a record to drop: another epoch, a replay, one that does not
        authenticate (RFC 6347 4.1.2.1, 4.1.2.6, 4.1.2.7)."""
        if record.epoch != self.epoch or not self.window.fresh(record.seq_num) or len(record.fragment) < 8 + self.tag:
            return None
        explicit = record.fragment[:8]
        aad = _AAD.pack(record.seq_num, record.content_type, DTLS12, len(record.fragment) - 8 - self.tag)
        try:
            plain = self._read.decrypt(self.keys.client_iv + explicit, record.fragment[8:], aad)
        except Exception:   # InvalidTag: dropped silently (RFC 6347 4.1.2.7)
            return None
        self.window.accept(record.seq_num)
        return plain
