"""The SE-TLS API of the paper (figures 10 and 11), in asyncio.

- `CardSlot`: one card (a reader or a simulated card) with its own worker thread: all card I/O
  runs there, off the event loop; the slot serves one handshake at a time (the paper's InUse).
- `TlsTandem`: the cards, the PIN, the identity and the record mode; `open_session()` boots a TLS
  session through a card and returns a `RecordLayer`.
- `ServerTLS`: accepts TCP connections into a bounded backlog (a full backlog closes the new
  connection at once) and hands each to a free card (the rendez-vous); every wait is bounded.
- `GenericServer`: an application protocol served over a `RecordLayer`.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from host.card.errors import TransportError
from host.tls.alerts import LocalAlert, RemoteAlert, TlsAlert
from host.tls.handshake import alert_in, suite_of_server_flight
from host.tls.numbers import suite_name
from host.tls.protection import HostRecordProtection, SessionKeys
from host.tls.record_layer import CardRecordLayer, HostRecordLayer, PeerClosed, RecordLayer
from host.tls.records import FlightAssembler, FlightPhase, RecordError, RecordReader, alert_record

log = logging.getLogger(__name__)
T = TypeVar("T")


class HandshakeFailed(Exception):
    """The handshake could not go on for a reason other than an alert (the client left)."""


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
    handshake: float = 15.0   # from accept to the last server flight
    idle: float = 30.0        # between two records of an established session
    backlog_wait: float = 30.0  # how long a connection may wait for a free card


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
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"card-{name}")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


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

    async def open_session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                           slot: CardSlot) -> tuple[RecordLayer, SessionInfo]:
        """Boots a TLS session on `slot` for the client; the slot stays busy in card mode."""
        host, port = writer.get_extra_info("peername")[:2]
        peer = f"{host}:{port}"
        info = SessionInfo(peer=peer, card=slot.name)
        start = time.monotonic()
        before = await slot.run(slot.card.traffic)
        records = RecordReader()
        await asyncio.wait_for(self._handshake(reader, writer, slot, records, info), self.timeouts.handshake)
        info.handshake_seconds = time.monotonic() - start
        after = await slot.run(slot.card.traffic)
        info.apdus, info.bytes_to_card, info.bytes_from_card = (a - b for a, b in zip(after, before))
        if self.record_mode == "host":
            keys = await slot.run(slot.card.export_keys)
            layer: RecordLayer = HostRecordLayer(reader, writer, records, self.timeouts.idle,
                                                 HostRecordProtection(keys))
            self.release(slot)
        else:
            async def release() -> None:
                self.release(slot)
            layer = CardRecordLayer(reader, writer, records, self.timeouts.idle, slot.run, slot.card, release)
        info.record_mode = layer.record_mode
        self.last_session = info
        return layer, info

    def release(self, slot: CardSlot) -> None:
        self.free.put_nowait(slot)

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
    """Serves an application over established sessions; the paper's GenericServer."""

    def __init__(self, application: Application) -> None:
        self.application = application

    async def serve(self, layer: RecordLayer, info: SessionInfo) -> None:
        try:
            await self.application(layer, info)
            await layer.close()
        except (PeerClosed, asyncio.IncompleteReadError, ConnectionError):
            await layer.close()
        except TimeoutError:
            log.info("%s idle for %.0f s: closed", info.peer, layer.idle_timeout)
            await layer.close()
        except RemoteAlert as exc:
            log.info("%s: %s", info.peer, exc)
            await layer.close()
        except RecordError as exc:
            log.info("%s: %s", info.peer, exc)
            await layer.close(exc.alert)


@dataclass
class ServerTLS:
    """Accepts connections into a bounded backlog; a free card takes the next one (rendez-vous)."""

    tandem: TlsTandem
    server: GenericServer
    backlog: int = 16
    name: str = "tls"
    pending: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = field(init=False)
    sessions: set[asyncio.Task[None]] = field(default_factory=set, init=False)
    _dispatching: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.pending = asyncio.Queue(self.backlog)

    async def start(self, host: str | list[str] | None, port: int) -> asyncio.base_events.Server:
        """Listens on `host` (an address, a name, or a list of them, as `asyncio.start_server`
        takes it) and `port`. Call it once per address to learn which one fails: every listener
        feeds the same backlog, and the card dispatchers start with the first one."""
        server = await asyncio.start_server(self._accepted, host, port)
        if not self._dispatching:
            self._dispatching = True
            for _ in self.tandem.slots:
                self._spawn(self._dispatch())
        return server

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self.sessions.add(task)
        task.add_done_callback(self.sessions.discard)

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            self.pending.put_nowait((reader, writer))
        except asyncio.QueueFull:
            log.warning("%s backlog full (%d): connection from %s closed", self.name, self.backlog,
                        writer.get_extra_info("peername"))
            writer.close()

    async def _dispatch(self) -> None:
        """One dispatcher per card: the next waiting connection, then a free card (the cards may
        be shared with other servers, so a card is only taken once a client is there)."""
        while True:
            reader, writer = await self.pending.get()
            try:
                slot = await asyncio.wait_for(self.tandem.free.get(), self.tandem.timeouts.backlog_wait)
            except TimeoutError:
                log.warning("%s %s: no card free within %.0f s: closed", self.name,
                            writer.get_extra_info("peername"), self.tandem.timeouts.backlog_wait)
                writer.close()
                continue
            await self._session(slot, reader, writer)

    async def _session(self, slot: CardSlot, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        try:
            layer, info = await self.tandem.open_session(reader, writer, slot)
        except (TimeoutError, HandshakeFailed, TlsAlert, RecordError, TransportError, ConnectionError) as exc:
            reason = "handshake timed out" if isinstance(exc, asyncio.TimeoutError) else str(exc)
            if isinstance(exc, RecordError):
                writer.write(alert_record(exc.alert))
            log.warning("%s %s: %s", self.name, peer, reason)
            await self._abort(slot, writer)
            return
        except Exception:
            log.exception("%s %s: handshake failed", self.name, peer)
            await self._abort(slot, writer)
            return
        log.info("%s %s card=%s suite=%s record=%s handshake=%.3fs apdus=%d bytes=%d/%d", self.name,
                 info.peer, info.card, info.suite_name, info.record_mode, info.handshake_seconds, info.apdus,
                 info.bytes_to_card, info.bytes_from_card)
        if layer.record_mode == "card":
            await self.server.serve(layer, info)   # the card stays busy until the session ends
        else:
            self._spawn(self.server.serve(layer, info))

    async def _abort(self, slot: CardSlot, writer: asyncio.StreamWriter) -> None:
        try:
            await writer.drain()
        except ConnectionError:
            pass
        writer.close()
        self.tandem.release(slot)
