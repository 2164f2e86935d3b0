"""HTTP/1.1 over a TLS session whose handshake ran in the card, on h11.

Three layers, the first two sans-IO:

- `HttpApp`: one request (an `h11.Request` and its body) to one `HttpResponse`; the status page
  (`/`, `/status.json`: host.apps.status, docs/status.md) and the device's resources.
- `HttpServerConnection`: bytes from the client in, bytes to send out. It drives an
  `h11.Connection`: keep-alive and pipelining, `Connection: close`, HEAD, `Expect: 100-continue`,
  413 past `MAX_BODY`, and an error response, not a dropped connection, when the request is
  malformed (400, whose body names no internals; 414 for a request line over `MAX_REQUEST_LINE`,
  431 for header fields over `MAX_HEADERS`; a request with both Content-Length and
  Transfer-Encoding is refused with a 400 and the connection closed, RFC 9112 6.1, 11.2); a 500
  (and the end of the connection) when the app raises. Every log line names the client.
- `https_application(tandem)`: pumps records between a `RecordLayer` and the connection.
"""
from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import h11

from host.apps.device import Device, Outcome, Reply, process_device
from host.apps.pump import pump
from host.apps.status import Resources, read_resources, render_page, status_document
from host.se_tls import Application, SessionInfo
from host.tls.record_layer import RecordLayer

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
MAX_HEADERS = 16 * 1024
MAX_REQUEST_LINE = 8 * 1024   # RFC 9112 3: at least 8000 octets should be supported
SERVER_NAME = "se-tls-host"
JSON_TYPE = "application/json"
HTML_TYPE = "text/html; charset=utf-8"
PAGES = ("/", "/status.json")
PAGE_METHODS = ("GET", "HEAD")

HTTP_STATUS = {
    Outcome.CONTENT: 200,
    Outcome.CHANGED: 200,
    Outcome.BAD_REQUEST: 400,
    Outcome.NOT_FOUND: 404,
    Outcome.METHOD_NOT_ALLOWED: 405,
}


@dataclass
class HttpResponse:
    status: int
    body: bytes = b""
    content_type: str = JSON_TYPE
    headers: list[tuple[str, str]] = field(default_factory=list)


def json_response(status: int, document: Any, headers: list[tuple[str, str]] | None = None) -> HttpResponse:
    return HttpResponse(status, json.dumps(document).encode() + b"\n", JSON_TYPE, headers or [])


def error_response(status: int, message: str) -> HttpResponse:
    return json_response(status, {"error": message})


def with_head(methods: tuple[str, ...]) -> tuple[str, ...]:
    """The methods of a resource as HTTP sees them: HEAD wherever GET is."""
    return (*methods, "HEAD") if "GET" in methods and "HEAD" not in methods else methods


def request_path(target: bytes) -> str:
    """The path of an origin-form or absolute-form request target, without its query."""
    return urlsplit(target.decode("ascii", "replace")).path or "/"


class HttpApp:
    """Requests to responses; knows nothing of sockets, TLS, or how bytes are framed."""

    def __init__(self, device: Device, tandem: Any,
                 resources: Callable[[], Resources | None] = read_resources) -> None:
        self.device = device
        self.tandem = tandem
        self.resources = resources

    def respond(self, request: h11.Request, body: bytes, client_subject: str | None = None) -> HttpResponse:
        """The response to a complete request; for HEAD, the GET response (the body is not sent).
        `client_subject`: the commonName of the client certificate the card verified for this
        session (the status page shows it), None without one."""
        method = request.method.decode("ascii")
        path = request_path(request.target)
        if path in PAGES:
            return self._page(method, path, client_subject)
        return self._resource("GET" if method == "HEAD" else method, path, body)

    def _page(self, method: str, path: str, client_subject: str | None = None) -> HttpResponse:
        if method not in PAGE_METHODS:
            return json_response(405, {"error": f"{method} is not allowed on {path}"},
                                 [("Allow", ", ".join(PAGE_METHODS))])
        document = status_document(self.tandem, self.device, self.resources(), self.device.clock(),
                                   client_subject)
        if path == "/status.json":
            return json_response(200, document)
        return HttpResponse(200, render_page(document).encode(), HTML_TYPE)

    def _resource(self, method: str, path: str, body: bytes) -> HttpResponse:
        reply: Reply = self.device.handle(method, path, body)
        headers = []
        if reply.outcome is Outcome.METHOD_NOT_ALLOWED:
            headers.append(("Allow", ", ".join(with_head(reply.allowed))))
        return json_response(HTTP_STATUS[reply.outcome], reply.document, headers)


def declared_length(request: h11.Request) -> int:
    for name, value in request.headers:
        if name == b"content-length":
            return int(value)
    return 0


class HttpServerConnection:
    """Sans-IO HTTP/1.1 server side: `receive_data()`, `receive_eof()`, then `data_to_send()`.

    `closed` turns true once the connection must end (client's close, our `Connection: close`,
    an error response); the caller then sends what is left and closes the TLS session.
    """

    def __init__(self, app: HttpApp, max_body: int = MAX_BODY, clock: Callable[[], float] = time.time,
                 peer: str = "-", client_subject: str | None = None) -> None:
        self.app = app
        self.peer = peer   # the client's address, in every log line
        self.client_subject = client_subject
        self.max_body = max_body
        self.clock = clock
        self.closed = False
        self.responses = 0
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADERS)
        self._request: h11.Request | None = None
        self._body = bytearray()
        self._out = bytearray()

    def receive_data(self, data: bytes) -> None:
        """Application data from the client (an empty chunk is not the end of the stream)."""
        if data and not self.closed:
            self._h11.receive_data(data)
            self._process()

    def receive_eof(self) -> None:
        """The client ended the stream."""
        if not self.closed:
            self._h11.receive_data(b"")
            self._process()
            self.closed = True

    def data_to_send(self) -> bytes:
        out, self._out = bytes(self._out), bytearray()
        return out

    def _process(self) -> None:
        while not self.closed:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                self._reject(exc)
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                self._maybe_continue()
                return
            self._on_event(event)

    def _on_event(self, event: Any) -> None:
        if isinstance(event, h11.Request):
            self._request, self._body = event, bytearray()
            names = {name for name, _ in event.headers}
            if len(event.method) + len(event.target) + len(b"  HTTP/1.1") > MAX_REQUEST_LINE:
                self._refuse(414, f"the request line is over {MAX_REQUEST_LINE} bytes")
            elif b"content-length" in names and b"transfer-encoding" in names:
                # RFC 9112 6.1: a request with both may be smuggling another one: never guessed at.
                self._refuse(400, "a request with both Content-Length and Transfer-Encoding is refused")
            elif declared_length(event) > self.max_body:
                self._too_large()
        elif isinstance(event, h11.Data):
            self._body += event.data
            if len(self._body) > self.max_body:
                self._too_large()
        elif isinstance(event, h11.EndOfMessage):
            assert self._request is not None
            self._respond(self._request, bytes(self._body))
        elif isinstance(event, h11.ConnectionClosed):
            self.closed = True

    def _respond(self, request: h11.Request, body: bytes) -> None:
        """The app's response; whatever it raises is a 500 that ends the connection, one log line
        (the traceback at DEBUG)."""
        try:
            response = self.app.respond(request, body, self.client_subject)
        except Exception as exc:
            log.error("%s: HTTP %s %s failed: %s: %s", self.peer, request.method.decode("ascii", "replace"),
                      request_path(request.target), type(exc).__name__, exc)
            log.debug("the HTTP application's traceback", exc_info=True)
            self._answer(error_response(500, "internal error"), close=True)
            return
        self._answer(response)

    def _maybe_continue(self) -> None:
        """Expect: 100-continue: the body is welcome (its size was checked with the headers)."""
        if self._h11.they_are_waiting_for_100_continue and self._h11.our_state is h11.SEND_RESPONSE:
            self._out += self._h11.send(h11.InformationalResponse(status_code=100, headers=[])) or b""

    def _too_large(self) -> None:
        log.info("%s: HTTP request body over %d bytes: 413 and close", self.peer, self.max_body)
        self._answer(error_response(413, f"the body is over {self.max_body} bytes"), close=True)

    def _refuse(self, status: int, reason: str) -> None:
        """A request refused before the app sees it: the status, one sentence, and the end."""
        log.info("%s: HTTP %d: %s: close", self.peer, status, reason)
        self._answer(error_response(status, reason), close=True)

    def _reject(self, exc: h11.RemoteProtocolError) -> None:
        """A request h11 cannot parse: a status and a sentence of ours (h11's message, which may
        quote the request or name its internals, goes to the log only)."""
        status = exc.error_status_hint
        reason = "malformed request"
        if status == 431:
            pending = self._h11.trailing_data[0]
            line_end = pending.find(b"\n")
            if line_end < 0 or line_end > MAX_REQUEST_LINE:
                status, reason = 414, f"the request line is over {MAX_REQUEST_LINE} bytes"
            else:
                reason = f"the header fields are over {MAX_HEADERS} bytes"
        log.info("%s: malformed HTTP request (%s): %d and close", self.peer, plain_h11_reason(exc), status)
        if self._h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            self._request = None
            self._answer(error_response(status, reason), close=True)
        self.closed = True

    def _answer(self, response: HttpResponse, close: bool = False) -> None:
        head = self._request is not None and self._request.method == b"HEAD"
        self._out += self._serialise(response, head, close)
        self.responses += 1
        if close or self._h11.our_state is h11.MUST_CLOSE:
            self.closed = True
        else:
            self._h11.start_next_cycle()
            self._request = None

    def _serialise(self, response: HttpResponse, head: bool, close: bool) -> bytes:
        headers = [("Content-Type", response.content_type), ("Content-Length", str(len(response.body))),
                   ("Cache-Control", "no-store"), ("Date", formatdate(self.clock(), usegmt=True)),
                   ("Server", SERVER_NAME), *response.headers]
        if close:
            headers.append(("Connection", "close"))
        reason = HTTPStatus(response.status).phrase.encode()  # h11 would leave it empty
        out = self._h11.send(h11.Response(status_code=response.status, headers=headers, reason=reason)) or b""
        if response.body and not head:
            out += self._h11.send(h11.Data(data=response.body)) or b""
        return out + (self._h11.send(h11.EndOfMessage()) or b"")


def https_application(tandem: Any, device: Device | None = None) -> Application:
    """The HTTPS application for `GenericServer`: one `HttpServerConnection` per TLS session."""
    app = HttpApp(device or process_device(), tandem)

    async def application(layer: RecordLayer, info: SessionInfo) -> None:
        connection = HttpServerConnection(app, peer=info.peer, client_subject=info.client_subject)
        await pump(connection, layer)
        log.info("%s: HTTP session ended after %d response(s)", info.peer, connection.responses)

    return application


_REPR = re.compile(r"""\s*:?\s*(?:bytearray\(|b['"]).*$""", re.DOTALL)


def plain_h11_reason(exc: h11.RemoteProtocolError) -> str:
    """h11's reason in plain words: what it quotes of the request (Python reprs such as
    `bytearray(b'zz\\r\\n')`) cut off, e.g. "illegal chunk header"."""
    text = _REPR.sub("", str(exc)).strip().rstrip(":") or "cannot be parsed"
    return text[:1].lower() + text[1:]
