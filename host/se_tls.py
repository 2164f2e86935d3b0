"""The SE-TLS API of the paper (figures 10 and 11), in asyncio.

- `CardSlot`: one card (a reader or a simulated card) with its own worker thread: all card I/O
  runs there, off the event loop; the slot serves one handshake at a time (the paper's InUse).
  A card whose channel breaks is `lost`: it leaves the pool (bringing it back is the service's job).
- `TlsTandem`: the cards (one pool, shared by every server), the PIN, the identity and the record
  mode; `acquire()` lends a free card as a `CardLease`, `open_session()` boots a TLS session
  through it and returns a `RecordLayer` whose writes are bounded (a client that stops reading is
  cut off after the idle timeout).
- `Admission`: sans-IO bookkeeping of the connections that have no card yet, with a limit per
  client address and in all; a newcomer over a limit evicts the oldest.
- `ServerTLS`: accepts TCP connections; each is read, under its own short timeout and the
  admission limits, until its first flight (the ClientHello) is complete, and only then waits in
  a bounded backlog for a free card (the rendez-vous): a silent or slow client never holds a card.
- `GenericServer`: an application protocol served over a `RecordLayer`; whatever the application
  raises ends its session with an alert and gives the card back.

Every wait and every write has a bound; an error the host raises reaches the client as a fatal
alert and the log as one line (a traceback only for a bug, or at DEBUG for an application's).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from host.card.errors import MessageTooLargeError, TransportError
from host.iso7816.channel import ChannelError, CommandTooLongError, IncompleteResponseError
from host.tls.alerts import LocalAlert, RemoteAlert, TlsAlert
from host.tls.handshake import alert_in, suite_of_server_flight
from host.tls.numbers import AlertDescription, suite_name
from host.tls.protection import HostRecordProtection, SessionKeys
from host.tls.record_layer import CardRecordLayer, HostRecordLayer, PeerClosed, RecordLayer
from host.tls.records import FlightAssembler, FlightPhase, RecordError, RecordReader, alert_record

log = logging.getLogger(__name__)
T = TypeVar("T")
K = TypeVar("K")

LINGER = 5.0   # seconds a closed connection may take to flush what is left before it is cut


class HandshakeFailed(Exception):
    """The handshake could not go on for a reason other than an alert (the client left)."""


class NoCardError(Exception):
    """No card can serve: every card of the pool is lost."""


class ClientNotReading(TimeoutError):
    """The client took nothing of what was sent for the write timeout: the connection was cut."""


class SessionCard(Protocol):
    """What a session needs of a card (host.card.commands.SeTlsCard implements it)."""

    def begin_conversation(self, identity: str) -> None: ...
    def exchange(self, flight: bytes) -> bytes: ...
    def unprotect(self, record: bytes) -> tuple[int, bytes]: ...
    def protect(self, content_type: int, data: bytes) -> bytes: ...
    def export_keys(self) -> SessionKeys: ...
    def traffic(self) -> tuple[int, int, int]: ...


@dataclass
class Timeouts:
    handshake: float = 15.0   # from taking a card to the last server flight
    idle: float = 30.0        # between two records of an established session, and for each write
    backlog_wait: float = 30.0  # how long a connection may wait for a free card
    hello: float = 5.0        # from accept to a complete first flight (capped by `handshake`)

    @property
    def first_flight(self) -> float:
        return min(self.hello, self.handshake)


@dataclass
class SessionInfo:
    """What the status page and the log line tell about a session."""

    peer: str
    card: str
    suite: int = 0
    record_mode: str = ""
    handshake_seconds: float = 0.0
    apdus: int = 0
    bytes_to_card: int = 0
    bytes_from_card: int = 0

    @property
    def suite_name(self) -> str:
        return suite_name(self.suite)


class CardSlot:
    """One card and the thread that talks to it."""

    def __init__(self, name: str, card: SessionCard) -> None:
        self.name = name
        self.card = card
        self.lost = ""   # why the card was lost; "" while it serves
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"card-{name}")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class CardLease:
    """One loan of a card to one connection: `release()` gives it back to the pool once, however
    often it is called (the record layer, the session's end and its `finally` all call it)."""

    def __init__(self, tandem: TlsTandem, slot: CardSlot) -> None:
        self.tandem = tandem
        self.slot = slot
        self.returned = False

    def release(self) -> None:
        if not self.returned:
            self.returned = True
            self.tandem._put_back(self.slot)

    def lose(self, error: Exception) -> None:
        """The card failed (its channel broke): out of the pool for good."""
        self.tandem.lose(self.slot, str(error))
        self.release()


class _BoundedWrites(RecordLayer):
    """Every send waits for the client to take the bytes at most the idle timeout; past it the
    connection is cut (nothing more could reach the client) and ClientNotReading is raised."""

    async def send(self, records: bytes) -> None:
        try:
            await asyncio.wait_for(super().send(records), self.idle_timeout)
        except TimeoutError:
            self._writer.transport.abort()
            raise ClientNotReading(f"the client read nothing for {self.idle_timeout:.0f} s") from None


class BoundedCardRecordLayer(_BoundedWrites, CardRecordLayer):
    """Records protected by the card, writes bounded."""


class BoundedHostRecordLayer(_BoundedWrites, HostRecordLayer):
    """Records protected by the host (tandem mode), writes bounded."""


class TlsTandem:
    """The paper's tls-tandem: cards that serve one identity, with a record mode."""

    def __init__(self, slots: list[CardSlot], identity: str = "server", record_mode: str = "card",
                 timeouts: Timeouts | None = None, identity_subject: str = "") -> None:
        if record_mode not in ("card", "host"):
            raise ValueError("record mode is 'card' or 'host'")
        self.identity = identity
        self.identity_subject = identity_subject
        self.record_mode = record_mode
        self.timeouts = timeouts or Timeouts()
        self.slots = slots
        self.free: asyncio.Queue[CardSlot] = asyncio.Queue()
        for slot in slots:
            self.free.put_nowait(slot)
        self.last_session: SessionInfo | None = None
        self._all_lost = asyncio.Event()

    async def acquire(self, timeout: float) -> CardLease:
        """The next free card (first come, first served across every server of the pool);
        TimeoutError after `timeout`, NoCardError at once when every card is lost."""
        if self._all_lost.is_set():
            raise NoCardError(self._lost_reasons())
        if not self.free.empty():   # at once, without yielding to the loop
            return CardLease(self, self.free.get_nowait())
        get = asyncio.ensure_future(self.free.get())
        lost = asyncio.ensure_future(self._all_lost.wait())
        try:
            await asyncio.wait({get, lost}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:   # cancelled: a card taken meanwhile goes back
            self._give_up(get)
            raise
        finally:
            lost.cancel()
        if get.done():
            return CardLease(self, get.result())
        self._give_up(get)
        if self._all_lost.is_set():
            raise NoCardError(self._lost_reasons())
        raise TimeoutError(f"no card free within {timeout:.0f} s")

    def _give_up(self, get: asyncio.Future[CardSlot]) -> None:
        """Ends a pending `free.get()`: the card it took, if any, goes back (a get cancelled before
        it took one loses nothing: the card stays in the queue)."""
        if not get.done():
            get.cancel()
        elif not get.cancelled() and get.exception() is None:
            self._put_back(get.result())

    def lose(self, slot: CardSlot, reason: str) -> None:
        """Takes a failed card out of the pool (one log line per card)."""
        if slot.lost:
            return
        slot.lost = reason or "its channel failed"
        working = [s for s in self.slots if not s.lost]
        log.error("card %s lost: %s; %d card(s) left in the pool", slot.name, slot.lost, len(working))
        if not working:
            self._all_lost.set()

    def _lost_reasons(self) -> str:
        return "every card is lost (" + "; ".join(f"{s.name}: {s.lost}" for s in self.slots) + ")"

    def _put_back(self, slot: CardSlot) -> None:
        if not slot.lost:
            self.free.put_nowait(slot)

    async def open_session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                           lease: CardLease, first_flight: bytes = b"") -> tuple[RecordLayer, SessionInfo]:
        """Boots a TLS session on the leased card for the client, whose `first_flight` bytes the
        caller may have read already; the card is given back after the handshake in host mode,
        at the session's end in card mode."""
        slot = lease.slot
        host, port = writer.get_extra_info("peername")[:2]
        peer = f"{host}:{port}"
        info = SessionInfo(peer=peer, card=slot.name)
        start = time.monotonic()
        before = await slot.run(slot.card.traffic)
        records = RecordReader()
        records.feed(first_flight)
        await asyncio.wait_for(self._handshake(reader, writer, slot, records, info), self.timeouts.handshake)
        info.handshake_seconds = time.monotonic() - start
        after = await slot.run(slot.card.traffic)
        info.apdus, info.bytes_to_card, info.bytes_from_card = (a - b for a, b in zip(after, before))
        if self.record_mode == "host":
            keys = await slot.run(slot.card.export_keys)
            layer: RecordLayer = BoundedHostRecordLayer(reader, writer, records, self.timeouts.idle,
                                                        HostRecordProtection(keys))
            lease.release()
        else:
            async def release() -> None:
                lease.release()
            layer = BoundedCardRecordLayer(reader, writer, records, self.timeouts.idle, slot.run, slot.card,
                                           release)
        info.record_mode = layer.record_mode
        self.last_session = info
        return layer, info

    async def _handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, slot: CardSlot,
                         records: RecordReader, info: SessionInfo) -> None:
        await slot.run(slot.card.begin_conversation, self.identity)
        flights = FlightAssembler()
        while flights.phase is not FlightPhase.DONE:
            record = records.next_record()
            if record is None:
                data = await reader.read(65536)
                if not data:
                    raise HandshakeFailed("client closed the connection during the handshake")
                records.feed(data)
                continue
            flight = flights.add(record)
            if flight is None:
                continue
            if flights.alert is not None:
                level, description = flights.alert
                raise RemoteAlert(description, level, "during the handshake")
            answer = await slot.run(slot.card.exchange, flight)
            flights.answered(answer)
            if not answer:
                continue  # the card waits for more of the client's flight
            writer.write(answer)
            await writer.drain()
            alert = alert_in(answer)
            if alert is not None:
                raise LocalAlert(alert, detail="the card refused the handshake")
            if not info.suite:
                info.suite = suite_of_server_flight(answer)


Application = Callable[[RecordLayer, SessionInfo], Awaitable[None]]


class GenericServer:
    """Serves an application over established sessions; the paper's GenericServer.

    Whatever ends the session, it is closed with an alert where one can still be sent (close_notify,
    the record error's, internal_error for a failure of ours), logged in one line, and the record
    layer gives the card back. `serve()` returns the exception that ended the session, if any."""

    def __init__(self, application: Application) -> None:
        self.application = application

    async def serve(self, layer: RecordLayer, info: SessionInfo) -> Exception | None:
        alert = AlertDescription.CLOSE_NOTIFY
        ended: Exception | None = None
        try:
            await self.application(layer, info)
        except (PeerClosed, asyncio.IncompleteReadError, ConnectionError) as exc:
            log.debug("%s: the client left: %s", info.peer, exc)
        except ClientNotReading as exc:
            log.info("%s: %s: closed", info.peer, exc)
            ended = exc
        except TimeoutError:
            log.info("%s idle for %.0f s: closed", info.peer, layer.idle_timeout)
        except TlsAlert as exc:
            log.info("%s: %s", info.peer, exc)
        except RecordError as exc:
            log.info("%s: %s", info.peer, exc)
            alert = exc.alert
        except ChannelError as exc:
            log.warning("%s: the card failed during the session: %s", info.peer, exc)
            ended, alert = exc, AlertDescription.INTERNAL_ERROR
        except TransportError as exc:
            log.warning("%s: the card refused a record: %s", info.peer, exc)
            ended, alert = exc, AlertDescription.INTERNAL_ERROR
        except Exception as exc:  # an application's bug: one line, the traceback at DEBUG
            log.error("%s: the application failed: %s: %s", info.peer, type(exc).__name__, exc)
            log.debug("%s: the application's traceback", info.peer, exc_info=True)
            ended, alert = exc, AlertDescription.INTERNAL_ERROR
        finally:
            await layer.close(alert)
        return ended


def card_lost(error: Exception) -> bool:
    """The card's channel is gone (the reader, the card or the simulator failed), not merely one
    exchange: a command too long for it, or one response cut short, leave the card in the pool."""
    return isinstance(error, ChannelError) and not isinstance(error, (CommandTooLongError, IncompleteResponseError))


def handshake_alert(error: Exception) -> AlertDescription | None:
    """The alert the host sends when a handshake fails with `error` (None: none is due, because
    the client left or alerted, the card already answered one, or the client is gone silent)."""
    if isinstance(error, RecordError):
        return error.alert
    if isinstance(error, MessageTooLargeError):
        return AlertDescription.HANDSHAKE_FAILURE
    if isinstance(error, (TimeoutError, HandshakeFailed, TlsAlert, ConnectionError)):
        return None
    return AlertDescription.INTERNAL_ERROR


@dataclass
class Admission(Generic[K]):
    """Sans-IO: the connections that have no card yet (they are still sending their first flight).
    At most `per_address` of them per client address and `total` in all: a newcomer over a limit
    evicts the oldest one (of its own address first), so a client that speaks at once is never
    turned away by others that stay silent, and silent ones never pile up."""

    per_address: int = 32
    total: int = 512
    _waiting: dict[K, str] = field(default_factory=dict)   # insertion order is age

    def enter(self, key: K, address: str) -> list[K]:
        """Admits `key` from `address`; returns the connections to evict for it."""
        evicted = []
        same = [k for k, a in self._waiting.items() if a == address]
        if len(same) >= self.per_address:
            evicted.append(same[0])
            del self._waiting[same[0]]
        if len(self._waiting) >= self.total:
            oldest = next(iter(self._waiting))
            evicted.append(oldest)
            del self._waiting[oldest]
        self._waiting[key] = address
        return evicted

    def leave(self, key: K) -> None:
        self._waiting.pop(key, None)

    def __len__(self) -> int:
        return len(self._waiting)


class FirstFlight:
    """Sans-IO: a connection's bytes until its first flight (the ClientHello) is complete.
    `feed()` raises RecordError for bytes that are not a TLS handshake; `data` keeps every byte
    for the handshake."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.complete = False
        self.alert = False   # the client's first flight was an alert
        self._records = RecordReader()
        self._flights = FlightAssembler()

    def feed(self, data: bytes) -> bool:
        self.data += data
        self._records.feed(data)
        while not self.complete and (record := self._records.next_record()) is not None:
            self._flights.add(record)
            self.alert = self._flights.alert is not None
            self.complete = self._flights.hello_complete or self.alert
        return self.complete


def abandon(acquire: asyncio.Future[CardLease]) -> None:
    """Gives up a pending `TlsTandem.acquire()`: cancelled, or its card given back if it came."""
    def give_back(done: asyncio.Future[CardLease]) -> None:
        if not done.cancelled() and done.exception() is None:
            done.result().release()
    if acquire.done():
        give_back(acquire)
    else:
        acquire.add_done_callback(give_back)
        acquire.cancel()


def peer_of(writer: asyncio.StreamWriter) -> tuple[str, str]:
    """The client's address and "address:port"."""
    peername = writer.get_extra_info("peername") or ("?", 0)
    host, port = str(peername[0]), peername[1]
    return host, (f"[{host}]:{port}" if ":" in host else f"{host}:{port}")


def close_connection(writer: asyncio.StreamWriter, linger: float = LINGER) -> None:
    """Closes the connection; what is left to send may take `linger` seconds, then it is cut."""
    transport = writer.transport
    if not transport.is_closing():
        writer.close()
    if transport.get_write_buffer_size():
        asyncio.get_running_loop().call_later(linger, transport.abort)


@dataclass
class ServerTLS:
    """Accepts connections; a connection whose first flight is complete waits in a bounded backlog
    for a free card of the pool (rendez-vous); one that sends nothing never takes a card."""

    tandem: TlsTandem
    server: GenericServer
    backlog: int = 16
    name: str = "tls"
    admission: Admission[asyncio.StreamWriter] = field(default_factory=Admission)
    queued: set[asyncio.StreamReader] = field(default_factory=set, init=False)   # first flight there, no card yet

    @property
    def waiting(self) -> int:
        """Connections waiting for a card whose client is still there (its end of stream may have
        arrived before the waiting task noticed)."""
        return sum(1 for reader in self.queued if not reader.at_eof())

    async def start(self, host: str | list[str] | None, port: int) -> asyncio.base_events.Server:
        """Listens on `host` (an address, a name, or a list of them, as `asyncio.start_server`
        takes it) and `port`. Call it once per address to learn which one fails: every listener
        feeds the same backlog."""
        return await asyncio.start_server(self._accepted, host, port)

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        address, peer = peer_of(writer)
        lease: CardLease | None = None
        try:
            for evicted in self.admission.enter(writer, address):
                log.info("%s %s: evicted before its ClientHello (%d connections of its address or in all "
                         "wait for theirs)", self.name, peer_of(evicted)[1], len(self.admission))
                evicted.transport.abort()
            try:
                first = await self._first_flight(reader, writer, peer)
            finally:
                self.admission.leave(writer)
            if first is None:
                return
            lease = await self._card_for(reader, writer, peer, first)
            if lease is not None:
                await self._session(lease, reader, writer, bytes(first))
        except asyncio.CancelledError:
            # The server stops. Ending here (not re-raising) spares asyncio 3.11's callback of
            # start_server a CancelledError traceback per open connection.
            log.debug("%s %s: closed as the server stops", self.name, peer)
        except Exception:  # a bug of ours: the connection ends, the card goes back, the server goes on
            log.exception("%s %s: unexpected error", self.name, peer)
        finally:
            if lease is not None:
                lease.release()
            close_connection(writer)

    async def _first_flight(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                            peer: str) -> bytearray | None:
        """The client's bytes up to its complete first flight, read without a card; None (logged)
        if it does not come in time, is not TLS, or the client leaves."""
        first, timeout = FirstFlight(), self.tandem.timeouts.first_flight
        try:
            async with asyncio.timeout(timeout):
                while not first.complete:
                    data = await reader.read(65536)
                    if not data:
                        log.debug("%s %s: closed before its ClientHello", self.name, peer)
                        return None
                    first.feed(data)
        except TimeoutError:
            log.info("%s %s: handshake timed out: no complete ClientHello within %.0f s: closed", self.name, peer,
                     timeout)
            return None
        except RecordError as exc:
            log.info("%s %s: %s: alert %s sent", self.name, peer, exc, exc.alert.name.lower())
            writer.write(alert_record(exc.alert))
            return None
        if first.alert:
            log.info("%s %s: the client sent an alert instead of a ClientHello", self.name, peer)
            return None
        return first.data

    async def _card_for(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str,
                        first: bytearray) -> CardLease | None:
        """A card for a connection whose first flight is there, if at most `backlog` others wait
        for one. The connection is watched meanwhile: a client that leaves leaves the backlog, and
        anything more it sends is kept (in `first`) for the handshake."""
        if self.waiting >= self.backlog:
            log.warning("%s backlog full (%d): connection from %s closed", self.name, self.backlog, peer)
            return None
        self.queued.add(reader)
        acquire = asyncio.ensure_future(self.tandem.acquire(self.tandem.timeouts.backlog_wait))
        watch: asyncio.Future[bytes] | None = None
        lease: CardLease | None = None
        try:
            while not acquire.done():
                watch = asyncio.ensure_future(reader.read(65536))
                await asyncio.wait({acquire, watch}, return_when=asyncio.FIRST_COMPLETED)
                if watch.done():
                    data = watch.result()
                    if not data:
                        log.info("%s %s: client closed the connection during the handshake (waiting for a card)",
                                 self.name, peer)
                        return None
                    first += data
            lease = acquire.result()
            return lease
        except TimeoutError:
            log.warning("%s %s: no card free within %.0f s: closed", self.name, peer,
                        self.tandem.timeouts.backlog_wait)
        except NoCardError as exc:
            log.warning("%s %s: no card can serve: %s: alert internal_error sent", self.name, peer, exc)
            writer.write(alert_record(AlertDescription.INTERNAL_ERROR))
        except ConnectionError as exc:
            log.info("%s %s: client closed the connection during the handshake (waiting for a card): %s",
                     self.name, peer, exc)
        finally:
            self.queued.discard(reader)
            if watch is not None and not watch.done():
                watch.cancel()
            if lease is None:
                abandon(acquire)
        return None

    async def _session(self, lease: CardLease, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       first: bytes) -> None:
        peer = peer_of(writer)[1]
        try:
            layer, info = await self.tandem.open_session(reader, writer, lease, first)
        except Exception as exc:
            self._handshake_failed(lease, writer, peer, exc)
            return
        log.info("%s %s card=%s suite=%s record=%s handshake=%.3fs apdus=%d bytes=%d/%d", self.name,
                 info.peer, info.card, info.suite_name, info.record_mode, info.handshake_seconds, info.apdus,
                 info.bytes_to_card, info.bytes_from_card)
        ended = await self.server.serve(layer, info)   # in card mode the card stays busy until the end
        if ended is not None and card_lost(ended):
            lease.lose(ended)

    def _handshake_failed(self, lease: CardLease, writer: asyncio.StreamWriter, peer: str, exc: Exception) -> None:
        """One line, and the alert that is due, for a handshake that failed; a lost card leaves the pool."""
        alert = handshake_alert(exc)
        if alert is not None and not writer.transport.is_closing():
            writer.write(alert_record(alert))
        sent = f": alert {alert.name.lower()} sent" if alert is not None else ""
        if isinstance(exc, ChannelError):
            log.warning("%s %s: the card failed during the handshake: %s%s", self.name, peer, exc, sent)
            if card_lost(exc):
                lease.lose(exc)
        elif isinstance(exc, TimeoutError):
            log.warning("%s %s: handshake timed out after %.0f s", self.name, peer, self.tandem.timeouts.handshake)
        elif isinstance(exc, (HandshakeFailed, TlsAlert, RecordError, TransportError, ConnectionError)):
            log.warning("%s %s: %s%s", self.name, peer, exc, sent)
        else:
            log.error("%s %s: handshake failed on an unexpected error%s", self.name, peer, sent, exc_info=exc)
