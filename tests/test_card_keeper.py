"""A card that comes back is unlocked again without ever risking its PIN (host.card.keeper with the
service's PIN guard, host.service.pin.unlock, as the server binds them), on the card in jcardsim:
a reset card is probed as lost, then reopened and its PIN verified; a wrong PIN is sent once and
never again; a card with one try left, or with another identity key than the one unlocked before,
gets no VERIFY at all (its tries left stay as they were)."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CardTarget

from host.card import SeTlsCard
from host.card.commands import CardOpenError
from host.card.errors import CardRefusedError
from host.card.keeper import CardResetError, ChannelKeeper
from host.demo_pki import DemoCa
from host.provision import DEMO_PIN, IdentitySpec, personalise
from host.service.pin import IdentityChanged, PinRefusal, RefusedPins, unlock

pytestmark = pytest.mark.timeout(120)
WRONG = "9999"


@pytest.fixture(scope="module")
def card(applet_classes: Path, card_target: CardTarget, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[SeTlsCard]:
    with card_target.cards(1) as cards:
        ca = DemoCa.load_or_create(tmp_path_factory.mktemp("ca"))
        personalise(cards[0], IdentitySpec("server", DEMO_PIN), ca, out_dir=None)
        yield cards[0]


@pytest.fixture()
def key(card: SeTlsCard) -> Iterator[bytes]:
    """The identity unlocked, its key; afterwards the PIN verified again (all tries back)."""
    public_key = unlock(card, "server", DEMO_PIN, RefusedPins(None))
    yield public_key
    card.session.reset()
    card.verify(card.find_identity("server"), DEMO_PIN)


def keeper(pin: str, key: bytes) -> ChannelKeeper:
    """The keeper as host.server binds it: the PIN guard, the refused PINs kept in memory."""
    refused = RefusedPins(None)
    return ChannelKeeper(lambda card, expected: unlock(card, "server", pin, refused, expected_key=expected), key,
                         final=(PinRefusal,))


def tries_left(card: SeTlsCard) -> int:
    return card.status(card.find_identity("server")).pin_tries_left


def reset(card: SeTlsCard) -> None:
    """The card is reset (as by another process or a power cut): selected again, PIN no longer verified."""
    card.session.reset()
    assert not card.status(card.find_identity("server")).pin_verified


def test_a_reset_card_is_noticed_then_reopened_with_its_pin_verified_again(card: SeTlsCard, key: bytes) -> None:
    kept = keeper(DEMO_PIN, key)
    assert kept.probe(card) == 3
    card.session.channel.reset()   # the applet is deselected, the PIN unverified
    with pytest.raises((CardRefusedError, CardResetError)):   # the applet is not selected any more
        kept.probe(card)
    assert kept.reopen(card) is card
    assert kept.probe(card) == 3
    facts = kept.facts(card)
    assert facts["subject"].startswith("CN=server (SE-TLS card)") and facts["not_after"].endswith("Z")


def test_a_wrong_pin_is_sent_once_and_never_again(card: SeTlsCard, key: bytes) -> None:
    kept = keeper(WRONG, key)
    reset(card)
    with pytest.raises(PinRefusal, match="wrong PIN.*2 tries left"):
        kept.reopen(card)
    assert tries_left(card) == 2
    for _ in range(3):   # the supervisor's next rounds: no VERIFY any more
        with pytest.raises(CardOpenError, match="wrong PIN.*2 tries left"):
            kept.reopen(card)
    assert tries_left(card) == 2


def test_one_try_left_is_never_risked(card: SeTlsCard, key: bytes) -> None:
    slot = card.find_identity("server")
    for _ in range(2):
        with pytest.raises(CardOpenError):
            card.verify(slot, WRONG)
    assert tries_left(card) == 1
    reset(card)
    with pytest.raises(PinRefusal, match="1 try left, which the service never uses"):
        keeper(DEMO_PIN, key).reopen(card)
    assert tries_left(card) == 1


def test_a_card_with_another_identity_key_gets_no_pin(card: SeTlsCard, key: bytes) -> None:
    other = key[:-1] + bytes([key[-1] ^ 1])
    reset(card)
    kept = keeper(DEMO_PIN, other)
    for _ in range(2):   # looked at again each round (the right card may come back), never given the PIN
        with pytest.raises(IdentityChanged, match="another key for identity 'server'.*PIN is not sent"):
            kept.reopen(card)
    status = card.status(card.find_identity("server"))
    assert status.pin_tries_left == 3 and not status.pin_verified
