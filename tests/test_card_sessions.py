"""The card's sessions (issue 10 item 2) and its keeping them through host mistakes (items 8, 9),
driven through the card's commands with no sockets: several sessions named by handles, their
handshakes and records interleaved in any order, the handshake slots, the ways a slot is freed; a
wrong PIN of any length, and malformed commands that must not cost a session they do not name."""
from __future__ import annotations

import pytest
from card_socket import CardSocket
from test_card_tls import PIN
from tls12_client import RawTlsClient

from host.card.commands import SeTlsCard
from host.card.errors import AccessDeniedError, CardBusyError, CardRefusedError
from host.card.numbers import AppletStatus, Cla, Ins
from host.iso7816.apdu import ResponseApdu, StatusWord
from host.iso7816.channel import exchange
from host.tls.numbers import AlertDescription, AlertLevel, ContentType

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def fresh(card: SeTlsCard) -> SeTlsCard:
    """The card selected again (every session forgotten) and its PIN verified."""
    card.session.select()
    card.unlock("server", PIN)
    return card


def raw(card: SeTlsCard, apdu: str) -> ResponseApdu:
    """One APDU exactly as written, past the host's layers (no GET RESPONSE, no chaining)."""
    return exchange(card.session.channel, bytes.fromhex(apdu.replace(" ", "")))


def short(header: str, data: str, le: str = "") -> str:
    """A short APDU from its header, data and Le (hex), with Lc counted."""
    body = bytes.fromhex(data.replace(" ", ""))
    return f"{header} {len(body):02X} {body.hex()} {le}"


IDENTITY_SERVER = "0201000B01" + b"server".hex()   # EAP-Response/Identity "server"
IDENTITY_ECHO = "0201000A01" + b"@echo".hex()


def start(card: SeTlsCard, handle: int) -> RawTlsClient:
    card.begin_conversation("server", handle)
    return RawTlsClient("card", 0, sock=CardSocket(card, handle=handle))


def establish(card: SeTlsCard, handle: int) -> RawTlsClient:
    client = start(card, handle)
    client.handshake()
    return client


def round_trip(card: SeTlsCard, client: RawTlsClient, handle: int, data: bytes) -> None:
    """The client's record decrypted by session `handle`, and the card's answer by the client."""
    content_type, plain = card.unprotect(client.protect(ContentType.APPLICATION_DATA, data), handle)
    assert (content_type, plain) == (ContentType.APPLICATION_DATA, data)
    answer = card.protect(ContentType.APPLICATION_DATA, data[::-1], handle)
    assert client.unprotect(answer[0], answer[5:]) == data[::-1]


# ---- item 2: several sessions ----------------------------------------------------------------

def test_select_announces_the_session_and_handshake_slots(fresh: SeTlsCard) -> None:
    caps = fresh.session.caps
    assert caps.version >= (2, 0) and caps.has_handles
    assert caps.session_slots >= 6 and caps.handshake_slots >= 2


def test_four_sessions_in_the_record_phase_while_two_handshakes_run_interleaved(fresh: SeTlsCard) -> None:
    card = fresh
    clients = {h: establish(card, h) for h in range(4)}
    # Two handshakes at once, their flights interleaved with records of the four sessions.
    a, b = start(card, 4), start(card, 5)
    a.send_client_hello()
    round_trip(card, clients[2], 2, b"between hellos")
    b.send_client_hello()
    a.read_server_flight()
    b.read_server_flight()
    round_trip(card, clients[0], 0, b"between flights")
    b.send_flight3(b.key_exchange(), b.finished())
    round_trip(card, clients[3], 3, b"in the middle")
    a.send_flight3(a.key_exchange(), a.finished())
    a.read_server_finished()
    b.read_server_finished()
    clients[4], clients[5] = a, b
    for handle in (5, 1, 4, 0, 3, 2, 1, 5):   # any order, each with its own keys and sequence numbers
        round_trip(card, clients[handle], handle, f"record for {handle}".encode() * 20)


def test_a_third_handshake_waits_for_a_handshake_slot(fresh: SeTlsCard) -> None:
    card = fresh
    first, second = start(card, 0), start(card, 1)
    first.send_client_hello()
    second.send_client_hello()
    with pytest.raises(CardBusyError) as busy:
        card.begin_conversation("server", 2)
    assert busy.value.status is AppletStatus.NO_HANDSHAKE_SLOT
    first.read_server_flight()
    first.send_flight3(first.key_exchange(), first.finished())
    first.read_server_finished()            # established: its handshake slot is free again
    third = start(card, 2)
    third.handshake()
    second.read_server_flight()             # the one left waiting goes on
    second.send_flight3(second.key_exchange(), second.finished())
    second.read_server_finished()
    round_trip(card, second, 1, b"second")
    round_trip(card, third, 2, b"third")


def test_close_notify_close_session_and_export_free_the_slot(fresh: SeTlsCard) -> None:
    card = fresh
    clients = {h: establish(card, h) for h in range(3)}
    alert = card.protect(ContentType.ALERT, bytes([AlertLevel.WARNING, AlertDescription.CLOSE_NOTIFY]), 0)
    assert clients[0].unprotect(alert[0], alert[5:]) == bytes([AlertLevel.WARNING, AlertDescription.CLOSE_NOTIFY])
    card.close_session(1)
    card.export_keys(2)
    for handle in (0, 1, 2):
        with pytest.raises(AccessDeniedError) as refused:
            card.protect(ContentType.APPLICATION_DATA, b"gone", handle)
        assert refused.value.sw == StatusWord.CONDITIONS_NOT_SATISFIED
    # A warning that is not close_notify (no_renegotiation) leaves the session open.
    client = establish(card, 0)
    warning = card.protect(ContentType.ALERT, bytes([AlertLevel.WARNING, AlertDescription.NO_RENEGOTIATION]), 0)
    assert client.unprotect(warning[0], warning[5:]) == bytes([AlertLevel.WARNING, AlertDescription.NO_RENEGOTIATION])
    round_trip(card, client, 0, b"still open")


def test_a_closed_session_mid_handshake_frees_its_handshake_slot(fresh: SeTlsCard) -> None:
    card = fresh
    for handle in (0, 1):
        start(card, handle).send_client_hello()
    card.close_session(0)
    establish(card, 2)


def test_a_handle_the_card_does_not_have_is_refused(fresh: SeTlsCard) -> None:
    slots = fresh.session.caps.session_slots
    with pytest.raises(CardRefusedError) as refused:
        fresh.protect(ContentType.APPLICATION_DATA, b"x", slots)
    assert refused.value.sw == StatusWord.INCORRECT_P1P2


def test_another_session_between_the_fragments_of_a_message_costs_only_that_conversation(
        fresh: SeTlsCard) -> None:
    card = fresh
    established = establish(card, 0)
    # Session 1 sends the first fragment of a message (flags L and M) and stops.
    assert raw(card, short("A0800000", "01" + IDENTITY_SERVER, "00")).sw == StatusWord.OK
    fragment = "01 02010010 0DC0 00000010 AABBCCDDEEFF"   # 16 announced, 6 sent: acknowledged
    assert raw(card, short("A0800000", fragment, "00")).sw == StatusWord.OK
    round_trip(card, established, 0, b"in between")       # records go through RAM: no harm
    card.begin_conversation("@echo", 2)
    assert card.exchange(b"session 2's message" * 4, 2) == b"session 2's message" * 4   # the I/O buffer
    rest = "01 02020010 0D00 00112233445566778899"
    assert raw(card, short("A0800000", rest, "00")).sw == AppletStatus.EAP_UNEXPECTED
    round_trip(card, established, 0, b"unharmed")
    establish(card, 1)


# ---- item 8: host mistakes keep the session ----------------------------------------------------

def test_get_data_of_the_chain_without_le_answers_61xx_and_keeps_the_session(fresh: SeTlsCard) -> None:
    client = establish(fresh, 0)
    answer = raw(fresh, "A0 CA 09 00")
    assert answer.sw1 == 0x61 and len(answer.data) <= 256
    round_trip(fresh, client, 0, b"alive")


def test_get_response_without_le_with_more_than_258_bytes_pending_keeps_the_session(fresh: SeTlsCard) -> None:
    client = establish(fresh, 0)
    first = raw(fresh, "A0 CA 09 00 00")
    assert first.sw1 == 0x61 and len(first.data) == 256
    answer = raw(fresh, "A0 C0 00 00")
    assert answer.sw1 in (0x61, 0x90) and 0 < len(answer.data) <= 256
    round_trip(fresh, client, 0, b"alive")


def test_process_eap_without_le_keeps_the_session(fresh: SeTlsCard) -> None:
    client = establish(fresh, 0)
    start_packet = raw(fresh, short("A0800000", "01" + IDENTITY_SERVER))   # session 1, no Le
    assert start_packet.sw == StatusWord.OK and start_packet.data == bytes.fromhex("010100060D20")
    assert raw(fresh, short("A0800000", "02" + IDENTITY_ECHO)).sw == StatusWord.OK   # session 2
    packet = bytes.fromhex("02 0201 0196 0D00".replace(" ", "")) + b"B" * 400   # session 2: 400 bytes to echo
    assert raw(fresh, short(f"{Cla.OPEN_EAP | Cla.CHAINING:02X}800000", packet[:255].hex())).sw == StatusWord.OK
    last = raw(fresh, short(f"{Cla.OPEN_EAP:02X}{Ins.PROCESS_EAP:02X}0000", packet[255:].hex()))   # no Le
    assert last.sw1 == 0x61 and len(last.data) == 256                # 256 bytes now, 61xx for the rest
    round_trip(fresh, client, 0, b"alive")


def test_a_half_sent_chained_eap_packet_is_dropped_when_another_command_arrives(fresh: SeTlsCard) -> None:
    card = fresh
    client = establish(card, 0)
    # The input, from a host of version 1 (no handle byte): whatever the card makes of it,
    # the next command drops it and a fresh conversation starts.
    assert raw(card, "B0 80 00 00 05 02 01 00 0F 01").sw in (StatusWord.OK, StatusWord.WRONG_LENGTH,
                                                              AppletStatus.EAP_UNEXPECTED)
    assert raw(card, "A0 CA 08 00 00").sw == StatusWord.OK
    card.begin_conversation("@echo", 1)
    assert card.exchange(b"fresh", 1) == b"fresh"
    # The same with a handle: an identity packet announced 15 bytes long, 5 sent.
    assert raw(card, "B0 80 00 00 06 02 02 01 00 0F 01").sw == StatusWord.OK
    assert raw(card, "A0 CA 08 00 00").sw == StatusWord.OK
    card.begin_conversation("server", 2)                      # not 6A88: the half packet is gone
    round_trip(card, client, 0, b"session 0 never noticed")


def test_a_malformed_command_of_no_session_costs_no_session(fresh: SeTlsCard) -> None:
    card = fresh
    client = establish(card, 0)
    for apdu in ("A0 CA 09 00", "A0 C0 00 00", "A0 88 00 07 00", "A0 20 05 00 04 31323334",
                 "A0 84 00 09 00", "B0 CA 08 00 00", "A0 80 00 00 00"):
        assert raw(card, apdu).sw not in (AppletStatus.INTERNAL_ERROR, AppletStatus.CRYPTO_FAILURE, 0x6F00), apdu
    round_trip(card, client, 0, b"alive")


# ---- item 9: VERIFY ------------------------------------------------------------------------------

def status(card: SeTlsCard) -> tuple[int, bool]:
    s = card.status(card.slot or 0)
    return s.pin_tries_left, s.pin_verified


def test_a_wrong_pin_longer_than_16_bytes_costs_a_try_and_clears_the_verified_state(fresh: SeTlsCard) -> None:
    card = fresh
    slot = card.slot or 0
    assert status(card) == (3, True)
    long_wrong = (PIN + "9" * 13).encode().hex()            # 17 bytes, starting with the right PIN
    assert raw(card, f"A0 20 00 {slot:02X} 11 {long_wrong}").sw == 0x63C2
    assert status(card) == (2, False)
    with pytest.raises(AccessDeniedError):
        card.begin_conversation("server", 0)                   # no longer verified
    card.verify(slot, PIN)
    assert status(card) == (3, True)


def test_every_failed_verify_counts_a_try_and_p1_is_checked(fresh: SeTlsCard) -> None:
    card = fresh
    slot = card.slot or 0
    assert raw(card, f"A0 20 01 {slot:02X} 04 {PIN.encode().hex()}").sw == StatusWord.INCORRECT_P1P2
    assert status(card) == (3, True)                            # a refused P1 costs no try
    assert raw(card, f"A0 20 00 {slot:02X} 01 39").sw == 0x63C2  # too short: wrong all the same
    assert status(card) == (2, False)
    assert raw(card, f"A0 20 00 {slot:02X} 40 " + "39" * 64).sw == 0x63C1
    assert status(card) == (1, False)
    card.verify(slot, PIN)
    assert status(card) == (3, True)


# ---- item 10: no record plaintext in EEPROM ----------------------------------------------------------

def test_records_in_one_apdu_are_processed_in_ram_and_write_no_eeprom(fresh: SeTlsCard) -> None:
    """A record one (extended) APDU carries is decrypted and encrypted in the APDU buffer: the card
    writes no byte of EEPROM for it (GET COUNTERS eeprom_bytes), whatever its size; a handshake
    still writes its flights to the I/O buffer (public data), and the count shows how much."""
    card = fresh
    assert card.session.extended, "the simulator takes extended APDUs"
    card.counters(reset=True)
    client = establish(card, 0)
    handshake = card.counters(reset=True)["eeprom_bytes"]
    assert 0 < handshake < 4000
    for size in (1, 100, 1000, 16384):
        round_trip(card, client, 0, bytes(range(256)) * (size // 256) + bytes(size % 256))
        assert card.counters(reset=True)["eeprom_bytes"] == 0, size
