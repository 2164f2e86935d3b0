"""HTTP/1.1 on the device: the sans-IO core byte by byte, then the application over a socket.

The socket test runs `https_application` through `GenericServer` on a fake RecordLayer whose
records carry plaintext: it tests the application layer only, not TLS (the end-to-end tests
with the card, curl and browsers do that).
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import h11
import pytest
from fakes import PlainRecordLayer, Tandem

from host.apps.device import Device
from host.apps.https import MAX_BODY, HttpApp, HttpServerConnection, https_application
from host.se_tls import Application, GenericServer, HandshakeRecord, SessionInfo
from host.tls.numbers import TLS12, AlertDescription, ContentType
from host.tls.records import Record, RecordReader

pytestmark = pytest.mark.timeout(30)


@dataclass
class Parsed:
    status: int
    headers: dict[str, str]
    body: bytes


def request(method: str, target: str, body: bytes = b"", *headers: str) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: device", *headers]
    if body or method in ("PUT", "POST"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def parse_responses(data: bytes, methods: list[str]) -> tuple[list[Parsed], bytes]:
    """The responses to requests with these methods, read by an h11 client, and what is left."""
    parsed = []
    for method in methods:
        client = h11.Connection(h11.CLIENT)
        client.send(h11.Request(method=method, target="/", headers=[("Host", "device")]))
        client.send(h11.EndOfMessage())
        client.receive_data(data)
        event = client.next_event()
        while isinstance(event, h11.InformationalResponse):
            event = client.next_event()
        assert isinstance(event, h11.Response), event
        body = b""
        while not isinstance(part := client.next_event(), h11.EndOfMessage):
            assert isinstance(part, h11.Data), part
            body += part.data
        headers = {name.decode(): value.decode() for name, value in event.headers}
        parsed.append(Parsed(event.status_code, headers, body))
        data = client.trailing_data[0]
    return parsed, data


def connection(device: Device | None = None, tandem: Tandem | None = None) -> HttpServerConnection:
    return HttpServerConnection(HttpApp(device or Device(), tandem or Tandem()), clock=lambda: 1_800_000_000.0)


def exchange(server: HttpServerConnection, data: bytes, methods: list[str]) -> list[Parsed]:
    server.receive_data(data)
    responses, rest = parse_responses(server.data_to_send(), methods)
    assert rest == b""
    return responses


def test_three_pipelined_requests_in_one_chunk_get_three_answers_in_order_and_the_connection_stays() -> None:
    server = connection()
    data = request("GET", "/sensors/temperature") + request("PUT", "/actuators/plug", b'{"on": true}') + \
        request("GET", "/actuators/plug")
    temperature, put, get = exchange(server, data, ["GET", "PUT", "GET"])
    assert json.loads(temperature.body)["celsius"] == 21.5
    assert (put.status, json.loads(put.body)) == (200, {"on": True})
    assert (get.status, json.loads(get.body)) == (200, {"on": True})
    assert not server.closed and "connection" not in get.headers
    assert exchange(server, request("GET", "/status.json"), ["GET"])[0].status == 200


def test_a_request_arriving_one_byte_at_a_time_is_answered_once_complete() -> None:
    server = connection()
    data = request("PUT", "/actuators/plug", b'{"on": true}')
    for i in range(len(data) - 1):
        server.receive_data(data[i:i + 1])
        assert server.data_to_send() == b""
    response = exchange(server, data[-1:], ["PUT"])[0]
    assert (response.status, response.headers["content-type"]) == (200, "application/json")


def test_put_then_get_on_a_new_connection_sees_the_same_device() -> None:
    device = Device()
    exchange(connection(device), request("PUT", "/actuators/plug", b'{"on": true}'), ["PUT"])
    assert json.loads(exchange(connection(device), request("GET", "/actuators/plug"), ["GET"])[0].body) == {"on": True}


def test_connection_close_is_honoured_and_later_pipelined_requests_are_ignored() -> None:
    server = connection()
    server.receive_data(request("GET", "/actuators/plug", b"", "Connection: close") + request("GET", "/"))
    (response,), rest = parse_responses(server.data_to_send(), ["GET"])
    assert response.status == 200 and response.headers["connection"] == "close"
    assert rest == b"" and server.closed


def test_an_http10_request_is_answered_then_the_connection_closes() -> None:
    server = connection()
    server.receive_data(b"GET /actuators/plug HTTP/1.0\r\n\r\n")
    assert server.data_to_send().startswith(b"HTTP/1.1 200 ")
    assert server.closed


@pytest.mark.parametrize("garbage", [b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n",
                                     b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n",
                                     b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", b"HELLO\r\n\r\n"])
def test_a_malformed_request_gets_a_400_answer_and_then_the_connection_closes(garbage: bytes) -> None:
    server = connection()
    server.receive_data(garbage)
    response = parse_responses(server.data_to_send(), ["GET"])[0][0]
    assert response.status == 400 and response.headers["connection"] == "close"
    assert json.loads(response.body) == {"error": "malformed request"}   # h11's words stay in the log
    assert server.closed


def test_headers_over_16_kb_get_431_and_close() -> None:
    server = connection()
    server.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 20000)
    assert parse_responses(server.data_to_send(), ["GET"])[0][0].status == 431
    assert server.closed


@pytest.mark.parametrize("length", [9000, 20000])
def test_a_request_line_over_8_kb_gets_414_and_close(length: int) -> None:
    server = connection()
    server.receive_data(b"GET /" + b"a" * length + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    response = parse_responses(server.data_to_send(), ["GET"])[0][0]
    assert (response.status, response.headers["connection"]) == (414, "close")
    assert server.closed


def test_content_length_with_transfer_encoding_is_a_400_and_the_connection_closes() -> None:
    server = connection()
    server.receive_data(b"PUT /actuators/plug HTTP/1.1\r\nHost: a\r\nContent-Length: 13\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n")
    responses, rest = parse_responses(server.data_to_send(), ["PUT"])
    assert (responses[0].status, responses[0].headers["connection"]) == (400, "close")
    assert rest == b""   # the smuggled GET is never answered
    assert server.closed


@pytest.mark.parametrize("body", [b"not json", b"[1, 2", b"9" * 5000, b'{"on": 1e999999}'])
def test_a_400_body_names_no_internals(body: bytes) -> None:
    response = exchange(connection(), request("PUT", "/actuators/plug", body), ["PUT"])[0]
    error = json.loads(response.body)["error"]
    assert response.status == 400
    assert not any(word in error for word in ("line", "column", "char", "sys.", "Expecting", "digits")), error


def test_every_connection_log_line_names_the_client(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="host.apps.https")
    for data in (b"HELLO\r\n\r\n", request("PUT", "/actuators/plug", b"x" * (MAX_BODY + 1)),
                 b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n"):
        server = HttpServerConnection(HttpApp(Device(), Tandem()), peer="192.0.2.7:40000")
        server.receive_data(data)
    assert caplog.records and all("192.0.2.7:40000" in r.getMessage() for r in caplog.records)


def test_a_put_with_bad_json_is_a_400_with_a_json_error_and_keeps_the_connection() -> None:
    server = connection()
    response = exchange(server, request("PUT", "/actuators/plug", b"not json"), ["PUT"])[0]
    assert response.status == 400 and "not JSON" in json.loads(response.body)["error"]
    assert not server.closed


def test_an_unknown_path_is_a_404() -> None:
    response = exchange(connection(), request("GET", "/sensors/humidity?unit=c"), ["GET"])[0]
    assert response.status == 404 and json.loads(response.body) == {"error": "no resource at /sensors/humidity"}


@pytest.mark.parametrize("method, target, allow", [("DELETE", "/actuators/plug", "GET, PUT, HEAD"),
                                                   ("PUT", "/sensors/temperature", "GET, HEAD"),
                                                   ("POST", "/", "GET, HEAD"), ("PUT", "/status.json", "GET, HEAD"),
                                                   ("DELETE", "/", "GET, HEAD"),
                                                   ("DELETE", "/status.json?x=1", "GET, HEAD"),
                                                   ("OPTIONS", "/sensors/temperature/", "GET, HEAD"),
                                                   ("POST", "https://device/actuators/plug", "GET, PUT, HEAD")])
def test_a_wrong_method_is_a_405_with_allow(method: str, target: str, allow: str) -> None:
    response = exchange(connection(), request(method, target, b"{}"), [method])[0]
    assert (response.status, response.headers["allow"]) == (405, allow)


def test_a_body_declared_over_64_kb_is_a_413_before_it_arrives_and_the_connection_closes() -> None:
    server = connection()
    server.receive_data(f"PUT /actuators/plug HTTP/1.1\r\nHost: a\r\nContent-Length: {MAX_BODY + 1}\r\n\r\n".encode())
    response = parse_responses(server.data_to_send(), ["PUT"])[0][0]
    assert (response.status, response.headers["connection"]) == (413, "close")
    assert server.closed


def test_a_chunked_body_growing_over_64_kb_is_a_413() -> None:
    server = connection()
    server.receive_data(b"PUT /actuators/plug HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(MAX_BODY // 4096 + 1):
        server.receive_data(b"1000\r\n" + b"x" * 4096 + b"\r\n")
    assert parse_responses(server.data_to_send(), ["PUT"])[0][0].status == 413
    assert server.closed


def test_a_body_of_exactly_64_kb_is_read_and_judged() -> None:
    server = connection()
    response = exchange(server, request("PUT", "/actuators/plug", b" " * MAX_BODY), ["PUT"])[0]
    assert response.status == 400


def test_expect_100_continue_gets_an_interim_response_then_the_answer() -> None:
    server = connection()
    server.receive_data(b"PUT /actuators/plug HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n"
                        b"Expect: 100-continue\r\n\r\n")
    assert server.data_to_send().startswith(b"HTTP/1.1 100 ")
    assert exchange(server, b'{"on": true}', ["PUT"])[0].status == 200


def test_head_gives_the_get_headers_without_a_body() -> None:
    device = Device(clock=lambda: 1_800_000_000.0)
    get = exchange(connection(device), request("GET", "/sensors/temperature"), ["GET"])[0]
    head = exchange(connection(device), request("HEAD", "/sensors/temperature"), ["HEAD"])[0]
    assert head.status == 200 and head.body == b""
    assert head.headers["content-length"] == str(len(get.body))


def test_the_status_page_is_small_html_with_a_title_and_escaped_values() -> None:
    info = SessionInfo(peer="127.0.0.1:1", card="0:jcardsim", suite=0xC02B, record_mode="card",
                       handshake_seconds=0.5, apdus=12)
    handshake = HandshakeRecord(1_800_000_000.0, "127.0.0.1:1", "0:jcardsim", "ok",
                                "ECDHE-ECDSA-AES128-GCM-SHA256", "card", 0.5)
    tandem = Tandem(identity="<script>alert(1)</script>", last_session=info, sessions={1: info}, recent=[handshake])
    page = exchange(connection(tandem=tandem), request("GET", "/"), ["GET"])[0]
    text = page.body.decode()
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert text.startswith("<!DOCTYPE html>") and "<title>SE-TLS device status</title>" in text
    assert "&lt;script&gt;" in text and "<script" not in text
    assert "ECDHE-ECDSA-AES128-GCM-SHA256" in text and "500 ms" in text and "<svg" in text


def test_status_json_carries_the_same_facts_as_the_page() -> None:
    page = exchange(connection(), request("GET", "/status.json"), ["GET"])[0]
    status = json.loads(page.body)
    assert status["schema"] == 1 and status["subject"] == "CN=localhost"
    assert [card["name"] for card in status["cards"]] == ["0:jcardsim"]
    assert status["last_session"] is None and status["sessions"] == [] and status["handshakes"] == []


def test_every_response_has_a_date_and_no_caching() -> None:
    response = exchange(connection(), request("GET", "/actuators/plug"), ["GET"])[0]
    assert response.headers["date"] == "Fri, 15 Jan 2027 08:00:00 GMT"
    assert response.headers["cache-control"] == "no-store"


def test_an_empty_chunk_is_not_the_end_of_the_stream_but_eof_is() -> None:
    server = connection()
    server.receive_data(b"")
    assert not server.closed
    server.receive_eof()
    assert server.closed and server.data_to_send() == b""


def test_http_app_maps_one_request_without_any_connection() -> None:
    app = HttpApp(Device(), Tandem())
    response = app.respond(h11.Request(method="PUT", target="/actuators/plug", headers=[("Host", "a")]),
                           b'{"on": false}')
    assert (response.status, json.loads(response.body)) == (200, {"on": False})


# -- the application over a real socket, with a RecordLayer that does not encrypt -----------------

async def serve_plain(application: Application) -> asyncio.base_events.Server:
    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        layer = PlainRecordLayer(reader, writer, RecordReader(), idle_timeout=5.0)
        await GenericServer(application).serve(layer, SessionInfo(peer="test", card="none"))

    return await asyncio.start_server(accepted, "127.0.0.1", 0)


async def read_records(reader: asyncio.StreamReader) -> list[Record]:
    """Every record until the server closes the connection."""
    records, stream = [], RecordReader()
    while data := await asyncio.wait_for(reader.read(65536), 10):
        stream.feed(data)
        while (record := stream.next_record()) is not None:
            records.append(record)
    return records


def test_https_application_serves_keep_alive_requests_over_records_then_close_notify() -> None:
    async def scenario() -> tuple[list[Record], list[Parsed]]:
        server = await serve_plain(https_application(Tandem(), Device()))
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
        first = request("PUT", "/actuators/plug", b'{"on": true}')
        writer.write(Record(ContentType.APPLICATION_DATA, TLS12, first[:20]).encode())
        writer.write(Record(ContentType.APPLICATION_DATA, TLS12, first[20:]).encode())
        writer.write(Record(ContentType.APPLICATION_DATA, TLS12, b"").encode())
        writer.write(Record(ContentType.APPLICATION_DATA, TLS12, request("GET", "/actuators/plug", b"",
                                                                          "Connection: close")).encode())
        await writer.drain()
        records = await read_records(reader)
        writer.close()
        server.close()
        data = b"".join(r.fragment for r in records if r.content_type == ContentType.APPLICATION_DATA)
        return records, parse_responses(data, ["PUT", "GET"])[0]

    records, (put, get) = asyncio.run(scenario())
    assert json.loads(put.body) == {"on": True} and json.loads(get.body) == {"on": True}
    assert records[-1].content_type == ContentType.ALERT
    assert records[-1].fragment[1] == AlertDescription.CLOSE_NOTIFY


def test_status_lines_carry_their_reason_phrase() -> None:
    server = connection()
    server.receive_data(request("GET", "/actuators/plug", b"") + request("GET", "/nowhere"))
    out = server.data_to_send()
    assert out.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"HTTP/1.1 404 Not Found\r\n" in out


@pytest.mark.parametrize(("data", "reason"), [
    (b"PUT /actuators/plug HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "illegal chunk header"),
    (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", "illegal header line"),
])
def test_a_malformed_request_is_logged_in_plain_words_without_python_reprs(
        caplog: pytest.LogCaptureFixture, data: bytes, reason: str) -> None:
    caplog.set_level("INFO", logger="host.apps.https")
    server = HttpServerConnection(HttpApp(Device(), Tandem()), peer="192.0.2.7:40000")
    server.receive_data(data)
    lines = [r.getMessage() for r in caplog.records if "malformed HTTP request" in r.getMessage()]
    assert lines == [f"192.0.2.7:40000: malformed HTTP request ({reason}): 400 and close"], lines
