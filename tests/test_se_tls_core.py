"""The host's bookkeeping around the card pool, without sockets or cards: admission of connections
that have no card yet (issue 10 item 1), their first flight, the pool's loans (a card is never lost
to a cancelled wait), a lost card, and which alert a failed handshake owes the client."""
from __future__ import annotations

import asyncio
import os

import pytest
from tls12_client import HANDSHAKE, client_hello, record

from host.card.errors import CardFailureError, MessageTooLargeError
from host.iso7816.channel import ChannelError, CommandTooLongError, IncompleteResponseError
from host.se_tls import (
    Admission,
    CardSlot,
    FirstFlight,
    HandshakeFailed,
    NoCardError,
    TlsTandem,
    abandon,
    card_lost,
    handshake_alert,
)
from host.tls.alerts import LocalAlert, RemoteAlert
from host.tls.numbers import AlertDescription
from host.tls.records import RecordError

pytestmark = pytest.mark.timeout(30)


def test_a_newcomer_over_its_address_limit_evicts_that_address_oldest_only() -> None:
    admission: Admission[str] = Admission(per_address=3, total=100)
    for i in range(3):
        assert admission.enter(f"silent{i}", "10.0.0.1") == []
    assert admission.enter("other", "10.0.0.2") == []
    assert admission.enter("curl", "10.0.0.1") == ["silent0"]
    assert admission.enter("again", "10.0.0.1") == ["silent1"]
    admission.leave("curl")
    assert admission.enter("third", "10.0.0.1") == []
    assert len(admission) == 4


def test_an_address_past_its_handshake_claims_is_refused_and_others_are_not() -> None:
    admission: Admission[str] = Admission(per_address_handshakes=2)
    assert admission.claim("10.0.0.1") and admission.claim("10.0.0.1")
    assert not admission.claim("10.0.0.1")          # a third connection of that address: refused
    assert admission.claim("10.0.0.2")              # another address is not
    admission.release("10.0.0.1")
    assert admission.claims("10.0.0.1") == 1
    assert admission.claim("10.0.0.1")              # a place freed by a handshake that ended
    admission.release("10.0.0.2")
    assert admission.claims("10.0.0.2") == 0


def test_over_the_total_the_oldest_of_all_is_evicted() -> None:
    admission: Admission[int] = Admission(per_address=10, total=4)
    for i in range(4):
        admission.enter(i, f"10.0.0.{i}")
    assert admission.enter(4, "10.0.0.9") == [0]
    assert len(admission) == 4


def test_the_first_flight_is_complete_at_the_last_byte_of_the_client_hello_and_keeps_every_byte() -> None:
    hello = record(HANDSHAKE, client_hello(os.urandom(32), (0xC02B,)), 0x0301)
    first = FirstFlight()
    for i, byte in enumerate(hello):
        assert first.feed(bytes([byte])) is (i == len(hello) - 1)
    assert bytes(first.data) == hello and not first.alert


def test_bytes_that_are_not_tls_are_refused_with_an_alert_before_any_card() -> None:
    with pytest.raises(RecordError):
        FirstFlight().feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")


def test_an_alert_instead_of_a_client_hello_ends_the_first_flight() -> None:
    first = FirstFlight()
    assert first.feed(bytes([21, 3, 3, 0, 2, 2, 40]))
    assert first.alert


@pytest.mark.parametrize(("error", "alert"), [
    (MessageTooLargeError("a message of 20000 bytes exceeds the card's capacity"), AlertDescription.HANDSHAKE_FAILURE),
    (CardFailureError("PROCESS EAP: card answered 6F03", 0x6F03), AlertDescription.INTERNAL_ERROR),
    (ChannelError("the virtual card closed the connection"), AlertDescription.INTERNAL_ERROR),
    (RecordError("expected a ClientHello", AlertDescription.UNEXPECTED_MESSAGE), AlertDescription.UNEXPECTED_MESSAGE),
    (ValueError("a bug"), AlertDescription.INTERNAL_ERROR),
    (HandshakeFailed("client closed the connection during the handshake"), None),
    (RemoteAlert(AlertDescription.DECRYPT_ERROR), None),
    (LocalAlert(AlertDescription.DECRYPT_ERROR), None),   # the card's alert went out already
    (TimeoutError(), None),
])
def test_an_error_the_host_raises_in_a_handshake_owes_the_client_an_alert(
        error: Exception, alert: AlertDescription | None) -> None:
    assert handshake_alert(error) == alert


def slots(n: int) -> list[CardSlot]:
    return [CardSlot(f"{i}:fake", object()) for i in range(n)]  # type: ignore[arg-type]


def test_a_wait_for_a_card_abandoned_as_the_card_comes_gives_it_back() -> None:
    async def scenario() -> int:
        tandem = TlsTandem(slots(1))
        held = await tandem.acquire(1)
        waiting = asyncio.ensure_future(tandem.acquire(5))
        await asyncio.sleep(0)          # the waiter is inside its wait
        held.release()                  # the card goes to the waiter ...
        abandon(waiting)                # ... which gives up before it runs again
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        again = await tandem.acquire(1)  # the card is in the pool, not lost with the waiter
        again.release()
        again.release()                  # a lease gives its card back once
        return tandem.free.qsize()

    assert asyncio.run(scenario()) == 1


def test_a_lost_card_leaves_the_pool_and_when_all_are_lost_waiters_hear_it_at_once() -> None:
    async def scenario() -> None:
        tandem = TlsTandem(slots(2))
        first, second = await tandem.acquire(1), await tandem.acquire(1)
        waiting = asyncio.ensure_future(tandem.acquire(30))
        first.lose(ChannelError("the virtual card closed the connection"))
        second.lose(ChannelError("the virtual card closed the connection"))
        with pytest.raises(NoCardError, match="every card is lost"):
            await asyncio.wait_for(waiting, 5)
        with pytest.raises(NoCardError):
            await tandem.acquire(30)
        assert tandem.free.empty()

    asyncio.run(scenario())


def test_only_a_channel_that_is_gone_counts_as_a_lost_card() -> None:
    assert card_lost(ChannelError("the virtual card closed the connection"))
    assert not card_lost(CommandTooLongError("300 data bytes need command chaining or extended length"))
    assert not card_lost(IncompleteResponseError("GET RESPONSE asked for 256 bytes and got 10"))
    assert not card_lost(CardFailureError("PROCESS EAP: card answered 6F03", 0x6F03))
