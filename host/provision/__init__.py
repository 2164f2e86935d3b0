"""`python -m host.provision`: the card's lifecycle from one CLI (docs/provisioning.md), and the
same steps as functions for the servers' simulated cards and the tests.

  csr         PKCS#10 requests: the host builds the CertificationRequestInfo, the card signs it
  lifecycle   the steps: initialise, generate a key, request a certificate, load a chain, trust CAs
  cli         the subcommands (init, info, keygen, csr, load-chain, set-ca, PSKs, policy, PINs, wipe,
              demo-ca issue), human or JSON output, exit codes

`personalise()` provisions an identity the way a device maker does, with the demo CA and the demo
operator key of build/demo/: init (if the card is blank) -> operator session -> keygen -> csr ->
issue -> load-chain -> name, policy, suites, PIN.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from host.card.commands import SeTlsCard
from host.card.operator import OperatorKey
from host.demo_pki import DEMO_DIR, DemoCa, ensure_demo_operator_key
from host.provision.csr import parse_san
from host.provision.lifecycle import ensure_initialised, generate_key, load_chain, request_certificate, set_cas
from host.tls.numbers import CipherSuite

__all__ = ["APPLET_SUITES", "DEFAULT_SUITES", "DEMO_IDENTITY", "DEMO_PIN", "DEMO_PUK", "IdentitySpec",
           "demo_operator", "initialise_demo",
           "parse_suites", "personalise", "personalise_simulated"]


PIN_LENGTHS = (4, 16)  # bytes, as the card takes them (Identity.PIN_MIN, PIN_MAX)
log = logging.getLogger(__name__)

DEMO_PIN = "1234"
DEMO_PUK = "12345678"
DEMO_IDENTITY = "server"
DEMO_SANS = ("DNS:localhost", "IP:127.0.0.1", "IP:::1")


# The suites a new identity offers, in the server's order: AEAD only (RFC 9325 4.2 recommends
# AEAD suites for TLS 1.2). The applet installs an identity with CBC-SHA256 last in its list
# (MAC-then-encrypt, RFC 5246 6.2.3.2); it stays available to an operator who sets it
# (`python -m host.provision policy --suites ...`), and the card checks its MAC and padding
# without a branch on either (RecordCipher.unprotectCbc). GCM first: what clients offer first.
DEFAULT_SUITES: tuple[int, ...] = (CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256.value,
                                   CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CCM.value,
                                   CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8.value)
# What the applet gives an identity at install (Identity.java), CBC-SHA256 included.
APPLET_SUITES: tuple[int, ...] = (CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256.value,
                                  CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8.value,
                                  CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CCM.value,
                                  CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256.value)


@dataclass
class IdentitySpec:
    name: str = DEMO_IDENTITY
    pin: str = DEMO_PIN
    slot: int = 0
    export_keys: bool = True
    suites: tuple[int, ...] = DEFAULT_SUITES
    client_auth: str = "none"  # none, optional, required: client certificates of the demo CA
    client_dates: bool = True  # client certificates' dates checked against the host's clock
    psks: tuple[tuple[bytes, bytes], ...] = ()   # (identity, key) pairs the operator stores (card-wide)


def demo_operator(directory: Path = DEMO_DIR) -> OperatorKey:
    """The demo operator key of build/demo/ (created on first use): simulated and test cards."""
    return OperatorKey.load(ensure_demo_operator_key(directory))


def initialise_demo(card: SeTlsCard, pin: str = DEMO_PIN, operator: OperatorKey | None = None) -> OperatorKey:
    """A blank card initialised with the demo PUK and operator key, the operator session open."""
    operator = operator or demo_operator()
    ensure_initialised(card, pin, DEMO_PUK, operator.public_point)
    card.open_operator_session(operator)
    return operator


def personalise(card: SeTlsCard, spec: IdentitySpec, ca: DemoCa, out_dir: Path | None = DEMO_DIR,
                operator: OperatorKey | None = None) -> x509.Certificate:
    """Provisions an identity as the CLI does (init if blank, keygen, csr, issue, load-chain, then
    name, policy, suites and the PIN, set by the operator); returns the certificate it presents."""
    initialise_demo(card, spec.pin, operator)
    generate_key(card, spec.slot)
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "SE-TLS demo"),
                         x509.NameAttribute(NameOID.COMMON_NAME, f"{spec.name} (SE-TLS card)")])
    csr = request_certificate(card, spec.slot, subject, [parse_san(s) for s in DEMO_SANS])
    certificate = ca.issue_from_csr(csr)
    load_chain(card, spec.slot, [certificate])
    card.put_name(spec.slot, spec.name)
    if spec.client_auth != "none":
        set_cas(card, spec.slot, [ca.certificate])
    card.put_policy(spec.slot, export_keys=spec.export_keys, client_auth=spec.client_auth,
                    client_dates=spec.client_dates and spec.client_auth != "none")
    if spec.suites:
        card.put_suites(spec.slot, spec.suites)
    for identity, key in spec.psks:
        card.set_psk(identity, key)
    card.reset_pin(spec.slot, spec.pin)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"{spec.name}.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    log.info("identity %r provisioned in slot %d: key generated in the card, CSR signed by it, certificate "
             "serial %x", spec.name, spec.slot, certificate.serial_number)
    return certificate


def personalise_simulated(cards: list[SeTlsCard], spec: IdentitySpec) -> None:
    """`--sim` cards start blank: each is provisioned with the demo CA and operator (build/demo/)."""
    ca = DemoCa.load_or_create(DEMO_DIR)
    for card in cards:
        personalise(card, spec, ca)


def parse_suites(text: str) -> tuple[int, ...]:
    """`c02b,c0ae` or OpenSSL names, in the server's order of preference (ValueError if unknown)."""
    by_name = {suite.openssl_name.lower(): suite.value for suite in CipherSuite}
    suites = []
    for item in filter(None, (s.strip().lower() for s in text.split(","))):
        if item in by_name:
            suites.append(by_name[item])
        else:
            try:
                suites.append(CipherSuite(int(item, 16)).value)
            except ValueError:
                raise ValueError(f"unknown cipher suite {item!r}") from None
    return tuple(suites)
