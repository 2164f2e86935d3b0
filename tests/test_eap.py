"""EAP / EAP-TLS framing (RFC 3748, RFC 5216) and the peer's state machine, without a card."""

from __future__ import annotations

import random
from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from host.card.eap import (
    EAP_TLS_HEADER_SIZE,
    MIN_PACKET_SIZE,
    TLS_LENGTH_SIZE,
    AwaitingMessage,
    EapCode,
    EapPacket,
    EapProtocolError,
    EapTlsData,
    EapTlsPeer,
    EapType,
    EapUsageError,
    Failure,
    MessageReceived,
    NeedAck,
    PeerState,
    Reassembler,
    SendFragment,
    Started,
    Success,
    TlsFlags,
    fragment_message,
)

L, M, S = TlsFlags.LENGTH_INCLUDED, TlsFlags.MORE_FRAGMENTS, TlsFlags.START
NONE = TlsFlags.NONE


def message_of(size: int) -> bytes:
    return random.Random(size).randbytes(size)


# ---- framing ----------------------------------------------------------------------------------

typed_packets = st.builds(
    EapPacket,
    code=st.sampled_from([EapCode.REQUEST, EapCode.RESPONSE]),
    identifier=st.integers(0, 255),
    type=st.integers(0, 255),
    type_data=st.binary(max_size=2000),
)
outcome_packets = st.builds(
    EapPacket,
    code=st.sampled_from([EapCode.SUCCESS, EapCode.FAILURE]),
    identifier=st.integers(0, 255),
)


@given(st.one_of(typed_packets, outcome_packets))
def test_eap_packet_round_trips(packet: EapPacket) -> None:
    raw = packet.encode()
    assert len(raw) == packet.length == int.from_bytes(raw[2:4], "big")
    assert EapPacket.parse(raw) == packet


@given(
    st.sampled_from([NONE, L, M, S, L | M, L | S]),
    st.binary(max_size=2000),
    st.integers(0, 0xFFFFFFFF),
)
def test_eap_tls_data_round_trips(flags: TlsFlags, fragment: bytes, total: int) -> None:
    data = EapTlsData(flags, fragment, total if flags & L else None)
    assert EapTlsData.parse(data.encode()) == data


def test_eap_tls_start_request_matches_the_card_bytes() -> None:
    start = EapTlsData(S).packet(EapCode.REQUEST, 1).encode()
    assert start.hex().upper() == "010100060D20"


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("0201", "shorter than its header"),
        ("02010006", "length field says 6"),
        ("0201000501AA", "length field says 5"),
        ("070100040D", "length field says 4"),
        ("07010004", "unknown EAP code"),
        ("02010004", "needs a type"),
        ("0301000501", "no type"),
    ],
)
def test_malformed_eap_packet_is_refused(raw: str, why: str) -> None:
    with pytest.raises(EapProtocolError, match=why):
        EapPacket.parse(bytes.fromhex(raw))


@pytest.mark.parametrize(
    ("type_data", "why"),
    [("", "without its flags"), ("01", "reserved bits"), ("80000001", "cut short")],
)
def test_malformed_eap_tls_data_is_refused(type_data: str, why: str) -> None:
    with pytest.raises(EapProtocolError, match=why):
        EapTlsData.parse(bytes.fromhex(type_data))


# ---- fragmentation and reassembly -------------------------------------------------------------


def check_fragments(message: bytes, packet_size: int) -> list[EapTlsData]:
    fragments = fragment_message(message, packet_size)
    for data in fragments:
        assert EAP_TLS_HEADER_SIZE - 1 + len(data.encode()) <= packet_size
    if len(fragments) == 1:
        assert fragments[0].flags == NONE
    else:
        assert fragments[0].flags == L | M and fragments[0].tls_length == len(message)
        assert all(f.flags == M for f in fragments[1:-1])
        assert fragments[-1].flags == NONE
        assert all(f.fragment for f in fragments)
    assert b"".join(f.fragment for f in fragments) == message
    return fragments


@pytest.mark.parametrize("size", [1, 100, 244, 245, 246, 1000, 4096, 16384])
@pytest.mark.parametrize("packet_size", [MIN_PACKET_SIZE, 17, 254, 255, 1024, 1500, 65535])
def test_message_fragments_fit_the_packet_size(size: int, packet_size: int) -> None:
    check_fragments(message_of(size), packet_size)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 16384), st.integers(MIN_PACKET_SIZE, 2048))
def test_fragments_reassemble_into_the_message(size: int, packet_size: int) -> None:
    message = message_of(size)
    reassembler = Reassembler(max_message=16384)
    results = [reassembler.feed(f) for f in check_fragments(message, packet_size)]
    assert results[:-1] == [None] * (len(results) - 1)
    assert results[-1] == message
    assert not reassembler.in_progress


def test_message_that_fits_one_packet_goes_without_length_unless_asked() -> None:
    fits = 255 - EAP_TLS_HEADER_SIZE
    assert fragment_message(bytes(fits), 255) == [EapTlsData(NONE, bytes(fits))]
    assert len(fragment_message(bytes(fits + 1), 255)) == 2
    single = fragment_message(bytes(fits - TLS_LENGTH_SIZE), 255, always_length=True)
    assert single == [EapTlsData(L, bytes(fits - TLS_LENGTH_SIZE), fits - TLS_LENGTH_SIZE)]


def test_packet_size_below_the_minimum_is_refused() -> None:
    with pytest.raises(ValueError):
        fragment_message(b"x", MIN_PACKET_SIZE - 1)


@pytest.mark.parametrize(
    ("fragments", "why"),
    [
        ([EapTlsData(M, b"ab")], "without flag L"),
        ([EapTlsData(L | M, b"ab", 3), EapTlsData(NONE, b"cd")], "more than 3 bytes"),
        ([EapTlsData(L | M, b"ab", 5), EapTlsData(NONE, b"cd")], "add up to 4 bytes"),
        ([EapTlsData(L | M, b"ab", 4), EapTlsData(L | M, b"c", 5)], "first said 4"),
        ([EapTlsData(L | M, b"ab", 4), EapTlsData(M, b"")], "empty EAP-TLS fragment"),
        ([EapTlsData(L | M, b"", 4)], "empty EAP-TLS fragment"),
        ([EapTlsData(L | M, b"ab", 1 << 20)], "exceeds"),
        ([EapTlsData(M | S, b"ab")], "Start flag"),
    ],
)
def test_inconsistent_fragments_are_refused(fragments: list[EapTlsData], why: str) -> None:
    reassembler = Reassembler(max_message=1000)
    with pytest.raises(EapProtocolError, match=why):
        for data in fragments:
            reassembler.feed(data)


def test_unannounced_message_is_bounded_by_the_limit() -> None:
    reassembler = Reassembler(max_message=10)
    with pytest.raises(EapProtocolError, match="more than 10"):
        reassembler.feed(EapTlsData(NONE, bytes(11)))


# ---- the peer against a model of the card -----------------------------------------------------


class EchoCardModel:
    """A sans-IO model of the card's EAP server with the echo identity (for peer tests only)."""

    def __init__(self, packet_size: int) -> None:
        self.packet_size = packet_size
        self.identifier = 0
        self.outgoing: deque[EapTlsData] = deque()
        self.reassembler = Reassembler(max_message=1 << 16)
        self.packets_seen = 0

    def handle(self, raw: bytes) -> bytes:
        self.packets_seen += 1
        packet = EapPacket.parse(raw)
        assert packet.code == EapCode.RESPONSE
        if packet.type == EapType.IDENTITY:
            return self.request(EapTlsData(S))
        assert packet.identifier == self.identifier
        data = EapTlsData.parse(packet.type_data)
        if self.outgoing:
            assert data == EapTlsData()
            return self.request(self.outgoing.popleft())
        if not data.fragment and not self.reassembler.in_progress:
            return self.request(EapTlsData())  # final ack: neither success nor failure
        message = self.reassembler.feed(data)
        if message is None:
            return self.request(EapTlsData())
        self.outgoing.extend(fragment_message(message, self.packet_size))
        return self.request(self.outgoing.popleft())

    def request(self, data: EapTlsData) -> bytes:
        self.identifier = (self.identifier + 1) & 0xFF
        return data.packet(EapCode.REQUEST, self.identifier).encode()


def converse(peer: EapTlsPeer, card: EchoCardModel, message: bytes) -> bytes:
    packet = peer.send_message(message)
    while True:
        event = peer.receive(card.handle(packet))
        if isinstance(event, MessageReceived):
            return event.data
        assert isinstance(event, (SendFragment, NeedAck))
        packet = event.packet


def started_peer(send: int = 255, receive: int = 255) -> tuple[EapTlsPeer, EchoCardModel]:
    peer = EapTlsPeer(max_packet=send, max_receive_packet=receive)
    card = EchoCardModel(receive)
    assert peer.receive(card.handle(peer.identity(b"@echo"))) == Started(1)
    assert peer.state is PeerState.READY
    return peer, card


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(1, 16384), min_size=1, max_size=3),
    st.integers(MIN_PACKET_SIZE, 1100),
    st.integers(MIN_PACKET_SIZE, 1100),
)
def test_peer_carries_messages_both_ways_at_any_packet_sizes(
    sizes: list[int], send: int, receive: int
) -> None:
    peer, card = started_peer(send, receive)
    for size in sizes:
        assert converse(peer, card, message_of(size)) == message_of(size)
    assert peer.receive(card.handle(peer.finish())) == AwaitingMessage(card.identifier)


def test_peer_answers_each_request_with_its_identifier() -> None:
    peer, card = started_peer(send=MIN_PACKET_SIZE, receive=MIN_PACKET_SIZE)
    packet = peer.send_message(bytes(20))
    assert packet[1] == card.identifier == 1
    event = peer.receive(card.handle(packet))
    assert isinstance(event, SendFragment) and event.packet[1] == card.identifier == 2


def test_peer_acknowledges_each_fragment_with_an_empty_response() -> None:
    peer, card = started_peer(send=1000, receive=MIN_PACKET_SIZE)
    event = peer.receive(card.handle(peer.send_message(bytes(30))))
    assert isinstance(event, NeedAck)
    assert event.packet == EapTlsData().packet(EapCode.RESPONSE, card.identifier).encode()
    assert peer.state is PeerState.RECEIVING


def ready_peer() -> EapTlsPeer:
    peer = EapTlsPeer(max_packet=255, max_receive_packet=255)
    peer.identity(b"@echo")
    peer.receive(EapTlsData(S).packet(EapCode.REQUEST, 1).encode())
    return peer


def request(data: EapTlsData, identifier: int) -> bytes:
    return data.packet(EapCode.REQUEST, identifier).encode()


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (request(EapTlsData(NONE, b"hi"), 1), "repeats identifier 1"),
        (EapPacket(EapCode.RESPONSE, 2, EapType.TLS, b"\x00").encode(), "not a Request"),
        (EapPacket(EapCode.REQUEST, 2, EapType.IDENTITY).encode(), "not EAP-TLS"),
        (request(EapTlsData(S), 2), "Start flag"),
        (EapPacket(EapCode.SUCCESS, 7).encode(), "does not match"),
        (request(EapTlsData(NONE, bytes(250)), 2), "exceeds the 255 announced"),
        (bytes.fromhex("01020010"), "length field"),
    ],
)
def test_peer_refuses_a_bad_answer_to_a_message(answer: bytes, why: str) -> None:
    peer = ready_peer()
    peer.send_message(b"hello")
    with pytest.raises(EapProtocolError, match=why):
        peer.receive(answer)
    assert peer.state is PeerState.CLOSED


def test_peer_takes_success_right_after_the_message_that_ends_a_resumed_handshake() -> None:
    """RFC 5216 2.1.3: the peer's Finished ends an abbreviated handshake; Success answers it."""
    peer = ready_peer()
    peer.send_message(b"finished")
    event = peer.receive(EapPacket(EapCode.SUCCESS, 1).encode())
    assert isinstance(event, Success) and peer.state is PeerState.CLOSED


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (request(EapTlsData(NONE, b"x"), 1), "expected EAP-TLS Start"),
        (request(EapTlsData(S, b"x"), 1), "expected EAP-TLS Start"),
    ],
)
def test_peer_refuses_anything_but_start_after_the_identity(answer: bytes, why: str) -> None:
    peer = EapTlsPeer()
    peer.identity(b"server")
    with pytest.raises(EapProtocolError, match=why):
        peer.receive(answer)


def test_peer_refuses_data_where_an_acknowledgement_belongs() -> None:
    peer = ready_peer()
    peer.send_message(bytes(1000))
    with pytest.raises(EapProtocolError, match="empty acknowledgement"):
        peer.receive(request(EapTlsData(NONE, b"data"), 2))


def test_peer_checks_the_identifier_of_success_and_failure() -> None:
    peer = ready_peer()
    peer.send_message(b"hello")
    peer.receive(request(EapTlsData(NONE, b"hi"), 2))
    peer.finish()
    with pytest.raises(EapProtocolError, match="does not match the last response's 2"):
        peer.receive(EapPacket(EapCode.SUCCESS, 3).encode())


@pytest.mark.parametrize(
    ("code", "event"), [(EapCode.SUCCESS, Success), (EapCode.FAILURE, Failure)]
)
def test_peer_reports_the_outcome_after_finishing(code: EapCode, event: type) -> None:
    peer = ready_peer()
    peer.send_message(b"hello")
    peer.receive(request(EapTlsData(NONE, b"hi"), 2))
    assert peer.finish() == EapTlsData().packet(EapCode.RESPONSE, 2).encode()
    assert peer.receive(EapPacket(code, 2).encode()) == event(2)
    assert peer.state is PeerState.CLOSED


def test_peer_takes_a_failure_at_any_time() -> None:
    peer = ready_peer()
    peer.send_message(bytes(1000))
    assert peer.receive(EapPacket(EapCode.FAILURE, 1).encode()) == Failure(1)


def test_peer_takes_an_empty_answer_as_an_empty_message() -> None:
    peer = ready_peer()
    peer.send_message(b"hello")
    assert peer.receive(request(EapTlsData(), 2)) == MessageReceived(b"")


def test_peer_refuses_to_be_used_out_of_order() -> None:
    peer = EapTlsPeer()
    with pytest.raises(EapUsageError):
        peer.send_message(b"too early")
    with pytest.raises(EapUsageError):
        peer.receive(request(EapTlsData(S), 1))
    with pytest.raises(ValueError, match="empty message"):
        ready_peer().send_message(b"")
    with pytest.raises(EapUsageError):
        ready_peer().receive(request(EapTlsData(), 2))
