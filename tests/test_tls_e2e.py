"""The TLS 1.2 server in the card, proven with unmodified clients (openssl s_client, curl,
Python ssl) and a small raw client for the cases stock clients cannot produce."""
from __future__ import annotations

import socket
import ssl
import subprocess
from pathlib import Path

import pytest
from conftest import DEMO, ServerFactory, ServerProcess
from cryptography import x509
from s_client import talk
from tls12_client import AlertReceived, RawTlsClient

pytestmark = pytest.mark.timeout(300)

SUITES = {
    "ECDHE-ECDSA-AES128-GCM-SHA256": 0xC02B,
    "ECDHE-ECDSA-AES128-CCM8": 0xC0AE,
    "ECDHE-ECDSA-AES128-CCM": 0xC0AC,
    "ECDHE-ECDSA-AES128-SHA256": 0xC023,
}
HANDSHAKE_FAILURE, ILLEGAL_PARAMETER, BAD_RECORD_MAC, DECRYPT_ERROR = 40, 47, 20, 51


@pytest.fixture(scope="module", params=["card", "host"])
def echo_server(request: pytest.FixtureRequest, server_factory: ServerFactory) -> ServerProcess:
    # Every suite the card has, CBC-SHA256 included (a new identity offers the AEAD suites only).
    return server_factory("--sim", "--tls-echo", "0", "--record-layer", request.param, "--export-keys",
                          "--handshake-timeout", "20", "--suites", ",".join(f"{s:04x}" for s in SUITES.values()))


def ca_file() -> str:
    return str(DEMO / "ca.pem")


def s_client_echo(port: int, cipher: str, message: bytes, timeout: float = 60.0) -> str:
    """Runs openssl s_client, writes a line, waits for it to come back; returns the output."""
    return talk(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2", "-cipher", cipher,
                 "-CAfile", ca_file(), "-verify_return_error", "-servername", "localhost"], message, timeout=timeout)


@pytest.mark.parametrize("cipher", list(SUITES))
def test_openssl_s_client_completes_each_suite_and_gets_its_data_echoed(echo_server: ServerProcess,
                                                                       cipher: str) -> None:
    message = f"hello over {cipher}".encode()
    output = s_client_echo(echo_server.ports["tls-echo"], cipher, message)
    assert f"Cipher is {cipher}" in output, output
    assert "Verify return code: 0 (ok)" in output, output
    assert output.rstrip().endswith(message.decode()), output


def test_python_ssl_verifies_the_chain_and_exchanges_data(echo_server: ServerProcess) -> None:
    context = ssl.create_default_context(cafile=ca_file())
    with socket.create_connection(("127.0.0.1", echo_server.ports["tls-echo"]), timeout=60) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.version() == "TLSv1.2"
            payload = bytes(range(256)) * 70  # 17920 bytes: more than one record
            tls.sendall(payload)
            received = b""
            while len(received) < len(payload):
                received += tls.recv(65536)
            assert received == payload
            assert (tls.cipher() or ("",))[0] == "ECDHE-ECDSA-AES128-GCM-SHA256"


def test_curl_verifies_the_card_certificate_and_sends_its_request(echo_server: ServerProcess) -> None:
    # The echo server returns curl's own request, which curl then refuses as an HTTP answer:
    # what matters here is the verified handshake and the request having been carried.
    result = subprocess.run(["curl", "-sv", "--cacert", ca_file(), "--max-time", "60",
                             f"https://localhost:{echo_server.ports['tls-echo']}/hello"],
                            capture_output=True, text=True, timeout=90)
    log = result.stderr
    assert "SSL connection using TLSv1.2 / ECDHE-ECDSA-AES128-GCM-SHA256" in log, log
    assert "SSL certificate verify ok" in log, log
    assert "GET /hello HTTP/1.1" in log


def test_client_offering_only_rsa_suites_gets_handshake_failure(echo_server: ServerProcess) -> None:
    client = RawTlsClient("127.0.0.1", echo_server.ports["tls-echo"])
    with pytest.raises(AlertReceived) as alert:
        client.handshake(suites=[0xC02F, 0x009C])
    assert alert.value.description == HANDSHAKE_FAILURE
    client.close()


def test_new_identity_refuses_a_client_offering_only_cbc_sha256(server_factory: ServerFactory) -> None:
    # RFC 9325 4.2: AEAD only by default; CBC-SHA256 is there only when the operator lists it.
    server = server_factory("--sim", "--tls-echo", "0")
    result = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{server.ports['tls-echo']}", "-tls1_2",
                             "-cipher", "ECDHE-ECDSA-AES128-SHA256", "-CAfile", ca_file(), "-servername", "localhost"],
                            input=b"", capture_output=True, timeout=60, check=False)
    output = (result.stdout + result.stderr).decode(errors="replace")
    assert result.returncode != 0, output
    assert "alert handshake failure" in output, output
    client = RawTlsClient("127.0.0.1", server.ports["tls-echo"])
    with pytest.raises(AlertReceived) as alert:
        client.handshake(suites=[SUITES["ECDHE-ECDSA-AES128-SHA256"]])
    assert alert.value.description == HANDSHAKE_FAILURE
    client.close()


def test_client_without_p256_gets_handshake_failure(echo_server: ServerProcess) -> None:
    client = RawTlsClient("127.0.0.1", echo_server.ports["tls-echo"])
    with pytest.raises(AlertReceived) as alert:
        client.handshake(groups=[29, 24])  # x25519, secp384r1
    assert alert.value.description == HANDSHAKE_FAILURE
    client.close()


def test_tampered_finished_gets_decrypt_error(echo_server: ServerProcess) -> None:
    client = RawTlsClient("127.0.0.1", echo_server.ports["tls-echo"])
    with pytest.raises(AlertReceived) as alert:
        client.handshake(tamper_finished=True)
    assert alert.value.description == DECRYPT_ERROR
    client.close()


def test_invalid_ecdh_point_gets_illegal_parameter(echo_server: ServerProcess) -> None:
    off_curve = b"\x04" + bytes(31) + b"\x01" + bytes(31) + b"\x01"
    client = RawTlsClient("127.0.0.1", echo_server.ports["tls-echo"])
    with pytest.raises(AlertReceived) as alert:
        client.handshake(point=off_curve)
    assert alert.value.description == ILLEGAL_PARAMETER
    client.close()


def test_tampered_record_gets_bad_record_mac_and_the_next_client_is_served(echo_server: ServerProcess) -> None:
    ca = x509.load_pem_x509_certificate(Path(ca_file()).read_bytes())
    client = RawTlsClient("127.0.0.1", echo_server.ports["tls-echo"], ca=ca)
    client.handshake()
    client.send_data(b"ping")
    assert client.receive_data() == b"ping"
    protected = bytearray(client.protect(23, b"tampered"))
    protected[-1] ^= 0x80
    client.send(bytes(protected))
    with pytest.raises(AlertReceived) as alert:
        client.receive_data()
    assert alert.value.description == BAD_RECORD_MAC
    client.close()
    _assert_served(echo_server)


def test_garbage_gets_an_alert_and_the_card_serves_the_next_client(echo_server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", echo_server.ports["tls-echo"]), timeout=30) as raw:
        raw.sendall(b"GET / HTTP/1.0\r\n\r\n")
        answer = raw.recv(100)
        assert answer[:1] == b"\x15", answer  # an alert record
    _assert_served(echo_server)


def _assert_served(server: ServerProcess) -> None:
    client = RawTlsClient("127.0.0.1", server.ports["tls-echo"])
    client.handshake()
    client.send_data(b"still there?")
    assert client.receive_data() == b"still there?"
    client.close()


def test_renegotiation_is_refused_with_a_warning_and_the_session_goes_on(echo_server: ServerProcess) -> None:
    client = RawTlsClient("127.0.0.1", echo_server.ports["tls-echo"])
    client.handshake()
    client.send(client.protect(22, b"\x01\x00\x00\x00"))  # a (minimal) ClientHello inside the session
    with pytest.raises(AlertReceived) as alert:
        client.receive_data()
    assert (alert.value.level, alert.value.description) == (1, 100)  # warning, no_renegotiation
    client.send_data(b"still talking")
    assert client.receive_data() == b"still talking"
    client.close()
