"""The provisioning steps, one function each, as the CLI's subcommands and the tests run them:
initialise, generate a key, request a certificate (signed by the card), load a chain, trust CAs.
The host checks what it can say clearly (a chain whose leaf is not the card's key, a chain out of
order); the card checks again what matters to it (the leaf's key at commit, its own key in a CSR).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from host.card.commands import SeTlsCard, serial_bytes
from host.card.errors import AccessDeniedError
from host.card.numbers import AppletStatus
from host.card.operator import point_of, spki_sha256
from host.demo_pki import certificate_list
from host.provision.csr import assemble_csr, certification_request_info

__all__ = ["CA_MAX", "REVOKED_MAX", "KeyInfo", "ProvisionError", "ca_entries", "ensure_initialised", "generate_key",
           "load_chain", "parse_serial", "read_certificates", "request_certificate", "revoke", "revoked_size",
           "set_cas", "unrevoke"]

CA_MAX = 4  # Identity.CA_MAX
CA_NAME_MAX = 128  # Identity.CA_NAME_MAX: a CA subject Name listed in the CertificateRequest
CA_ENTRY = 32 + 65 + 1 + CA_NAME_MAX  # Identity.CA_ENTRY
REVOKED_MAX = 224  # ClientCertStore.REVOKED_MAX: bytes of (length, serial) entries, card-wide
SERIAL_MAX = 20  # X509.SERIAL_MAX, RFC 5280 4.1.2.2: a serial number has at most 20 octets


class ProvisionError(Exception):
    """A provisioning step cannot go on; the message is one sentence for a person."""


@dataclass(frozen=True)
class KeyInfo:
    """A public key of the card: the point, its PEM, the SHA-256 of its SubjectPublicKeyInfo."""

    point: bytes

    @property
    def pem(self) -> str:
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), self.point)
        return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    @property
    def spki_sha256(self) -> str:
        return spki_sha256(self.point)


def ensure_initialised(card: SeTlsCard, pin: str, puk: str, operator_point: bytes) -> bool:
    """Initialises a card in its transport state; True if it did, False if it was done already."""
    if card.card_status().initialised:
        return False
    card.initialize(pin, puk, operator_point)
    return True


def generate_key(card: SeTlsCard, slot: int, staged: bool = False) -> KeyInfo:
    return KeyInfo(card.generate_key(slot, staged))


def request_certificate(card: SeTlsCard, slot: int, subject: x509.Name, sans: list[x509.GeneralName],
                        staged: bool = False) -> x509.CertificateSigningRequest:
    """A PKCS#10 request for the identity's key (serving or staged), signed by the card."""
    point = card.public_key(slot, staged)
    info = certification_request_info(subject, point, sans)
    return assemble_csr(info, card.sign_csr(slot, info, staged))


def read_certificates(paths: list[Path]) -> list[x509.Certificate]:
    """Every certificate of the PEM (or DER) files, in order."""
    certs: list[x509.Certificate] = []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ProvisionError(f"cannot read {path}: {exc.strerror}") from None
        try:
            certs += x509.load_pem_x509_certificates(data) if b"-----BEGIN" in data else [
                x509.load_der_x509_certificate(data)]
        except ValueError:
            raise ProvisionError(f"{path} holds no certificate (PEM or DER)") from None
    if not certs:
        raise ProvisionError("no certificate given")
    return certs


def _point(cert: x509.Certificate) -> bytes | None:
    key = cert.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return point_of(key)
    return None


def check_chain(chain: list[x509.Certificate], serving: bytes | None, staged: bytes | None) -> str:
    """'serving' or 'staged': the card key the leaf certifies; each certificate must be issued by
    the next one (ProvisionError, naming the first that is not)."""
    leaf = _point(chain[0])
    if leaf is None or leaf not in (serving, staged):
        raise ProvisionError(f"the first certificate ({chain[0].subject.rfc4514_string()}) does not certify this "
                             "identity's key: give the certificate issued for the card's CSR first")
    for i, (cert, issuer) in enumerate(zip(chain, chain[1:], strict=False)):
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            raise ProvisionError(f"certificate {i + 1} ({cert.subject.rfc4514_string()}) is not issued by "
                                 f"certificate {i + 2} ({issuer.subject.rfc4514_string()}): give the chain "
                                 "leaf first, each certificate followed by its issuer") from None
    return "serving" if leaf == serving else "staged"


def _key_or_none(card: SeTlsCard, slot: int, staged: bool) -> bytes | None:
    from host.card.errors import UnknownIdentityError

    try:
        return card.public_key(slot, staged)
    except UnknownIdentityError:
        return None


def load_chain(card: SeTlsCard, slot: int, chain: list[x509.Certificate]) -> str:
    """Checks the chain, then uploads it into the identity's shadow area and commits it: the card
    serves it (with the staged key, if that is what it certifies) from the commit on."""
    which = check_chain(chain, _key_or_none(card, slot, False), _key_or_none(card, slot, True))
    data = certificate_list(chain)
    if len(data) > 3072:
        raise ProvisionError(f"the chain is {len(data)} bytes; the card holds 3072: leave the root out")
    card.put_chain(slot, data)
    return which


def ca_entries(certs: list[x509.Certificate]) -> bytes:
    """The card's CA entries (CA_ENTRY bytes each): SHA-256 of the subject Name (DER) || the CA's
    P-256 point || the Name's length || the Name, zero-padded to CA_NAME_MAX (the names the
    CertificateRequest lists; 0 for a name longer than that, matched by its hash only)."""
    if len(certs) > CA_MAX:
        raise ProvisionError(f"{len(certs)} CAs given; the card holds {CA_MAX} per identity")
    out = b""
    for cert in certs:
        point = _point(cert)
        if point is None:
            raise ProvisionError(f"{cert.subject.rfc4514_string()} has no P-256 key: the card checks P-256 "
                                 "client certificates only")
        try:
            is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if not is_ca:
            raise ProvisionError(f"{cert.subject.rfc4514_string()} is not a CA certificate (basicConstraints)")
        name = cert.subject.public_bytes()
        listed = name if len(name) <= CA_NAME_MAX else b""  # a longer name is matched by its hash alone
        out += (hashlib.sha256(name).digest() + point + bytes([len(listed)])
                + listed.ljust(CA_NAME_MAX, b"\0"))
    return out


def set_cas(card: SeTlsCard, slot: int, certs: list[x509.Certificate]) -> int:
    card.put_cas(slot, ca_entries(certs))
    return len(certs)


def is_operator_refusal(exc: AccessDeniedError) -> bool:
    return exc.sw == AppletStatus.OPERATOR_REQUIRED


def parse_serial(text: str) -> int:
    """A certificate serial number as `openssl x509 -serial` and `demo-ca` print it: hex, with or
    without 0x and colons (e.g. 5EC0DE, 0x5ec0de, 5e:c0:de); ValueError naming the problem."""
    digits = text.strip().lower().removeprefix("0x").replace(":", "")
    try:
        serial = int(digits, 16)
    except ValueError:
        raise ValueError(f"serial {text!r} is not hexadecimal (e.g. 5EC0DE, as openssl x509 -serial prints it)") \
            from None
    if serial <= 0 or len(serial_bytes(serial)) > SERIAL_MAX:
        raise ValueError(f"serial {text!r} is not a certificate serial (positive, at most {SERIAL_MAX} octets)")
    return serial


def revoked_size(serials: list[int]) -> int:
    """The bytes the card's list takes for `serials` (one length byte and the DER INTEGER contents each)."""
    return sum(1 + len(serial_bytes(s)) for s in serials)


def revoke(card: SeTlsCard, serials: list[int]) -> list[int]:
    """Adds `serials` to the card's revoked list (operator; one transaction in the card); the new
    list. ProvisionError when it would not fit in REVOKED_MAX bytes."""
    current = card.revoked()
    merged = current + [s for s in dict.fromkeys(serials) if s not in current]
    if revoked_size(merged) > REVOKED_MAX:
        raise ProvisionError(f"the card's revoked list holds {REVOKED_MAX} bytes; with these serials it would take "
                             f"{revoked_size(merged)}: unrevoke serials of expired certificates first")
    card.put_revoked(merged)
    return merged


def unrevoke(card: SeTlsCard, serials: list[int]) -> list[int]:
    """Removes `serials` from the card's revoked list (operator); the new list. ProvisionError for a
    serial that is not on it (nothing is changed then)."""
    current = card.revoked()
    missing = [s for s in serials if s not in current]
    if missing:
        raise ProvisionError(f"serial {', '.join(f'{s:X}' for s in missing)} is not on the card's revoked list "
                             f"(see: revoked)")
    remaining = [s for s in current if s not in serials]
    card.put_revoked(remaining)
    return remaining
