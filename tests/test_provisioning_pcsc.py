"""The device maker's whole flow as separate `python -m host.provision` processes through pcscd's
vpcd reader, the path a real reader takes: init, keygen, a CSR that `openssl req -verify` accepts,
the demo CA's certificate and `openssl verify`, load-chain, a server that presents it to a client,
then a staged renewal while that server keeps serving: the client is served by the old key after
every step, by the new one after load-chain.

The vpcd port is $SETLS_LIFECYCLE_VPCD_PORT (default 35963, reader "Virtual PCD 00 00", free while
this test runs: pytest runs one test at a time); the test is skipped when pcscd has no reader for it.
"""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, start_server, stop_server
from cryptography import x509
from tls12_client import RawTlsClient

from host.demo_pki import ensure_demo_operator_key
from host.iso7816.channel import ChannelError
from host.iso7816.simulator import attach_to_pcscd, card_present, vpcd_reader_name

pytestmark = [pytest.mark.timeout(300), pytest.mark.pcscd]
PORT = int(os.environ.get("SETLS_LIFECYCLE_VPCD_PORT", "35963"))
PIN, PUK = "7531", "97531975"


@pytest.fixture()
def reader(applet_classes: Path) -> Iterator[str]:
    try:
        name = vpcd_reader_name(PORT)
    except ChannelError as e:
        pytest.skip(f"no vpcd reader for port {PORT} ({e})")
    if card_present(name, timeout=0):
        pytest.skip(f"{name!r} already has a card")
    with attach_to_pcscd(PORT, reader=name, classes=applet_classes):
        yield name


def provision(reader: str, *args: str, tmp: Path, code: int = 0) -> str:
    env = {**os.environ, "SETLS_PIN": PIN, "SETLS_PUK": PUK, "SETLS_OPERATOR_KEY": str(ensure_demo_operator_key())}
    card = [] if args[0] == "demo-ca" else ["--reader", reader]
    result = subprocess.run([sys.executable, "-m", "host.provision", *args, *card], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def served(port: int) -> x509.Certificate:
    client = RawTlsClient("127.0.0.1", port)
    client.handshake()
    client.send_data(b"ping")
    assert client.receive_data() == b"ping"
    client.close()
    assert client.certificate is not None
    return client.certificate


def test_the_whole_flow_and_a_staged_renewal_through_the_pcsc_reader(reader: str, tmp_path: Path) -> None:
    def step(*args: str) -> str:
        return provision(reader, *args, tmp=tmp_path)

    def issue(name: str, *staged: str) -> Path:
        step("csr", "--subject", f"CN={name},O=Acme", "--san", "DNS:localhost", "--out", str(tmp_path / f"{name}.csr"),
             *staged)
        verified = subprocess.run(["openssl", "req", "-verify", "-noout", "-in", str(tmp_path / f"{name}.csr")],
                                  capture_output=True, text=True, timeout=60)
        assert verified.returncode == 0 and "verify OK" in verified.stderr, verified.stderr
        step("demo-ca", "issue", str(tmp_path / f"{name}.csr"), "--out", str(tmp_path / f"{name}.pem"),
             "--ca-dir", str(tmp_path / "ca"))
        checked = subprocess.run(["openssl", "verify", "-CAfile", str(tmp_path / "ca" / "ca.pem"),
                                  str(tmp_path / f"{name}.pem")], capture_output=True, text=True, timeout=60)
        assert checked.returncode == 0, checked.stderr
        return tmp_path / f"{name}.pem"

    step("init")
    assert "staged" not in step("keygen")
    step("load-chain", str(issue("device-1")))
    step("policy", "--name", "server")
    server = start_server(["--reader", reader, "--pin", PIN, "--tls-echo", "0"])
    try:
        port = server.ports["tls-echo"]
        old = served(port)
        assert old.subject.rfc4514_string() == "O=Acme,CN=device-1"
        step("keygen", "--staged")
        assert served(port) == old
        renewed = issue("device-2", "--staged")
        assert served(port) == old
        step("load-chain", str(renewed))
        assert served(port).subject.rfc4514_string() == "O=Acme,CN=device-2"
    finally:
        stop_server(server)
