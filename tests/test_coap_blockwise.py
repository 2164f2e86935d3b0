"""Block-wise transfers (RFC 7959, RFC 8323 6) and the client's Max-Message-Size (RFC 8323 5.3.1):
the Block option format, the Block1 reassembly, and the sans-IO connection fitting every message
it sends to what the client's CSM announced. aiocoap always announces 1 MiB, so the small limits
come in CSMs written with the project's own codec."""
from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from host.apps.coap import (
    CoapMessage,
    Code,
    ContentFormat,
    OptionNumber,
    core_link_format,
    decode_uint,
    encode_uint,
)
from host.apps.coap_blockwise import (
    MAX_NUM,
    Block1Upload,
    BlockError,
    BlockOption,
    UploadOutcome,
    block_of,
    block_payload,
)
from host.apps.coap_tcp import (
    CSM_BLOCK_WISE_TRANSFER,
    CSM_MAX_MESSAGE_SIZE,
    CoapTcpConnection,
    decode_message,
    encode_message,
)
from host.apps.device import Device

pytestmark = pytest.mark.timeout(60)
CORE = core_link_format()


# -- the Block option (RFC 7959 2.2) ----------------------------------------------------------------

@given(st.integers(0, MAX_NUM), st.booleans(), st.integers(0, 6))
def test_any_block_option_survives_encode_then_decode_in_at_most_3_bytes(num: int, more: bool, szx: int) -> None:
    block = BlockOption(num, more, szx)
    assert len(block.encode()) <= 3
    assert BlockOption.decode(block.encode()) == block


@pytest.mark.parametrize("block, value", [
    (BlockOption(0, False, 0), b""), (BlockOption(0, True, 2), b"\x0a"), (BlockOption(1, False, 6), b"\x16"),
    (BlockOption(16, True, 1), b"\x01\x09"), (BlockOption(MAX_NUM, False, 0), b"\xff\xff\xf0")])
def test_block_option_values_are_num_m_szx_in_as_few_bytes_as_possible(block: BlockOption, value: bytes) -> None:
    assert block.encode() == value
    assert block.size == 1 << (block.szx + 4) and block.offset == block.num * block.size


@pytest.mark.parametrize("value, reason", [(b"\x00\x00\x00\x10", "at most 3 bytes"), (b"\x07", "BERT"),
                                           (b"\x1f", "BERT")])
def test_a_4_byte_value_or_szx_7_is_refused(value: bytes, reason: str) -> None:
    with pytest.raises(BlockError, match=reason):
        BlockOption.decode(value)


def test_a_smaller_block_size_renumbers_the_block_and_past_the_end_is_an_error() -> None:
    body = bytes(range(100))
    asked = BlockOption(1, False, 2)                           # bytes 64..127 in blocks of 64
    given_back = block_of(body, asked.offset, 1)               # the server prefers blocks of 32
    assert given_back == BlockOption(2, True, 1)
    assert block_payload(body, given_back) == body[64:96]
    assert block_of(body, 96, 1) == BlockOption(3, False, 1)   # the last one: M = 0
    assert block_of(b"", 0, 0) == BlockOption(0, False, 0)
    with pytest.raises(BlockError, match="past the end"):
        block_of(body, 128, 2)


# -- Block1 reassembly (RFC 7959 2.5) ----------------------------------------------------------------

def test_an_upload_continues_block_by_block_and_completes_with_the_whole_body() -> None:
    upload, key, body = Block1Upload(max_body=100), ("PUT", "a"), b"0123456789abcdef" * 2 + b"tail"
    assert upload.add(key, BlockOption(0, True, 0), body[:16]) == (UploadOutcome.CONTINUE, b"")
    assert upload.add(key, BlockOption(1, True, 0), body[16:32]) == (UploadOutcome.CONTINUE, b"")
    assert upload.add(key, BlockOption(2, False, 0), body[32:]) == (UploadOutcome.COMPLETE, body)


def test_an_upload_refuses_gaps_other_keys_short_blocks_and_too_much() -> None:
    upload, key = Block1Upload(max_body=40), ("PUT", "a")
    assert upload.add(key, BlockOption(1, True, 0), b"x" * 16)[0] is UploadOutcome.INCOMPLETE   # never started
    upload.add(key, BlockOption(0, True, 0), b"x" * 16)
    assert upload.add(("PUT", "b"), BlockOption(1, False, 0), b"x")[0] is UploadOutcome.INCOMPLETE
    assert upload.add(key, BlockOption(0, True, 0), b"short")[0] is UploadOutcome.BAD_BLOCK
    upload.add(key, BlockOption(0, True, 1), b"x" * 32)
    assert upload.add(key, BlockOption(1, True, 1), b"x" * 32)[0] is UploadOutcome.TOO_LARGE


# -- the connection within the client's Max-Message-Size ---------------------------------------------

def messages_in(data: bytes) -> list[CoapMessage]:
    out = []
    while data:
        decoded = decode_message(data)
        assert decoded is not None, "a partial message was sent"
        out.append(decoded[0])
        data = data[decoded[1]:]
    return out


def opened(max_message_size: int, block_wise_transfer: bool) -> CoapTcpConnection:
    connection = CoapTcpConnection(Device())
    connection.data_to_send()
    options: tuple[tuple[int, bytes], ...] = ((CSM_MAX_MESSAGE_SIZE, encode_uint(max_message_size)),)
    if block_wise_transfer:
        options += ((CSM_BLOCK_WISE_TRANSFER, b""),)
    connection.receive_data(encode_message(CoapMessage(Code.CSM, options=options)))
    assert connection.data_to_send() == b""
    return connection


def request(path: str, *options: tuple[int, bytes], code: Code = Code.GET, token: bytes = b"\x2a",
            payload: bytes = b"") -> CoapMessage:
    segments = tuple((OptionNumber.URI_PATH, s.encode()) for s in path.split("/"))
    return CoapMessage(code, token, segments + options, payload)


def exchange(connection: CoapTcpConnection, message: CoapMessage, limit: int) -> CoapMessage:
    """Sends one message, checks the one answer fits `limit` bytes, and returns it."""
    connection.receive_data(encode_message(message))
    data = connection.data_to_send()
    assert len(data) <= limit, f"{len(data)} bytes sent to a client that takes {limit}"
    (answer,) = messages_in(data)
    return answer


def block2(message: CoapMessage) -> BlockOption:
    value = message.first(OptionNumber.BLOCK2)
    assert value is not None, message
    return BlockOption.decode(value)


def fetch_block_wise(connection: CoapTcpConnection, path: str, limit: int,
                     first: BlockOption | None = None) -> tuple[bytes, list[CoapMessage]]:
    """Block2 requests until M = 0 (RFC 7959 3.1), each answer within `limit`; the body and the answers."""
    first_options = ((OptionNumber.BLOCK2, first.encode()),) if first else ()
    answers = [exchange(connection, request(path, *first_options), limit)]
    while block2(answers[-1]).more:
        last = block2(answers[-1])
        following = BlockOption(last.num + 1, False, last.szx)
        answers.append(exchange(connection, request(path, (OptionNumber.BLOCK2, following.encode()),
                                                    token=bytes([len(answers)])), limit))
    assert [block2(a).num for a in answers] == list(range(len(answers)))
    return b"".join(a.payload for a in answers), answers


def test_a_client_announcing_64_bytes_and_block_wise_gets_well_known_core_in_pieces_that_fit() -> None:
    connection = opened(64, block_wise_transfer=True)
    body, answers = fetch_block_wise(connection, ".well-known/core", 64)
    assert body == CORE
    assert len(answers) > 1 and all(a.code == Code.CONTENT for a in answers)
    assert decode_uint(answers[0].first(OptionNumber.SIZE2) or b"") == len(CORE)          # RFC 7959 4
    assert len({a.first(OptionNumber.ETAG) for a in answers}) == 1                          # one representation
    assert {a.first(OptionNumber.CONTENT_FORMAT) for a in answers} == {encode_uint(ContentFormat.LINK_FORMAT)}


def test_block2_asked_by_the_client_is_honoured_on_any_resource_with_a_body() -> None:
    connection = opened(4096, block_wise_transfer=False)
    body, answers = fetch_block_wise(connection, "sensors/temperature", 4096, BlockOption(0, False, 0))
    assert "celsius" in json.loads(body) and all(len(a.payload) <= 16 for a in answers)
    put = request("actuators/plug", (OptionNumber.BLOCK2, BlockOption(0, False, 0).encode()), code=Code.PUT,
                  payload=b'{"on": true}')
    changed = exchange(connection, put, 4096)
    assert changed.code == Code.CHANGED and block2(changed) == BlockOption(0, False, 0)
    assert changed.payload == b'{"on": true}'[:16]


def test_a_block_larger_than_the_limit_is_answered_smaller_and_renumbered() -> None:
    connection = opened(64, block_wise_transfer=False)
    asked = BlockOption(1, False, 6)                          # bytes 1024.. of a 145-byte document: past it
    assert exchange(connection, request(".well-known/core", (OptionNumber.BLOCK2, asked.encode())),
                    64).code == Code.BAD_OPTION
    asked = BlockOption(1, False, 2)                          # bytes 64..127, which do not fit in 64
    answer = exchange(connection, request(".well-known/core", (OptionNumber.BLOCK2, asked.encode())), 64)
    got = block2(answer)
    assert got.szx < 2 and got.offset == 64 and answer.payload == CORE[64:64 + got.size]


def test_without_block_wise_in_the_csm_a_response_too_large_is_4_06_with_size2() -> None:
    connection = opened(64, block_wise_transfer=False)
    answer = exchange(connection, request(".well-known/core"), 64)
    assert answer.code == Code.NOT_ACCEPTABLE
    assert decode_uint(answer.first(OptionNumber.SIZE2) or b"") == len(CORE)
    small = exchange(connection, request("actuators/plug"), 64)   # what fits still goes whole
    assert small.code == Code.CONTENT and small.first(OptionNumber.BLOCK2) is None


def test_a_limit_too_small_for_a_block_drops_the_diagnostic_and_one_too_small_for_anything_aborts() -> None:
    connection = opened(12, block_wise_transfer=True)
    answer = exchange(connection, request(".well-known/core"), 12)
    assert (answer.code, answer.payload) == (Code.NOT_ACCEPTABLE, b"")
    assert decode_uint(answer.first(OptionNumber.SIZE2) or b"") == len(CORE)
    connection = opened(5, block_wise_transfer=True)
    abort = exchange(connection, request(".well-known/core"), 5)
    assert abort.code == Code.ABORT and connection.closed


def test_bad_block_options_are_4_00() -> None:
    connection = opened(1152, block_wise_transfer=True)
    bert = exchange(connection, request("sensors/temperature", (OptionNumber.BLOCK2, b"\x07")), 1152)
    twice = exchange(connection, request("sensors/temperature", (OptionNumber.BLOCK2, b""),
                                         (OptionNumber.BLOCK2, b"\x10")), 1152)
    assert (bert.code, twice.code) == (Code.BAD_REQUEST, Code.BAD_REQUEST)


def test_an_abort_is_cut_to_the_clients_limit() -> None:
    connection = opened(20, block_wise_transfer=False)
    connection.receive_data(bytes([0x09, 0x01]))          # a token length of 9: malformed
    data = connection.data_to_send()
    (abort,) = messages_in(data)
    assert abort.code == Code.ABORT and len(data) == 20 and connection.closed


def test_put_actuators_plug_in_block1_pieces_switches_it_once_whole() -> None:
    connection = opened(1152, block_wise_transfer=True)
    body = json.dumps({"on": True}, indent=8).encode()       # 22 bytes: two blocks of 16
    pieces = [BlockOption(0, True, 0), BlockOption(1, False, 0)]
    answers = [exchange(connection, request("actuators/plug", (OptionNumber.BLOCK1, block.encode()),
                                            (OptionNumber.CONTENT_FORMAT, encode_uint(ContentFormat.JSON)),
                                            code=Code.PUT, token=bytes([i]), payload=block_payload(body, block)),
                        1152) for i, block in enumerate(pieces)]
    assert [a.code for a in answers] == [Code.CONTINUE, Code.CHANGED]
    assert [a.first(OptionNumber.BLOCK1) for a in answers] == [pieces[0].encode(), pieces[1].encode()]
    assert json.loads(answers[1].payload) == {"on": True}
    assert json.loads(exchange(connection, request("actuators/plug"), 1152).payload) == {"on": True}


def test_block1_out_of_order_is_4_08_and_too_large_4_13_with_size1() -> None:
    connection = opened(1152, block_wise_transfer=True)
    late = request("actuators/plug", (OptionNumber.BLOCK1, BlockOption(3, False, 0).encode()), code=Code.PUT,
                   payload=b"}")
    assert exchange(connection, late, 1152).code == Code.REQUEST_ENTITY_INCOMPLETE
    answers = [exchange(connection, request("actuators/plug", (OptionNumber.BLOCK1, BlockOption(n, True, 6).encode()),
                                            code=Code.PUT, payload=b" " * 1024), 1152) for n in range(9)]
    assert [a.code for a in answers] == [Code.CONTINUE] * 8 + [Code.REQUEST_ENTITY_TOO_LARGE]
    assert decode_uint(answers[-1].first(OptionNumber.SIZE1) or b"") == connection.max_message_size
