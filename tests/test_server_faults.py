"""The server daemon under clients that misbehave: each stalled or vanished client frees the card
within the handshake timeout, the backlog is bounded, and a pool of cards serves in parallel."""
from __future__ import annotations

import socket
import time

import pytest
from conftest import ServerFactory, ServerProcess
from tls12_client import RawTlsClient

from host.tls.numbers import AlertDescription
from host.tls.records import alert_record

pytestmark = pytest.mark.timeout(300)
HANDSHAKE_TIMEOUT = "3"
HANDSHAKE_SLOTS = 2   # handshakes one simulated card runs at once (SELECT tag 86)


def served(server: ServerProcess, timeout: float = 60) -> None:
    client = RawTlsClient("127.0.0.1", server.ports["tls-echo"], timeout=timeout)
    client.handshake()
    client.send_data(b"next")
    assert client.receive_data() == b"next"
    client.close()


def wait_for_log(server: ServerProcess, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in server.lines():
        assert time.monotonic() < deadline, f"{text!r} not in the server log:\n{server.lines()}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def one_card(server_factory: ServerFactory) -> ServerProcess:
    return server_factory("--sim", "--tls-echo", "0", "--handshake-timeout", HANDSHAKE_TIMEOUT,
                          "--backlog", "2")


def test_client_that_sends_nothing_frees_the_card_within_the_timeout(one_card: ServerProcess) -> None:
    silent = socket.create_connection(("127.0.0.1", one_card.ports["tls-echo"]))
    try:
        served(one_card)  # waits behind the silent client until its handshake times out
        wait_for_log(one_card, "handshake timed out")
    finally:
        silent.close()


def test_client_that_stops_mid_handshake_frees_the_card(one_card: ServerProcess) -> None:
    stalled = RawTlsClient("127.0.0.1", one_card.ports["tls-echo"])
    stalled.handshake(stop_after_hello=True)
    assert stalled.read_handshake_messages(until=14)  # the card answered flight 1, then waits
    served(one_card)
    stalled.close()


def test_client_that_disconnects_mid_handshake_frees_the_card(one_card: ServerProcess) -> None:
    gone = RawTlsClient("127.0.0.1", one_card.ports["tls-echo"])
    gone.handshake(stop_after_hello=True)
    gone.close()
    served(one_card)
    wait_for_log(one_card, "client closed the connection during the handshake")


def test_backlog_overflow_closes_the_extra_connection_at_once(one_card: ServerProcess) -> None:
    port = one_card.ports["tls-echo"]
    # Only a connection whose ClientHello is complete waits for a card (a silent one never does).
    holders = [RawTlsClient("127.0.0.1", port) for _ in range(HANDSHAKE_SLOTS + 2)]  # 2 on the card, 2 queued
    for i, holder in enumerate(holders):
        holder.handshake(stop_after_hello=True)
        if i < HANDSHAKE_SLOTS:
            holder.read_handshake_messages(until=14)  # the card answered it: it holds a handshake slot
    time.sleep(0.2)  # let the server read the others (no readiness signal exists for a queued connection)
    extra = RawTlsClient("127.0.0.1", port, timeout=10)
    extra.handshake(stop_after_hello=True)
    try:
        busy = alert_record(AlertDescription.INTERNAL_ERROR)  # a fatal alert, then the close
        assert extra.sock is not None and extra.sock.recv(len(busy)) == busy
        assert extra.sock.recv(1) == b""  # closed by the server, not left hanging
        wait_for_log(one_card, "backlog full")
    finally:
        extra.close()
        for s in holders:
            s.close()
    served(one_card)


def test_two_cards_run_two_handshakes_at_the_same_time(server_factory) -> None:  # type: ignore[no-untyped-def]
    server = server_factory("--sim", "2", "--tls-echo", "0", "--handshake-timeout", "60")
    first = RawTlsClient("127.0.0.1", server.ports["tls-echo"])
    first.handshake(stop_after_hello=True)
    first.read_handshake_messages(until=14)  # card A is inside a handshake, waiting for flight 3
    started = time.monotonic()
    served(server, timeout=30)  # card B completes a whole handshake meanwhile
    overlap = time.monotonic() - started
    print(f"second handshake completed {overlap:.3f} s into the first one's pause")
    wait_for_log(server, "card=")  # the served session's log line names the card that served it
    first.close()
