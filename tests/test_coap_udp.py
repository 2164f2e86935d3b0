"""CoAP over UDP (RFC 7252 messaging, RFC 7641 Observe), sans-IO: `CoapUdpEndpoint` fed datagrams
and a clock. The same endpoint runs with real clients in tests/test_coap_udp_e2e.py."""
from __future__ import annotations

import json
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from host.apps.coap import CoapMessage, Code, OptionNumber, decode_uint, encode_uint
from host.apps.coap_blockwise import BlockOption
from host.apps.coap_udp import (
    AVERAGE,
    MAX_EXCHANGES,
    CoapUdpEndpoint,
    MessageType,
    SlowRequest,
    TransmissionParameters,
    UdpFormatError,
    UdpMessage,
    VersionError,
    decode_datagram,
    encode_datagram,
)
from host.apps.device import PLUG, TEMPERATURE, Device

pytestmark = pytest.mark.timeout(60)
TOKEN = b"\x01\x02"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def endpoint(**kwargs: object) -> tuple[CoapUdpEndpoint, Clock]:
    clock = Clock()
    return CoapUdpEndpoint(Device(clock=clock), client="test", rng=random.Random(7), **kwargs), clock  # type: ignore[arg-type]


def path_options(path: str) -> tuple[tuple[int, bytes], ...]:
    return tuple((int(OptionNumber.URI_PATH), part.encode()) for part in path.split("/"))


def request(code: int, path: str, mid: int, type_: MessageType = MessageType.CON, token: bytes = TOKEN,
            payload: bytes = b"", options: tuple[tuple[int, bytes], ...] = ()) -> bytes:
    return encode_datagram(UdpMessage(type_, mid, CoapMessage(code, token, path_options(path) + options, payload)))


def sent(ep: CoapUdpEndpoint) -> list[UdpMessage]:
    return [decode_datagram(d) for d in ep.datagrams_to_send()]


def one(ep: CoapUdpEndpoint) -> UdpMessage:
    messages = sent(ep)
    assert len(messages) == 1, messages
    return messages[0]


# -- the datagram format -------------------------------------------------------------------------

@given(st.sampled_from(list(MessageType)), st.integers(0, 0xFFFF), st.sampled_from([Code.GET, Code.CONTENT]),
       st.binary(max_size=8), st.lists(st.tuples(st.integers(0, 2000), st.binary(max_size=300)), max_size=5),
       st.binary(max_size=50))
def test_datagrams_decode_to_what_was_encoded(type_: MessageType, mid: int, code: int, token: bytes,
                                              options: list[tuple[int, bytes]], payload: bytes) -> None:
    message = UdpMessage(type_, mid, CoapMessage(code, token, tuple(sorted(options, key=lambda o: o[0])), payload))
    assert decode_datagram(encode_datagram(message)) == message


def test_the_header_is_ver_t_tkl_code_and_message_id_as_rfc_7252_section_3_draws_it() -> None:
    datagram = encode_datagram(UdpMessage(MessageType.NON, 0x1234, CoapMessage(Code.GET, b"\xAA")))
    assert datagram == bytes([0b01_01_0001, 0x01, 0x12, 0x34, 0xAA])


@pytest.mark.parametrize(("data", "reason"), [
    (bytes([0x40, 0x00, 0, 1, 0xFF]), "Empty message has bytes"),
    (bytes([0x49, 0x01, 0, 1]) + b"\0" * 9, "token length 9"),
    (bytes([0x44, 0x01, 0, 1, 1]), "token runs past"),
    (bytes([0x40, 0x01, 0, 1, 0xFF]), "payload marker"),
    (bytes([0x40, 0x01, 0, 1, 0xD1]), "past the end"),
])
def test_a_malformed_datagram_names_its_fault_and_keeps_the_header(data: bytes, reason: str) -> None:
    with pytest.raises(UdpFormatError, match=reason) as caught:
        decode_datagram(data)
    assert caught.value.type is MessageType.CON and caught.value.message_id == 1


def test_a_datagram_of_another_version_is_a_version_error() -> None:
    with pytest.raises(VersionError):
        decode_datagram(bytes([0x80, 0x01, 0, 1]))


# -- requests and their responses ----------------------------------------------------------------

def test_a_con_request_gets_a_piggybacked_ack_with_its_message_id_and_token() -> None:
    ep, _ = endpoint()
    ep.receive_datagram(request(Code.GET, TEMPERATURE, 0x4242), 0.0)
    answer = one(ep)
    assert (answer.type, answer.message_id, answer.message.token, answer.message.code) == (
        MessageType.ACK, 0x4242, TOKEN, Code.CONTENT)
    assert json.loads(answer.message.payload)["celsius"] == 21.5


def test_a_non_request_gets_a_non_response_with_a_fresh_message_id_and_its_token() -> None:
    ep, _ = endpoint()
    ep.receive_datagram(request(Code.GET, TEMPERATURE, 7, MessageType.NON), 0.0)
    ep.receive_datagram(request(Code.GET, PLUG, 8, MessageType.NON, token=b"\x09"), 0.0)
    first, second = sent(ep)
    assert first.type is MessageType.NON and first.message.token == TOKEN and first.message.code == Code.CONTENT
    assert second.message.token == b"\x09"
    assert second.message_id == (first.message_id + 1) & 0xFFFF


def test_a_duplicate_con_is_answered_from_the_cache_and_processed_once() -> None:
    ep, _ = endpoint()
    put = request(Code.PUT, PLUG, 99, payload=b'{"on": true}')
    ep.receive_datagram(put, 0.0)
    first = ep.datagrams_to_send()
    ep.device.plug_on = False       # were the PUT processed again, the plug would be on again
    ep.receive_datagram(put, 5.0)
    assert ep.datagrams_to_send() == first
    assert ep.requests == 1 and ep.device.plug_on is False


def test_a_duplicate_non_is_ignored() -> None:
    ep, _ = endpoint()
    ep.receive_datagram(request(Code.GET, PLUG, 5, MessageType.NON), 0.0)
    assert len(sent(ep)) == 1
    ep.receive_datagram(request(Code.GET, PLUG, 5, MessageType.NON), 1.0)
    assert sent(ep) == [] and ep.requests == 1


def test_a_message_id_is_new_again_after_the_exchange_lifetime() -> None:
    ep, _ = endpoint()
    ep.receive_datagram(request(Code.GET, PLUG, 5), 0.0)
    ep.receive_datagram(request(Code.GET, PLUG, 5), 247.5)
    assert len(sent(ep)) == 2 and ep.requests == 2


def test_the_deduplication_cache_is_bounded() -> None:
    ep, _ = endpoint()
    for mid in range(MAX_EXCHANGES + 10):
        ep.receive_datagram(request(Code.GET, PLUG, mid), 0.0)
    ep.datagrams_to_send()
    ep.receive_datagram(request(Code.GET, PLUG, 0), 1.0)   # forgotten: processed again
    ep.receive_datagram(request(Code.GET, PLUG, MAX_EXCHANGES + 9), 1.0)   # remembered
    assert len(sent(ep)) == 2 and ep.requests == MAX_EXCHANGES + 11


def test_well_known_core_lists_the_slow_resource_and_marks_the_temperature_observable() -> None:
    ep, _ = endpoint()
    ep.receive_datagram(request(Code.GET, ".well-known/core", 1), 0.0)
    links = one(ep).message.payload.decode()
    assert f"</{TEMPERATURE}>;" in links and f"</{AVERAGE}>;" in links
    assert links.split(",")[0].endswith(";obs")


def test_a_response_larger_than_a_datagram_goes_in_block2_pieces() -> None:
    ep, _ = endpoint(max_message_size=128)
    ep.receive_datagram(request(Code.GET, ".well-known/core", 1), 0.0)
    first = one(ep).message
    block = BlockOption.decode(first.first(OptionNumber.BLOCK2) or b"")
    assert block.num == 0 and block.more and len(encode_datagram(UdpMessage(MessageType.ACK, 1, first))) <= 128
    body = bytearray(first.payload)
    num = 1
    while block.more:
        ep.receive_datagram(request(Code.GET, ".well-known/core", 1 + num,
                                    options=((OptionNumber.BLOCK2, BlockOption(num, False, block.szx).encode()),)), 0.0)
        piece = one(ep).message
        block = BlockOption.decode(piece.first(OptionNumber.BLOCK2) or b"")
        body += piece.payload
        num += 1
    assert decode_uint(first.first(OptionNumber.SIZE2) or b"") == len(body) and b"</actuators/plug>" in body


# -- rejections (RFC 7252 4.2, 4.3) --------------------------------------------------------------

def rst_for(ep: CoapUdpEndpoint, mid: int) -> None:
    answer = one(ep)
    assert (answer.type, answer.message_id, answer.message) == (MessageType.RST, mid, CoapMessage(Code.EMPTY))


def test_an_empty_con_is_a_ping_answered_with_reset() -> None:
    ep, _ = endpoint()
    ep.receive_datagram(bytes([0x40, 0x00, 0x12, 0x34]), 0.0)
    rst_for(ep, 0x1234)


@pytest.mark.parametrize("code", [Code.CONTENT, 0x20, 0xC1, 0xE1])   # a response, classes 1, 6, 7
def test_a_con_with_a_response_or_reserved_code_is_reset(code: int) -> None:
    ep, _ = endpoint()
    ep.receive_datagram(encode_datagram(UdpMessage(MessageType.CON, 3, CoapMessage(code, b"\x01"))), 0.0)
    rst_for(ep, 3)


def test_a_malformed_con_is_reset_and_a_malformed_non_is_dropped() -> None:
    ep, _ = endpoint()
    ep.receive_datagram(bytes([0x40, 0x01, 0, 9, 0xFF]), 0.0)
    rst_for(ep, 9)
    ep.receive_datagram(bytes([0x50, 0x01, 0, 10, 0xFF]), 0.0)
    ep.receive_datagram(bytes([0x80, 0x01, 0, 11]), 0.0)   # version 2: silently ignored
    ep.receive_datagram(b"\x40", 0.0)
    assert sent(ep) == []


# -- separate responses and retransmission -------------------------------------------------------

def slow_get(ep: CoapUdpEndpoint, mid: int = 0x100, at: float = 0.0,
             type_: MessageType = MessageType.CON) -> SlowRequest:
    ep.receive_datagram(request(Code.GET, AVERAGE, mid, type_), at)
    (work,) = ep.work()
    assert work.path == AVERAGE
    return work


def content(document: dict[str, object]) -> CoapMessage:
    return CoapMessage(Code.CONTENT, b"", ((OptionNumber.CONTENT_FORMAT, encode_uint(50)),),
                       json.dumps(document).encode())


def test_a_slow_resource_gets_an_empty_ack_then_a_separate_con_response() -> None:
    ep, _ = endpoint(ack_delay=1.0)
    work = slow_get(ep)
    assert sent(ep) == [] and ep.next_deadline() == 1.0
    ep.on_timer(1.0)
    ack = one(ep)
    assert (ack.type, ack.message_id, ack.message) == (MessageType.ACK, 0x100, CoapMessage(Code.EMPTY))
    ep.complete(work.key, content({"celsius": 21.5}), 3.0)
    response = one(ep)
    assert response.type is MessageType.CON and response.message.token == TOKEN
    assert response.message.code == Code.CONTENT and response.message_id != 0x100
    ep.receive_datagram(encode_datagram(UdpMessage(MessageType.ACK, response.message_id, CoapMessage(Code.EMPTY))),
                        4.0)
    assert ep.next_deadline() is None


def test_a_duplicate_of_a_request_answered_late_gets_the_empty_ack_again() -> None:
    ep, _ = endpoint(ack_delay=1.0)
    slow_get(ep)
    ep.receive_datagram(request(Code.GET, AVERAGE, 0x100), 0.5)   # before its ACK: nothing yet
    assert sent(ep) == [] and ep.work() == []
    ep.on_timer(1.0)
    ack = ep.datagrams_to_send()
    ep.receive_datagram(request(Code.GET, AVERAGE, 0x100), 2.5)
    assert ep.datagrams_to_send() == ack and ep.work() == []


def test_a_slow_response_within_the_ack_delay_is_piggybacked() -> None:
    ep, _ = endpoint(ack_delay=1.0)
    work = slow_get(ep)
    ep.complete(work.key, content({"celsius": 21.0}), 0.4)
    answer = one(ep)
    assert answer.type is MessageType.ACK and answer.message_id == 0x100 and answer.message.code == Code.CONTENT
    assert ep.next_deadline() is None


def test_a_slow_non_request_gets_a_non_response() -> None:
    ep, _ = endpoint()
    work = slow_get(ep, type_=MessageType.NON)
    assert ep.next_deadline() is None
    ep.complete(work.key, content({}), 3.0)
    assert one(ep).type is MessageType.NON


def test_a_separate_response_is_retransmitted_with_doubling_timeouts_then_given_up() -> None:
    ep, _ = endpoint(ack_delay=0.5)
    work = slow_get(ep)
    ep.on_timer(0.5)
    ep.datagrams_to_send()
    ep.complete(work.key, content({}), 10.0)
    original = ep.datagrams_to_send()
    deadline = ep.next_deadline()
    assert deadline is not None
    timeouts = [deadline - 10.0]
    assert 2.0 <= timeouts[0] <= 3.0   # ACK_TIMEOUT times a random factor in [1, 1.5]
    for _ in range(4):   # MAX_RETRANSMIT
        now = deadline
        ep.on_timer(now)
        assert ep.datagrams_to_send() == original
        deadline = ep.next_deadline()
        assert deadline is not None
        timeouts.append(deadline - now)
    assert timeouts[1:] == pytest.approx([timeouts[0] * 2 ** i for i in range(1, 5)])
    ep.on_timer(deadline)
    assert ep.datagrams_to_send() == [] and ep.next_deadline() is None


def test_a_reset_separate_response_is_not_retransmitted() -> None:
    ep, _ = endpoint(ack_delay=0.5)
    work = slow_get(ep)
    ep.on_timer(0.5)
    ep.datagrams_to_send()
    ep.complete(work.key, content({}), 1.0)
    response = one(ep)
    ep.receive_datagram(encode_datagram(UdpMessage(MessageType.RST, response.message_id, CoapMessage(Code.EMPTY))),
                        1.5)
    assert ep.next_deadline() is None


def test_one_con_is_outstanding_at_a_time_the_next_goes_after_its_ack() -> None:
    ep, _ = endpoint(ack_delay=0.5)
    first, second = slow_get(ep, 1), slow_get(ep, 2)
    ep.on_timer(0.5)
    assert len(sent(ep)) == 2   # the two empty ACKs
    ep.complete(first.key, content({"n": 1}), 1.0)
    ep.complete(second.key, content({"n": 2}), 1.0)
    (con,) = sent(ep)   # NSTART 1
    ep.receive_datagram(encode_datagram(UdpMessage(MessageType.ACK, con.message_id, CoapMessage(Code.EMPTY))), 1.2)
    (following,) = sent(ep)
    assert following.type is MessageType.CON and json.loads(following.message.payload) == {"n": 2}


def test_methods_other_than_get_on_the_slow_resource_are_refused_at_once() -> None:
    ep, _ = endpoint()
    ep.receive_datagram(request(Code.PUT, AVERAGE, 1, payload=b"{}"), 0.0)
    assert one(ep).message.code == Code.METHOD_NOT_ALLOWED and ep.work() == []


# -- Observe (RFC 7641) --------------------------------------------------------------------------

def observe(value: int) -> tuple[tuple[int, bytes], ...]:
    return ((OptionNumber.OBSERVE, encode_uint(value)),)


def register(ep: CoapUdpEndpoint) -> UdpMessage:
    ep.receive_datagram(request(Code.GET, TEMPERATURE, 1, options=observe(0)), 0.0)
    answer = one(ep)
    assert answer.message.first(OptionNumber.OBSERVE) is not None and ep.observers == 1
    return answer


def warm_up(clock: Clock, seconds: float) -> None:
    clock.now += seconds   # the simulated room's temperature follows the device's clock


def test_an_observer_is_notified_when_the_reading_changes_with_a_rising_sequence_number() -> None:
    ep, clock = endpoint(observe_interval=1.0)
    first = register(ep)
    ep.on_timer(1.0)
    assert sent(ep) == []   # the same reading: no notification
    warm_up(clock, 30)
    ep.on_timer(2.0)
    notification = one(ep)
    assert notification.type is MessageType.NON and notification.message.token == TOKEN
    sequence = decode_uint
    assert sequence(notification.message.first(OptionNumber.OBSERVE) or b"") > sequence(
        first.message.first(OptionNumber.OBSERVE) or b"")
    assert json.loads(notification.message.payload)["celsius"] != 21.5


def test_a_reset_notification_ends_the_observation() -> None:
    ep, clock = endpoint()
    register(ep)
    warm_up(clock, 30)
    ep.on_timer(1.0)
    notification = one(ep)
    ep.receive_datagram(encode_datagram(UdpMessage(MessageType.RST, notification.message_id,
                                                   CoapMessage(Code.EMPTY))), 1.5)
    assert ep.observers == 0 and ep.next_deadline() is None


def test_a_get_with_observe_1_deregisters() -> None:
    ep, _ = endpoint()
    register(ep)
    ep.receive_datagram(request(Code.GET, TEMPERATURE, 2, options=observe(1)), 1.0)
    answer = one(ep)
    assert answer.message.code == Code.CONTENT and answer.message.first(OptionNumber.OBSERVE) is None
    assert ep.observers == 0


def test_observe_on_the_plug_is_a_plain_response() -> None:
    ep, _ = endpoint()
    ep.receive_datagram(request(Code.GET, PLUG, 1, options=observe(0)), 0.0)
    assert one(ep).message.first(OptionNumber.OBSERVE) is None and ep.observers == 0


def test_notifications_go_con_now_and_then_and_an_unacknowledged_one_ends_the_observation() -> None:
    params = TransmissionParameters(ack_timeout=1.0, max_retransmit=1)
    ep, clock = endpoint(con_interval=10.0, params=params)
    register(ep)
    warm_up(clock, 30)
    ep.on_timer(11.0)
    notification = one(ep)
    assert notification.type is MessageType.CON
    ep.on_timer(13.0)   # its timeout was 1 to 1.5 s: retransmitted
    assert ep.datagrams_to_send() == [encode_datagram(notification)]
    assert ep.observers == 1
    ep.on_timer(17.0)   # then 2 to 3 s more, and MAX_RETRANSMIT 1 is spent
    assert ep.observers == 0 and ep.datagrams_to_send() == []
