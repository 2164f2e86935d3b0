"""CoAP over TLS (RFC 8323): framing, the sans-IO connection, the application over records, and
interoperability with the real aiocoap client over plain TCP (coap+tcp://, no TLS).

The record test uses a fake RecordLayer whose records carry plaintext: it tests the application
layer only (the end-to-end tests run aiocoap against the card over coaps+tcp://).
"""
from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path

import aiocoap
import pytest
from aiocoap.options import Options
from aiocoap.optiontypes import BlockOption
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fakes import PlainRecordLayer
from hypothesis import given
from hypothesis import strategies as st

from host.apps.coap import (
    CoapFormatError,
    CoapMessage,
    Code,
    ContentFormat,
    OptionNumber,
    core_link_format,
    decode_options,
    encode_options,
    encode_uint,
)
from host.apps.coap_tcp import (
    ABORT_BAD_CSM_OPTION,
    CSM_BLOCK_WISE_TRANSFER,
    CSM_MAX_MESSAGE_SIZE,
    MAX_MESSAGE_SIZE,
    PING_CUSTODY,
    CoapTcpConnection,
    coap_tcp_application,
    decode_message,
    encode_message,
    frame_size,
)
from host.apps.device import Device
from host.demo_pki import DemoCa
from host.se_tls import GenericServer, SessionInfo
from host.tls.numbers import TLS12, AlertDescription, ContentType
from host.tls.records import Record, RecordReader

pytestmark = pytest.mark.timeout(60)

JSON_OPTION = (OptionNumber.CONTENT_FORMAT, encode_uint(ContentFormat.JSON))


def sorted_options(options: tuple[tuple[int, bytes], ...]) -> tuple[tuple[int, bytes], ...]:
    return tuple(sorted(options, key=lambda option: option[0]))


options_strategy = st.lists(st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=300)), max_size=6)
messages = st.builds(lambda code, token, options, payload: CoapMessage(code, token, tuple(options), payload),
                     st.integers(0, 255), st.binary(max_size=8), options_strategy, st.binary(max_size=2000))


# -- framing --------------------------------------------------------------------------------------

@given(messages)
def test_any_message_survives_encode_then_decode(message: CoapMessage) -> None:
    data = encode_message(message)
    decoded, used = decode_message(data + b"\x00trailing")  # type: ignore[misc]
    assert used == len(data)
    assert decoded == CoapMessage(message.code, message.token, sorted_options(message.options), message.payload)


@given(messages, st.data())
def test_a_cut_message_is_incomplete_not_an_error(message: CoapMessage, data: st.DataObject) -> None:
    encoded = encode_message(message)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    assert decode_message(encoded[:cut]) is None


@pytest.mark.parametrize("body_length, nibble, extended", [
    (0, 0, 0), (12, 12, 0), (13, 13, 1), (268, 13, 1), (269, 14, 2), (65804, 14, 2), (65805, 15, 4), (70000, 15, 4)])
def test_the_length_nibble_and_extended_length_switch_at_13_269_and_65805(body_length: int, nibble: int,
                                                                           extended: int) -> None:
    payload = b"p" * (body_length - 1) if body_length else b""   # options + 0xFF + payload = body_length
    message = CoapMessage(Code.CONTENT, b"\x01\x02", (), payload)
    data = encode_message(message)
    assert data[0] == nibble << 4 | 2
    assert len(data) == 1 + extended + 1 + 2 + body_length
    assert frame_size(data[:1 + extended]) == len(data)
    assert decode_message(data) == (message, len(data))


@given(st.lists(st.text(max_size=300), max_size=5), st.sampled_from([0, 40, 50, 60, 11050, 65000]),
       st.binary(max_size=300))
def test_options_are_encoded_exactly_as_aiocoap_encodes_them(path: list[str], content_format: int,
                                                              etag: bytes) -> None:
    reference = Options()
    reference.uri_path = path
    reference.content_format = content_format
    if etag and len(etag) <= 8:
        reference.etag = etag
    ours = [(OptionNumber.URI_PATH, p.encode()) for p in path] + [(OptionNumber.CONTENT_FORMAT,
                                                                  encode_uint(content_format))]
    if etag and len(etag) <= 8:
        ours.append((OptionNumber.ETAG, etag))
    assert encode_options(ours) == reference.encode()


@pytest.mark.parametrize("delta", [12, 13, 268, 269, 32767])
def test_option_deltas_and_lengths_at_their_boundaries_round_trip(delta: int) -> None:
    options = ((delta, b"v" * delta), (delta + delta, b""), (delta + delta, b"repeated"), (0xFFFF, b"last"))
    assert decode_options(encode_options(options)) == (options, b"")


def test_option_numbers_past_16_bits_are_refused_both_ways() -> None:
    with pytest.raises(ValueError):
        encode_options([(0x10000, b"")])
    with pytest.raises(CoapFormatError, match="over 65535"):
        decode_options(encode_options([(0xFFFF, b"")]) + bytes([0x10]))


@pytest.mark.parametrize("data, reason", [
    (bytes([0x09, 0x45]) + b"t" * 9, "token length 9"),
    (bytes([0x20, 0x45, 0xF1, 0x00]), "nibble 15"),
    (bytes([0x20, 0x45, 0x1F, 0x00]), "nibble 15"),
    (bytes([0x10, 0x45, 0xFF]), "no payload"),
    (bytes([0x20, 0x45, 0xB5, 0x61]), "past the end"),
    (bytes([0x20, 0x45, 0xD1, 0x00]), "past the end"),
])
def test_malformed_frames_are_format_errors(data: bytes, reason: str) -> None:
    with pytest.raises(CoapFormatError, match=reason):
        decode_message(data)


def test_an_option_too_long_for_the_format_is_refused_when_encoding() -> None:
    with pytest.raises(ValueError):
        encode_options([(11, b"x" * 65805)])


# -- the connection ------------------------------------------------------------------------------

def messages_in(data: bytes) -> list[CoapMessage]:
    out = []
    while data:
        decoded = decode_message(data)
        assert decoded is not None, "a partial message was sent"
        message, used = decoded
        out.append(message)
        data = data[used:]
    return out


def client_csm() -> bytes:
    return encode_message(CoapMessage(Code.CSM, options=((CSM_MAX_MESSAGE_SIZE, encode_uint(4096)),
                                                         (CSM_BLOCK_WISE_TRANSFER, b""))))


def opened(device: Device | None = None) -> CoapTcpConnection:
    """A connection whose CSM was read and which has seen the client's CSM."""
    connection = CoapTcpConnection(device or Device())
    connection.data_to_send()
    connection.receive_data(client_csm())
    assert connection.data_to_send() == b""
    return connection


def get(path: str, token: bytes = b"\x2a", *options: tuple[int, bytes]) -> CoapMessage:
    segments = tuple((OptionNumber.URI_PATH, s.encode()) for s in path.split("/"))
    return CoapMessage(Code.GET, token, segments + options)


def ask(connection: CoapTcpConnection, *requests: CoapMessage) -> list[CoapMessage]:
    connection.receive_data(b"".join(encode_message(r) for r in requests))
    return messages_in(connection.data_to_send())


def test_the_server_speaks_first_with_its_csm_announcing_its_max_message_size() -> None:
    (csm,) = messages_in(CoapTcpConnection(Device()).data_to_send())
    assert csm.code == Code.CSM
    assert csm.options == ((CSM_MAX_MESSAGE_SIZE, encode_uint(MAX_MESSAGE_SIZE)),)


def test_the_clients_csm_is_accepted_and_remembered() -> None:
    connection = opened()
    assert connection.peer is not None
    assert (connection.peer.max_message_size, connection.peer.block_wise_transfer) == (4096, True)
    assert not connection.closed


def test_a_request_before_the_clients_csm_aborts_the_connection() -> None:
    connection = CoapTcpConnection(Device())
    connection.data_to_send()
    (abort,) = ask(connection, get("sensors/temperature"))
    assert abort.code == Code.ABORT and b"CSM" in abort.payload
    assert connection.closed


def test_a_csm_with_an_unknown_critical_option_is_aborted_naming_it() -> None:
    connection = CoapTcpConnection(Device())
    connection.data_to_send()
    (abort,) = ask(connection, CoapMessage(Code.CSM, options=((9, b"\x01"),)))
    assert abort.code == Code.ABORT and abort.first(ABORT_BAD_CSM_OPTION) == encode_uint(9)
    assert connection.closed


def test_ping_gets_a_pong_with_its_token_and_custody_echoed() -> None:
    connection = opened()
    (pong,) = ask(connection, CoapMessage(Code.PING, b"\x07\x08"))
    assert (pong.code, pong.token, pong.options) == (Code.PONG, b"\x07\x08", ())
    (pong,) = ask(connection, CoapMessage(Code.PING, b"\x09", ((PING_CUSTODY, b""),)))
    assert (pong.token, pong.options) == (b"\x09", ((PING_CUSTODY, b""),))


def test_get_temperature_answers_2_05_json_with_the_requests_token() -> None:
    (response,) = ask(opened(Device(clock=lambda: 1_800_000_000.0)), get("sensors/temperature", b"\x01\x02\x03"))
    assert (response.code, response.token) == (Code.CONTENT, b"\x01\x02\x03")
    assert response.options == (JSON_OPTION,)
    assert json.loads(response.payload) == {"celsius": 21.5, "time": "2027-01-15T08:00:00Z"}


def test_put_switches_the_plug_with_2_04_and_a_later_get_sees_it() -> None:
    connection = opened()
    put = CoapMessage(Code.PUT, b"\x01", ((OptionNumber.URI_PATH, b"actuators"), (OptionNumber.URI_PATH, b"plug"),
                                          JSON_OPTION), b'{"on": true}')
    changed, content = ask(connection, put, get("actuators/plug", b"\x02"))
    assert (changed.code, changed.token, json.loads(changed.payload)) == (Code.CHANGED, b"\x01", {"on": True})
    assert (content.code, content.token, json.loads(content.payload)) == (Code.CONTENT, b"\x02", {"on": True})


def test_a_bad_payload_is_4_00_with_a_json_reason() -> None:
    put = CoapMessage(Code.PUT, b"\x05", ((OptionNumber.URI_PATH, b"actuators"), (OptionNumber.URI_PATH, b"plug")),
                      b'{"on": "yes"}')
    (response,) = ask(opened(), put)
    assert (response.code, response.token) == (Code.BAD_REQUEST, b"\x05")
    assert json.loads(response.payload)["error"]


def test_unknown_paths_are_4_04_and_wrong_methods_4_05() -> None:
    post = CoapMessage(Code.POST, b"\x02", ((OptionNumber.URI_PATH, b"sensors"),
                                            (OptionNumber.URI_PATH, b"temperature")))
    missing, not_allowed = ask(opened(), get("no/such/thing", b"\x01"), post)
    assert (missing.code, missing.token) == (Code.NOT_FOUND, b"\x01")
    assert (not_allowed.code, not_allowed.token) == (Code.METHOD_NOT_ALLOWED, b"\x02")


def test_well_known_core_lists_the_resources_in_link_format() -> None:
    (response,) = ask(opened(), get(".well-known/core"))
    assert response.code == Code.CONTENT
    assert response.options == ((OptionNumber.CONTENT_FORMAT, encode_uint(ContentFormat.LINK_FORMAT)),)
    links = response.payload.decode().split(",")
    assert [link.split(";")[0] for link in links] == ["</sensors/temperature>", "</actuators/plug>"]
    assert all(";ct=50" in link for link in links)


def test_an_unsupported_critical_option_is_4_02_and_an_unwanted_accept_4_06() -> None:
    # Block2 was the example here until block-wise transfer came; 65001 is critical and experimental.
    experimental = get("sensors/temperature", b"\x01", (65001, b"\x02"))
    accept_cbor = get("sensors/temperature", b"\x02", (OptionNumber.ACCEPT, encode_uint(60)))
    bad_option, not_acceptable = ask(opened(), experimental, accept_cbor)
    assert (bad_option.code, not_acceptable.code) == (Code.BAD_OPTION, Code.NOT_ACCEPTABLE)


def test_release_ends_the_connection_without_an_answer() -> None:
    connection = opened()
    assert ask(connection, CoapMessage(Code.RELEASE), get("sensors/temperature")) == []
    assert connection.closed


def test_abort_ends_the_connection_without_an_answer_even_before_a_csm() -> None:
    connection = opened()
    assert ask(connection, CoapMessage(Code.ABORT, payload=b"bye")) == []
    assert connection.closed
    fresh = CoapTcpConnection(Device())
    fresh.data_to_send()
    assert ask(fresh, CoapMessage(Code.ABORT, options=((9, b""),))) == [] and fresh.closed


def test_a_message_over_the_announced_size_is_aborted_before_it_is_read() -> None:
    connection = opened()
    too_big = encode_message(CoapMessage(Code.PUT, b"", (), b"x" * MAX_MESSAGE_SIZE))
    connection.receive_data(too_big[:8])
    (abort,) = messages_in(connection.data_to_send())
    assert abort.code == Code.ABORT and b"limit" in abort.payload


def test_a_malformed_message_is_aborted() -> None:
    connection = opened()
    connection.receive_data(bytes([0x09, 0x01]))
    (abort,) = messages_in(connection.data_to_send())
    assert abort.code == Code.ABORT and connection.closed


def test_requests_arriving_byte_by_byte_are_answered_once_complete_and_empty_messages_ignored() -> None:
    connection = opened()
    data = encode_message(CoapMessage(Code.EMPTY)) + encode_message(get("actuators/plug", b"\x0a"))
    for byte in data[:-1]:
        connection.receive_data(bytes([byte]))
        assert connection.data_to_send() == b""
    connection.receive_data(data[-1:])
    (response,) = messages_in(connection.data_to_send())
    assert (response.code, response.token) == (Code.CONTENT, b"\x0a")


# -- the application over records, with a RecordLayer that does not encrypt -----------------------

def test_coap_tcp_application_sends_its_csm_answers_over_records_and_closes_on_release() -> None:
    async def scenario() -> list[Record]:
        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            layer = PlainRecordLayer(reader, writer, RecordReader(), idle_timeout=5.0)
            await GenericServer(coap_tcp_application(object(), Device())).serve(layer, SessionInfo("test", "none"))

        server = await asyncio.start_server(accepted, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
        request = client_csm() + encode_message(get("actuators/plug", b"\x33")) + encode_message(CoapMessage(Code.PING))
        for i in range(0, len(request), 5):
            writer.write(Record(ContentType.APPLICATION_DATA, TLS12, request[i:i + 5]).encode())
        writer.write(Record(ContentType.APPLICATION_DATA, TLS12, encode_message(CoapMessage(Code.RELEASE))).encode())
        await writer.drain()
        records, stream = [], RecordReader()
        while data := await asyncio.wait_for(reader.read(65536), 10):
            stream.feed(data)
            while (record := stream.next_record()) is not None:
                records.append(record)
        writer.close()
        server.close()
        return records

    records = asyncio.run(scenario())
    sent = messages_in(b"".join(r.fragment for r in records if r.content_type == ContentType.APPLICATION_DATA))
    assert [m.code for m in sent] == [Code.CSM, Code.CONTENT, Code.PONG]
    assert sent[1].token == b"\x33"
    assert records[-1].content_type == ContentType.ALERT and records[-1].fragment[1] == AlertDescription.CLOSE_NOTIFY


# -- interoperability: the real aiocoap client over plain TCP -----------------------------------------

async def serve_plain_coap_tcp(device: Device, ended: list[CoapTcpConnection],
                               tls: ssl.SSLContext | None = None) -> asyncio.base_events.Server:
    """The sans-IO core on a plain TCP socket (coap+tcp://), or on Python's TLS if given."""
    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = CoapTcpConnection(device)
        while True:
            if out := connection.data_to_send():
                writer.write(out)
                await writer.drain()
            if connection.closed:
                break
            data = await reader.read(65536)
            if data:
                connection.receive_data(data)
            else:
                connection.receive_eof()
        ended.append(connection)
        writer.close()

    return await asyncio.start_server(accepted, "127.0.0.1", 0, ssl=tls)


def test_the_aiocoap_client_gets_and_puts_over_coap_tcp() -> None:
    async def scenario() -> tuple[list[aiocoap.Message], list[CoapTcpConnection]]:
        ended: list[CoapTcpConnection] = []
        server = await serve_plain_coap_tcp(Device(), ended)
        base = f"coap+tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        context = await aiocoap.Context.create_client_context()
        try:
            requests = [aiocoap.Message(code=aiocoap.GET, uri=f"{base}/sensors/temperature"),
                        aiocoap.Message(code=aiocoap.PUT, uri=f"{base}/actuators/plug", payload=b'{"on": true}',
                                        content_format=50),
                        aiocoap.Message(code=aiocoap.GET, uri=f"{base}/actuators/plug"),
                        aiocoap.Message(code=aiocoap.GET, uri=f"{base}/.well-known/core"),
                        aiocoap.Message(code=aiocoap.DELETE, uri=f"{base}/actuators/plug"),
                        aiocoap.Message(code=aiocoap.GET, uri=f"{base}/no/such/thing")]
            responses = [await asyncio.wait_for(context.request(r).response, 10) for r in requests]
        finally:
            await context.shutdown()
        for _ in range(100):
            if ended:
                break
            await asyncio.sleep(0.05)
        server.close()
        return responses, ended

    responses, ended = asyncio.run(scenario())
    temperature, put, plug, core, delete, missing = responses
    assert temperature.code == aiocoap.CONTENT and temperature.opt.content_format == 50
    assert json.loads(temperature.payload)["celsius"] == 21.5
    assert put.code == aiocoap.CHANGED and json.loads(put.payload) == {"on": True}
    assert json.loads(plug.payload) == {"on": True}
    assert core.opt.content_format == 40 and b"</actuators/plug>" in core.payload
    assert (delete.code, missing.code) == (aiocoap.METHOD_NOT_ALLOWED, aiocoap.NOT_FOUND)
    # aiocoap's CSM was understood, and its shutdown sent a Release that closed our side.
    assert [c.peer is not None and c.peer.block_wise_transfer and c.closed for c in ended] == [True]


def test_aiocoap_asking_for_32_byte_blocks_reassembles_well_known_core() -> None:
    """aiocoap always announces 1 MiB; a Block2 option in its first request makes it fetch the rest."""
    async def scenario() -> aiocoap.Message:
        server = await serve_plain_coap_tcp(Device(), [])
        context = await aiocoap.Context.create_client_context()
        try:
            message = aiocoap.Message(code=aiocoap.GET,
                                      uri=f"coap+tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}/.well-known/core")
            message.opt.block2 = BlockOption.BlockwiseTuple(0, False, 1)
            return await asyncio.wait_for(context.request(message).response, 10)
        finally:
            await context.shutdown()
            server.close()

    response = asyncio.run(scenario())
    assert response.code == aiocoap.CONTENT and response.payload == core_link_format()
    assert response.opt.block2.block_number > 0 and response.opt.etag is not None   # it came in pieces


def python_tls_server_context(directory: Path) -> ssl.SSLContext:
    """TLS 1.2 with a throwaway demo CA (ca.pem in directory) and a host-held key: not the card."""
    ca, key = DemoCa.create(), ec.generate_private_key(ec.SECP256R1())
    point = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    (directory / "ca.pem").write_bytes(ca.certificate.public_bytes(serialization.Encoding.PEM))
    (directory / "server.pem").write_bytes(ca.issue_server_certificate(point, "localhost")
                                           .public_bytes(serialization.Encoding.PEM))
    (directory / "server.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                             serialization.PrivateFormat.PKCS8,
                                                             serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
    context.load_cert_chain(directory / "server.pem", directory / "server.key")
    return context


def test_the_aiocoap_client_trusts_a_ca_file_given_as_tlscert_client_credentials(tmp_path: Path) -> None:
    """The recipe for coaps+tcp:// end-to-end tests, here with Python's TLS in place of the card."""
    async def scenario() -> tuple[aiocoap.Message, BaseException | None]:
        server = await serve_plain_coap_tcp(Device(), [], python_tls_server_context(tmp_path))
        base = f"coaps+tcp://localhost:{server.sockets[0].getsockname()[1]}"
        uri = f"{base}/sensors/temperature"
        untrusting = await aiocoap.Context.create_client_context()
        trusting = await aiocoap.Context.create_client_context()
        # The key must be "coaps+tcp://" + the URI's host:port exactly + "/*" (aiocoap 0.4.17 looks
        # up no other form for TLS), and the certificate must name that host (localhost).
        trusting.client_credentials.load_from_dict(
            {f"{base}/*": {"tlscert": {"certfile": str(tmp_path / "ca.pem")}}})
        try:
            response = await asyncio.wait_for(trusting.request(aiocoap.Message(code=aiocoap.GET, uri=uri)).response, 10)
            try:
                await asyncio.wait_for(untrusting.request(aiocoap.Message(code=aiocoap.GET, uri=uri)).response, 10)
                refusal = None
            except aiocoap.error.NetworkError as exc:
                refusal = exc
        finally:
            await trusting.shutdown()
            await untrusting.shutdown()
            server.close()
        return response, refusal

    response, refusal = asyncio.run(scenario())
    assert response.code == aiocoap.CONTENT and "celsius" in json.loads(response.payload)
    assert refusal is not None, "a client without the CA must not trust the demo certificate"


def test_every_coap_connection_log_line_names_the_client(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="host.apps.coap_tcp")
    connection = CoapTcpConnection(Device(), client="192.0.2.9:5684")
    connection.receive_data(bytes([0x30, 0x01]))   # a message cut short: 3 bytes of payload announced
    connection.receive_eof()
    connection = CoapTcpConnection(Device(), client="192.0.2.9:5684")
    connection.receive_data(bytes([0x00, 0xE4]))   # Release (7.04)
    assert len(caplog.records) >= 2
    assert all("192.0.2.9:5684" in record.getMessage() for record in caplog.records)
