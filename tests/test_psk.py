"""Pre-shared keys decided in the card (issue 12 item 4): TLS_PSK_WITH_AES_128_CCM_8 (RFC 7925) and
TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256 (RFC 5489) with the PSKs the operator stored, through a pool
of two simulated cards in both record layers, proven with unmodified openssl s_client."""
from __future__ import annotations

import re

import pytest
from conftest import ServerFactory, ServerProcess
from test_resumption import s_client_plain

pytestmark = pytest.mark.timeout(600)

IDENTITY, KEY = "sensor-17", "00112233445566778899aabbccddeeff"


@pytest.fixture(scope="module", params=["card", "host"])
def psk_server(request: pytest.FixtureRequest, server_factory: ServerFactory) -> ServerProcess:
    return server_factory("--sim", "2", "--tls-echo", "0", "--record-layer", request.param, "--export-keys",
                          "--sim-psk", f"{IDENTITY}:{KEY}", "--handshake-timeout", "20")


def psk_client(server: ServerProcess, cipher: str, identity: str = IDENTITY, key: str = KEY,
               message: bytes = b"over a pre-shared key") -> str:
    return s_client_plain(server.ports["tls-echo"], "-psk_identity", identity, "-psk", key, "-cipher", cipher,
                          message=message)


@pytest.mark.parametrize("cipher", ["PSK-AES128-CCM8", "ECDHE-PSK-AES128-CBC-SHA256"])
def test_openssl_completes_a_psk_handshake_and_exchanges_data(psk_server: ServerProcess, cipher: str) -> None:
    for _ in range(2):   # whichever card of the pool serves it: the PSK is on both
        output = psk_client(psk_server, cipher)
        assert f"Cipher is {cipher}" in output, output
        assert output.rstrip().endswith("over a pre-shared key"), output


def alert_of(output: str) -> str:
    found = re.search(r"SSL alert number (\d+)", output)
    return found.group(1) if found else "none"


def test_a_wrong_psk_and_an_unknown_identity_end_in_the_same_alert(psk_server: ServerProcess) -> None:
    """RFC 4279 2: the card treats an unknown identity as a wrong key, so a client cannot tell
    which was wrong: both get bad_record_mac (20) when their Finished does not authenticate."""
    wrong_key = psk_client(psk_server, "PSK-AES128-CCM8", key="ff" * 16)
    unknown = psk_client(psk_server, "PSK-AES128-CCM8", identity="nobody-at-all")
    assert alert_of(wrong_key) == alert_of(unknown) == "20", (wrong_key, unknown)
    assert "over a pre-shared key" not in wrong_key + unknown
    # The next client is served normally.
    assert psk_client(psk_server, "PSK-AES128-CCM8", message=b"next one").rstrip().endswith("next one")


def test_a_psk_session_resumes_by_ticket(psk_server: ServerProcess, tmp_path: object) -> None:
    from pathlib import Path
    session = Path(str(tmp_path)) / "psk-session.pem"
    first = psk_client(psk_server, "PSK-AES128-CCM8", message=b"first")
    assert "Cipher is PSK-AES128-CCM8" in first
    output = s_client_plain(psk_server.ports["tls-echo"], "-psk_identity", IDENTITY, "-psk", KEY, "-cipher",
                            "PSK-AES128-CCM8", "-sess_out", str(session), message=b"a")
    assert "New, " in output, output
    again = s_client_plain(psk_server.ports["tls-echo"], "-psk_identity", IDENTITY, "-psk", KEY, "-cipher",
                           "PSK-AES128-CCM8", "-sess_in", str(session), message=b"b")
    assert "Reused, " in again, again
