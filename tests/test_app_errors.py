"""An exception in an application never costs the card (issue 10 item 4): the session ends with an
alert or a 500, the card goes back to the pool, the server goes on, and the log has one line (the
traceback only at DEBUG). The application runs over a real simulated card here."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import h11
import pytest
from fakes import Tandem
from tls12_client import AlertReceived, RawTlsClient

from host.apps.device import PLUG, BadPayload, Device, Outcome, parse_plug_state
from host.apps.https import HttpApp, HttpServerConnection
from host.card.commands import SeTlsCard, open_cards
from host.provision import DEMO_IDENTITY, DEMO_PIN, IdentitySpec, personalise_simulated
from host.se_tls import CardSlot, GenericServer, ServerTLS, SessionInfo, Timeouts, TlsTandem
from host.tls.numbers import AlertDescription
from host.tls.record_layer import RecordLayer

pytestmark = pytest.mark.timeout(120)
DEEP = b"[" * 2000


@pytest.mark.parametrize("body", [DEEP, b'{"on": 1' + b"0" * 5000 + b"}"])
def test_a_body_python_cannot_parse_is_a_bad_payload_not_an_exception(body: bytes) -> None:
    with pytest.raises(BadPayload):
        parse_plug_state(body)
    assert Device().handle("PUT", PLUG, body).outcome is Outcome.BAD_REQUEST


class ExplodingApp(HttpApp):
    def respond(self, request: h11.Request, body: bytes,  # type: ignore[override]
                client_subject: str | None = None) -> object:
        raise RuntimeError("on purpose")


def test_an_http_app_that_raises_answers_500_and_ends_the_connection(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    server = HttpServerConnection(ExplodingApp(Device(), Tandem()), peer="192.0.2.1:4000")
    server.receive_data(b"GET /sensors/temperature HTTP/1.1\r\nHost: device\r\n\r\n")
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("Host", "device")]))
    client.send(h11.EndOfMessage())
    client.receive_data(server.data_to_send())
    response = client.next_event()
    assert isinstance(response, h11.Response) and response.status_code == 500
    assert (b"connection", b"close") in response.headers
    assert server.closed
    failed = "192.0.2.1:4000: HTTP GET /sensors/temperature failed: RuntimeError: on purpose"
    assert [r.getMessage() for r in caplog.records] == [failed]


@pytest.fixture(scope="module")
def card(applet_classes: Path) -> Iterator[SeTlsCard]:
    with open_cards(sim=1) as cards:
        personalise_simulated(cards, IdentitySpec(DEMO_IDENTITY, DEMO_PIN))
        cards[0].unlock(DEMO_IDENTITY, DEMO_PIN)
        yield cards[0]


async def raises_on_purpose(layer: RecordLayer, info: SessionInfo) -> None:
    record = await layer.recv()
    assert record is not None
    await layer.decrypt(record)
    raise RuntimeError("on purpose")


def alert_for_data(port: int) -> int:
    """A full handshake, one record of data, and the alert that ends the session."""
    client = RawTlsClient("127.0.0.1", port, timeout=20)
    try:
        client.handshake()
        client.send_data(b"anything")
        with pytest.raises(AlertReceived) as alert:
            client.receive_data()
        return alert.value.description
    finally:
        client.close()


def test_an_application_that_raises_ends_the_session_with_an_alert_and_the_card_serves_the_next(
        card: SeTlsCard, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="host.se_tls")

    async def scenario() -> list[int]:
        slot = CardSlot("0:sim0", card)
        tandem = TlsTandem([slot], timeouts=Timeouts(handshake=20, idle=10))
        server = ServerTLS(tandem, GenericServer(raises_on_purpose), backlog=2, name="boom")
        listener = await server.start("127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        try:   # one card: the second session is served only if the first gave the card back
            return [await asyncio.wait_for(asyncio.to_thread(alert_for_data, port), 30) for _ in range(2)]
        finally:
            listener.close()
            slot.shutdown()

    assert asyncio.run(scenario()) == [AlertDescription.INTERNAL_ERROR] * 2
    failures = [r.getMessage().split(": ", 1)[1] for r in caplog.records if "the application failed" in r.getMessage()]
    assert failures == ["the application failed: RuntimeError: on purpose"] * 2
    assert not [r for r in caplog.records if r.exc_info and r.levelno > logging.DEBUG]   # tracebacks at DEBUG only
    assert [r for r in caplog.records if r.exc_info and r.levelno == logging.DEBUG]
