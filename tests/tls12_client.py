"""A deliberately small TLS 1.2 client (ECDHE-ECDSA, AES-128-GCM) for tests that a stock client
cannot run: a tampered Finished, an invalid ECDH point, a client that stops half-way, handshake
messages and alerts split over records down to one byte each (RFC 5246 6.2.1), a Finished split
over protected records, a ClientHello of any size, malformed extensions, and exact knowledge of
every byte sent. Written for the tests from RFC 5246, RFC 8422, RFC 7627, RFC 5288, RFC 9155.

The handshake runs whole (`handshake()`) or step by step (`send_client_hello()`,
`read_server_flight()`, `key_exchange()`, `finished()`, `send_flight3()`, `read_server_finished()`)
so a test can reorder, corrupt or drop what it likes in between.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import socket
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from host.tls.protection import HostRecordProtection, SessionKeys
from host.tls.records import Record

HANDSHAKE, CCS, ALERT, APPDATA = 22, 20, 21, 23
GCM_SUITE = 0xC02B
CCM_SUITE = 0xC0AC
CCM8_SUITE = 0xC0AE
CBC_SUITE = 0xC023
PADDING = 21  # RFC 7685
SIGNATURE_HASHES = {0x0403: hashes.SHA256(), 0x0503: hashes.SHA384(), 0x0603: hashes.SHA512()}


class ByteSocket(Protocol):
    """A socket, or a test's stand-in that carries the bytes elsewhere (tests/test_card_tls.py)."""

    def sendall(self, data: bytes, /) -> None: ...

    def recv(self, size: int, /) -> bytes: ...

    def close(self) -> None: ...


def prf(secret: bytes, label: bytes, seed: bytes, length: int) -> bytes:
    """RFC 5246 section 5, P_SHA256."""
    out, a = b"", label + seed
    while len(out) < length:
        a = hmac.new(secret, a, hashlib.sha256).digest()
        out += hmac.new(secret, a + label + seed, hashlib.sha256).digest()
    return out[:length]


def record(content_type: int, body: bytes, version: int = 0x0303) -> bytes:
    return struct.pack(">BHH", content_type, version, len(body)) + body


def records(content_type: int, body: bytes, size: int | None = None, version: int = 0x0303) -> bytes:
    """`body` in plaintext records of at most `size` bytes each (one record if None)."""
    if size is None:
        return record(content_type, body, version)
    return b"".join(record(content_type, body[i:i + size], version) for i in range(0, len(body), size))


def handshake_message(msg_type: int, body: bytes) -> bytes:
    return bytes([msg_type]) + len(body).to_bytes(3, "big") + body


def extension(ext_type: int, body: bytes) -> bytes:
    return struct.pack(">HH", ext_type, len(body)) + body


def client_hello(random: bytes, suites: Sequence[int], groups: Sequence[int] | None = (23,), ems: bool = True,
                 sig_algs: Sequence[int] | None = (0x0403,), extra: bytes = b"", padding: int | None = None,
                 session_id: bytes = b"") -> bytes:
    """groups, sig_algs None: no supported_groups, signature_algorithms extension; padding: a
    padding extension (RFC 7685) of that many bytes, last; session_id: a session to resume."""
    exts = b""
    if groups is not None:
        exts += extension(10, struct.pack(">H", 2 * len(groups)) + b"".join(struct.pack(">H", g) for g in groups))
    exts += extension(11, b"\x01\x00")
    if sig_algs is not None:
        exts += extension(13, struct.pack(">H", 2 * len(sig_algs)) + b"".join(struct.pack(">H", s) for s in sig_algs))
    exts += extension(0xFF01, b"\x00")
    if ems:
        exts += extension(23, b"")
    exts += extra
    if padding is not None:
        exts += extension(PADDING, bytes(padding))
    body = b"\x03\x03" + random + bytes([len(session_id)]) + session_id + struct.pack(">H", 2 * len(suites))
    body += b"".join(struct.pack(">H", s) for s in suites) + b"\x01\x00" + struct.pack(">H", len(exts)) + exts
    return handshake_message(1, body)


class AlertReceived(Exception):
    def __init__(self, level: int, description: int) -> None:
        super().__init__(f"alert {description} (level {level})")
        self.level, self.description = level, description


@dataclass
class RawTlsClient:
    host: str
    port: int
    ca: x509.Certificate | None = None
    timeout: float = 20.0
    sock: ByteSocket | None = None
    transcript: bytes = b""
    buffer: bytes = b""
    write_seq: int = 0
    read_seq: int = 0
    mirror: HostRecordProtection | None = None   # records of the suites other than GCM

    def __post_init__(self) -> None:
        if self.sock is None:
            self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)

    @property
    def _sock(self) -> ByteSocket:
        assert self.sock is not None, "connected in __post_init__"
        return self.sock

    def close(self) -> None:
        self._sock.close()

    def send(self, data: bytes) -> None:
        self._sock.sendall(data)

    def read_record(self) -> tuple[int, bytes]:
        while len(self.buffer) < 5 or len(self.buffer) < 5 + struct.unpack(">H", self.buffer[3:5])[0]:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buffer += chunk
        length = struct.unpack(">H", self.buffer[3:5])[0]
        content_type, body = self.buffer[0], self.buffer[5:5 + length]
        self.buffer = self.buffer[5 + length:]
        if content_type == ALERT and len(body) == 2:
            raise AlertReceived(body[0], body[1])
        return content_type, body

    def read_handshake_messages(self, until: int) -> dict[int, bytes]:
        messages: dict[int, bytes] = {}
        pending = b""
        while until not in messages:
            content_type, body = self.read_record()
            assert content_type == HANDSHAKE, f"expected handshake, got {content_type}"
            pending += body
            while len(pending) >= 4 and len(pending) >= 4 + int.from_bytes(pending[1:4], "big"):
                n = 4 + int.from_bytes(pending[1:4], "big")
                message, pending = pending[:n], pending[n:]
                self.transcript += message
                messages[message[0]] = message[4:]
        return messages

    def handshake(self, suites: Sequence[int] = (GCM_SUITE,), tamper_finished: bool = False,
                  point: bytes | None = None, stop_after_hello: bool = False, record_size: int | None = None,
                  finished_record_size: int | None = None, **hello: object) -> None:
        """A whole handshake. record_size: every plaintext handshake message in records of at most
        that many bytes; finished_record_size: the Finished in protected records of that many."""
        self.send_client_hello(suites, record_size=record_size, **hello)
        if stop_after_hello:
            return
        self.read_server_flight()
        cke = self.key_exchange(point)
        finished = self.finished(tamper_finished)
        self.send_flight3(cke, finished, record_size=record_size, finished_record_size=finished_record_size)
        self.read_server_finished()

    def send_client_hello(self, suites: Sequence[int] = (GCM_SUITE,), record_size: int | None = None,
                          **hello: object) -> bytes:
        """Sends a ClientHello (in records of at most record_size bytes); returns the message."""
        self.client_random = os.urandom(32)
        hello_msg = client_hello(self.client_random, suites, **hello)  # type: ignore[arg-type]
        self.transcript = hello_msg
        self.send(records(HANDSHAKE, hello_msg, record_size, 0x0301))
        return hello_msg

    def read_server_flight(self) -> None:
        """ServerHello to ServerHelloDone: the chain and the ServerKeyExchange's signature checked."""
        self._check_server(self.read_handshake_messages(until=14))

    def key_exchange(self, point: bytes | None = None) -> bytes:
        """The ClientKeyExchange (our point, or `point`); derives the keys. Returns the message."""
        key = ec.generate_private_key(ec.SECP256R1())
        my_point = key.public_key().public_bytes(serialization.Encoding.X962,
                                                 serialization.PublicFormat.UncompressedPoint)
        cke = handshake_message(16, bytes([65]) + (point if point is not None else my_point))
        self.transcript += cke
        premaster = key.exchange(ec.ECDH(), self.server_key)
        self.session_hash = hashlib.sha256(self.transcript).digest()
        if self.ems:
            self.master = prf(premaster, b"extended master secret", self.session_hash, 48)
        else:
            self.master = prf(premaster, b"master secret", self.client_random + self.server_random, 48)
        block = prf(self.master, b"key expansion", self.server_random + self.client_random, 96)
        self.client_key, self.server_key_bytes = block[:16], block[16:32]
        self.client_iv, self.server_iv = block[32:36], block[36:40]
        self.mirror = None
        if self.suite == CBC_SUITE:   # RFC 5246 6.3: MAC keys first
            self.mirror = HostRecordProtection(SessionKeys(
                self.suite, client_key=block[80:96], server_key=block[64:80],
                client_mac_key=block[32:64], server_mac_key=block[:32]))
        elif self.suite != GCM_SUITE:  # the host's record protection, with the roles swapped
            self.mirror = HostRecordProtection(SessionKeys(
                self.suite, client_key=block[16:32], server_key=block[:16],
                client_iv=block[36:40], server_iv=block[32:36]))
        return cke

    def finished(self, tamper: bool = False) -> bytes:
        """The client's Finished message (added to the transcript)."""
        verify = prf(self.master, b"client finished", self.session_hash, 12)
        if tamper:
            verify = bytes([verify[0] ^ 1]) + verify[1:]
        finished = handshake_message(20, verify)
        self.transcript += finished
        return finished

    def protected_records(self, content_type: int, data: bytes, size: int | None = None) -> bytes:
        """`data` in protected records of at most `size` bytes of plaintext each."""
        if size is None:
            return self.protect(content_type, data)
        return b"".join(self.protect(content_type, data[i:i + size]) for i in range(0, len(data), size))

    def send_flight3(self, cke: bytes, finished: bytes, record_size: int | None = None,
                     finished_record_size: int | None = None, ccs: bytes = b"\x01") -> None:
        self.send(records(HANDSHAKE, cke, record_size) + record(CCS, ccs)
                  + self.protected_records(HANDSHAKE, finished, finished_record_size))

    def read_server_finished(self) -> None:
        content_type, body = self.read_record()
        assert (content_type, body) == (CCS, b"\x01")
        content_type, body = self.read_record()
        server_finished = self.unprotect(content_type, body)
        expected = prf(self.master, b"server finished", hashlib.sha256(self.transcript).digest(), 12)
        assert server_finished == handshake_message(20, expected), "server Finished does not verify"

    def send_alert(self, level: int, description: int, record_size: int | None = None,
                   protected: bool = False) -> None:
        """An alert, in records of at most record_size bytes (protected after our ChangeCipherSpec)."""
        body = bytes([level, description])
        self.send(self.protected_records(ALERT, body, record_size) if protected
                  else records(ALERT, body, record_size))

    def _check_server(self, messages: dict[int, bytes]) -> None:
        hello = messages[2]
        self.server_random = hello[2:34]
        sid = hello[34]
        self.suite = int.from_bytes(hello[35 + sid:37 + sid], "big")
        self.ems = b"\x00\x17\x00\x00" in hello[38 + sid:]
        chain = messages[11]
        first = int.from_bytes(chain[3:6], "big")
        self.certificate = x509.load_der_x509_certificate(chain[6:6 + first])
        if self.ca is not None:
            self.certificate.verify_directly_issued_by(self.ca)
        ske = messages[12]
        assert ske[:4] == b"\x03\x00\x17\x41"
        point = ske[4:69]
        params = ske[:69]
        self.signature_scheme = int.from_bytes(ske[69:71], "big")
        assert self.signature_scheme in SIGNATURE_HASHES, f"signed with scheme {self.signature_scheme:#06x}"
        sig_len = int.from_bytes(ske[71:73], "big")
        public = self.certificate.public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey)
        public.verify(ske[73:73 + sig_len], self.client_random + self.server_random + params,
                      ec.ECDSA(SIGNATURE_HASHES[self.signature_scheme]))
        self.server_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)

    def protect(self, content_type: int, data: bytes) -> bytes:
        if self.mirror is not None:
            self.write_seq += 1
            return self.mirror.protect(content_type, data)
        explicit = struct.pack(">Q", self.write_seq)
        aad = struct.pack(">QBHH", self.write_seq, content_type, 0x0303, len(data))
        self.write_seq += 1
        return record(content_type, explicit + AESGCM(self.client_key).encrypt(self.client_iv + explicit, data, aad))

    def unprotect(self, content_type: int, body: bytes) -> bytes:
        if self.mirror is not None:
            self.read_seq += 1
            return self.mirror.unprotect(Record(content_type, 0x0303, body))
        aad = struct.pack(">QBHH", self.read_seq, content_type, 0x0303, len(body) - 24)
        self.read_seq += 1
        return AESGCM(self.server_key_bytes).decrypt(self.server_iv + body[:8], body[8:], aad)

    def send_data(self, data: bytes) -> None:
        self.send(self.protect(APPDATA, data))

    def receive_data(self) -> bytes:
        content_type, body = self.read_record()
        plain = self.unprotect(content_type, body)
        if content_type == ALERT:
            raise AlertReceived(plain[0], plain[1])
        return plain


def hello_bytes() -> bytes:
    return record(22, client_hello(os.urandom(32), (0xC02B,)), 0x0301)


def slow_client(port: int, stop: threading.Event, source: str = "127.0.0.1") -> None:
    """Sends a ClientHello a byte every 0.2 s (from `source`, a loopback address), and reconnects
    whenever the server closes it."""
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0)) as sock:
                for byte in hello_bytes():
                    if stop.wait(0.2):
                        return
                    sock.sendall(bytes([byte]))
        except OSError:
            continue
