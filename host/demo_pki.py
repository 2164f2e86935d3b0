"""A demo certificate authority for simulated and test cards (the `cryptography` package).

Real deployments use the device maker's CA; the card only ever sees the chain it presents. The
demo CA's key stays on the host in build/demo/ (it is a test fixture, not a secret of the device),
beside the demo operator key that simulated and test cards are initialised with.
"""
from __future__ import annotations

import datetime
import ipaddress
import logging
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

log = logging.getLogger(__name__)

DEMO_DIR = Path(__file__).resolve().parent.parent / "build" / "demo"
VALIDITY = datetime.timedelta(days=825)


@dataclass
class DemoCa:
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @classmethod
    def load_or_create(cls, directory: Path = DEMO_DIR) -> DemoCa:
        key_path, cert_path = directory / "ca.key", directory / "ca.pem"
        if key_path.exists() and cert_path.exists():
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            return cls(key, x509.load_pem_x509_certificate(cert_path.read_bytes()))
        directory.mkdir(parents=True, exist_ok=True)
        ca = cls.create()
        key_path.write_bytes(ca.key.private_bytes(serialization.Encoding.PEM,
                                                  serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
        key_path.chmod(0o600)
        cert_path.write_bytes(ca.certificate.public_bytes(serialization.Encoding.PEM))
        log.info("created the demo CA in %s", directory)
        return ca

    @classmethod
    def create(cls) -> DemoCa:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "SE-TLS demo"),
                          x509.NameAttribute(NameOID.COMMON_NAME, "SE-TLS demo CA")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (x509.CertificateBuilder()
                .subject_name(name).issuer_name(name)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + VALIDITY)
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                             key_encipherment=False, data_encipherment=False,
                                             key_agreement=False, key_cert_sign=True, crl_sign=True,
                                             encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256()))
        return cls(key, cert)

    def _server_builder(self, subject: x509.Name, public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
        """A server certificate for `public_key` issued by this CA: validity, key usage, EKU, AKI."""
        now = datetime.datetime.now(datetime.UTC)
        return (x509.CertificateBuilder()
                .subject_name(subject)
                .issuer_name(self.certificate.subject)
                .public_key(public_key)
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + VALIDITY)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                             key_encipherment=False, data_encipherment=False,
                                             key_agreement=False, key_cert_sign=False, crl_sign=False,
                                             encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                               critical=False))

    def issue_from_csr(self, csr: x509.CertificateSigningRequest) -> x509.Certificate:
        """Certifies the request's key with its subject and subjectAltName (a server certificate);
        the request's signature must verify (ValueError otherwise)."""
        if not csr.is_signature_valid:
            raise ValueError("the request's signature does not verify")
        public_key = csr.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise ValueError("the request's key is not an EC key")
        try:
            san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            san = None
        builder = self._server_builder(csr.subject, public_key)
        if san is not None:
            builder = builder.add_extension(san, critical=False)
        return builder.sign(self.key, hashes.SHA256())

    def issue_server_certificate(self, public_point: bytes, common_name: str,
                                 dns_names: tuple[str, ...] = ("localhost",),
                                 ips: tuple[str, ...] = ("127.0.0.1", "::1")) -> x509.Certificate:
        """Certifies the card's public key (the 65-byte point GENERATE KEY answered)."""
        public_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public_point)
        names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ips]
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "SE-TLS demo"),
                             x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        return (self._server_builder(subject, public_key)
                .add_extension(x509.SubjectAlternativeName(names), critical=False)
                .sign(self.key, hashes.SHA256()))


    def issue_client_certificate(self, public_key: ec.EllipticCurvePublicKey, common_name: str,
                                 not_before: datetime.datetime | None = None,
                                 not_after: datetime.datetime | None = None,
                                 serial: int | None = None) -> x509.Certificate:
        """A TLS client certificate (clientAuth EKU) for `public_key`, subject CN = `common_name`,
        issued by this CA; the dates and serial may be chosen (tests of expired and revoked ones)."""
        now = datetime.datetime.now(datetime.UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "SE-TLS demo"),
                             x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        return (x509.CertificateBuilder()
                .subject_name(subject)
                .issuer_name(self.certificate.subject)
                .public_key(public_key)
                .serial_number(serial if serial is not None else x509.random_serial_number())
                .not_valid_before(not_before or now - datetime.timedelta(minutes=5))
                .not_valid_after(not_after or now + VALIDITY)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                             key_encipherment=False, data_encipherment=False,
                                             key_agreement=False, key_cert_sign=False, crl_sign=False,
                                             encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .sign(self.key, hashes.SHA256()))


def demo_operator_key_path(directory: Path = DEMO_DIR) -> Path:
    """The demo operator's private key (PEM), beside the demo CA: simulated and test cards only."""
    return directory / "operator.key"


def ensure_demo_operator_key(directory: Path = DEMO_DIR) -> Path:
    """Creates the demo operator key (P-256, PEM, mode 600) if it is not there; returns its path."""
    path = demo_operator_key_path(directory)
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        path.chmod(0o600)
        log.info("created the demo operator key %s", path)
    return path


def certificate_list(chain: list[x509.Certificate]) -> bytes:
    """The certificate_list of a TLS Certificate message: each DER with a 3-byte length."""
    out = b""
    for cert in chain:
        der = cert.public_bytes(serialization.Encoding.DER)
        out += len(der).to_bytes(3, "big") + der
    return out
