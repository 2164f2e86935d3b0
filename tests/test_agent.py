"""The agent's choices and its one error boundary, without a card."""

from __future__ import annotations

import pytest

from host.card.errors import (
    AccessDeniedError,
    CardFailureError,
    CardRefusedError,
    EapRejectedError,
    MessageTooLargeError,
    UnknownIdentityError,
    WrongPinError,
    refusal,
)
from host.card.numbers import AppletStatus
from host.card.session import CardCapabilities
from host.card.transport import PacketSizes, choose_packet_sizes
from host.iso7816.apdu import ApduError, StatusWord
from host.iso7816.quirks import SIMULATOR_ATR, quirks_for

SIMULATOR = quirks_for(SIMULATOR_ATR)


def caps(
    *, extended: bool = True, chaining: bool = True, get_response: bool = True
) -> CardCapabilities:
    return CardCapabilities((1, 0), extended, chaining, get_response, 18432, 1024)


@pytest.mark.parametrize(
    ("card", "extended", "max_packet", "sizes"),
    [
        (caps(), True, None, PacketSizes(18442, 18442)),
        (caps(), False, None, PacketSizes(18442, 18442)),  # chaining out, GET RESPONSE back
        (caps(chaining=False), False, None, PacketSizes(254, 18442)),
        (caps(chaining=False, get_response=False), False, None, PacketSizes(254, 256)),
        (caps(), True, 1024, PacketSizes(1024, 1024)),
        (caps(chaining=False), False, 100, PacketSizes(100, 100)),
    ],
)
def test_packet_sizes_follow_the_card_and_the_apdu_format(
    card: CardCapabilities, extended: bool, max_packet: int | None, sizes: PacketSizes
) -> None:
    assert choose_packet_sizes(card, extended, max_packet, SIMULATOR.max_short_lc_with_le) == sizes


def test_packet_size_below_the_card_minimum_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        choose_packet_sizes(caps(), True, 15)


@pytest.mark.parametrize(
    ("sw", "error"),
    [
        (StatusWord.REFERENCED_DATA_NOT_FOUND, UnknownIdentityError),
        (StatusWord.FILE_FULL, MessageTooLargeError),
        (AppletStatus.EAP_UNEXPECTED, EapRejectedError),
        (StatusWord.SECURITY_NOT_SATISFIED, AccessDeniedError),
        (0x63C2, WrongPinError),
        (AppletStatus.CRYPTO_FAILURE, CardFailureError),
        (StatusWord.INS_NOT_SUPPORTED, CardRefusedError),
    ],
)
def test_status_words_become_domain_errors(sw: int, error: type[CardRefusedError]) -> None:
    translated = refusal(ApduError(sw), "PROCESS EAP (server message)")
    assert type(translated) is error
    assert translated.sw == sw
    assert str(translated).startswith("PROCESS EAP (server message): card answered")
