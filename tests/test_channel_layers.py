"""The channel layers, each against a fake card that misbehaves on purpose.

The fakes test the layers only; the applet itself is tested on jcardsim (test_echo_transport).
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from host.card.errors import CardRefusedError
from host.card.numbers import Cla, Ins
from host.card.session import CardSession
from host.iso7816.apdu import (
    CLA_CHAINING,
    CommandApdu,
    ResponseApdu,
    StatusWord,
    is_extended,
)
from host.iso7816.channel import Channel, ChannelError, CommandTooLongError, IncompleteResponseError, exchange
from host.iso7816.layers import (
    ChainingLayer,
    GetResponseLayer,
    TracingLayer,
    WrongLengthLayer,
    build_stack,
)
from host.iso7816.quirks import SIMULATOR_ATR, quirks_for
from host.iso7816.vpcd import VpcdChannel
from host.paths import applet_info

MAX_SHORT_LC_WITH_LE = quirks_for(SIMULATOR_ATR).max_short_lc_with_le

OK = struct.pack(">H", StatusWord.OK)
ATR = bytes.fromhex("3B8880010000000000000000")
Answer = Callable[[CommandApdu], bytes]


def sw(value: int) -> bytes:
    return struct.pack(">H", value)


class FakeCard(Channel):
    """Answers each command with `answer(command)`; remembers every command it got."""

    def __init__(self, answer: Answer, *, extended: bool = False, atr: bytes = ATR) -> None:
        self.answer = answer
        self.commands: list[bytes] = []
        self._extended = extended
        self._atr = atr

    def transmit(self, command: bytes) -> bytes:
        self.commands.append(command)
        return self.answer(CommandApdu.parse(command))

    def reset(self) -> bytes:
        return self._atr

    @property
    def atr(self) -> bytes:
        return self._atr

    @property
    def extended_length(self) -> bool:
        return self._extended

    def close(self) -> None:
        pass

    def parsed(self) -> list[CommandApdu]:
        return [CommandApdu.parse(c) for c in self.commands]


class PiecemealCard:
    """Sends a response `piece` bytes at a time, announcing the rest with sw1 (61 or 9F).

    short_by: GET RESPONSE returns that many bytes fewer than asked; get_response_sw: GET
    RESPONSE fails with this status word.
    """

    def __init__(
        self,
        payload: bytes,
        piece: int,
        *,
        sw1: int = 0x61,
        short_by: int = 0,
        get_response_sw: int | None = None,
    ) -> None:
        self.payload, self.piece, self.sw1 = payload, piece, sw1
        self.short_by, self.get_response_sw = short_by, get_response_sw
        self.left = b""

    def __call__(self, command: CommandApdu) -> bytes:
        if command.ins != Ins.GET_RESPONSE:
            chunk, self.left = self.payload[: self.piece], self.payload[self.piece :]
            return chunk + self.status()
        if self.get_response_sw is not None:
            return sw(self.get_response_sw)
        chunk, self.left = self.left[: command.ne], self.left[command.ne :]
        return chunk[: len(chunk) - self.short_by] + self.status()

    def status(self) -> bytes:
        if not self.left:
            return OK
        return bytes((self.sw1, len(self.left) if len(self.left) < 256 else 0))


# ---- GET RESPONSE -----------------------------------------------------------------------------


@given(st.binary(min_size=0, max_size=1200), st.integers(1, 256), st.sampled_from([0x61, 0x9F]))
def test_get_response_collects_a_response_sent_in_small_pieces(
    payload: bytes, piece: int, sw1: int
) -> None:
    card = FakeCard(PiecemealCard(payload, piece, sw1=sw1))
    command = CommandApdu(Cla.OPEN_EAP, Ins.PROCESS_EAP, data=b"x", ne=256).encode()
    assert GetResponseLayer(card).transmit(command) == payload + OK
    for fetch in card.parsed()[1:]:
        assert (fetch.cla, fetch.ins, fetch.p1, fetch.p2) == (
            Cla.OPEN_EAP,
            Ins.GET_RESPONSE,
            0,
            0,
        )


def test_get_response_asks_for_exactly_what_the_card_announced() -> None:
    card = FakeCard(PiecemealCard(bytes(300), 10))
    GetResponseLayer(card).transmit(CommandApdu(0x00, 0xCA, ne=256).encode())
    assert [c.ne for c in card.parsed()[1:]] == [256, 34]  # 6100 then 6122


def test_get_response_refuses_a_truncated_piece() -> None:
    card = FakeCard(PiecemealCard(bytes(100), 10, short_by=1))
    with pytest.raises(IncompleteResponseError, match="asked for 90 bytes and got 89"):
        GetResponseLayer(card).transmit(CommandApdu(0x00, 0xCA, ne=256).encode())


def test_get_response_failing_midway_is_an_error_not_half_a_response() -> None:
    card = FakeCard(
        PiecemealCard(bytes(100), 10, get_response_sw=StatusWord.CONDITIONS_NOT_SATISFIED)
    )
    with pytest.raises(
        IncompleteResponseError, match="after 10 response bytes, GET RESPONSE answered 6985"
    ):
        GetResponseLayer(card).transmit(CommandApdu(0x00, 0xCA, ne=256).encode())


def test_get_response_stops_a_card_that_never_stops_announcing() -> None:
    card = FakeCard(lambda c: bytes(255) + sw(0x61FF))
    with pytest.raises(IncompleteResponseError, match="more than 1000"):
        GetResponseLayer(card, max_response=1000).transmit(CommandApdu(0x00, 0xCA, ne=256).encode())


@pytest.mark.parametrize("raw", [b"", b"\x90"])
def test_dropped_or_truncated_response_is_a_clear_error(raw: bytes) -> None:
    card = FakeCard(lambda c: raw)
    with pytest.raises(IncompleteResponseError, match="dropped" if not raw else "truncated"):
        GetResponseLayer(card).transmit(CommandApdu(0x00, 0xCA, ne=256).encode())


def test_response_without_more_data_passes_unchanged() -> None:
    card = FakeCard(lambda c: b"\x01" + sw(StatusWord.WRONG_DATA))
    assert GetResponseLayer(card).transmit(CommandApdu(0x00, 0xCA).encode()) == b"\x01\x6a\x80"
    assert len(card.commands) == 1


# ---- wrong Le ---------------------------------------------------------------------------------


def wrong_le_card(payload: bytes) -> Answer:
    def answer(command: CommandApdu) -> bytes:
        if command.ne != len(payload):
            return sw(StatusWord.CORRECT_LENGTH_00 | len(payload))
        return payload + OK

    return answer


@pytest.mark.parametrize("extended", [False, True])
def test_wrong_length_resends_with_the_le_the_card_asks_in_the_same_form(extended: bool) -> None:
    card = FakeCard(wrong_le_card(b"\xab" * 16))
    command = CommandApdu(0x00, 0xCA, 1, 2, ne=256).encode(extended=extended)
    assert WrongLengthLayer(card).transmit(command) == b"\xab" * 16 + OK
    resent = card.commands[1]
    assert CommandApdu.parse(resent) == CommandApdu(0x00, 0xCA, 1, 2, ne=16)
    assert is_extended(resent) == extended


def test_wrong_length_retries_once_only() -> None:
    card = FakeCard(lambda c: sw(0x6C10))
    assert WrongLengthLayer(card).transmit(CommandApdu(0, 0xCA, ne=1).encode()) == sw(0x6C10)
    assert len(card.commands) == 2


# ---- chaining ---------------------------------------------------------------------------------


class ChainingCard:
    """Collects chained commands; answers the last link with the total length and 9000."""

    def __init__(self, supported: bool = True) -> None:
        self.supported = supported
        self.collected = b""

    def __call__(self, command: CommandApdu) -> bytes:
        if command.cla & CLA_CHAINING:
            if not self.supported:
                return sw(StatusWord.COMMAND_CHAINING_NOT_SUPPORTED)
            self.collected += command.data
            return OK
        data, self.collected = self.collected + command.data, b""
        return struct.pack(">H", len(data)) + OK


@pytest.mark.parametrize("size", [255, 256, 509, 510, 1000, 4096])
@pytest.mark.parametrize("ne", [0, 256, 65536])
def test_chaining_splits_a_long_command_into_short_links(size: int, ne: int) -> None:
    card = FakeCard(ChainingCard(), atr=SIMULATOR_ATR)  # its quirk: at most 254 bytes with Le
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    command = CommandApdu(Cla.OPEN_EAP, Ins.PROCESS_EAP, 0x12, 0x34, data, ne)
    response = ChainingLayer(card).transmit(command.encode(max_lc_with_le=MAX_SHORT_LC_WITH_LE))
    links = card.parsed()
    assert all(not is_extended(raw) for raw in card.commands)
    assert all(link.cla == Cla.OPEN_EAP | CLA_CHAINING and link.ne == 0 for link in links[:-1])
    assert links[-1].cla == Cla.OPEN_EAP and links[-1].ne == min(ne, 256)
    assert all((link.ins, link.p1, link.p2) == (Ins.PROCESS_EAP, 0x12, 0x34) for link in links)
    assert b"".join(link.data for link in links) == data
    if ne:
        assert len(links[-1].data) <= MAX_SHORT_LC_WITH_LE  # never Lc 255 with Le (jcardsim)
    assert response == struct.pack(">H", size) + OK


def test_chaining_passes_short_commands_unchanged() -> None:
    card = FakeCard(ChainingCard())
    command = CommandApdu(0x00, 0xCA, data=b"abc", ne=256).encode()
    ChainingLayer(card).transmit(command)
    assert card.commands == [command]


def test_chaining_reencodes_an_extended_command_that_fits_a_short_one() -> None:
    card = FakeCard(ChainingCard())
    ChainingLayer(card).transmit(CommandApdu(0xA0, 0x80, data=b"abc", ne=65536).encode())
    assert card.commands == [CommandApdu(0xA0, 0x80, data=b"abc", ne=256).encode()]


def test_card_that_refuses_chaining_answers_with_its_status_word() -> None:
    card = FakeCard(ChainingCard(supported=False))
    command = CommandApdu(0xA0, 0x80, data=bytes(600), ne=256).encode()
    response = ResponseApdu.parse(ChainingLayer(card).transmit(command))
    assert response.sw == StatusWord.COMMAND_CHAINING_NOT_SUPPORTED
    assert len(card.commands) == 1  # the chain stops at the first refused link


def test_long_command_without_chaining_or_extended_length_is_refused_here() -> None:
    card = FakeCard(ChainingCard())
    with pytest.raises(CommandTooLongError, match="600 data bytes"):
        ChainingLayer(card, enabled=False).transmit(
            CommandApdu(0xA0, 0x80, data=bytes(600)).encode()
        )
    assert card.commands == []


# ---- tracing and the stack --------------------------------------------------------------------


def test_tracing_counts_apdus_and_bytes_per_phase() -> None:
    card = FakeCard(lambda c: bytes(10) + OK)
    tracer = TracingLayer(card)
    command = CommandApdu(0x00, 0xCA, ne=256).encode()
    tracer.transmit(command)
    with tracer.stats.phase("handshake") as handshake:
        tracer.transmit(command)
        tracer.transmit(command)
    assert tracer.stats.phases["default"].apdus == 1
    assert (handshake.apdus, handshake.bytes_sent, handshake.bytes_received) == (2, 10, 24)
    assert handshake.largest_received == 12
    assert tracer.stats.total.apdus == 3
    assert tracer.stats.current == "default"
    assert "handshake: 2 APDUs" in tracer.stats.summary()


def test_standard_short_stack_chains_commands_and_fetches_long_answers() -> None:
    """A card that wants chaining for long commands and answers 61xx in pieces of 50."""
    chaining = ChainingCard()
    pieces = PiecemealCard(b"", 50)

    def answer(command: CommandApdu) -> bytes:
        if command.ins == Ins.GET_RESPONSE:
            return pieces(command)
        length = chaining(command)
        if len(length) == 2:
            return length  # 9000 after a link
        pieces.payload = bytes(int.from_bytes(length[:2], "big"))
        return pieces(command)

    card = FakeCard(answer)
    stack = build_stack(card, extended=False, chaining=True)
    response = exchange(stack, CommandApdu(0xA0, 0x80, data=bytes(1000), ne=65536).encode())
    assert response == ResponseApdu(bytes(1000), StatusWord.OK)
    assert all(len(raw) <= 5 + 255 for raw in card.commands)


SELECT_RESPONSE = bytes.fromhex("800201008101078202480083020400840102")


def select_card(extended: bool) -> FakeCard:
    def answer(command: CommandApdu) -> bytes:
        if command.ins == Ins.SELECT:
            return SELECT_RESPONSE + OK
        return bytes(len(command.data)) + OK

    return FakeCard(answer, extended=extended)


def test_select_parses_the_capabilities() -> None:
    session = CardSession(select_card(extended=True), b"\xf0\x01")
    caps = session.caps
    assert caps.version == (1, 0)
    assert (caps.extended_length, caps.command_chaining, caps.get_response) == (True, True, True)
    assert (caps.message_capacity, caps.default_packet_size) == (18432, 1024)
    assert caps.identity_slots == 2
    assert session.stats.phases["select"].apdus == 1


@pytest.mark.parametrize(
    ("channel_extended", "wanted", "chosen"),
    [(True, None, True), (False, None, False), (True, False, False), (True, True, True)],
)
def test_extended_length_is_used_when_card_and_channel_allow(
    channel_extended: bool, wanted: bool | None, chosen: bool
) -> None:
    card = select_card(channel_extended)
    session = CardSession(card, b"\xf0\x01", extended=wanted)
    assert session.extended == chosen
    assert session.max_ne == (65536 if chosen else 256)
    session.send(CommandApdu(0xA0, 0x80, data=bytes(300), ne=session.max_ne))
    assert is_extended(card.commands[-1]) == chosen


def test_extended_length_required_but_impossible_is_refused() -> None:
    with pytest.raises(ChannelError, match="extended length requested"):
        CardSession(select_card(extended=False), b"\xf0\x01", extended=True)


def test_select_failure_names_the_status_word() -> None:
    card = FakeCard(lambda c: sw(StatusWord.FILE_NOT_FOUND))
    with pytest.raises(CardRefusedError, match="SELECT: card answered 6A82 FILE_NOT_FOUND") as refused:
        CardSession(card, b"\xf0\x01")
    assert refused.value.status is StatusWord.FILE_NOT_FOUND


def test_applet_info_reads_the_properties_file(tmp_path: Path) -> None:
    path = tmp_path / "applet.properties"
    path.write_text("# comment\npackage.aid=A0:00:01\napplet.class=a.B\napplet.aid=A0:00:01:02\n")
    info = applet_info(path)
    assert (info.aid, info.applet_class, info.package_aid) == (
        bytes.fromhex("A0000102"),
        "a.B",
        bytes.fromhex("A00001"),
    )
    assert applet_info().aid  # the project's own file parses


# ---- vpcd -------------------------------------------------------------------------------------


def fake_vicc(port: int, *, vanish_after_atr: bool = False) -> threading.Thread:
    """A virtual card speaking the vpcd protocol: answers the ATR, echoes APDUs reversed."""

    def receive(sock: socket.socket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def run() -> None:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            try:
                while True:
                    (length,) = struct.unpack(">H", receive(sock, 2))
                    payload = receive(sock, length)
                    if payload == b"\x04":
                        sock.sendall(struct.pack(">H", len(ATR)) + ATR)
                        if vanish_after_atr:
                            return
                    elif len(payload) > 1:
                        answer = payload[::-1] + OK
                        sock.sendall(struct.pack(">H", len(answer)) + answer)
            except EOFError:
                return

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def vpcd() -> Iterator[VpcdChannel]:
    channel = VpcdChannel(timeout=5.0)
    yield channel
    channel.close()


def test_vpcd_channel_speaks_the_vpcd_protocol(vpcd: VpcdChannel) -> None:
    thread = fake_vicc(vpcd.address[1])
    assert vpcd.wait_for_card(timeout=5.0) == ATR == vpcd.atr
    assert vpcd.transmit(b"\x00\xa4\x04\x00") == b"\x00\x04\xa4\x00" + OK
    assert vpcd.reset() == ATR
    vpcd.close()
    thread.join(timeout=5.0)
    assert not thread.is_alive()


def test_vpcd_channel_reports_a_vanished_card(vpcd: VpcdChannel) -> None:
    fake_vicc(vpcd.address[1], vanish_after_atr=True)
    vpcd.wait_for_card(timeout=5.0)
    with pytest.raises(ChannelError, match="closed the connection|connection failed"):
        vpcd.transmit(b"\x00\xa4\x04\x00")


def test_vpcd_channel_stops_waiting_when_the_card_process_died(vpcd: VpcdChannel) -> None:
    with pytest.raises(ChannelError, match="exited before it connected"):
        vpcd.wait_for_card(timeout=5.0, alive=lambda: False)


def test_vpcd_channel_waits_a_bounded_time_for_the_card(vpcd: VpcdChannel) -> None:
    with pytest.raises(ChannelError, match="no virtual card connected"):
        vpcd.wait_for_card(timeout=0.2)
