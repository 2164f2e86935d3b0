"""The agent's choices and its one error boundary, without a card."""

from __future__ import annotations

import pytest

from host.agent import (
    AccessDeniedError,
    CardFailureError,
    CardRefusedError,
    EapRejectedError,
    MessageTooLargeError,
    PacketSizes,
    SessionClosedError,
    UnknownIdentityError,
    card_error,
    choose_packet_sizes,
)
from host.apdu import ApduError, StatusWord
from host.channel import CardCapabilities


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
    assert choose_packet_sizes(card, extended, max_packet) == sizes


def test_packet_size_below_the_card_minimum_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        choose_packet_sizes(caps(), True, 15)


@pytest.mark.parametrize(
    ("sw", "error"),
    [
        (StatusWord.REFERENCED_DATA_NOT_FOUND, UnknownIdentityError),
        (StatusWord.FILE_FULL, MessageTooLargeError),
        (StatusWord.EAP_UNEXPECTED, EapRejectedError),
        (StatusWord.SECURITY_NOT_SATISFIED, AccessDeniedError),
        (0x63C2, AccessDeniedError),
        (StatusWord.SESSION_CLOSED, SessionClosedError),
        (StatusWord.CRYPTO_FAILURE, CardFailureError),
        (StatusWord.INS_NOT_SUPPORTED, CardRefusedError),
    ],
)
def test_status_words_become_domain_errors(sw: int, error: type[CardRefusedError]) -> None:
    translated = card_error(ApduError(sw, command="PROCESS EAP"), "server message")
    assert type(translated) is error
    assert translated.sw == sw
    assert str(translated).startswith("server message: PROCESS EAP: card answered")
