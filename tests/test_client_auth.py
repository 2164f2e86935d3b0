"""Mutual authentication decided in the card (issue 12 items 1-2): unmodified openssl s_client and
curl present client certificates; the card parses the chain, verifies its signatures, dates and
serial, and the CertificateVerify (over its own session hash with ECDSA ALG_NULL, or over the
transcript copy the host sends). Each refusal is its TLS alert, and the next client is served."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import DEMO, ROOT, ServerFactory, ServerProcess
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tls12_client import CCS, HANDSHAKE, AlertReceived, RawTlsClient, handshake_message, prf, record, records

from host.card.commands import SeTlsCard
from host.demo_pki import DemoCa
from host.iso7816.simulator import free_port
from host.provision import DEMO_PIN
from host.provision.lifecycle import set_cas
from host.se_tls import CardSlot, GenericServer, ServerTLS, SessionInfo, Timeouts, TlsTandem
from host.tls.numbers import AlertDescription
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


# ---- resumption: a resumed session keeps its client --------------------------------------------------

def s_client_session(port: int, *args: str, ticket: bool, message: bytes = b"ping\n") -> str:
    """openssl s_client as s_client() does, offering session tickets or not (`-no_ticket`)."""
    proc = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2", "-ign_eof",
                           *([] if ticket else ["-no_ticket"]), *args], input=message, capture_output=True,
                          timeout=60)
    return proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")


# 58 bytes: more than the 32 bytes the resumption branch first sealed, within X.509's 64.
LONG_NAME = "a-resumed-client-whose-common-name-is-longer-than-32-bytes"


@pytest.mark.parametrize("by", ["session ID", "ticket"])
def test_a_session_established_with_a_certificate_resumes_with_the_same_subject(
        server: EchoServer, pki: Pki, tmp_path: Path, by: str) -> None:
    cert, key = pki.client(LONG_NAME)
    session = tmp_path / "session.pem"
    ticket = by == "ticket"
    first = s_client_session(server.port, "-cert", cert, "-key", key, "-sess_out", str(session), ticket=ticket)
    assert "New, TLSv1.2" in first and f"client={LONG_NAME} ping" in first, first
    assert ("TLS session ticket:" in first) == ticket, first
    # No certificate the second time: the card restores the client the session was established with.
    second = s_client_session(server.port, "-sess_in", str(session), ticket=ticket)
    assert "Reused, TLSv1.2" in second, second
    assert f"client={LONG_NAME} ping" in second, second
    info = server.sessions[-1]
    assert info.resumed and info.client_subject == LONG_NAME, info
    # Another client's full handshake on the same card does not inherit it.
    other, other_key = pki.client("carol")
    assert "client=carol ping" in s_client(server.port, "-cert", other, "-key", other_key)


def test_a_policy_that_now_requires_a_certificate_resumes_no_session_established_without_one(
        server: EchoServer, auth_card: SeTlsCard, tmp_path: Path) -> None:
    session = tmp_path / "session.pem"
    auth_card.put_policy(0, export_keys=True, client_auth="optional", client_dates=True)
    auth_card.unlock("server", DEMO_PIN)
    try:
        first = s_client_session(server.port, "-sess_out", str(session), ticket=True)
        assert "New, TLSv1.2" in first and "client=None ping" in first, first
        resumed = s_client_session(server.port, "-sess_in", str(session), ticket=True)
        assert "Reused, TLSv1.2" in resumed and "client=None ping" in resumed, resumed
    finally:
        auth_card.put_policy(0, export_keys=True, client_auth="required", client_dates=True)
        auth_card.unlock("server", DEMO_PIN)
    refused = s_client_session(server.port, "-sess_in", str(session), ticket=True)
    assert "Reused" not in refused and "alert handshake failure" in refused, refused


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


# ---- a crafted client's CertificateVerify -----------------------------------------------------------

def crafted_client_auth(port: int, cert_path: str, key_path: str, wrong_signature: bool) -> RawTlsClient:
    """tests/tls12_client.py with a client certificate: Certificate, ClientKeyExchange and a
    CertificateVerify over ClientHello .. ClientKeyExchange (RFC 5246 7.4.8), or over other bytes."""
    cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    client = RawTlsClient("127.0.0.1", port)
    client.send_client_hello()
    client.read_server_flight()
    der = cert.public_bytes(serialization.Encoding.DER)
    entry = len(der).to_bytes(3, "big") + der
    certificate = handshake_message(11, len(entry).to_bytes(3, "big") + entry)
    client.transcript += certificate
    cke = client.key_exchange()
    signed = client.transcript + (b"not the transcript" if wrong_signature else b"")
    signature = key.sign(signed, ec.ECDSA(hashes.SHA256()))
    verify = handshake_message(15, b"\x04\x03" + len(signature).to_bytes(2, "big") + signature)
    client.transcript += verify
    # The Finished covers the CertificateVerify too (RFC 5246 7.4.9): not the session hash.
    finished = handshake_message(20, prf(client.master, b"client finished",
                                         hashlib.sha256(client.transcript).digest(), 12))
    client.transcript += finished
    client.send(records(HANDSHAKE, certificate + cke + verify) + record(CCS, b"\x01")
                + client.protected_records(HANDSHAKE, finished))
    return client


@pytest.mark.parametrize("path", ["ALG_NULL", "transcript copy"])
def test_a_crafted_client_with_a_wrong_certificate_verify_gets_decrypt_error_and_the_next_is_served(
        server: EchoServer, auth_card: SeTlsCard, pki: Pki, path: str) -> None:
    cert, key = pki.client("crafted")
    auth_card.force_transcript_copy = path == "transcript copy"
    try:
        right = crafted_client_auth(server.port, cert, key, wrong_signature=False)
        right.read_server_finished()  # the same client, signing the right bytes: accepted
        right.send_data(b"hi")
        assert right.receive_data() == b"client=crafted hi"
        right.close()
        wrong = crafted_client_auth(server.port, cert, key, wrong_signature=True)
        with pytest.raises(AlertReceived) as alert:
            wrong.read_server_finished()
        assert alert.value.description == AlertDescription.DECRYPT_ERROR
        wrong.close()
        assert "client=crafted ping" in s_client(server.port, "-cert", cert, "-key", key)
    finally:
        auth_card.force_transcript_copy = False


# ---- the host's clock after a re-SELECT -----------------------------------------------------------

def test_the_host_sets_the_clock_again_after_the_card_was_selected_again(
        server: EchoServer, auth_card: SeTlsCard, pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    """A SELECT makes the card forget SET TIME; under a policy that checks dates, a card without
    the clock refuses every client certificate (certificate_unknown), so the host must notice."""
    cert, key = pki.client("carol")
    assert "client=carol ping" in s_client(server.port, "-cert", cert, "-key", key)
    assert auth_card.has_clock
    auth_card.session.select()  # as a recovery, another process or a reset would
    auth_card.unlock("server", DEMO_PIN)
    assert not auth_card.has_clock
    assert "client=carol ping" in s_client(server.port, "-cert", cert, "-key", key)
    assert auth_card.has_clock
    auth_card.session.select()
    auth_card.unlock("server", DEMO_PIN)
    monkeypatch.setattr(auth_card, "refresh_clock", lambda max_age=None: None)  # a host that would not notice
    assert "alert certificate unknown" in s_client(server.port, "-cert", cert, "-key", key)


# ---- python -m host.server: curl, the status page, optional, the host record layer, a pool ---------

def demo_client(tmp_path: Path, name: str) -> tuple[str, str]:
    """NAME.pem, NAME.key from the demo CA the --sim cards trust (the CLI's demo-ca client)."""
    result = subprocess.run([sys.executable, "-m", "host.provision", "demo-ca", "client", name,
                             "--out-dir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return str(tmp_path / f"{name}.pem"), str(tmp_path / f"{name}.key")


def curl(server: ServerProcess, path: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", "--cacert", str(DEMO / "ca.pem"), "--max-time", "60", *args,
                           f"https://localhost:{server.ports['https']}{path}"],
                          capture_output=True, text=True, timeout=90)


@pytest.fixture(scope="module")
def required_pool(server_factory: ServerFactory) -> ServerProcess:
    """Two simulated cards, policy `required`, the card's record layer."""
    return server_factory("--sim", "2", "--https", "0", "--client-auth", "required")


@pytest.fixture(scope="module")
def optional_host_layer(server_factory: ServerFactory) -> ServerProcess:
    """One simulated card, policy `optional`, the host's record layer (tandem mode)."""
    return server_factory("--sim", "--https", "0", "--client-auth", "optional", "--record-layer", "host",
                          "--export-keys")


def test_curl_with_its_certificate_sees_its_own_subject_on_the_status_page_of_each_card_of_a_pool(
        required_pool: ServerProcess, tmp_path: Path) -> None:
    cert, key = demo_client(tmp_path, "curl-client")
    page = curl(required_pool, "/", "--cert", cert, "--key", key)
    assert page.returncode == 0, page.stderr
    assert "CN=curl-client" in page.stdout
    cards = set()
    for _ in range(4):  # both cards of the pool, each with its own sessions
        status = json.loads(curl(required_pool, "/status.json", "--cert", cert, "--key", key).stdout)
        assert status["client_subject"] == "curl-client", status
        cards.add(status["last_session"]["card"])
    assert len(cards) == 2, cards  # the pool hands handshakes to its cards in turn
    assert "curl-client" in required_pool.lines()  # the one log line per connection names the client


def test_curl_without_a_certificate_is_refused_under_required_and_the_next_client_is_served(
        required_pool: ServerProcess, tmp_path: Path) -> None:
    refused = curl(required_pool, "/")
    assert refused.returncode != 0 and "handshake failure" in refused.stderr, refused
    cert, key = demo_client(tmp_path, "after")
    assert "CN=after" in curl(required_pool, "/", "--cert", cert, "--key", key).stdout


def test_optional_policy_serves_a_client_without_a_certificate_and_shows_one_that_has_it_host_record_layer(
        optional_host_layer: ServerProcess, tmp_path: Path) -> None:
    anonymous = json.loads(curl(optional_host_layer, "/status.json").stdout)
    assert anonymous["client_subject"] is None and anonymous["record_mode"] == "host", anonymous
    page = curl(optional_host_layer, "/")
    assert page.returncode == 0 and "Your client certificate <b>none</b>" in page.stdout, page
    cert, key = demo_client(tmp_path, "tandem")
    status = json.loads(curl(optional_host_layer, "/status.json", "--cert", cert, "--key", key).stdout)
    assert status["client_subject"] == "tandem" and status["record_mode"] == "host", status


def test_the_server_refuses_client_auth_options_for_real_cards_in_one_sentence() -> None:
    result = subprocess.run([sys.executable, "-m", "host.server", "--reader", "nonexistent", "--https", "0",
                             "--client-auth", "required"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "python -m host.provision policy --client-auth" in result.stderr, result


@pytest.mark.parametrize("by", ["session ID", "ticket"])
def test_a_resumed_https_session_shows_its_clients_subject_on_status_json_and_in_the_log_line(
        required_pool: ServerProcess, tmp_path: Path, by: str) -> None:
    """openssl s_client -cert/-key -sess_out, then -sess_in without a certificate, through a pool of
    two cards (the host routes the resumption to the card that issued the session)."""
    name = f"resumer-{by.split()[0].lower()}"
    cert, key = demo_client(tmp_path, name)
    session = tmp_path / "session.pem"
    request = b"GET /status.json HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    port = required_pool.ports["https"]
    ca = ("-CAfile", str(DEMO / "ca.pem"), "-verify_return_error", "-servername", "localhost")
    first = s_client_session(port, *ca, "-cert", cert, "-key", key, "-sess_out", str(session),
                             ticket=by == "ticket", message=request)
    assert "New, TLSv1.2" in first and "HTTP/1.1 200" in first, first
    second = s_client_session(port, *ca, "-sess_in", str(session), ticket=by == "ticket", message=request)
    assert "Reused, TLSv1.2" in second and "HTTP/1.1 200" in second, second
    body = second.split("HTTP/1.1 200", 1)[1].split("\r\n\r\n", 1)[1]   # not the ticket's hex dump
    status = json.loads(body[body.index("{"):body.rindex("}") + 1])
    assert status["client_subject"] == name, status
    resumed = [line for line in required_pool.lines().splitlines()
               if " resumed " in line and f"client='{name}'" in line]
    assert resumed, required_pool.lines()[-3000:]


def test_a_client_certificate_issued_this_second_is_accepted_at_once(required_pool: ServerProcess,
                                                                     tmp_path: Path) -> None:
    """openssl x509 -req signs a client certificate whose notBefore is now; curl presents it at
    once: the host sets the card's clock before the card checks the certificate's dates when
    that clock is over a second old, so the certificate is not refused as not yet valid."""
    earlier_cert, earlier_key = demo_client(tmp_path, "earlier")
    for _ in range(4):   # both cards of the pool (2 handshake slots each, taken in turn) get the clock
        assert curl(required_pool, "/", "--cert", earlier_cert, "--key", earlier_key).returncode == 0
    time.sleep(2.5)
    key, csr, cert = tmp_path / "fresh.key", tmp_path / "fresh.csr", tmp_path / "fresh.pem"
    for command in (["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key)],
                    ["openssl", "req", "-new", "-key", str(key), "-subj", "/CN=fresh", "-out", str(csr)],
                    ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(DEMO / "ca.pem"), "-CAkey",
                     str(DEMO / "ca.key"), "-days", "1", "-out", str(cert)]):
        subprocess.run(command, check=True, capture_output=True, timeout=30)
    page = curl(required_pool, "/", "--cert", str(cert), "--key", str(key))
    assert page.returncode == 0, page.stderr
    assert "CN=fresh" in page.stdout



def test_a_certificate_issued_this_second_is_accepted_although_the_cards_clock_was_set_seconds_ago(
        server: EchoServer, auth_card: SeTlsCard, pki: Pki) -> None:
    """The card got the host's clock for a handshake 2.5 s ago (well within the minute between
    refreshes); a certificate whose notBefore is now is accepted at once, with one SET TIME."""
    cert, key = pki.client("dave")
    assert "client=dave ping" in s_client(server.port, "-cert", cert, "-key", key)
    time.sleep(2.5)
    fresh, fresh_key = pki.client("erin", not_before=datetime.datetime.now(datetime.UTC).replace(microsecond=0))
    set_before = auth_card._clock_set_at
    assert "client=erin ping" in s_client(server.port, "-cert", fresh, "-key", fresh_key)
    assert auth_card._clock_set_at != set_before   # SET TIME went before the certificate reached the card
