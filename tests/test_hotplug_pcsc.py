"""Card hot-plug through pcscd's vpcd reader, as a real reader would see it: the server's pool has
a card in the reader (jcardsim, provisioned with the CLI) and a simulated one.

- The reader's card is reset by another process: the server notices, reopens it, verifies its PIN
  again and serves with it, without a restart.
- Its simulator is killed (the card pulled out): it leaves the pool, the other card serves.
- A new simulator comes into the reader (a blank card): the server looks at it once and leaves it
  alone while the CLI personalises it; reset (put in again) with its own key, it gets no PIN.
- pcscd is restarted under a server whose only card is in the reader: the card is noticed lost,
  and new clients get a fatal internal_error alert.

Uses one vpcd slot (35964 or 35963, whichever has no card); pcscd is shared, so these tests are
few, and the one that restarts pcscd starts it again and leaves it running.
"""
from __future__ import annotations

import os
import signal
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, provision_with_cli, start_server, stop_server
from test_operations import echo_session, scrape, value, wait_for

from host.card.commands import SeTlsCard
from host.card.session import CardSession
from host.iso7816.channel import ChannelError
from host.iso7816.simulator import PcscSimulatorChannel, attach_to_pcscd, card_present, free_port, vpcd_reader_name
from host.provision import DEMO_PIN

pytestmark = [pytest.mark.timeout(300), pytest.mark.pcscd]
PORTS = (35964, 35963)


def free_reader() -> tuple[int, str]:
    for port in PORTS:
        try:
            name = vpcd_reader_name(port)
        except ChannelError as exc:
            pytest.skip(f"no vpcd reader ({exc})")
        if not card_present(name, timeout=0):
            return port, name
    pytest.skip("both vpcd readers hold a card (another test runs)")


@pytest.fixture()
def reader(applet_classes: Path) -> Iterator[tuple[int, str, list[PcscSimulatorChannel]]]:
    """A provisioned simulated card in a free vpcd reader; the list holds every simulator the test
    puts there (all stopped at the end)."""
    port, name = free_reader()
    simulators = [attach_to_pcscd(port, reader=name, classes=applet_classes)]
    try:
        provision_with_cli(name, DEMO_PIN, export_keys=False)
        yield port, name, simulators
    finally:
        for simulator in simulators:
            simulator.close()


def served_by(metrics: int, echo: int, card: str, tries: int = 12) -> bool:
    """Connects until `card` serves a handshake (the pool lends its cards in turn)."""
    for _ in range(tries):
        before = value(scrape(metrics), "setls_handshakes_total", outcome="ok", card=card)
        echo_session(echo).close()
        if value(scrape(metrics), "setls_handshakes_total", outcome="ok", card=card) > before:
            return True
    return False


def test_a_reset_card_comes_back_a_pulled_one_leaves_the_pool_and_a_new_one_gets_no_pin(
        reader: tuple[int, str, list[PcscSimulatorChannel]], applet_classes: Path) -> None:
    port, name, simulators = reader
    metrics = free_port()
    server = start_server(["--sim", "1", "--reader", name, "--pin", DEMO_PIN, "--tls-echo", "0",
                           "--metrics-port", str(metrics), "--card-check", "1"])
    card = f"1:{name}"
    try:
        echo = server.ports["tls-echo"]
        assert served_by(metrics, echo, card)

        simulators[0].reset()   # another process resets the card: its PIN is no longer verified
        wait_for(lambda: value(scrape(metrics), "setls_card_reopens_total", card=card) == 1, 20,
                 "the reset card reopened")
        samples = scrape(metrics)
        assert value(samples, "setls_card_errors_total", card=card) == 1
        assert value(samples, "setls_card_up", card=card) == 1
        assert served_by(metrics, echo, card)
        assert f"card {card} is back: reopened and its PIN verified" in server.lines()

        simulators[0].close()   # the card is pulled out
        wait_for(lambda: value(scrape(metrics), "setls_card_up", card=card) == 0, 10, "the pulled card noticed")
        assert served_by(metrics, echo, "0:sim0")
        assert value(scrape(metrics), "setls_cards_serving") == 1

        # Another card comes in (a new simulator: a new key): the server must not give it the PIN.
        simulators.append(attach_to_pcscd(port, reader=name, classes=applet_classes))
        wait_for(lambda: f"card {card} not reopened: card {name} has no identity" in server.lines(), 20,
                 "the blank card looked at")
        provision_with_cli(name, DEMO_PIN, export_keys=False)   # undisturbed: the server holds it as it was
        simulators[-1].reset()   # put in again, personalised: looked at once more
        wait_for(lambda: f"card {card} not reopened: card {name} holds another key" in server.lines(), 20,
                 "the new card refused")
        assert value(scrape(metrics), "setls_card_up", card=card) == 0
        newcomer = SeTlsCard(CardSession(simulators[-1]))
        status = newcomer.status(newcomer.find_identity("server"))
        assert status.pin_tries_left == 3 and not status.pin_verified
        assert "Traceback" not in server.lines()
    finally:
        stop_server(server)


def pcscd_pid() -> int | None:
    found = subprocess.run(["pgrep", "-x", "pcscd"], capture_output=True, text=True, check=False).stdout.split()
    return int(found[0]) if found else None


def test_a_pcscd_restart_is_noticed_and_with_no_card_left_clients_get_a_fatal_alert(
        reader: tuple[int, str, list[PcscSimulatorChannel]]) -> None:
    _, name, _ = reader
    pid = pcscd_pid()
    if pid is None:
        pytest.skip("pcscd is not running")
    metrics = free_port()
    server = start_server(["--reader", name, "--pin", DEMO_PIN, "--tls-echo", "0", "--metrics-port", str(metrics),
                           "--card-check", "1"])
    try:
        echo = server.ports["tls-echo"]
        echo_session(echo).close()
        os.kill(pid, signal.SIGTERM)   # pcscd restarted (the vpcd card goes with it)
        try:
            wait_for(lambda: pcscd_pid() != pid, 15, "pcscd stopped")
        finally:
            started = subprocess.run(["bash", str(ROOT / "scripts" / "pcscd-vpcd.sh"), "start"], capture_output=True,
                                     text=True, timeout=60, check=False)
        assert started.returncode == 0, started.stderr
        wait_for(lambda: value(scrape(metrics), "setls_cards_serving") == 0, 10, "the card noticed lost")
        for _ in range(2):
            with pytest.raises(ssl.SSLError, match="internal error"):
                echo_session(echo)
        wait_for(lambda: value(scrape(metrics), "setls_handshakes_total", outcome="no_card") >= 2, 5,
                 "the refused handshakes counted")
        assert server.lines().count("no card left") == 1
        assert "Traceback" not in server.lines()
    finally:
        stop_server(server)
    assert pcscd_pid() is not None   # pcscd runs again for the others


def test_a_device_booted_without_its_card_serves_once_the_card_is_put_in(
        applet_classes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port, name = free_reader()
    config = tmp_path / "setls.toml"
    config.write_text(f'[cards]\nreaders = ["{name}"]\nmissing = "wait"\n')
    monkeypatch.setenv("SETLS_PIN", DEMO_PIN)
    metrics = free_port()
    server = start_server(["--config", str(config), "--tls-echo", "0", "--metrics-port", str(metrics),
                           "--card-check", "1"])
    simulators: list[PcscSimulatorChannel] = []
    try:
        echo = server.ports["tls-echo"]
        assert value(scrape(metrics), "setls_cards_serving") == 0
        with pytest.raises(ssl.SSLError, match="internal error"):
            echo_session(echo)
        simulators.append(attach_to_pcscd(port, reader=name, classes=applet_classes))   # the card is put in
        provision_with_cli(name, DEMO_PIN, export_keys=False)
        simulators[-1].reset()   # as a card put in personalised
        wait_for(lambda: value(scrape(metrics), "setls_cards_serving") == 1, 20, "the card taken into the pool")
        assert value(scrape(metrics), "setls_card_reopens_total", card=f"0:{name}") == 1
        echo_session(echo).close()
        assert "Traceback" not in server.lines()
    finally:
        stop_server(server)
        for simulator in simulators:
            simulator.close()
