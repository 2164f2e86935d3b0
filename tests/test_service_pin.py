"""The service never blocks the card's PIN (issue 15 item 2): the tries are read before any VERIFY,
the last try is never used, a PIN the card refused is not sent again (also across restarts: the
refusal is remembered in the state directory), and a card put back must hold the identity's key
unlocked before. On a simulated card (the guard, in process) and on a card in pcscd's vpcd reader
(the service restarted in a loop as separate processes, as Restart= would)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, provision_with_cli, start_server, stop_server

from host.card import SeTlsCard, open_cards
from host.demo_pki import DemoCa
from host.iso7816.channel import ChannelError
from host.iso7816.simulator import VPCD_PORT, attach_to_pcscd, card_present, vpcd_reader_name
from host.provision import DEMO_PIN, IdentitySpec, personalise
from host.service.pin import (
    EXIT_PIN_REFUSED,
    IdentityChanged,
    PinRefusal,
    RefusedPins,
    find_pin,
    same_identity,
    unlock,
)

pytestmark = pytest.mark.timeout(300)
WRONG, OTHER_WRONG = "0000", "9999"


@pytest.fixture()
def fresh_card(applet_classes: Path, tmp_path: Path) -> Iterator[SeTlsCard]:
    """A simulated card of its own (its PIN tries get used), identity "server", PIN DEMO_PIN."""
    with open_cards(sim=1) as cards:
        personalise(cards[0], IdentitySpec("server", DEMO_PIN), DemoCa.load_or_create(tmp_path / "ca"), out_dir=None)
        yield cards[0]


def tries(card: SeTlsCard) -> int:
    return card.status(card.find_identity("server")).pin_tries_left


def test_a_refused_pin_is_not_sent_again_and_the_last_try_is_never_used(fresh_card: SeTlsCard,
                                                                         tmp_path: Path) -> None:
    card, refused = fresh_card, RefusedPins(tmp_path / "state")
    with pytest.raises(PinRefusal, match="wrong PIN .*2 tries left.*credential"):
        unlock(card, "server", WRONG, refused)
    assert tries(card) == 2
    assert (tmp_path / "state" / "refused-pins.json").stat().st_mode & 0o077 == 0
    for _ in range(3):   # a restart loop with the same credential: not sent again
        with pytest.raises(PinRefusal, match="refused before, not sent again"):
            unlock(card, "server", WRONG, RefusedPins(tmp_path / "state"))
    assert tries(card) == 2
    with pytest.raises(PinRefusal, match="1 try left"):   # another PIN is tried, once
        unlock(card, "server", OTHER_WRONG, refused)
    assert tries(card) == 1
    for pin in (WRONG, "1111", DEMO_PIN):   # one try left: none is used, not even with the right PIN
        with pytest.raises(PinRefusal, match="1 try left, which the service never uses"):
            unlock(card, "server", pin, refused)
    assert tries(card) == 1


def test_the_right_pin_unlocks_and_forgets_the_refusal(fresh_card: SeTlsCard, tmp_path: Path) -> None:
    card, refused = fresh_card, RefusedPins(tmp_path)
    with pytest.raises(PinRefusal):
        unlock(card, "server", WRONG, refused)
    key = unlock(card, "server", DEMO_PIN, refused)
    assert tries(card) == 3 and card.status(card.slot or 0).pin_verified
    assert key == card.public_key(card.slot or 0)
    # The tries went back up: the same wrong PIN counts as new (one try, then remembered again).
    with pytest.raises(PinRefusal, match="2 tries left"):
        unlock(card, "server", WRONG, refused)


def test_a_card_put_back_with_another_identity_key_gets_no_pin(fresh_card: SeTlsCard, tmp_path: Path) -> None:
    card = fresh_card
    key = unlock(card, "server", DEMO_PIN, RefusedPins(tmp_path))
    slot = card.slot or 0
    assert same_identity(card, slot, key)
    other = bytes([4]) + bytes(64)
    assert not same_identity(card, slot, other)
    with pytest.raises(IdentityChanged, match="another key"):
        unlock(card, "server", WRONG, RefusedPins(tmp_path), expected_key=other)
    assert tries(card) == 3   # the wrong PIN was never sent
    assert unlock(card, "server", DEMO_PIN, RefusedPins(tmp_path), expected_key=key) == key


def test_the_pin_comes_from_the_credential_before_a_file_and_a_file_readable_by_others_is_refused(
        tmp_path: Path) -> None:
    credentials, pin_file = tmp_path / "credentials", tmp_path / "pin"
    credentials.mkdir()
    (credentials / "pin").write_text("4321\n")
    (credentials / "pin").chmod(0o400)
    pin_file.write_text("5678\n")
    pin_file.chmod(0o644)
    env = {"CREDENTIALS_DIRECTORY": str(credentials)}
    found = find_pin(None, str(pin_file), False, DEMO_PIN, "server", environ=env, prompt=False)
    assert (found.value, found.source) == ("4321", "systemd credential 'pin'")
    with pytest.raises(Exception, match=f"open to others .*chmod 600 {pin_file}"):
        find_pin(None, str(pin_file), False, DEMO_PIN, "server", environ={}, prompt=False)
    pin_file.chmod(0o600)
    assert find_pin(None, str(pin_file), False, DEMO_PIN, "server", environ={}, prompt=False).value == "5678"


# -- a restart loop of real processes on a card that outlives them (pcscd's vpcd reader) ---------

PORT = VPCD_PORT + 1


@pytest.fixture()
def reader(applet_classes: Path) -> Iterator[str]:
    try:
        name = vpcd_reader_name(PORT)
    except ChannelError as e:
        pytest.skip(f"pcscd with the vpcd driver is not running ({e}): sudo scripts/pcscd-vpcd.sh start")
    if card_present(name, timeout=0):
        pytest.skip(f"{name!r} already has a card (another simulator uses port {PORT})")
    with attach_to_pcscd(PORT, reader=name, classes=applet_classes):
        provision_with_cli(name, DEMO_PIN, export_keys=False)
        yield name


def reader_tries(reader: str) -> int:
    with open_cards(readers=[reader]) as cards:
        return tries(cards[0])


@pytest.mark.pcscd
def test_a_wrong_pin_credential_under_a_restart_loop_uses_one_try(reader: str, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    credentials, state = tmp_path / "credentials", tmp_path / "state"
    credentials.mkdir()
    (credentials / "pin").write_text(WRONG)
    (credentials / "pin").chmod(0o400)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(60)
    env = {**os.environ, "CREDENTIALS_DIRECTORY": str(credentials), "STATE_DIRECTORY": str(state),
           "NOTIFY_SOCKET": str(tmp_path / "notify")}
    env.pop("SETLS_PIN", None)
    assert reader_tries(reader) == 3
    for attempt in range(5):   # what Restart=always would do if the exit status did not stop it
        result = subprocess.run([sys.executable, "-m", "host.server", "--reader", reader, "--tls-echo", "1"],
                                cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == EXIT_PIN_REFUSED, result.stderr
        assert "Traceback" not in result.stderr
        status = notify.recv(4096).decode()
        expected = "wrong PIN" if attempt == 0 else "refused before, not sent again"
        assert status.startswith("STATUS=") and expected in status and "credential" in status, status
        assert "2 tries left" in result.stderr, result.stderr
    assert reader_tries(reader) == 2
    (credentials / "pin").chmod(0o600)
    (credentials / "pin").write_text(DEMO_PIN)   # the fix the sentence names, then a restart
    for name in ("CREDENTIALS_DIRECTORY", "STATE_DIRECTORY", "NOTIFY_SOCKET"):
        monkeypatch.setenv(name, env[name])
    server = start_server(["--reader", reader, "--tls-echo", "0"])
    try:
        assert notify.recv(4096).decode().startswith("READY=1\nSTATUS=tls-echo")
        assert reader_tries(reader) == 3
    finally:
        stop_server(server)
    assert not (state / "refused-pins.json").read_text().strip("{} ")   # forgotten once verified
