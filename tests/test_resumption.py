"""Session resumption decided in the card (issue 12 item 3): session IDs and RFC 5077 tickets,
abbreviated handshakes with the extended master secret, through a pool of two simulated cards in
both record layers, proven with unmodified openssl s_client and Python ssl."""
from __future__ import annotations

import re
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
from conftest import DEMO, ServerFactory, ServerProcess
from s_client import talk
from tls12_client import RawTlsClient

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module", params=["card", "host"])
def pool(request: pytest.FixtureRequest, server_factory: ServerFactory) -> ServerProcess:
    """Two simulated cards behind one echo server: a resumption must reach the card that issued it."""
    return server_factory("--sim", "2", "--tls-echo", "0", "--record-layer", request.param, "--export-keys",
                          "--handshake-timeout", "20")


def s_client(port: int, *options: str, message: bytes = b"ping", timeout: float = 60.0) -> str:
    """openssl s_client with `options`, checking the card's certificate against the demo CA."""
    return s_client_plain(port, "-CAfile", str(DEMO / "ca.pem"), "-verify_return_error", "-servername",
                          "localhost", *options, message=message, timeout=timeout)


def s_client_plain(port: int, *options: str, message: bytes = b"ping", timeout: float = 60.0) -> str:
    """openssl s_client -tls1_2 with `options`: once the handshake is done it sends a line and waits
    until the line comes back (or `timeout`, or s_client ends); returns everything it printed."""
    return talk(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2", *options], message,
                timeout=timeout)


def outcome(output: str) -> str:
    found = re.search(r"^(New|Reused), TLSv1\.2", output, re.MULTILINE)
    return found.group(1) if found else "failed"


def test_openssl_resumes_a_session_id_on_the_card_that_issued_it_10_of_10(pool: ServerProcess,
                                                                         tmp_path: Path) -> None:
    session = tmp_path / "session.pem"
    port = pool.ports["tls-echo"]
    first = s_client(port, "-no_ticket", "-sess_out", str(session))
    assert outcome(first) == "New", first
    results = [outcome(s_client(port, "-no_ticket", "-sess_in", str(session))) for _ in range(10)]
    assert results == ["Reused"] * 10, results


def test_openssl_resumes_a_ticket_on_the_card_that_issued_it_10_of_10(pool: ServerProcess, tmp_path: Path) -> None:
    session = tmp_path / "session.pem"
    port = pool.ports["tls-echo"]
    first = s_client(port, "-sess_out", str(session))
    assert outcome(first) == "New", first
    assert "TLS session ticket:" in first, first
    outputs = [s_client(port, "-sess_in", str(session), message=b"resumed by ticket") for _ in range(10)]
    assert [outcome(o) for o in outputs] == ["Reused"] * 10, outputs[0]
    assert all("resumed by ticket" in o.split("Reused, TLSv1.2", 1)[1] for o in outputs), outputs[0]


def ticket_of(session: Path) -> bytes:
    """The ticket in an openssl session file, from `openssl sess_id -text`'s hex dump."""
    text = subprocess.run(["openssl", "sess_id", "-in", str(session), "-noout", "-text"], capture_output=True,
                          text=True, check=True).stdout
    dump = text.split("TLS session ticket:", 1)[1].split("\n\n", 1)[0]
    return bytes.fromhex("".join(re.findall(r"(?:^|[ -])([0-9a-f]{2})(?=[ -])", dump.replace(" - ", "  "),
                                            re.MULTILINE)))


def test_a_ticket_altered_in_one_byte_gets_a_full_handshake(pool: ServerProcess, tmp_path: Path) -> None:
    session = tmp_path / "session.pem"
    port = pool.ports["tls-echo"]
    assert outcome(s_client(port, "-sess_out", str(session))) == "New"
    ticket = ticket_of(session)
    assert len(ticket) == 153, ticket.hex()   # key id 8, nonce 12, state 117, tag 16
    der = subprocess.run(["openssl", "sess_id", "-in", str(session), "-outform", "DER"], capture_output=True,
                         check=True).stdout
    assert der.count(ticket) == 1
    altered = bytearray(ticket)
    altered[60] ^= 0x01   # a byte of the sealed state
    altered_der = tmp_path / "altered.der"
    altered_der.write_bytes(der.replace(ticket, bytes(altered)))
    altered_pem = tmp_path / "altered.pem"
    subprocess.run(["openssl", "sess_id", "-inform", "DER", "-in", str(altered_der), "-out", str(altered_pem)],
                   check=True, capture_output=True)
    output = s_client(port, "-sess_in", str(altered_pem), message=b"after a bad ticket")
    assert outcome(output) == "New", output
    assert "after a bad ticket" in output.split("New, TLSv1.2", 1)[1], output
    # The card is fine afterwards: the unaltered ticket still resumes.
    assert outcome(s_client(port, "-sess_in", str(session))) == "Reused"


def test_python_ssl_reuses_a_session(pool: ServerProcess) -> None:
    context = ssl.create_default_context(cafile=str(DEMO / "ca.pem"))
    context.maximum_version = ssl.TLSVersion.TLSv1_2

    def connect(session: ssl.SSLSession | None) -> tuple[ssl.SSLSession | None, bool]:
        with socket.create_connection(("127.0.0.1", pool.ports["tls-echo"]), timeout=30) as raw, \
                context.wrap_socket(raw, server_hostname="localhost", session=session) as tls:
            tls.sendall(b"python\n")
            assert tls.recv(100) == b"python\n"
            return tls.session, bool(tls.session_reused)

    session, reused = connect(None)
    assert not reused and session is not None
    for _ in range(3):
        _, reused = connect(session)
        assert reused


def test_a_session_without_extended_master_secret_gets_no_session_id(pool: ServerProcess) -> None:
    """RFC 7627 5.3: a session without EMS is never resumed, so the card names none."""
    client = RawTlsClient("127.0.0.1", pool.ports["tls-echo"])
    try:
        client.send_client_hello(ems=False)
        messages = client.read_handshake_messages(until=14)
        assert messages[2][34] == 0   # empty session_id
    finally:
        client.close()


def test_resuming_an_ems_session_without_ems_gets_a_full_handshake(pool: ServerProcess, tmp_path: Path) -> None:
    """RFC 7627 5.3: the ClientHello offers a cached session ID but no EMS: a full handshake."""
    session = tmp_path / "session.pem"
    output = s_client(pool.ports["tls-echo"], "-no_ticket", "-sess_out", str(session))
    session_id = bytes.fromhex(re.search(r"Session-ID: ([0-9A-F]+)", output).group(1))  # type: ignore[union-attr]
    assert len(session_id) == 16
    for _ in range(2):   # whichever card of the two the host picks, neither resumes it
        client = RawTlsClient("127.0.0.1", pool.ports["tls-echo"])
        try:
            client.send_client_hello(ems=False, session_id=session_id)
            messages = client.read_handshake_messages(until=14)
            assert 11 in messages and messages[2][34] == 0   # a Certificate: the full handshake
        finally:
            client.close()
