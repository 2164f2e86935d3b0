"""`python -m host.server` serving HTTPS and CoAP over TLS from the card to unmodified clients:
curl, Python http.client over ssl, aiocoap, and headless Chromium."""
from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import DEMO, ROOT, ServerFactory, ServerProcess
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from host.apps.coap import (
    CoapMessage,
    Code,
    OptionNumber,
    core_link_format,
    encode_uint,
)
from host.apps.coap_blockwise import BlockOption
from host.apps.coap_tcp import (
    CSM_BLOCK_WISE_TRANSFER,
    CSM_MAX_MESSAGE_SIZE,
    decode_message,
    encode_message,
)

pytestmark = pytest.mark.timeout(300)
ARTIFACTS = ROOT / "build" / "test-artifacts"


@pytest.fixture(scope="module", params=["card", "host"])
def servers(request: pytest.FixtureRequest, server_factory: ServerFactory) -> ServerProcess:
    return server_factory("--sim", "--https", "0", "--coaps-tcp", "0", "--record-layer", request.param,
                          "--export-keys")


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", "--cacert", str(DEMO / "ca.pem"), "--max-time", "60", *args],
                          capture_output=True, text=True, timeout=90)


def test_curl_gets_the_temperature_and_switches_the_plug(servers: ServerProcess) -> None:
    base = f"https://localhost:{servers.ports['https']}"
    got = curl(f"{base}/sensors/temperature")
    assert got.returncode == 0, got.stderr
    assert "celsius" in json.loads(got.stdout)
    put = curl("-X", "PUT", "-H", "Content-Type: application/json", "-d", '{"on": true}', f"{base}/actuators/plug")
    assert put.returncode == 0, put.stderr
    assert json.loads(curl(f"{base}/actuators/plug").stdout)["on"] is True
    bad = curl("-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT", "-d", "not json", f"{base}/actuators/plug")
    assert bad.stdout == "400"


def test_http_client_makes_ten_requests_on_one_keep_alive_connection(servers: ServerProcess) -> None:
    context = ssl.create_default_context(cafile=str(DEMO / "ca.pem"))
    connection = http.client.HTTPSConnection("localhost", servers.ports["https"], context=context, timeout=60)
    sockets = set()
    for i in range(10):
        body = json.dumps({"on": i % 2 == 0})
        connection.request("PUT", "/actuators/plug", body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 200
        assert json.loads(response.read())["on"] is (i % 2 == 0)
        sockets.add(id(connection.sock))
    assert len(sockets) == 1, "the connection was not kept alive"
    assert connection.sock.version() == "TLSv1.2"
    connection.close()


def aiocoap_client(*args: str) -> subprocess.CompletedProcess[str]:
    """The unmodified aiocoap-client; it trusts the demo CA through OpenSSL's SSL_CERT_FILE."""
    env = dict(os.environ, SSL_CERT_FILE=str(DEMO / "ca.pem"))
    return subprocess.run([str(ROOT / ".venv" / "bin" / "aiocoap-client"), *args], capture_output=True,
                          text=True, timeout=120, env=env)


def test_aiocoap_client_gets_and_puts_over_coaps_tcp(servers: ServerProcess) -> None:
    uri = f"coaps+tcp://127.0.0.1:{servers.ports['coaps-tcp']}"
    got = aiocoap_client(f"{uri}/sensors/temperature")
    assert got.returncode == 0, got.stderr
    assert "celsius" in json.loads(got.stdout)
    put = aiocoap_client("-m", "PUT", "--payload", '{"on": false}', f"{uri}/actuators/plug")
    assert put.returncode == 0, put.stderr
    assert json.loads(put.stdout)["on"] is False
    missing = aiocoap_client(f"{uri}/no/such/thing")
    assert "4.04" in missing.stdout + missing.stderr


class CoapOverTls:
    """A CoAP-over-TLS client (RFC 8323) made of Python's ssl and the project's own codec, for what
    aiocoap cannot be made to say (it always announces a Max-Message-Size of 1 MiB)."""

    def __init__(self, port: int) -> None:
        context = ssl.create_default_context(cafile=str(DEMO / "ca.pem"))
        self.sock = context.wrap_socket(socket.create_connection(("localhost", port), timeout=60),
                                        server_hostname="localhost")
        self.buffer = b""

    def send(self, message: CoapMessage) -> None:
        self.sock.sendall(encode_message(message))

    def receive(self) -> tuple[CoapMessage, int]:
        """The next message and its size on the wire."""
        while (decoded := decode_message(self.buffer)) is None:
            data = self.sock.recv(65536)
            assert data, "the server closed the connection"
            self.buffer += data
        self.buffer = self.buffer[decoded[1]:]
        return decoded

    def close(self) -> None:
        self.sock.close()


def test_a_client_announcing_64_bytes_gets_well_known_core_in_block2_pieces_that_fit(servers: ServerProcess) -> None:
    client = CoapOverTls(servers.ports["coaps-tcp"])
    try:
        csm, _ = client.receive()
        assert csm.code == Code.CSM
        client.send(CoapMessage(Code.CSM, options=((CSM_MAX_MESSAGE_SIZE, encode_uint(64)),
                                                   (CSM_BLOCK_WISE_TRANSFER, b""))))
        path = ((OptionNumber.URI_PATH, b".well-known"), (OptionNumber.URI_PATH, b"core"))
        client.send(CoapMessage(Code.GET, b"\x00", path))
        pieces: list[tuple[CoapMessage, int]] = [client.receive()]
        while (block := BlockOption.decode(pieces[-1][0].first(OptionNumber.BLOCK2) or b"")).more:
            following = BlockOption(block.num + 1, False, block.szx)   # RFC 7959 3.1: the next one
            client.send(CoapMessage(Code.GET, bytes([len(pieces)]),
                                    path + ((OptionNumber.BLOCK2, following.encode()),)))
            pieces.append(client.receive())
        client.send(CoapMessage(Code.RELEASE))
    finally:
        client.close()
    assert len(pieces) > 1 and all(size <= 64 for _, size in pieces), [size for _, size in pieces]
    assert [m.token for m, _ in pieces] == [bytes([i]) for i in range(len(pieces))]
    assert all(m.code == Code.CONTENT for m, _ in pieces)
    assert b"".join(m.payload for m, _ in pieces) == core_link_format()


def spki_pin(pem: Path) -> str:
    certificate = x509.load_pem_x509_certificate(pem.read_bytes())
    spki = certificate.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed (make setup)")
def test_chromium_loads_the_status_page_with_the_card_key_pinned(servers: ServerProcess) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    url = f"https://localhost:{servers.ports['https']}/"
    mode = "card" if "record layer in the card" in servers.lines() else "host"
    screenshot = ARTIFACTS / f"status-page-{mode}.png"
    with tempfile.TemporaryDirectory() as profile:
        # Only the card's public key is trusted (SPKI pin), every other certificate check stays on.
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}", f"--ignore-certificate-errors-spki-list={spki_pin(DEMO / 'server.pem')}"]
        dom = subprocess.run(["chromium", *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
        subprocess.run(["chromium", *flags, f"--screenshot={screenshot}", "--window-size=1000,700", url],
                       capture_output=True, text=True, timeout=120)
    assert "ECDHE-ECDSA" in dom.stdout, dom.stdout + dom.stderr
    assert screenshot.exists() and screenshot.stat().st_size > 1000
