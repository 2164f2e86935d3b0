"""A minimal TLS 1.2 PSK client for the benchmark (Python's `ssl` has no PSK client before 3.13):
TLS_PSK_WITH_AES_128_CCM_8 (RFC 4279 2, RFC 6655, RFC 7925) with the extended master secret
(RFC 7627), sans-IO. It writes the client's flights and checks the server's; it interoperates with
openssl and with the card (tests/test_bench.py), and is no general-purpose client.

    client = PskClient(b"sensor-17", key)
    answer = card.exchange(client.client_hello())
    answer = card.exchange(client.flight3(answer))
    client.check_finished(answer)           # ValueError if the server's Finished is wrong
"""
from __future__ import annotations

import hashlib
import hmac
import os
import struct

from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from host.tls.numbers import TLS12, CipherSuite, ContentType, ExtensionType, HandshakeType
from host.tls.records import Record, split_records

__all__ = ["PskClient"]

SUITE = CipherSuite.TLS_PSK_WITH_AES_128_CCM_8
_TAG = 8


def prf(secret: bytes, label: bytes, seed: bytes, length: int) -> bytes:
    """RFC 5246 5: P_SHA256(secret, label + seed), `length` bytes."""
    seed = label + seed
    out, a = b"", seed
    while len(out) < length:
        a = hmac.new(secret, a, hashlib.sha256).digest()
        out += hmac.new(secret, a + seed, hashlib.sha256).digest()
    return out[:length]


def _message(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + len(body).to_bytes(3, "big") + body


def _extension(kind: int, body: bytes) -> bytes:
    return struct.pack(">HH", kind, len(body)) + body


class PskClient:
    """One PSK handshake, then records (`protect`, `unprotect`) with the session's keys."""

    def __init__(self, identity: bytes, key: bytes) -> None:
        self.identity, self.key = identity, key
        self.transcript = b""
        self.client_random = os.urandom(32)
        self.server_random = b""
        self.master = b""
        self._keys: tuple[bytes, bytes, bytes, bytes] = (b"", b"", b"", b"")
        self.write_seq = self.read_seq = 0

    def client_hello(self) -> bytes:
        """Flight 1: a ClientHello that offers only the PSK suite, with EMS and secure renegotiation."""
        extensions = _extension(ExtensionType.EXTENDED_MASTER_SECRET, b"") + _extension(0xFF01, b"\x00")
        body = (struct.pack(">H", TLS12) + self.client_random + b"\x00" + struct.pack(">HH", 2, SUITE)
                + b"\x01\x00" + struct.pack(">H", len(extensions)) + extensions)
        message = _message(HandshakeType.CLIENT_HELLO, body)
        self.transcript = message
        return Record(ContentType.HANDSHAKE, TLS12, message).encode()

    def flight3(self, server_flight: bytes) -> bytes:
        """ServerHello .. ServerHelloDone in; ClientKeyExchange, ChangeCipherSpec, Finished out.
        ValueError for a server flight that is not a PSK one."""
        data = b"".join(r.fragment for r in split_records(server_flight) if r.content_type == ContentType.HANDSHAKE)
        self.transcript += data
        if data[:1] != bytes([HandshakeType.SERVER_HELLO]):
            raise ValueError("the server's flight does not start with a ServerHello")
        self.server_random = data[6:38]
        sid = data[38]
        suite = int.from_bytes(data[39 + sid:41 + sid], "big")
        if suite != SUITE or not data.endswith(_message(HandshakeType.SERVER_HELLO_DONE, b"")):
            raise ValueError(f"the server chose {suite:#06x} or sent more than ServerHello, ServerHelloDone")
        cke = _message(HandshakeType.CLIENT_KEY_EXCHANGE, struct.pack(">H", len(self.identity)) + self.identity)
        self.transcript += cke
        n = len(self.key)
        premaster = struct.pack(">H", n) + bytes(n) + struct.pack(">H", n) + self.key
        session_hash = hashlib.sha256(self.transcript).digest()
        self.master = prf(premaster, b"extended master secret", session_hash, 48)
        block = prf(self.master, b"key expansion", self.server_random + self.client_random, 40)
        self._keys = (block[:16], block[16:32], block[32:36], block[36:40])
        verify = prf(self.master, b"client finished", hashlib.sha256(self.transcript).digest(), 12)
        finished = _message(HandshakeType.FINISHED, verify)
        self.transcript += finished
        return (Record(ContentType.HANDSHAKE, TLS12, cke).encode()
                + Record(ContentType.CHANGE_CIPHER_SPEC, TLS12, b"\x01").encode()
                + self.protect(finished, ContentType.HANDSHAKE))

    def check_finished(self, answer: bytes) -> None:
        """The server's ChangeCipherSpec and Finished: ValueError unless its verify_data is right."""
        records = split_records(answer)
        if len(records) != 2 or records[0].content_type != ContentType.CHANGE_CIPHER_SPEC:
            raise ValueError("the server did not answer with ChangeCipherSpec and Finished")
        expected = prf(self.master, b"server finished", hashlib.sha256(self.transcript).digest(), 12)
        if self.unprotect(records[1].encode()) != _message(HandshakeType.FINISHED, expected):
            raise ValueError("the server's Finished does not verify")

    def protect(self, data: bytes, content_type: int = ContentType.APPLICATION_DATA) -> bytes:
        """One AES-128-CCM_8 record (RFC 6655 3: nonce = client IV || explicit sequence number)."""
        explicit = struct.pack(">Q", self.write_seq)
        aad = explicit + struct.pack(">BHH", content_type, TLS12, len(data))
        sealed = AESCCM(self._keys[0], _TAG).encrypt(self._keys[2] + explicit, data, aad)
        self.write_seq += 1
        return Record(content_type, TLS12, explicit + sealed).encode()

    def unprotect(self, record: bytes, size: int | None = None) -> bytes:
        """The plaintext of one server record (InvalidTag if it does not authenticate); `size` is
        accepted for the benchmark's record round (the record holds all of it)."""
        (parsed,) = split_records(record)
        explicit, sealed = parsed.fragment[:8], parsed.fragment[8:]
        aad = struct.pack(">QBHH", self.read_seq, parsed.content_type, TLS12, len(sealed) - _TAG)
        self.read_seq += 1
        return AESCCM(self._keys[1], _TAG).decrypt(self._keys[3] + explicit, sealed, aad)
