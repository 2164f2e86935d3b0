"""`python -m host.server` and `python -m host.provision` as an operator meets them: a card in a
PC/SC reader (the pcscd + vpcd virtual reader, with jcardsim as the card), and every error a user
can hit answered with a sentence, not a traceback."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, provision_with_cli, start_server, stop_server
from tls12_client import RawTlsClient

from host.iso7816.channel import ChannelError
from host.iso7816.simulator import VPCD_PORT, attach_to_pcscd, card_present, vpcd_reader_name
from host.service.pin import EXIT_PIN_REFUSED

pytestmark = pytest.mark.timeout(300)
PIN = "8642"


def run(module: str, *args: str, timeout: float = 120,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


def assert_sentence(result: subprocess.CompletedProcess[str], *words: str, code: int = 2) -> None:
    assert result.returncode == code, result
    assert "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


def personalised_card(classes: Path, port: int) -> Iterator[str]:
    """A jcardsim card in pcscd's virtual reader, personalised by the provisioning CLI."""
    try:
        name = vpcd_reader_name(port)
    except ChannelError as e:
        pytest.skip(f"pcscd with the vpcd driver is not running ({e}): sudo scripts/pcscd-vpcd.sh start")
    if card_present(name, timeout=0):
        pytest.skip(f"{name!r} already has a card")
    with attach_to_pcscd(port, reader=name, classes=classes):
        outputs = provision_with_cli(name, PIN, export_keys=True)
        assert "chain loaded and committed" in outputs[-3]
        yield name


@pytest.fixture(scope="module")
def reader(applet_classes: Path) -> Iterator[str]:
    yield from personalised_card(applet_classes, VPCD_PORT)


@pytest.fixture()
def reader_to_block(applet_classes: Path) -> Iterator[str]:
    """A card of its own (vpcd's second reader), since the test uses its PIN tries."""
    yield from personalised_card(applet_classes, VPCD_PORT + 1)


def test_no_cards_named_is_a_usage_error() -> None:
    assert_sentence(run("host.server", "--tls-echo", "0"), "--sim", "--reader")


def test_unknown_reader_is_named_in_the_error() -> None:
    assert_sentence(run("host.server", "--reader", "No Such Reader 99", "--pin", PIN, "--tls-echo", "1"),
                    "No Such Reader 99")


def test_server_on_a_pcsc_reader_serves_a_handshake(reader: str) -> None:
    server = start_server(["--reader", reader, "--pin", PIN, "--tls-echo", "0"])
    try:
        client = RawTlsClient("127.0.0.1", server.ports["tls-echo"])
        client.handshake()
        client.send_data(b"through pcscd")
        assert client.receive_data() == b"through pcscd"
        client.close()
    finally:
        stop_server(server)


def test_unknown_identity_is_named(reader: str) -> None:
    assert_sentence(run("host.server", "--reader", reader, "--pin", PIN, "--identity", "nobody",
                        "--tls-echo", "1"), "no identity named 'nobody'")


def test_port_in_use_is_reported(reader: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert_sentence(run("host.server", "--reader", reader, "--pin", PIN, "--tls-echo", str(port)),
                        f"cannot listen on 127.0.0.1:{port}")


def test_a_wrong_pin_tells_the_tries_left_and_the_server_never_blocks_it(reader_to_block: str,
                                                                        tmp_path: Path) -> None:
    reader = reader_to_block
    env = {**os.environ, "STATE_DIRECTORY": str(tmp_path)}
    assert_sentence(run("host.server", "--reader", reader, "--pin", "0000", "--tls-echo", "1", env=env),
                    "wrong PIN", "2 tries left", code=EXIT_PIN_REFUSED)
    # The right PIN resets the counter (OwnerPIN), so the server starts again.
    server = start_server(["--reader", reader, "--pin", PIN, "--tls-echo", "0"])
    stop_server(server)
    assert_sentence(run("host.server", "--reader", reader, "--pin", "0000", "--tls-echo", "1", env=env),
                    "2 tries left", code=EXIT_PIN_REFUSED)
    assert_sentence(run("host.server", "--reader", reader, "--pin", "0000", "--tls-echo", "1", env=env),
                    "refused before, not sent again", code=EXIT_PIN_REFUSED)
    assert_sentence(run("host.server", "--reader", reader, "--pin", "1111", "--tls-echo", "1", env=env),
                    "1 try left", code=EXIT_PIN_REFUSED)
    for pin in ("2222", PIN):   # the last try is a person's: the server sends no PIN at all
        assert_sentence(run("host.server", "--reader", reader, "--pin", pin, "--tls-echo", "1", env=env),
                        "1 try left, which the service never uses", "change-pin", code=EXIT_PIN_REFUSED)
