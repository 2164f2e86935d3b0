"""Mutual authentication decided in the card (issue 12 items 1-2): unmodified openssl s_client and
curl present client certificates; the card parses the chain, verifies its signatures, dates and
serial, and the CertificateVerify (over its own session hash with ECDSA ALG_NULL, or over the
transcript copy the host sends). Each refusal is its TLS alert, and the next client is served."""

from __future__ import annotations

import asyncio
import datetime
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from host.card.commands import SeTlsCard
from host.demo_pki import DemoCa
from host.iso7816.simulator import free_port
from host.provision import DEMO_PIN
from host.provision.lifecycle import set_cas
from host.se_tls import CardSlot, GenericServer, ServerTLS, SessionInfo, Timeouts, TlsTandem
from host.tls.record_layer import RecordLayer

REVOKED_SERIAL = 0x5EC0DE


@dataclass
class Pki:
    ca: DemoCa
    other: DemoCa
    dir: Path

    def client(self, name: str, ca: DemoCa | None = None, curve: ec.EllipticCurve | None = None,
               **dates: datetime.datetime | int) -> tuple[str, str]:
        """cert.pem, key.pem of a client certificate."""
        key = ec.generate_private_key(curve or ec.SECP256R1())
        issuer = ca or self.ca
        if curve is not None and not isinstance(curve, ec.SECP256R1):
            now = datetime.datetime.now(datetime.UTC)
            subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, name)])
            cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer.certificate.subject)
                    .public_key(key.public_key()).serial_number(x509.random_serial_number())
                    .not_valid_before(now - datetime.timedelta(days=1))
                    .not_valid_after(now + datetime.timedelta(days=1))
                    .sign(issuer.key, hashes.SHA256()))
        else:
            cert = issuer.issue_client_certificate(key.public_key(), name, **dates)  # type: ignore[arg-type]
        cert_path, key_path = self.dir / f"{name}.pem", self.dir / f"{name}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return str(cert_path), str(key_path)


class EchoServer:
    """A ServerTLS of the card on a loopback port, in a thread of its own."""

    def __init__(self, card: SeTlsCard, record_mode: str = "card") -> None:
        self.port = free_port()
        self.sessions: list[SessionInfo] = []
        self.loop = asyncio.new_event_loop()
        self.tandem = TlsTandem([CardSlot("card0", card)], identity="server", record_mode=record_mode,
                                timeouts=Timeouts(handshake=30, idle=10))
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(30)

    async def _echo(self, layer: RecordLayer, info: SessionInfo) -> None:
        self.sessions.append(info)
        while (record := await layer.recv()) is not None:
            data = await layer.decrypt(record)
            if data:
                await layer.send(await layer.encrypt(f"client={info.client_subject} ".encode() + data))

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = ServerTLS(self.tandem, GenericServer(self._echo))
        self.loop.run_until_complete(server.start("127.0.0.1", self.port))
        self.ready.set()
        self.loop.run_forever()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("clientauth")
    return Pki(DemoCa.load_or_create(root / "ca"), DemoCa.load_or_create(root / "other"), root)


@pytest.fixture(scope="module")
def auth_card(card: SeTlsCard, pki: Pki) -> SeTlsCard:
    """The module's card under policy `required`, trusting the test CA, one serial revoked."""
    set_cas(card, 0, [pki.ca.certificate])
    card.put_policy(0, export_keys=True, client_auth="required", client_dates=True)
    card.put_revoked([REVOKED_SERIAL])
    card.unlock("server", DEMO_PIN)
    return card


@pytest.fixture
def server(auth_card: SeTlsCard) -> Iterator[EchoServer]:
    server = EchoServer(auth_card)
    yield server
    server.stop()


def s_client(port: int, *args: str, message: bytes = b"ping\n") -> str:
    proc = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2",
                           "-ign_eof", "-no_ticket", *args], input=message, capture_output=True, timeout=60)
    return proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")


def test_openssl_with_a_certificate_of_the_trusted_ca_is_accepted_and_its_subject_reaches_the_app(
        server: EchoServer, pki: Pki) -> None:
    cert, key = pki.client("alice")
    output = s_client(server.port, "-cert", cert, "-key", key)
    assert "client=alice ping" in output, output
    assert server.sessions[-1].client_subject == "alice"


def test_the_transcript_copy_path_verifies_the_certificate_verify_too(
        server: EchoServer, auth_card: SeTlsCard, pki: Pki) -> None:
    assert auth_card.session.caps.ecdsa_precomputed_hash  # jcardsim has ECDSA with ALG_NULL
    auth_card.force_transcript_copy = True
    try:
        cert, key = pki.client("bob")
        assert "client=bob ping" in s_client(server.port, "-cert", cert, "-key", key)
    finally:
        auth_card.force_transcript_copy = False


@pytest.mark.parametrize("case", ["no certificate", "another CA", "expired", "not yet valid", "revoked", "P-384"])
def test_each_refused_client_gets_its_alert_and_the_next_client_is_served(
        server: EchoServer, pki: Pki, case: str) -> None:
    now = datetime.datetime.now(datetime.UTC)
    expected = {"no certificate": "handshake failure", "another CA": "unknown ca",
                "expired": "certificate expired", "not yet valid": "certificate expired",
                "revoked": "certificate revoked", "P-384": "unsupported certificate"}[case]
    if case == "no certificate":
        args: list[str] = []
    else:
        cert, key = {
            "another CA": lambda: pki.client("mallory", ca=pki.other),
            "expired": lambda: pki.client("old", not_before=now - datetime.timedelta(days=30),
                                          not_after=now - datetime.timedelta(days=1)),
            "not yet valid": lambda: pki.client("future", not_before=now + datetime.timedelta(days=1)),
            "revoked": lambda: pki.client("revoked", serial=REVOKED_SERIAL),
            "P-384": lambda: pki.client("p384", curve=ec.SECP384R1()),
        }[case]()
        args = ["-cert", cert, "-key", key]
    output = s_client(server.port, *args)
    assert f"alert {expected}" in output, output
    assert "client=" not in output
    cert, key = pki.client("next")
    assert "client=next ping" in s_client(server.port, "-cert", cert, "-key", key)
