"""APDU encoding and parsing (ISO 7816-4 cases 1-4, short and extended), status word names."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from host.card.errors import describe
from host.card.numbers import AppletStatus
from host.iso7816.apdu import (
    ApduError,
    ApduFormatError,
    CommandApdu,
    ResponseApdu,
    StatusWord,
    is_extended,
    sw_name,
)
from host.iso7816.quirks import SIMULATOR_ATR, quirks_for

MAX_SHORT_LC_WITH_LE = quirks_for(SIMULATOR_ATR).max_short_lc_with_le

commands = st.builds(
    CommandApdu,
    cla=st.integers(0, 255),
    ins=st.integers(0, 255),
    p1=st.integers(0, 255),
    p2=st.integers(0, 255),
    data=st.binary(max_size=600),
    ne=st.one_of(st.just(0), st.integers(1, 65536)),
)


@given(commands)
def test_command_round_trips_through_its_automatic_form(command: CommandApdu) -> None:
    raw = command.encode()
    assert is_extended(raw) == (not command.fits_short())
    assert CommandApdu.parse(raw) == command


@given(commands)
def test_command_round_trips_through_the_extended_form(command: CommandApdu) -> None:
    assert CommandApdu.parse(command.encode(extended=True)) == command


@pytest.mark.parametrize(
    ("command", "encoded"),
    [
        (CommandApdu(0x00, 0xA4, 4, 0), "00A40400"),
        (CommandApdu(0x00, 0xC0, ne=256), "00C0000000"),
        (CommandApdu(0xA0, 0x80, data=b"\x01\x02"), "A0800000020102"),
        (CommandApdu(0xA0, 0x80, data=b"\x01", ne=16), "A0800000010110"),
        (CommandApdu(0xA0, 0x80, ne=65536), "A0800000000000"),
        (CommandApdu(0xA0, 0x80, data=b"\x01", ne=65536), "A0800000000001010000"),
        (CommandApdu(0xA0, 0x80, data=bytes(256)), "A0800000000100" + "00" * 256),
    ],
)
def test_command_encodes_the_iso_cases(command: CommandApdu, encoded: str) -> None:
    assert command.encode().hex().upper() == encoded


def test_short_command_with_le_carries_at_most_254_bytes_unless_asked() -> None:
    """jcardsim fails 261-byte short APDUs (Lc 255 + Le): the automatic form avoids them."""
    command = CommandApdu(0xA0, 0x80, data=bytes(MAX_SHORT_LC_WITH_LE + 1), ne=256)
    assert not command.fits_short(MAX_SHORT_LC_WITH_LE)
    assert is_extended(command.encode(max_lc_with_le=MAX_SHORT_LC_WITH_LE))
    assert len(command.encode(extended=False)) == 261
    assert CommandApdu(0xA0, 0x80, data=bytes(255)).fits_short(MAX_SHORT_LC_WITH_LE)


@pytest.mark.parametrize(
    "raw", ["", "00A404", "00A4040002AA", "00A404000000", "00A40400000002AA", "00A4040000000000"]
)
def test_malformed_command_is_refused(raw: str) -> None:
    with pytest.raises(ApduFormatError):
        CommandApdu.parse(bytes.fromhex(raw))


def test_command_fields_are_checked() -> None:
    with pytest.raises(ValueError):
        CommandApdu(0x100, 0)
    with pytest.raises(ValueError):
        CommandApdu(0, 0, ne=65537)
    with pytest.raises(ApduFormatError):
        CommandApdu(0, 0, data=bytes(256)).encode(extended=False)


def test_response_splits_data_and_status_word() -> None:
    response = ResponseApdu.parse(bytes.fromhex("01029000"))
    assert (response.data, response.sw, response.ok) == (b"\x01\x02", StatusWord.OK, True)
    assert response.encode() == bytes.fromhex("01029000")
    with pytest.raises(ApduFormatError):
        ResponseApdu.parse(b"\x90")


def test_apdu_error_names_the_status_word() -> None:
    error = ApduError(StatusWord.REFERENCED_DATA_NOT_FOUND, command="PROCESS EAP")
    assert error.status is StatusWord.REFERENCED_DATA_NOT_FOUND
    assert "6A88 REFERENCED_DATA_NOT_FOUND: unknown identity" in str(error)
    assert "PROCESS EAP" in str(error)
    with pytest.raises(ApduError):
        ResponseApdu(b"", AppletStatus.EAP_UNEXPECTED).check()


@pytest.mark.parametrize(
    ("sw", "name"),
    [
        (0x6110, "6110 BYTES_REMAINING: 16 response bytes remain"),
        (0x6100, "6100 BYTES_REMAINING: 256 or more response bytes remain"),
        (0x6C08, "6C08 CORRECT_LENGTH: wrong Le, 8 expected"),
        (0x63C2, "63C2 PIN_TRIES_LEFT: wrong PIN, 2 tries left"),
        (0x6F01, "6F01 EAP_UNEXPECTED"),
        (0x1234, "1234: unknown status word"),
    ],
)
def test_status_words_have_readable_names(sw: int, name: str) -> None:
    assert describe(sw).startswith(name)
    if sw >> 8 != 0x6F:
        assert sw_name(sw).startswith(name)
