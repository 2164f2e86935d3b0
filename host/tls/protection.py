"""The host's record protection for tandem mode: the card exported the session's keys once and
the host protects and checks records itself (RFC 5246 6.2.3, RFC 5288, RFC 6655).

For the same data and sequence numbers the AEAD suites produce exactly the bytes the card would
(the explicit nonce is the sequence number in both); the CBC suite draws a random IV per record.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM

from host.tls.numbers import MAX_PLAINTEXT, TLS12, AlertDescription, CipherSuite
from host.tls.records import Record, RecordError

_KIND_GCM, _KIND_CCM, _KIND_CCM_8, _KIND_CBC = 1, 2, 3, 4
_AAD = struct.Struct(">QBHH")               # seq_num, type, version, length (RFC 5246 6.2.3.3)
_SEQ = struct.Struct(">Q")
_HEADER_AND_NONCE = struct.Struct(">BHHQ")  # record header and the explicit nonce (the sequence number)

_CBC_SUITES = (CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, CipherSuite.TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256)


@dataclass
class SessionKeys:
    """What EXPORT KEYS returns (docs/apdu.md)."""

    suite: int
    client_key: bytes
    server_key: bytes
    client_iv: bytes = b""
    server_iv: bytes = b""
    client_mac_key: bytes = b""
    server_mac_key: bytes = b""
    read_seq: int = 0
    write_seq: int = 0

    @classmethod
    def parse(cls, data: bytes) -> SessionKeys:
        suite, kind = struct.unpack(">HB", data[:3])
        p = 3
        macs = b""
        if kind == _KIND_CBC:
            macs, p = data[p:p + 64], p + 64
        client_key, server_key = data[p:p + 16], data[p + 16:p + 32]
        p += 32
        ivs = b""
        if kind != _KIND_CBC:
            ivs, p = data[p:p + 8], p + 8
        read_seq, write_seq = struct.unpack(">QQ", data[p:p + 16])
        if p + 16 != len(data):
            raise ValueError(f"EXPORT KEYS answer of {len(data)} bytes does not parse")
        return cls(suite, client_key, server_key, ivs[:4], ivs[4:], macs[:32], macs[32:], read_seq, write_seq)


class HostRecordProtection:
    """Server-side record protection with exported keys: protect() writes, unprotect() reads."""

    def __init__(self, keys: SessionKeys) -> None:
        self.keys = keys
        suite = keys.suite
        self._read_aead: AESGCM | AESCCM | None = None
        self._write_aead: AESGCM | AESCCM | None = None
        if suite == CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256:
            self._read_aead, self._write_aead = AESGCM(keys.client_key), AESGCM(keys.server_key)
            self._tag = 16
        elif suite in (CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CCM, CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8,
                       CipherSuite.TLS_PSK_WITH_AES_128_CCM_8):
            self._tag = 16 if suite == CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CCM else 8
            self._read_aead = AESCCM(keys.client_key, tag_length=self._tag)
            self._write_aead = AESCCM(keys.server_key, tag_length=self._tag)
        elif suite not in _CBC_SUITES:
            raise ValueError(f"unknown cipher suite {suite:#06x}")

        # The AEAD nonces (RFC 5288 3, RFC 6655 3): salt (the exported 4-byte IV) and the 8-byte
        # explicit nonce, which is the sequence number; one buffer per direction, rewritten in place.
        self._write_nonce = bytearray(keys.server_iv.ljust(4, b"\0") + bytes(8))
        self._read_nonce = bytearray(keys.client_iv.ljust(4, b"\0") + bytes(8))

    @property
    def is_aead(self) -> bool:
        return self.keys.suite not in _CBC_SUITES

    @staticmethod
    def _aad(seq: int, content_type: int, length: int) -> bytes:
        return _AAD.pack(seq, content_type, TLS12, length)

    def protect(self, content_type: int, data: bytes) -> bytes:
        """One protected record (header included) carrying `data` (at most 2^14 bytes)."""
        seq = self.keys.write_seq
        self.keys.write_seq += 1
        aad = _AAD.pack(seq, content_type, TLS12, len(data))
        if self._write_aead is not None:
            nonce = self._write_nonce
            _SEQ.pack_into(nonce, 4, seq)
            sealed = self._write_aead.encrypt(nonce, data, aad)
            header = _HEADER_AND_NONCE.pack(content_type, TLS12, 8 + len(sealed), seq)
            return header + sealed
        mac = hmac.new(self.keys.server_mac_key, aad + data, hashlib.sha256).digest()
        body = data + mac
        pad = 15 - len(body) % 16
        body += bytes([pad]) * (pad + 1)
        iv = os.urandom(16)
        encryptor = Cipher(algorithms.AES(self.keys.server_key), modes.CBC(iv)).encryptor()
        return Record(content_type, TLS12, iv + encryptor.update(body) + encryptor.finalize()).encode()

    def unprotect(self, record: Record) -> bytes:
        """Returns the plaintext, or raises RecordError: bad_record_mac for a record that does not
        authenticate, record_overflow for more than 2^14 bytes of plaintext (RFC 5246 6.2.1)."""
        seq = self.keys.read_seq
        fragment = record.fragment
        if self._read_aead is not None:
            if len(fragment) < 8 + self._tag:
                raise RecordError("record too short for its AEAD", AlertDescription.BAD_RECORD_MAC)
            aad = _AAD.pack(seq, record.content_type, TLS12, len(fragment) - 8 - self._tag)
            nonce = self._read_nonce
            nonce[4:] = fragment[:8]
            try:
                with memoryview(fragment) as view:   # the ciphertext and tag, not copied
                    plain = self._read_aead.decrypt(nonce, view[8:], aad)
            except InvalidTag:
                raise RecordError("record does not authenticate", AlertDescription.BAD_RECORD_MAC) from None
        else:
            plain = self._unprotect_cbc(seq, record.content_type, fragment)
        self.keys.read_seq += 1
        if len(plain) > MAX_PLAINTEXT:
            raise RecordError(f"record of {len(plain)} bytes of plaintext exceeds 2^14",
                              AlertDescription.RECORD_OVERFLOW)
        return plain

    def _unprotect_cbc(self, seq: int, content_type: int, fragment: bytes) -> bytes:
        if len(fragment) < 16 + 48 or len(fragment) % 16:
            raise RecordError("CBC record of impossible length", AlertDescription.BAD_RECORD_MAC)
        decryptor = Cipher(algorithms.AES(self.keys.client_key), modes.CBC(fragment[:16])).decryptor()
        body = decryptor.update(fragment[16:]) + decryptor.finalize()
        pad = body[-1]
        good_pad = pad + 1 + 32 <= len(body) and body[-pad - 1:] == bytes([pad]) * (pad + 1)
        if not good_pad:
            pad = 0
        plain, mac = body[:len(body) - pad - 1 - 32], body[len(body) - pad - 1 - 32:len(body) - pad - 1]
        expected = hmac.new(self.keys.client_mac_key, self._aad(seq, content_type, len(plain)) + plain,
                            hashlib.sha256).digest()
        if not (hmac.compare_digest(mac, expected) and good_pad):
            raise RecordError("record does not authenticate", AlertDescription.BAD_RECORD_MAC)
        return plain

