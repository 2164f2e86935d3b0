"""HTTP/1.1 over the card's TLS sessions, on h11 (sans-IO): keep-alive, bounded bodies, and a
4xx answer, not a dropped connection, for requests that are wrong."""
from __future__ import annotations

import html
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import h11

from .device import BadRequest, Device, shared_device, MethodNotAllowed, NotFound, status
from .record_layer import RecordLayer

log = logging.getLogger(__name__)
MAX_BODY = 64 * 1024
SERVER = b"SE-TLS"


@dataclass
class HttpResponse:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)


def json_response(status_code: int, document: Any) -> HttpResponse:
    return HttpResponse(status_code, json.dumps(document).encode() + b"\n")


class HttpApp:
    """Maps a request to a response; knows nothing of sockets, TLS or h11."""

    def __init__(self, device: Device, tandem: Any) -> None:
        self.device = device
        self.tandem = tandem

    def handle(self, method: str, target: str, body: bytes) -> HttpResponse:
        path = target.split("?", 1)[0]
        if method == "HEAD":
            response = self.handle("GET", target, body)
            response.headers.append(("Content-Length", str(len(response.body))))
            response.body = b""
            return response
        if path in ("/", "/status.json"):
            if method != "GET":
                return HttpResponse(405, b"", "text/plain", [("Allow", "GET, HEAD")])
            return self.status_page() if path == "/" else json_response(200, status(self.tandem))
        try:
            return json_response(200, self.device.handle(method, path, body))
        except NotFound:
            return json_response(404, {"error": f"no resource at {path}"})
        except MethodNotAllowed as exc:
            response = json_response(405, {"error": f"{method} not allowed on {path}"})
            response.headers.append(("Allow", ", ".join(exc.allowed)))
            return response
        except BadRequest as exc:
            return json_response(400, {"error": str(exc)})

    def status_page(self) -> HttpResponse:
        info = status(self.tandem)
        last = info["last_session"] or {}
        rows = [("Cards", ", ".join(info["cards"])), ("Identity", info["identity"]),
                ("Certificate subject", info["subject"]), ("Cipher suite", last.get("suite", "")),
                ("Record layer", last.get("record_mode", info["record_mode"])),
                ("Last handshake", f"{last.get('handshake_ms', '')} ms, {last.get('apdus', '')} APDUs, "
                                   f"{last.get('bytes_to_card', '')}/{last.get('bytes_from_card', '')} bytes")]
        cells = "\n".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
        page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>SE-TLS device</title>
<style>body{{font-family:sans-serif;margin:2em}}th{{text-align:left;padding-right:1em}}</style></head>
<body><h1>TLS server in a secure element</h1>
<p>This page came over a TLS session whose handshake ran in the card.</p>
<table>
{cells}
</table>
<p>Resources: <a href="/sensors/temperature">/sensors/temperature</a>,
<a href="/actuators/plug">/actuators/plug</a>, <a href="/status.json">/status.json</a></p>
</body></html>
"""
        return HttpResponse(200, page.encode(), "text/html; charset=utf-8")


def _response_bytes(connection: h11.Connection, response: HttpResponse, close: bool) -> bytes:
    headers = [("Content-Type", response.content_type), ("Server", SERVER.decode()), *response.headers]
    if not any(name.lower() == "content-length" for name, _ in headers):
        headers.append(("Content-Length", str(len(response.body))))
    if close:
        headers.append(("Connection", "close"))
    out = connection.send(h11.Response(status_code=response.status, headers=headers)) or b""
    if response.body:
        out += connection.send(h11.Data(data=response.body)) or b""
    return out + (connection.send(h11.EndOfMessage()) or b"")


async def _next_event(connection: h11.Connection, layer: RecordLayer) -> Any:
    while True:
        event = connection.next_event()
        if event is not h11.NEED_DATA:
            return event
        record = await layer.recv()
        connection.receive_data(b"" if record is None else await layer.decrypt(record))


async def _read_request(connection: h11.Connection, layer: RecordLayer) -> tuple[h11.Request, bytes, bool] | None:
    """The next request and its body (dropped past MAX_BODY, then flagged), None at the end."""
    event = await _next_event(connection, layer)
    if isinstance(event, h11.ConnectionClosed):
        return None
    assert isinstance(event, h11.Request)
    request, body, too_large = event, b"", False
    while not isinstance(event := await _next_event(connection, layer), h11.EndOfMessage):
        if isinstance(event, h11.Data) and not too_large:
            body += event.data
            too_large = len(body) > MAX_BODY
    return request, (b"" if too_large else body), too_large


async def serve_http(app: HttpApp, layer: RecordLayer) -> None:
    """Requests one after another on one TLS session (HTTP/1.1 keep-alive)."""
    connection = h11.Connection(h11.SERVER, max_incomplete_event_size=16 * 1024)
    while True:
        try:
            received = await _read_request(connection, layer)
        except h11.RemoteProtocolError as exc:
            log.info("bad HTTP request: %s", exc)
            if connection.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                bad = json_response(exc.error_status_hint, {"error": str(exc)})
                await layer.send(await layer.encrypt(_response_bytes(connection, bad, close=True)))
            return
        if received is None:
            return
        request, body, too_large = received
        if too_large:
            response = json_response(413, {"error": f"body over {MAX_BODY} bytes"})
        else:
            response = app.handle(request.method.decode(), request.target.decode(), body)
        close = connection.their_state is h11.MUST_CLOSE
        await layer.send(await layer.encrypt(_response_bytes(connection, response, close)))
        if connection.our_state is h11.MUST_CLOSE or close:
            return
        connection.start_next_cycle()


def https_application(tandem: Any) -> Any:
    app = HttpApp(shared_device(), tandem)

    async def application(layer: RecordLayer, info: Any) -> None:
        await serve_http(app, layer)

    return application
