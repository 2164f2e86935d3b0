"""The DTLS server over UDP: cookies, associations by address, retransmission (RFC 6347 4.2).

The host does what needs clocks and sockets; the card keeps the handshake (docs/apdu.md, DTLS):
- a ClientHello without a valid cookie gets a HelloVerifyRequest at once (0 APDUs);
- the client's flight is reassembled here (fragments in any order, duplicates dropped) and
  reaches the card once, as whole messages; while the card works on it, the client's
  retransmissions of it are dropped;
- the card's flight is fragmented here to the MTU and its epoch 0 records numbered at each
  (re)transmission (RFC 6347 4.1: a retransmitted record gets a new sequence number); it is sent
  again on timeout (4.2.4: 1 s, doubled up to 60 s) and when the client repeats its last flight.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from host.card.commands import RecordDropped
from host.dtls.records import (
    HS_CLIENT_HELLO,
    RECORD_HEADER_SIZE,
    CookieJar,
    DtlsError,
    DtlsRecord,
    HandshakeFragment,
    HostDtlsProtection,
    MessageAssembler,
    fragment_flight,
    hello_verify_request,
    parse_datagram,
    parse_fragments,
    record_bytes,
    split_client_hello,
    whole_message,
)
from host.se_tls import CardLease, SessionInfo, TlsTandem, card_lost, handshake_outcome
from host.tls.numbers import AlertDescription, AlertLevel, ContentType
from host.tls.protection import SessionKeys
from host.tls.record_layer import PeerClosed

log = logging.getLogger(__name__)
T = TypeVar("T")

HS_CERTIFICATE = 11
HS_CLIENT_KEY_EXCHANGE = 16
HS_CERTIFICATE_VERIFY = 15
QUEUE = 64   # records waiting for the handshake, datagrams waiting for the application


@dataclass
class DtlsConfig:
    mtu: int = 1200                  # bytes per datagram (the card's flight is fragmented to it)
    idle: float = 120.0              # seconds without a record before an association expires
    retransmit_initial: float = 1.0  # RFC 6347 4.2.4.1
    retransmit_max: float = 60.0
    handshake: float = 60.0          # seconds from the cookie-carrying ClientHello to established
    max_associations: int = 256


@dataclass
class Flight:
    """A flight to (re)send: units of (epoch 0?, content type, payload); epoch 0's handshake
    payloads are whole messages, fragmented and numbered at each transmission."""

    units: list[tuple[bool, int, bytes]] = field(default_factory=list)


class DtlsAssociation:
    """The interface of one association: a client address and port (see the package docstring).
    `CardDtlsAssociation` is the DTLS one; others (plain UDP) may implement it too."""

    peer: str
    address: tuple[str, int]
    info: SessionInfo
    max_payload: int

    async def recv(self) -> bytes:
        raise NotImplementedError

    async def send(self, data: bytes) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


DtlsApplication = Callable[[DtlsAssociation, SessionInfo], Awaitable[None]]


class CardDtlsAssociation(DtlsAssociation):
    """A DTLS association whose handshake ran in a card session (see the package docstring)."""

    def __init__(self, server: DtlsServer, address: tuple[str, int]) -> None:
        self.server = server
        self.address = address
        self.peer = f"{address[0]}:{address[1]}"
        self.info = SessionInfo(peer=self.peer, card="")
        self.max_payload = 0
        self.established = False
        self.closed = False
        # Bounded: a datagram that finds them full is dropped, as the network may drop it.
        self._inbox: asyncio.Queue[DtlsRecord | None] = asyncio.Queue(QUEUE)
        self._app: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE)
        self._write_seq0 = 1
        self._last_flight = Flight()
        self._protection: HostDtlsProtection | None = None
        self._lease: CardLease | None = None
        self._card_busy = False
        self._early: list[DtlsRecord] = []
        self.task: asyncio.Task[None] | None = None

    # ---- the application's side -------------------------------------------------------------

    async def recv(self) -> bytes:
        if self.closed and self._app.empty():
            raise PeerClosed("the association is closed")
        data = await asyncio.wait_for(self._app.get(), self.server.config.idle)
        if data is None:
            raise PeerClosed("the association is closed")
        return data

    async def send(self, data: bytes) -> None:
        if len(data) > self.max_payload:
            raise ValueError(f"{len(data)} bytes exceed the association's {self.max_payload}-byte payload")
        if self.closed:
            raise PeerClosed("the association is closed")
        self.server.sendto(await self._protect(ContentType.APPLICATION_DATA, data), self.address)

    async def close(self) -> None:
        await self.end(AlertDescription.CLOSE_NOTIFY)

    async def end(self, alert: int) -> None:
        """Closes with `alert` (close_notify, or a fatal one), gives the card session back; once."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):
            if self.established:
                level = AlertLevel.WARNING if alert == AlertDescription.CLOSE_NOTIFY else AlertLevel.FATAL
                self.server.sendto(await self._protect(ContentType.ALERT, bytes([level, alert])), self.address)
        for queue in (self._app, self._inbox):
            while queue.full():   # nobody will read what waits
                queue.get_nowait()
            queue.put_nowait(None)
        self._release_card()
        self.server.forget(self)

    async def _protect(self, content_type: int, data: bytes) -> bytes:
        if self._protection is not None:
            return self._protection.protect(content_type, data)
        lease = self._held()
        if lease is None:
            raise PeerClosed("the association's card session was closed")
        slot = lease.slot
        return await slot.run(slot.card.protect, content_type, data, lease.handle)

    def _held(self) -> CardLease | None:
        """Card mode: the card session, unless it was closed to make room (the LRU eviction of
        host.se_tls: the association then ends); its use time noted."""
        lease = self._lease
        if lease is None or lease.closing:
            if self.established and not self.closed:
                self.server.keep(asyncio.ensure_future(self.close()))
            return None
        lease.last_used = time.monotonic()
        return lease

    def _release_card(self) -> None:
        if self._lease is not None and not self._lease.returned:
            self._lease.release()

    # ---- datagrams in -----------------------------------------------------------------------

    def feed(self, records: list[DtlsRecord]) -> None:
        for record in records:
            if self.established:
                self._on_established(record)
            elif record.epoch == 1 and record.content_type != ContentType.HANDSHAKE:
                # Application data may overtake the end of the handshake here (the keys' export):
                # kept for when the association is established (a bounded few).
                if len(self._early) < 8:
                    self._early.append(record)
            else:
                self._queue(self._inbox, record)

    def _on_established(self, record: DtlsRecord) -> None:
        if record.epoch == 0:
            return   # the first records of a repeated flight: its Finished (below) answers it
        if record.content_type == ContentType.HANDSHAKE:
            # The client repeats its last flight (its Finished under epoch 1, a new sequence
            # number): ours was lost, sent again once per repetition (RFC 6347 4.2.4).
            self._send_flight(self._last_flight)
            return
        if self._protection is not None:
            plain = self._protection.unprotect(record)
            if plain is None:
                log.debug("%s: record of epoch %d, seq %d dropped (replay, epoch or MAC)", self.peer, record.epoch,
                          record.seq)
            else:
                self._deliver(record.content_type, plain)
        else:
            self.server.keep(asyncio.ensure_future(self._card_unprotect(record)))

    async def _card_unprotect(self, record: DtlsRecord) -> None:
        lease = self._held()
        if lease is None:
            return
        slot = lease.slot
        try:
            content_type, plain = await slot.run(slot.card.unprotect, record.encode(), lease.handle)
        except RecordDropped as exc:   # a replay, another epoch, a bad MAC (RFC 6347 4.1.2.6-7)
            log.debug("%s: record dropped: %s", self.peer, exc)
            return
        except Exception as exc:   # the card refused the record or failed: the association ends
            log.info("%s: the card refused a record: %s", self.peer, exc)
            await self.end(AlertDescription.INTERNAL_ERROR)
            return
        self._deliver(content_type, plain)

    def _queue(self, queue: asyncio.Queue[T], item: T) -> None:
        try:
            queue.put_nowait(item)
        except asyncio.QueueFull:
            log.debug("%s: %d waiting: a datagram dropped", self.peer, QUEUE)

    def _deliver(self, content_type: int, plain: bytes) -> None:
        if content_type == ContentType.APPLICATION_DATA:
            self._queue(self._app, plain)
        elif content_type == ContentType.ALERT:
            log.info("%s: the client sent alert %s", self.peer, plain.hex())
            self.server.keep(asyncio.ensure_future(self.close()))

    # ---- flights out ------------------------------------------------------------------------

    def _send_flight(self, flight: Flight) -> None:
        mtu = self.server.config.mtu
        records: list[bytes] = []
        for epoch0, content_type, payload in flight.units:
            if not epoch0:
                records.append(payload)
                continue
            if content_type == ContentType.HANDSHAKE:
                pieces = fragment_flight([payload], mtu - RECORD_HEADER_SIZE)
            else:
                pieces = [payload]
            for piece in pieces:
                records.append(record_bytes(content_type, 0, self._write_seq0, piece))
                self._write_seq0 += 1
        datagram = b""
        for record in records:
            if datagram and len(datagram) + len(record) > mtu:
                self.server.sendto(datagram, self.address)
                datagram = b""
            datagram += record
        if datagram:
            self.server.sendto(datagram, self.address)

    @staticmethod
    def _flight_of(answer: bytes) -> Flight:
        flight = Flight()
        for record in parse_datagram(answer):
            if record.epoch != 0:
                flight.units.append((False, record.content_type, record.encode()))
            elif record.content_type == ContentType.HANDSHAKE:
                for f in parse_fragments(record.fragment):
                    flight.units.append((True, ContentType.HANDSHAKE, whole_message(f)))
            else:
                flight.units.append((True, record.content_type, record.fragment))
        return flight

    # ---- the handshake ----------------------------------------------------------------------

    async def handshake(self, hello: bytes) -> None:
        """Runs the handshake from the ClientHello with a valid cookie (its whole DTLS message)."""
        tandem = self.server.tandem
        config = self.server.config
        start = time.monotonic()
        try:
            self._lease = lease = await tandem.acquire(config.handshake)
            slot = lease.slot
            self.info.card = slot.name
            before = await slot.run(slot.card.traffic)
            await slot.run(slot.card.begin_conversation, f"{tandem.identity}@dtls", lease.handle)
            answer = await self._card(record_bytes(ContentType.HANDSHAKE, 0, 0, hello))
            flight2 = self._flight_of(answer)
            self._last_flight = flight2
            self.info.suite = self._suite_of(flight2)
            if self._alert_in(flight2):
                self._send_flight(flight2)
                raise PeerClosed("the card refused the ClientHello")
            flight3 = await asyncio.wait_for(self._client_flight3(flight2, hello), config.handshake)
            answer = await self._card(flight3)
            final = self._flight_of(answer)
            self._last_flight = final
            self._send_flight(final)
            if self._alert_in(final):
                raise PeerClosed("the card refused the client's Finished")
            after = await slot.run(slot.card.traffic)
            self.info.apdus, self.info.bytes_to_card, self.info.bytes_from_card = (a - b for a, b in zip(after, before))
            self.info.handshake_seconds = time.monotonic() - start
            if tandem.record_mode == "host":
                keys: SessionKeys = await slot.run(slot.card.export_keys, lease.handle)
                lease.card_closed = True
                self.info.suite = keys.suite
                self._protection = HostDtlsProtection(keys)
                lease.release()
            else:
                lease.handshake_done()
            self.info.record_mode = tandem.record_mode
            overhead = RECORD_HEADER_SIZE + 8 + (self._protection.tag if self._protection else 16)
            self.max_payload = config.mtu - overhead
            self.established = True
            tandem.last_session = self.info
            for record in self._early:
                self._on_established(record)
            self._early.clear()
        except (asyncio.CancelledError, PeerClosed, TimeoutError) as exc:
            log.info("%s: DTLS handshake ended: %s", self.peer, exc or type(exc).__name__)
            outcome = "timeout" if isinstance(exc, TimeoutError) else "client_left"
            if "refused" in str(exc):
                outcome = "card_alert"
            tandem.handshake_ended(outcome, self.peer, self.info.card, "", tandem.record_mode)
            await self.close()
            return
        except Exception as exc:
            log.warning("%s: DTLS handshake failed: %s: %s", self.peer, type(exc).__name__, exc)
            tandem.handshake_ended(handshake_outcome(exc), self.peer, self.info.card, "", tandem.record_mode)
            if self._lease is not None and card_lost(exc):
                self._lease.lose(exc)   # the card's channel is gone: out of the pool (host.se_tls)
            await self.close()
            return
        log.info("dtls %s card=%s suite=%s record=%s handshake=%.3fs apdus=%d bytes=%d/%d", self.peer,
                 self.info.card, self.info.suite_name, self.info.record_mode, self.info.handshake_seconds,
                 self.info.apdus, self.info.bytes_to_card, self.info.bytes_from_card)
        tandem.handshake_ended("ok", self.peer, self.info.card, self.info.suite_name, self.info.record_mode,
                               self.info.handshake_seconds)
        self.server.spawn(self)

    async def _card(self, flight: bytes) -> bytes:
        lease = self._lease
        assert lease is not None
        slot = lease.slot
        self._card_busy = True
        try:
            return await slot.run(slot.card.exchange, flight, lease.handle)
        finally:
            self._card_busy = False

    @staticmethod
    def _suite_of(flight: Flight) -> int:
        """The cipher suite of the ServerHello in the card's flight (0 if none)."""
        for epoch0, content_type, message in flight.units:
            if epoch0 and content_type == ContentType.HANDSHAKE and message[:1] == b"\x02":
                body = message[12:]
                at = 2 + 32 + 1 + body[34] if len(body) > 34 else 0
                if at and len(body) >= at + 2:
                    return int.from_bytes(body[at:at + 2], "big")
        return 0

    @staticmethod
    def _alert_in(flight: Flight) -> bool:
        return any(ct == ContentType.ALERT for _, ct, _ in flight.units)

    async def _client_flight3(self, flight2: Flight, hello: bytes) -> bytes:
        """Waits for the client's whole second flight, sending flight 2 again on timeout
        (RFC 6347 4.2.4) or when the ClientHello comes again; returns it as the card takes it."""
        config = self.server.config
        messages = MessageAssembler(next_seq=2)
        whole: list[bytes] = []
        ccs = False
        finished: list[bytes] = []
        timer = config.retransmit_initial
        self._send_flight(flight2)
        # Drop what came while the card worked: the ClientHello's retransmissions.
        while not self._inbox.empty():
            record = self._inbox.get_nowait()
            if record is not None:
                self._take3(record, messages, whole, finished)
                ccs = ccs or record.content_type == ContentType.CHANGE_CIPHER_SPEC
        while True:
            if ccs and finished and self._flight3_complete(whole):
                records = [record_bytes(ContentType.HANDSHAKE, 0, 0, m) for m in whole]
                records.append(record_bytes(ContentType.CHANGE_CIPHER_SPEC, 0, 0, b"\x01"))
                return b"".join(records) + finished[0]
            try:
                record = await asyncio.wait_for(self._inbox.get(), timer)
            except TimeoutError:
                timer = min(timer * 2, config.retransmit_max)
                log.debug("%s: no flight 3 yet: flight 2 again (next wait %.0f s)", self.peer, timer)
                self._send_flight(flight2)
                continue
            if record is None:
                raise PeerClosed("closed during the handshake")
            if record.content_type == ContentType.ALERT and record.epoch == 0:
                raise PeerClosed(f"the client sent alert {record.fragment.hex()}")
            if record.epoch == 0 and record.content_type == ContentType.HANDSHAKE and any(
                    f.msg_type == HS_CLIENT_HELLO for f in parse_fragments(record.fragment)):
                self._send_flight(flight2)   # the client repeats its hello: flight 2 was lost
                continue
            ccs = ccs or (record.epoch == 0 and record.content_type == ContentType.CHANGE_CIPHER_SPEC)
            self._take3(record, messages, whole, finished)

    @staticmethod
    def _take3(record: DtlsRecord, messages: MessageAssembler, whole: list[bytes], finished: list[bytes]) -> None:
        if record.epoch == 0 and record.content_type == ContentType.HANDSHAKE:
            for f in parse_fragments(record.fragment):
                if f.msg_type != HS_CLIENT_HELLO:
                    messages.add(f)
            while (m := messages.pop()) is not None:
                whole.append(m)
        elif record.epoch == 1 and record.content_type == ContentType.HANDSHAKE and not finished:
            finished.append(record.encode())

    @staticmethod
    def _flight3_complete(whole: list[bytes]) -> bool:
        types = [m[0] for m in whole]
        if HS_CLIENT_KEY_EXCHANGE not in types:
            return False
        return HS_CERTIFICATE not in types or HS_CERTIFICATE_VERIFY in types


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, server: DtlsServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.server.on_datagram(data, (addr[0], addr[1]))


class DtlsServer:
    """Serves `application` over DTLS on one UDP socket (see the package docstring)."""

    def __init__(self, tandem: TlsTandem, application: DtlsApplication, config: DtlsConfig | None = None) -> None:
        self.tandem = tandem
        self.application = application
        self.config = config or DtlsConfig()
        self.port = 0
        self.cookies = CookieJar()
        self.associations: dict[tuple[str, int], CardDtlsAssociation] = {}
        self.hello_verify_requests = 0
        # Datagrams and their bytes each way (the benchmark's and the status's figures).
        self.datagrams_in = self.datagrams_out = self.bytes_in = self.bytes_out = 0
        # ClientHellos in fragments (a small MTU, or a long cookie-carrying hello), by address: at
        # most HELLO_PARTS of them, the oldest dropped; a fragment of a hello holds no card.
        self._hello_parts: dict[tuple[str, int], tuple[DtlsRecord, MessageAssembler]] = {}
        self._transport: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self), local_addr=(host, port))
        self._transport = transport
        self.port = transport.get_extra_info("sockname")[1]

    async def close(self) -> None:
        for association in list(self.associations.values()):
            await association.close()
        for task in list(self._tasks):
            task.cancel()
        if self._transport is not None:
            self._transport.close()

    def sendto(self, data: bytes, address: tuple[str, int]) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self.datagrams_out += 1
            self.bytes_out += len(data)
            self._transport.sendto(data, address)

    def forget(self, association: CardDtlsAssociation) -> None:
        if self.associations.get(association.address) is association:
            del self.associations[association.address]

    def keep(self, task: asyncio.Task[None]) -> None:
        """Holds a task of the server until it ends (the loop keeps only weak references)."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def spawn(self, association: CardDtlsAssociation) -> None:
        self.keep(asyncio.ensure_future(self._serve(association)))

    async def _serve(self, association: CardDtlsAssociation) -> None:
        alert = AlertDescription.CLOSE_NOTIFY
        key = self.tandem.session_opened(association.info)   # the status page's open sessions
        try:
            await self.application(association, association.info)
        except (PeerClosed, TimeoutError) as exc:
            log.debug("%s: association ended: %s", association.peer, exc)
        except Exception as exc:
            log.error("%s: the application failed: %s: %s", association.peer, type(exc).__name__, exc)
            alert = AlertDescription.INTERNAL_ERROR
        finally:
            self.tandem.session_closed(key)
            await association.end(alert)

    def on_datagram(self, data: bytes, address: tuple[str, int]) -> None:
        self.datagrams_in += 1
        self.bytes_in += len(data)
        try:
            records = parse_datagram(data)
        except DtlsError as exc:
            log.debug("%s:%d: datagram dropped: %s", address[0], address[1], exc)
            return
        records = self._whole_hellos(records, address)
        association = self.associations.get(address)
        log.debug("%s:%d: datagram of %d bytes: %s", address[0], address[1], len(data),
                  ", ".join(f"{r.content_type}/{r.epoch}/{r.seq}" for r in records))
        hello = self._client_hello(records)
        if hello is not None:
            record, fragment = hello
            if association is not None and not association.established and fragment.message_seq != 0:
                association.feed(records)   # a retransmitted hello during the handshake
                return
            try:
                cookie, rest = split_client_hello(fragment.body)
            except DtlsError:
                return
            if not cookie or not self.cookies.valid(address, rest, cookie):
                self.hello_verify_requests += 1
                self.sendto(hello_verify_request(fragment, record.seq, self.cookies.cookie(address, rest)), address)
                return
            if association is not None:
                # RFC 6347 4.2.8: a fresh handshake from the same address and port ends the old one.
                log.info("%s:%d: a new handshake replaces the association", address[0], address[1])
                self.keep(asyncio.ensure_future(association.close()))
            if len(self.associations) >= self.config.max_associations:
                log.warning("%s:%d: refused: %d associations", address[0], address[1], len(self.associations))
                return
            association = CardDtlsAssociation(self, address)
            self.associations[address] = association
            association.task = asyncio.ensure_future(association.handshake(whole_message(fragment)))
            self.keep(association.task)
            return
        if association is not None:
            association.feed(records)

    HELLO_PARTS = 64

    def _whole_hellos(self, records: list[DtlsRecord], address: tuple[str, int]) -> list[DtlsRecord]:
        """Gathers the fragments of a ClientHello (RFC 6347 4.2.3); once whole, it replaces them as
        one record, as if it had come unfragmented."""
        out = []
        for record in records:
            if record.epoch != 0 or record.content_type != ContentType.HANDSHAKE:
                out.append(record)
                continue
            try:
                fragments = parse_fragments(record.fragment)
            except DtlsError:
                continue
            partial = [f for f in fragments if f.msg_type == HS_CLIENT_HELLO and not f.whole]
            if not partial:
                out.append(record)
                continue
            first, parts = self._hello_parts.pop(address, (record, MessageAssembler(next_seq=partial[0].message_seq,
                                                                                     max_length=4096)))
            for f in partial:
                parts.add(f)
            message = parts.pop()
            if message is None:
                if len(self._hello_parts) >= self.HELLO_PARTS:
                    del self._hello_parts[next(iter(self._hello_parts))]
                self._hello_parts[address] = (first, parts)
                continue
            out.append(DtlsRecord(record.content_type, record.version, 0, first.seq, message))
        return out

    @staticmethod
    def _client_hello(records: list[DtlsRecord]) -> tuple[DtlsRecord, HandshakeFragment] | None:
        """A whole ClientHello of epoch 0 in the datagram, if any (a fragmented one is not
        answered: every client sends its hello whole)."""
        for record in records:
            if record.epoch == 0 and record.content_type == ContentType.HANDSHAKE:
                try:
                    fragments = parse_fragments(record.fragment)
                except DtlsError:
                    return None
                for f in fragments:
                    if f.msg_type == HS_CLIENT_HELLO and f.whole:
                        return record, f
        return None


__all__ = ["CardDtlsAssociation", "DtlsApplication", "DtlsAssociation", "DtlsConfig", "DtlsServer"]
