"""The operator session, host side (docs/apdu.md, "Operator session"): the operator's P-256 key,
its signature of a card challenge, the session keys (ECDH, then HKDF-SHA256), the MAC that ends
every operator command and the encryption of secret values (PINs, PSKs). Sans-IO: bytes in,
bytes out; `host.card.commands.SeTlsCard` carries them to the card.

The card's side is `OperatorSession.java`; the constants here are its constants.
"""
from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from host.card.numbers import Cla

__all__ = [
    "MAC_SIZE",
    "NONCE_SIZE",
    "PIN_BLOCK",
    "POINT_SIZE",
    "PSK_BLOCK",
    "OperatorKey",
    "OperatorKeyError",
    "OperatorSession",
    "point_of",
    "public_point_from_pem",
    "spki_sha256",
]

LABEL = b"SE-TLS operator v1"  # what the operator signs starts with this
INFO = b"SE-TLS operator session"  # HKDF info
CONFIRM = b"card confirm"  # the card's confirmation MAC covers this and the nonce
NONCE_SIZE = 16
POINT_SIZE = 65
MAC_SIZE = 16
IV_SIZE = 16
PIN_BLOCK = 32  # encrypted block carrying a PIN or PUK: length, value, zeros
PSK_BLOCK = 64  # encrypted block carrying a PSK


class OperatorKeyError(ValueError):
    """An operator key file could not be used; the message says why, for a person."""


def point_of(key: ec.EllipticCurvePublicKey) -> bytes:
    """The uncompressed point 04 || X || Y of a P-256 public key."""
    if not isinstance(key.curve, ec.SECP256R1):
        raise OperatorKeyError(f"the key is on {key.curve.name}; the card takes P-256 (prime256v1) keys only")
    return key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def spki_sha256(point: bytes) -> str:
    """SHA-256 of the DER SubjectPublicKeyInfo of a P-256 point, hex: the key's fingerprint."""
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def public_point_from_pem(path: Path) -> bytes:
    """The operator's public point from a PEM file: a public key, a certificate, or the private key."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise OperatorKeyError(f"cannot read {path}: {exc.strerror}") from None
    public: object
    try:
        if b"CERTIFICATE" in data:
            public = x509.load_pem_x509_certificate(data).public_key()
        elif b"PRIVATE KEY" in data:
            public = serialization.load_pem_private_key(data, password=None).public_key()
        else:
            public = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise OperatorKeyError(f"{path} is not a PEM key or certificate: {exc}") from None
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise OperatorKeyError(f"{path} is not an EC key; the operator key is a P-256 key")
    return point_of(public)


@dataclass(frozen=True)
class OperatorKey:
    """The operator's private key (a PEM file the operator keeps; never on a command line)."""

    private: ec.EllipticCurvePrivateKey

    @classmethod
    def load(cls, path: Path) -> OperatorKey:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise OperatorKeyError(f"cannot read the operator key {path}: {exc.strerror}") from None
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise OperatorKeyError(f"{path} is not an unencrypted PEM private key: {exc}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise OperatorKeyError(f"{path} is not an EC key; the operator key is a P-256 key")
        point_of(key.public_key())
        return cls(key)

    @classmethod
    def generate(cls) -> OperatorKey:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
        path.chmod(0o600)

    @property
    def public_point(self) -> bytes:
        return point_of(self.private.public_key())

    def sign(self, message: bytes) -> bytes:
        return self.private.sign(message, ec.ECDSA(hashes.SHA256()))


@dataclass
class OperatorSession:
    """The keys of one operator session and its command counter."""

    mac_key: bytes
    enc_key: bytes
    counter: int = 0
    confirmation: bytes = field(default=b"", repr=False)

    @classmethod
    def answer(cls, key: OperatorKey, challenge: bytes) -> tuple[bytes, OperatorSession]:
        """OPERATOR CHALLENGE's answer (nonce || card point) -> OPERATOR AUTHENTICATE's data
        (operator point || signature) and the session, whose `confirmation` the card must answer."""
        if len(challenge) != NONCE_SIZE + POINT_SIZE:
            raise ValueError(f"a challenge is {NONCE_SIZE + POINT_SIZE} bytes, not {len(challenge)}")
        nonce, card_point = challenge[:NONCE_SIZE], challenge[NONCE_SIZE:]
        card_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), card_point)
        ephemeral = ec.generate_private_key(ec.SECP256R1())
        own_point = point_of(ephemeral.public_key())
        signature = key.sign(LABEL + nonce + card_point + own_point)
        z = ephemeral.exchange(ec.ECDH(), card_key)
        okm = HKDF(hashes.SHA256(), 48, salt=nonce, info=INFO).derive(z)
        session = cls(okm[:32], okm[32:48])
        session.confirmation = session._mac(CONFIRM + nonce)
        return own_point + signature, session

    def _mac(self, data: bytes) -> bytes:
        return hmac.new(self.mac_key, data, hashlib.sha256).digest()[:MAC_SIZE]

    def mac(self, ins: int, p1: int, p2: int, payload: bytes, counter: int | None = None) -> bytes:
        """The MAC of an operator command (CLA without its chaining bit; the session's counter)."""
        n = self.counter if counter is None else counter
        header = n.to_bytes(2, "big") + bytes([Cla.OPEN_EAP, ins, p1, p2]) + len(payload).to_bytes(2, "big")
        return self._mac(header + payload)

    def wrap(self, ins: int, p1: int, p2: int, payload: bytes) -> bytes:
        """payload || MAC, and the counter moves on (the card's moves when it accepts the MAC)."""
        data = payload + self.mac(ins, p1, p2, payload)
        self.counter += 1
        return data

    def encrypt_secret(self, value: bytes, block: int) -> bytes:
        """IV || AES-128-CBC(length || value || zeros), `block` bytes of plaintext."""
        if len(value) >= block:
            raise ValueError(f"a secret of {len(value)} bytes does not fit a {block}-byte block")
        plain = bytes([len(value)]) + value
        plain += bytes(block - len(plain))
        iv = os.urandom(IV_SIZE)
        encryptor = Cipher(algorithms.AES(self.enc_key), modes.CBC(iv)).encryptor()
        return iv + encryptor.update(plain) + encryptor.finalize()


