"""PKCS#10 certification requests whose signature the card makes (RFC 2986).

The host builds the DER CertificationRequestInfo (version 0, the subject, the card's public key,
an extensionRequest attribute with the subjectAltName), the card signs it (SIGN CSR: it parses
it and checks the key is its own), and the host wraps both into the CertificationRequest that
`openssl req -verify` accepts. Sans-IO: bytes in, bytes out.
"""
from __future__ import annotations

import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["assemble_csr", "certification_request_info", "parse_san", "parse_subject"]

# id-ecPublicKey, prime256v1 and the BIT STRING header of a 65-byte point (P256.SPKI_PREFIX).
SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200")
ECDSA_WITH_SHA256 = bytes.fromhex("300a06082a8648ce3d040302")
EXTENSION_REQUEST = bytes.fromhex("06092a864886f70d01090e")  # 1.2.840.113549.1.9.14
SUBJECT_ALT_NAME = bytes.fromhex("0603551d11")  # 2.5.29.17

_ATTRIBUTES = {"CN": NameOID.COMMON_NAME, "O": NameOID.ORGANIZATION_NAME, "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
               "C": NameOID.COUNTRY_NAME, "ST": NameOID.STATE_OR_PROVINCE_NAME, "L": NameOID.LOCALITY_NAME,
               "SERIALNUMBER": NameOID.SERIAL_NUMBER, "EMAILADDRESS": NameOID.EMAIL_ADDRESS}


def der(tag: int, content: bytes) -> bytes:
    """One DER element: tag, definite length (short or long form), content."""
    n = len(content)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + content


def parse_subject(text: str) -> x509.Name:
    """`CN=device-42,O=Acme` or `/CN=device-42/O=Acme` -> a Name (ValueError with the reason)."""
    parts = [p for p in text.replace("/", ",").split(",") if p.strip()]
    attributes = []
    for part in parts:
        key, sep, value = part.partition("=")
        oid = _ATTRIBUTES.get(key.strip().upper())
        if not sep or oid is None or not value.strip():
            raise ValueError(f"cannot read {part.strip()!r} of the subject: write KEY=value with KEY one of "
                             f"{', '.join(_ATTRIBUTES)}")
        attributes.append(x509.NameAttribute(oid, value.strip()))
    if not attributes:
        raise ValueError("the subject is empty: give at least CN=...")
    return x509.Name(attributes)


def parse_san(text: str) -> x509.GeneralName:
    """`DNS:host`, `IP:192.0.2.1` (or `IP:::1`), or a bare host name or address (RFC 5280
    4.2.1.6 dNSName, iPAddress). Any other `KIND:` raises ValueError with a sentence naming the
    accepted ones."""
    try:
        return x509.IPAddress(ipaddress.ip_address(text))   # a bare address, "::1" included
    except ValueError:
        pass
    kind, sep, value = text.partition(":")
    if not sep:
        return x509.DNSName(text)
    if kind.upper() == "DNS" and value:
        return x509.DNSName(value)
    if kind.upper() == "IP":
        try:
            return x509.IPAddress(ipaddress.ip_address(value))
        except ValueError:
            raise ValueError(f"--san {text}: {value!r} is not an IPv4 or IPv6 address") from None
    raise ValueError(f"--san {text}: only DNS:name and IP:address are accepted (e.g. --san DNS:device.local "
                     "--san IP:192.0.2.1)")


def certification_request_info(subject: x509.Name, point: bytes, sans: list[x509.GeneralName]) -> bytes:
    """The DER CertificationRequestInfo for the card's public point (65 bytes)."""
    attributes = b""
    if sans:
        san = x509.SubjectAlternativeName(sans).public_bytes()
        extension = der(0x30, SUBJECT_ALT_NAME + der(0x04, san))
        attributes = der(0x30, EXTENSION_REQUEST + der(0x31, der(0x30, extension)))
    return der(0x30, bytes.fromhex("020100") + subject.public_bytes() + SPKI_PREFIX + point + der(0xA0, attributes))


def assemble_csr(cri: bytes, signature: bytes) -> x509.CertificateSigningRequest:
    """CertificationRequest = SEQUENCE { info, ecdsa-with-SHA256, BIT STRING signature }."""
    csr = x509.load_der_x509_csr(der(0x30, cri + ECDSA_WITH_SHA256 + der(0x03, b"\x00" + signature)))
    if not csr.is_signature_valid:
        raise ValueError("the card's signature of the request does not verify")
    key = csr.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return csr
