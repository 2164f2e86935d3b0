"""The SE-TLS API of the paper (figures 10 and 11), in asyncio.

- `CardSlot`: one card (a reader or a simulated card) with its own worker thread: all card I/O
  runs there, off the event loop, one APDU exchange after another. The card holds several TLS
  sessions, each named by a handle: the paper's InUse is lifted, sessions interleave on the card,
  which is lent per operation. A card whose channel breaks is `lost`: it leaves the pool, and its
  card-mode sessions are closed at once.
- `CardSupervisor`: watches the pool (a `CardKeeper` per slot probes an idle card every few
  seconds) and brings a lost card back when its keeper can reopen it (PIN verified again).
- `PoolEvents`: what the pool reports as it happens (host.metrics counts it).
- `TlsTandem`: the cards (one pool, shared by every server), the PIN, the identity and the record
  mode; `acquire()` lends a session of a card as a `CardLease` (a handle, and one of the card's
  handshake slots until the handshake ends; when every handle is taken the least recently used
  idle session of that card is closed with close_notify to make room), `open_session()` boots a
  TLS session through it and returns a `RecordLayer` whose writes are bounded (a client that stops
  reading is cut off after the idle timeout).
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
import collections
import concurrent.futures
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from host.card.errors import MessageTooLargeError, TransportError, WrongDataError
from host.iso7816.channel import ChannelError, CommandTooLongError, IncompleteResponseError
from host.tls.alerts import LocalAlert, RemoteAlert, TlsAlert
from host.tls.handshake import Resumption, alert_in, client_hello_resumption, server_hello_of
from host.tls.numbers import AlertDescription, AlertLevel, ContentType, suite_name
from host.tls.protection import HostRecordProtection, SessionKeys
from host.tls.record_layer import CardRecordLayer, HostRecordLayer, PeerClosed, RecordLayer, RecordRejected
from host.tls.records import FlightAssembler, FlightPhase, RecordError, RecordReader, alert_record

log = logging.getLogger(__name__)
T = TypeVar("T")
K = TypeVar("K")

LINGER = 5.0   # seconds a closed connection may take to flush what is left before it is cut
# A handshake whose client has not sent its next flight this long after the card's flight went out
# may lose its handshake slot to a newcomer whose ClientHello is complete, when every slot is taken:
# a real client answers a flight within a round trip, so a second is generous, and two clients that
# stall after the server's flight cannot hold a card's two slots for the whole handshake timeout.
CLIENT_STALL_GRACE = 1.0
# The clock a card checks a client certificate's dates against may be this old (seconds): SET TIME
# goes before a client's Certificate reaches the card when the card's copy is older, so a
# certificate issued a second ago is valid (one APDU per client-auth handshake at most).
CLIENT_AUTH_CLOCK_AGE = 1.0


class HandshakeFailed(Exception):
    """The handshake could not go on for a reason other than an alert (the client left)."""


class NoCardError(Exception):
    """No card can serve: every card of the pool is lost."""


class HandshakePreempted(HandshakeFailed):
    """The client stalled after the card's flight while others waited for a card: its handshake
    slot went to a newcomer (CLIENT_STALL_GRACE)."""


class ClientNotReading(TimeoutError):
    """The client took nothing of what was sent for the write timeout: the connection was cut."""


class SessionEvicted(PeerClosed):
    """The session was closed to make room on its card: it may not use the card any more."""


class PoolEvents:
    """What the pool reports as it happens; this base ignores it all (host.metrics counts it).
    Called on the event loop's thread."""

    def handshake(self, outcome: str, card: str, suite: str, record_mode: str, seconds: float) -> None:
        """A handshake ended: `outcome` is one of OUTCOMES; `card` "" when none was lent."""

    def alert_sent(self, description: int) -> None:
        """The server sent the client an alert (RFC 5246 7.2; close_notify included)."""

    def alert_received(self, description: int) -> None:
        """The client sent an alert."""

    def card_error(self, card: str, reason: str) -> None:
        """A card left the pool (its channel failed, it was removed or reset)."""

    def card_reopened(self, card: str) -> None:
        """A lost card came back: reopened and its PIN verified again."""


# The outcomes of a connection's handshake, as PoolEvents.handshake and the status page name them.
OUTCOMES = ("ok", "client_alert", "card_alert", "timeout", "client_left", "card_failed", "no_card",
            "backlog_full", "address_limit", "bad_client_hello", "refused", "preempted", "error")


@dataclass
class HandshakeRecord:
    """One handshake, for the status page's recent list and latency plot."""

    time: float          # wall clock (s since the epoch) at its end
    client: str
    card: str
    outcome: str
    suite: str
    record_mode: str
    seconds: float


@dataclass
class CardFacts:
    """What the operator sees of a card (read by its CardKeeper when it is opened)."""

    reader: str = ""
    atr: str = ""                # hex
    subject: str = ""            # the identity's certificate subject (RFC 4514)
    not_after: str = ""          # the certificate's expiry, ISO 8601 UTC
    pin_tries_left: int | None = None


class SessionCard(Protocol):
    """What a session needs of a card (host.card.commands.SeTlsCard implements it); `handle` names
    the card's session."""

    def begin_conversation(self, identity: str, handle: int | None = None) -> None: ...
    def exchange(self, flight: bytes, handle: int | None = None) -> bytes: ...
    def handshake_finished(self, handle: int | None = None) -> bool: ...
    def unprotect(self, record: bytes, handle: int | None = None) -> tuple[int, bytes]: ...
    def protect(self, content_type: int, data: bytes, handle: int | None = None) -> bytes: ...
    def export_keys(self, handle: int | None = None) -> SessionKeys: ...
    def close_session(self, handle: int | None = None) -> None: ...
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
    started: float = field(default_factory=time.time)   # wall clock at accept
    # The commonName of the client certificate the card verified (None: no client certificate;
    # "" for one without a commonName), read from the card after the handshake (GET DATA).
    client_subject: str | None = None
    resumed: bool = False        # an abbreviated handshake (a session ID or a ticket the card issued)
    session_id: bytes = b""      # the ServerHello's session_id

    @property
    def suite_name(self) -> str:
        return suite_name(self.suite)


class CardKeeper(Protocol):
    """How the supervisor checks and reopens one card (host.card.keeper implements it). `probe`
    and `facts` run in the card's worker thread, `reopen` in a thread of its own."""

    def probe(self, card: Any) -> int:
        """Raises unless the card can serve (present, applet selected, PIN verified); returns the
        PIN tries left."""
        ...

    def reopen(self, old: Any) -> SessionCard:
        """The card opened anew and unlocked (without risking its PIN), or an exception saying why not."""
        ...

    def facts(self, card: Any) -> dict[str, Any]:
        """CardFacts's fields, read from the card."""
        ...


class AbsentCard:
    """The card of a slot whose card has not come yet: it answers nothing."""

    session_slots = handshake_slots = 1

    def traffic(self) -> tuple[int, int, int]:
        return (0, 0, 0)

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"no card yet: {name}")


class CardSlot:
    """One card and the thread that talks to it: its APDU exchanges run one after another, whichever
    session they serve. The card's session handles are lent here (`free_handles`); the sessions in
    their record phase are `established`, the candidates to close when a handle is needed.
    `generation` counts the card's comebacks: what was lent before one is not given back to it."""

    def __init__(self, name: str, card: SessionCard, keeper: CardKeeper | None = None,
                 facts: CardFacts | None = None) -> None:
        self.name = name
        self.card = card
        self.keeper = keeper
        self.facts = facts or CardFacts()
        self.lost = ""   # why the card was lost; "" while it serves
        self.lost_since = 0.0
        self.generation = 0
        self.session_slots = int(getattr(card, "session_slots", 1))
        self.handshake_slots = int(getattr(card, "handshake_slots", 1))
        self.free_handles: list[int] = list(range(self.session_slots))
        self.handshakes: set[CardLease] = set()   # leases in their handshake on this card
        self.ticket_key_id = bytes(getattr(card, "ticket_key_id", b""))   # starts the tickets it issues
        self.established: dict[int, CardLease] = {}
        self.in_flight = 0          # card operations running now (the worker thread counts them)
        self.busy_seconds = 0.0     # time the card spent on operations, since start
        self.last_answer = time.monotonic()   # when an operation last completed without a channel error
        self.handshaking = 0        # handshakes in progress on the card
        self._traffic_base = (0, 0, 0)   # APDUs and bytes of the card's earlier incarnations
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"card-{name}")

    @classmethod
    def absent(cls, name: str, keeper: CardKeeper, why: str, facts: CardFacts | None = None) -> CardSlot:
        """A card that is not there yet (its reader is empty): in the pool as lost, for the
        supervisor to open once it comes."""
        slot = cls(name, AbsentCard(), keeper, facts)
        slot.lost, slot.lost_since = why or "not there", time.time()
        return slot

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._timed, fn, *args)

    def _timed(self, fn: Callable[..., T], *args: Any) -> T:
        """Runs a card operation in the worker thread, its time counted as busy time."""
        start, generation = time.monotonic(), self.generation
        self.in_flight += 1
        answered = False
        try:
            result = fn(*args)
            answered = True
            return result
        except ChannelError:
            raise
        except Exception:   # the card answered (a refusal is an answer)
            answered = True
            raise
        finally:
            self.busy_seconds += time.monotonic() - start
            if generation == self.generation:   # not an operation of the card's earlier incarnation
                self.in_flight -= 1
                if answered:
                    self.last_answer = time.monotonic()

    def submit(self, fn: Callable[..., object], *args: Any) -> None:
        """Queues a card operation now, without waiting for it: it runs before any queued later."""
        try:
            self._executor.submit(self._timed, fn, *args)
        except RuntimeError:   # the worker is shut down: the server stops
            pass

    @property
    def busy(self) -> bool:
        """The card runs an operation or a handshake now."""
        return self.in_flight > 0 or self.handshaking > 0

    def traffic(self) -> tuple[int, int, int]:
        """APDUs, bytes to and from the card since start, over all its incarnations."""
        try:
            now = self.card.traffic()
        except Exception:  # a card object that cannot say (it counts nothing)
            now = (0, 0, 0)
        return (self._traffic_base[0] + now[0], self._traffic_base[1] + now[1], self._traffic_base[2] + now[2])

    def replace(self, card: SessionCard, facts: CardFacts) -> None:
        """The card came back as `card` (reopened): a new worker thread, every handle free."""
        self._traffic_base = self.traffic()
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1,
                                                               thread_name_prefix=f"card-{self.name}")
        self.card, self.facts = card, facts
        self.generation += 1
        self.session_slots = int(getattr(card, "session_slots", 1))
        self.handshake_slots = int(getattr(card, "handshake_slots", 1))
        self.free_handles = list(range(self.session_slots))
        self.established = {}
        self.handshaking = 0
        self.handshakes = set()
        self.in_flight = 0
        self.last_answer = time.monotonic()

    def least_recently_used(self) -> CardLease | None:
        """The established session that was idle longest, if any."""
        return min(self.established.values(), key=lambda lease: lease.last_used, default=None)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class CardLease:
    """One session of a card lent to one connection: a handle of the card, and one of its
    handshake slots until the handshake ends (`handshake_done()`: in card mode the session then
    stays, an idle candidate for eviction, and the card serves other handshakes meanwhile).
    `release()` gives everything back once, however often it is called (the record layer, the
    session's end and its `finally` all call it); unless the card ended the session itself (a
    close_notify or fatal alert it protected, a record it rejected, the keys it exported), the
    card is told to close it, before the handle can serve anyone else."""

    def __init__(self, tandem: TlsTandem, slot: CardSlot, handle: int) -> None:
        self.tandem = tandem
        self.slot = slot
        self.handle = handle
        self.returned = False
        self.handshaking = True    # holds one of the card's handshake slots
        self.card_closed = False   # the card ended the session itself
        self.closing = False       # the session may not use the card any more
        self.last_used = time.monotonic()
        self.layer: BoundedCardRecordLayer | None = None
        self.generation = slot.generation   # the card's incarnation this lease belongs to
        # Since when the handshake waits on its client (the card's flight sent, the client's next
        # flight not complete); None while the card works or before the first flight went to it.
        self.client_turn_since: float | None = None
        self.preempted = asyncio.Event()    # set: the handshake ends, its slot goes to a newcomer
        slot.handshaking += 1
        slot.handshakes.add(self)

    @property
    def current(self) -> bool:
        """The card has not been lost and reopened since this lease was made."""
        return self.generation == self.slot.generation

    def _end_handshake(self) -> None:
        self.handshaking = False
        self.slot.handshakes.discard(self)
        if self.preempted.is_set():
            self.tandem._preempting = max(0, self.tandem._preempting - 1)
        if self.current:
            self.slot.handshaking -= 1
            self.tandem._put_back(self.slot)

    def handshake_done(self) -> None:
        """Card mode: the handshake slot goes back; the session stays, idle between its records."""
        if self.handshaking:
            self._end_handshake()
        if not self.returned and self.current:
            self.slot.established[self.handle] = self

    def release(self) -> None:
        if self.returned:
            return
        self.returned = True
        self.closing = True
        if self.current:
            self.slot.established.pop(self.handle, None)
            if not self.card_closed and not self.slot.lost and hasattr(self.slot.card, "close_session"):
                self.slot.submit(self._close_on_card)
            self.slot.free_handles.append(self.handle)
        if self.handshaking:
            self._end_handshake()

    def _close_on_card(self) -> None:
        try:
            self.slot.card.close_session(self.handle)
        except Exception as exc:  # the card is gone or refused: the next conversation starts afresh anyway
            log.debug("card %s: CLOSE SESSION %d: %s", self.slot.name, self.handle, exc)

    async def evict(self) -> None:
        """Closes this idle session to make room on its card: close_notify to the client (protected
        by the card, which frees the handle), the connection closed, the handle released."""
        self.closing = True
        self.slot.established.pop(self.handle, None)
        log.info("card %s: session %d of %s closed with close_notify to make room (least recently used)",
                 self.slot.name, self.handle, self.layer.peer if self.layer is not None else "?")
        if self.layer is not None:
            await self.layer.evict()
        self.release()

    def lose(self, error: Exception) -> None:
        """The card failed (its channel broke): out of the pool until the supervisor brings it back."""
        if self.current:
            self.tandem.lose(self.slot, str(error))
        self.release()

    def cut(self) -> None:
        """The card is gone: the session may not use it any more and its connection is closed
        (no close_notify can be protected without the card's keys: the client sees the end of
        the stream at once rather than an idle timeout)."""
        self.closing = True
        if self.layer is not None:
            self.layer.cut()


class SessionOnCard:
    """One session's view of its card, what its record layer calls (in the card's worker thread):
    every call names the session's handle, and none goes out once the session is closing."""

    def __init__(self, lease: CardLease) -> None:
        self.lease = lease
        self.card = lease.slot.card

    def _check(self) -> None:
        if self.lease.closing:
            raise SessionEvicted("the session was closed to make room on the card")
        self.lease.last_used = time.monotonic()

    def unprotect(self, record: bytes) -> tuple[int, bytes]:
        self._check()
        try:
            return self.card.unprotect(record, self.lease.handle)
        except RecordRejected:
            self.lease.card_closed = True
            raise

    def protect(self, content_type: int, data: bytes) -> bytes:
        self._check()
        return self.protect_closing(content_type, data)

    def protect_closing(self, content_type: int, data: bytes) -> bytes:
        """PROTECT even while closing (the close_notify of an eviction)."""
        record = self.card.protect(content_type, data, self.lease.handle)
        if content_type == ContentType.ALERT and len(data) == 2 and (
                data[0] == AlertLevel.FATAL or data[1] == AlertDescription.CLOSE_NOTIFY):
            self.lease.card_closed = True
        return record


class _BoundedWrites(RecordLayer):
    """Every send waits for the client to take the bytes at most the idle timeout; past it the
    connection is cut (nothing more could reach the client) and ClientNotReading is raised."""

    async def _drain(self) -> None:
        try:
            async with asyncio.timeout(self.idle_timeout):
                await super()._drain()
        except TimeoutError:
            self._writer.transport.abort()
            raise ClientNotReading(f"the client read nothing for {self.idle_timeout:.0f} s") from None


class BoundedCardRecordLayer(_BoundedWrites, CardRecordLayer):
    """Records protected by the card, writes bounded; `evict()` ends the session from outside."""

    peer = "?"

    async def evict(self) -> None:
        """close_notify to the client and the connection closed, without waiting for the session's
        own task (it finds its connection closed, and the card refuses it nothing: it asks nothing)."""
        if self.closed:
            return
        self.closed = True
        try:
            on_card = self._card
            assert isinstance(on_card, SessionOnCard)
            record = await self._run(on_card.protect_closing, ContentType.ALERT,
                                     bytes([AlertLevel.WARNING, AlertDescription.CLOSE_NOTIFY]))
            self._writer.write(record)
        except Exception as exc:  # the client or the card is gone: the connection ends all the same
            log.debug("no close_notify for an evicted session: %s", exc)
        close_connection(self._writer)


    def cut(self) -> None:
        """The card is gone: the connection is closed without an alert."""
        if not self.closed:
            self.closed = True
            close_connection(self._writer)


class BoundedHostRecordLayer(_BoundedWrites, HostRecordLayer):
    """Records protected by the host (tandem mode), writes bounded."""


class TlsTandem:
    """The paper's tls-tandem: cards that serve one identity, with a record mode."""

    RECENT = 60   # handshakes kept for the status page

    def __init__(self, slots: list[CardSlot], identity: str = "server", record_mode: str = "card",
                 timeouts: Timeouts | None = None, identity_subject: str = "",
                 events: PoolEvents | None = None) -> None:
        if record_mode not in ("card", "host"):
            raise ValueError("record mode is 'card' or 'host'")
        self.identity = identity
        self.identity_subject = identity_subject
        self.record_mode = record_mode
        self.timeouts = timeouts or Timeouts()
        self.slots = slots
        # One entry per handshake the cards can run at once: a card appears as often as it has
        # handshake slots. A session takes one for its handshake, and a handle of that card.
        self.free: asyncio.Queue[CardSlot] = asyncio.Queue()
        for slot in slots:
            for _ in range(slot.handshake_slots):
                self.free.put_nowait(slot)
        self.last_session: SessionInfo | None = None
        self.events = events or PoolEvents()
        self.sessions: dict[int, SessionInfo] = {}   # open sessions, by a number of their own
        self.recent: deque[HandshakeRecord] = deque(maxlen=self.RECENT)
        self.servers: list[ServerTLS] = []           # every server fed by this pool (their backlogs)
        self._session_ids = itertools.count(1)
        self._all_lost = asyncio.Event()
        if not self.serving:   # no card at start (a device booted without its card)
            self._all_lost.set()
        # Session ID -> the card that issued it, the most recent last (at most ROUTES of them).
        self.routes: collections.OrderedDict[bytes, CardSlot] = collections.OrderedDict()
        self._waiters = 0      # acquire() calls waiting for a handshake slot
        self._preempting = 0   # handshakes preempted whose slot has not come back yet

    @property
    def serving(self) -> list[CardSlot]:
        """The cards in the pool now."""
        return [slot for slot in self.slots if not slot.lost]

    @property
    def backlog(self) -> int:
        """Connections waiting for a card, over every server."""
        return sum(server.waiting for server in self.servers)

    def handshake_ended(self, outcome: str, client: str, card: str = "", suite: str = "", record_mode: str = "",
                        seconds: float = 0.0) -> None:
        """Records a handshake's end for the status page and tells the events."""
        self.recent.append(HandshakeRecord(time.time(), client, card, outcome, suite, record_mode, seconds))
        self.events.handshake(outcome, card, suite, record_mode, seconds)

    def session_opened(self, info: SessionInfo) -> int:
        key = next(self._session_ids)
        self.sessions[key] = info
        return key

    def session_closed(self, key: int) -> None:
        self.sessions.pop(key, None)

    ROUTES = 4096

    def route(self, resumption: Resumption) -> CardSlot | None:
        """The card that can resume what a ClientHello offers: the one whose ticket key id starts
        its ticket (RFC 5077), else the one that issued its session ID; None for a new session."""
        if resumption.ticket:
            for slot in self.slots:
                if slot.ticket_key_id and resumption.ticket.startswith(slot.ticket_key_id) and not slot.lost:
                    return slot
        issuer = self.routes.get(resumption.session_id) if resumption.session_id else None
        return issuer if issuer is not None and not issuer.lost else None

    def remember(self, session_id: bytes, slot: CardSlot) -> None:
        """A session ID the card `slot` issued (or resumed): later ClientHellos offering it go there."""
        if not session_id:
            return
        self.routes[session_id] = slot
        self.routes.move_to_end(session_id)
        while len(self.routes) > self.ROUTES:
            self.routes.popitem(last=False)

    async def acquire(self, timeout: float, prefer: CardSlot | None = None) -> CardLease:
        """A session on the next card with a free handshake slot (first come, first served across
        every server of the pool), on a free handle of it or, when every handle is taken, on the
        handle of its least recently used idle session, closed with close_notify to make room;
        TimeoutError after `timeout`, NoCardError at once when every card is lost. A card to
        `prefer` (the one that can resume the client's session) is taken if it is free now; if it
        is busy, the next free card serves a full handshake."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        slot = self._take(prefer) if prefer is not None and not prefer.lost else None
        if slot is None:
            slot = await self._handshake_slot(timeout)
        while slot.lost:   # a turn of a card lost while it waited in the queue: dropped
            slot = await self._handshake_slot(max(0.0, deadline - loop.time()))
        if slot.free_handles:
            return CardLease(self, slot, slot.free_handles.pop(0))
        victim = slot.least_recently_used()
        if victim is not None:
            try:
                await victim.evict()
            except BaseException:
                self._put_back(slot)
                raise
        if not slot.free_handles:   # every session of the card is in its handshake: cannot happen
            self._put_back(slot)
            raise NoCardError(f"card {slot.name}: every session handle is taken")
        return CardLease(self, slot, slot.free_handles.pop(0))

    def _take(self, wanted: CardSlot) -> CardSlot | None:
        """`wanted` out of the free queue if it is there now (no await: no other task runs meanwhile)."""
        others: list[CardSlot] = []
        found: CardSlot | None = None
        while not self.free.empty():
            slot = self.free.get_nowait()
            if slot is wanted and found is None:
                found = slot
            else:
                others.append(slot)
        for slot in others:
            self.free.put_nowait(slot)
        return found

    async def _handshake_slot(self, timeout: float) -> CardSlot:
        if self._all_lost.is_set():
            raise NoCardError(self._lost_reasons())
        if not self.free.empty():   # at once, without yielding to the loop
            return self.free.get_nowait()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        get = asyncio.ensure_future(self.free.get())
        lost = asyncio.ensure_future(self._all_lost.wait())
        self._waiters += 1
        try:
            while not get.done() and not lost.done():
                self._preempt_stalled()
                left = deadline - loop.time()
                if left <= 0:
                    break
                await asyncio.wait({get, lost}, timeout=min(left, CLIENT_STALL_GRACE / 4),
                                   return_when=asyncio.FIRST_COMPLETED)
        except BaseException:   # cancelled: a card taken meanwhile goes back
            self._give_up(get)
            raise
        finally:
            self._waiters -= 1
            lost.cancel()
        if get.done():
            return get.result()
        self._give_up(get)
        if self._all_lost.is_set():
            raise NoCardError(self._lost_reasons())
        raise TimeoutError(f"no card free within {timeout:.0f} s")

    def _preempt_stalled(self) -> None:
        """While more connections wait for a handshake slot than preempted handshakes will give
        back, ends the handshake that has waited longest on its client (the card's flight sent,
        the client's next flight not come) for at least CLIENT_STALL_GRACE seconds: its slot goes
        to the waiting newcomer. A handshake in which the card works is never preempted."""
        now = time.monotonic()
        while self._waiters > self._preempting:
            stalled = [lease for slot in self.serving for lease in slot.handshakes
                       if lease.current and not lease.preempted.is_set() and lease.client_turn_since is not None
                       and now - lease.client_turn_since >= CLIENT_STALL_GRACE]
            if not stalled:
                return
            victim = min(stalled, key=lambda lease: lease.client_turn_since or now)
            log.info("card %s: the handshake of session %d waited %.1f s on its client while a newcomer waits "
                     "for a card: ended, its slot goes to the newcomer", victim.slot.name, victim.handle,
                     now - (victim.client_turn_since or now))
            self._preempting += 1
            victim.preempted.set()

    def _give_up(self, get: asyncio.Future[CardSlot]) -> None:
        """Ends a pending `free.get()`: the card it took, if any, goes back (a get cancelled before
        it took one loses nothing: the card stays in the queue)."""
        if not get.done():
            get.cancel()
        elif not get.cancelled() and get.exception() is None:
            self._put_back(get.result())

    def lose(self, slot: CardSlot, reason: str) -> None:
        """Takes a failed card out of the pool (one log line per card): its card-mode sessions are
        closed at once, its handshakes fail on their next operation."""
        if slot.lost:
            return
        slot.lost = reason or "its channel failed"
        slot.lost_since = time.time()
        working = self.serving
        log.error("card %s lost: %s; %d card(s) left in the pool", slot.name, slot.lost, len(working))
        self.events.card_error(slot.name, slot.lost)
        for lease in list(slot.established.values()):
            lease.cut()
        slot.established.clear()
        if not working:
            log.error("no card left: new connections get a fatal internal_error alert until a card comes back")
            self._all_lost.set()

    def revive(self, slot: CardSlot, card: SessionCard, facts: CardFacts) -> None:
        """A lost card came back (reopened, PIN verified): in the pool again with every handle free."""
        if not slot.lost:
            return
        slot.replace(card, facts)
        slot.lost = ""
        kept = []   # turns of the card's earlier incarnation are dropped from the queue
        while not self.free.empty():
            queued = self.free.get_nowait()
            if queued is not slot:
                kept.append(queued)
        for queued in kept + [slot] * slot.handshake_slots:
            self.free.put_nowait(queued)
        self._all_lost.clear()
        log.warning("card %s is back: reopened and its PIN verified; %d card(s) in the pool", slot.name,
                    len(self.serving))
        self.events.card_reopened(slot.name)

    def _lost_reasons(self) -> str:
        return "every card is lost (" + "; ".join(f"{s.name}: {s.lost}" for s in self.slots) + ")"

    def _put_back(self, slot: CardSlot) -> None:
        if not slot.lost:
            self.free.put_nowait(slot)

    async def open_session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                           lease: CardLease, first_flight: bytes = b"") -> tuple[RecordLayer, SessionInfo]:
        """Boots a TLS session on the leased card session for the client, whose `first_flight` bytes
        the caller may have read already; in host mode the card exports the keys and the session is
        given back after the handshake, in card mode it stays the card's until the session ends
        (other sessions use the card meanwhile: it is lent per operation)."""
        slot = lease.slot
        host, port = writer.get_extra_info("peername")[:2]
        peer = f"{host}:{port}"
        info = SessionInfo(peer=peer, card=slot.name)
        start = time.monotonic()
        before = await slot.run(slot.card.traffic)
        records = RecordReader()
        records.feed(first_flight)
        await asyncio.wait_for(self._handshake(reader, writer, lease, records, info), self.timeouts.handshake)
        info.handshake_seconds = time.monotonic() - start
        after = await slot.run(slot.card.traffic)   # the card's, other sessions' APDUs meanwhile included
        info.apdus, info.bytes_to_card, info.bytes_from_card = (a - b for a, b in zip(after, before))
        if self.record_mode == "host":
            keys = await slot.run(slot.card.export_keys, lease.handle)
            lease.card_closed = True   # the card forgot the session: its handle is free
            layer: RecordLayer = BoundedHostRecordLayer(reader, writer, records, self.timeouts.idle,
                                                        HostRecordProtection(keys))
            lease.release()
        else:
            async def release() -> None:
                lease.release()
            card_layer = BoundedCardRecordLayer(reader, writer, records, self.timeouts.idle, slot.run,
                                                SessionOnCard(lease), release)
            card_layer.peer = peer
            lease.layer = card_layer
            lease.handshake_done()
            layer = card_layer
        info.record_mode = layer.record_mode
        self.remember(info.session_id, slot)
        self.last_session = info
        return layer, info

    async def _handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, lease: CardLease,
                         records: RecordReader, info: SessionInfo) -> None:
        slot, handle = lease.slot, lease.handle
        # The host's clock, for client certificates' dates: SET TIME only in a handshake whose client
        # sends a certificate, before it reaches the card (one APDU per client-auth handshake at most).
        refresh_clock = getattr(slot.card, "refresh_clock", None)
        await slot.run(slot.card.begin_conversation, self.identity, handle)
        flights = FlightAssembler(transcript_copy=getattr(slot.card, "transcript_copy_type", None))
        while flights.phase is not FlightPhase.DONE:
            record = records.next_record()
            if record is None:
                if lease.client_turn_since is None:
                    lease.client_turn_since = time.monotonic()
                data = await self._client_bytes(reader, lease)
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
            lease.client_turn_since = None   # the card works: never preempted meanwhile
            if flights.client_certificate and callable(refresh_clock):
                # The card checks the certificate's dates now: its clock within CLIENT_AUTH_CLOCK_AGE.
                await slot.run(refresh_clock, CLIENT_AUTH_CLOCK_AGE)
            answer = await slot.run(slot.card.exchange, flight, handle)
            flights.answered(answer)
            if not answer:
                if (flights.resumed and flights.phase is FlightPhase.FINISHED
                        and await slot.run(slot.card.handshake_finished, handle)):
                    flights.resumed_done()   # an abbreviated handshake ends with the client's Finished
                continue  # the card waits for more of the client's flight
            writer.write(answer)
            await writer.drain()
            alert = alert_in(answer)
            if alert is not None:
                raise LocalAlert(alert, detail="the card refused the handshake")
            if not info.suite:
                hello = server_hello_of(answer)
                if hello is not None:
                    info.suite, info.session_id = hello.cipher_suite, hello.session_id
        info.resumed = flights.resumed
        client_subject = getattr(slot.card, "client_subject", None)
        # A resumed session keeps the client the card authenticated when it was established: the
        # card restores its subject from the sealed session, read like a full handshake's.
        if (flights.client_certificate or flights.resumed) and callable(client_subject):
            info.client_subject = await slot.run(client_subject, handle)


    @staticmethod
    async def _client_bytes(reader: asyncio.StreamReader, lease: CardLease) -> bytes:
        """The client's next bytes; HandshakePreempted if the lease is preempted meanwhile."""
        read = asyncio.ensure_future(reader.read(65536))
        preempted = asyncio.ensure_future(lease.preempted.wait())
        try:
            await asyncio.wait({read, preempted}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            preempted.cancel()
            if not read.done():
                read.cancel()
        if read.done() and not read.cancelled():
            return read.result()
        raise HandshakePreempted(f"the client sent nothing for {CLIENT_STALL_GRACE:.0f} s after the card's flight "
                                 "while another connection waited for a card: handshake ended to free the card")


Application = Callable[[RecordLayer, SessionInfo], Awaitable[None]]


class GenericServer:
    """Serves an application over established sessions; the paper's GenericServer.

    Whatever ends the session, it is closed with an alert where one can still be sent (close_notify,
    the record error's, internal_error for a failure of ours), logged in one line, and the record
    layer gives the card back. `serve()` returns the exception that ended the session, if any."""

    def __init__(self, application: Application, events: PoolEvents | None = None) -> None:
        self.application = application
        self.events = events or PoolEvents()

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
            if isinstance(exc, RemoteAlert):
                self.events.alert_received(exc.description)
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
            if await layer.close(alert):
                self.events.alert_sent(alert)
        return ended


def card_lost(error: Exception) -> bool:
    """The card's channel is gone (the reader, the card or the simulator failed), not merely one
    exchange: a command too long for it, or one response cut short, leave the card in the pool."""
    return isinstance(error, ChannelError) and not isinstance(error, (CommandTooLongError, IncompleteResponseError))


def handshake_outcome(error: Exception) -> str:
    """The outcome (one of OUTCOMES) of a handshake that failed with `error`."""
    if isinstance(error, RemoteAlert):
        return "client_alert"
    if isinstance(error, HandshakePreempted):
        return "preempted"
    if isinstance(error, (RecordError, MessageTooLargeError, WrongDataError)):
        return "refused"   # the client's handshake message was malformed or too large: its fault
    if isinstance(error, LocalAlert):
        return "card_alert"
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, (HandshakeFailed, ConnectionError)):
        return "client_left"
    if isinstance(error, (ChannelError, TransportError)):
        return "card_failed"
    return "error"


def handshake_alert(error: Exception) -> AlertDescription | None:
    """The alert the host sends when a handshake fails with `error` (None: none is due, because
    the client left or alerted, the card already answered one, or the client is gone silent)."""
    if isinstance(error, RecordError):
        return error.alert
    if isinstance(error, MessageTooLargeError):
        return AlertDescription.HANDSHAKE_FAILURE
    if isinstance(error, HandshakePreempted):
        return AlertDescription.INTERNAL_ERROR   # as for a full backlog: the server is busy
    if isinstance(error, (TimeoutError, HandshakeFailed, TlsAlert, ConnectionError)):
        return None
    return AlertDescription.INTERNAL_ERROR


@dataclass
class Admission(Generic[K]):
    """Sans-IO: the connections that have no card yet (they are still sending their first flight).
    At most `per_address` of them per client address and `total` in all: a newcomer over a limit
    evicts the oldest one (of its own address first), so a client that speaks at once is never
    turned away by others that stay silent, and silent ones never pile up.

    Then, once its ClientHello is complete, a connection *claims* a place until its handshake is
    over (established or failed): at most `per_address_handshakes` per address wait for a card or
    hold one for their handshake (`claim`, `release`). A newcomer over it is refused (the others
    of that address are making progress), so one address cannot fill the backlog and the cards'
    handshake slots and starve the others (nginx's limit_conn answers the excess the same way)."""

    per_address: int = 32
    total: int = 512
    per_address_handshakes: int = 8
    _waiting: dict[K, str] = field(default_factory=dict)   # insertion order is age
    _claims: dict[str, int] = field(default_factory=dict)  # address -> connections past their ClientHello

    def claim(self, address: str) -> bool:
        """A place for a connection of `address` whose ClientHello is complete; False when that
        address has `per_address_handshakes` already (the caller refuses the connection)."""
        held = self._claims.get(address, 0)
        if held >= self.per_address_handshakes:
            return False
        self._claims[address] = held + 1
        return True

    def release(self, address: str) -> None:
        """The claim of a connection of `address` ends: its handshake is over, or it is closed."""
        held = self._claims.get(address, 0) - 1
        if held > 0:
            self._claims[address] = held
        else:
            self._claims.pop(address, None)

    def claims(self, address: str) -> int:
        return self._claims.get(address, 0)

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

    def __post_init__(self) -> None:
        self.tandem.servers.append(self)
        if type(self.server.events) is PoolEvents:   # the pool's events, unless the server has its own
            self.server.events = self.tandem.events

    def _alert(self, writer: asyncio.StreamWriter, description: AlertDescription) -> None:
        """A fatal alert in the clear (before the handshake ends), counted (before it goes out)."""
        self.tandem.events.alert_sent(description)
        writer.write(alert_record(description))

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
            if not self.admission.claim(address):
                log.warning("%s %s: %d connections of its address already wait for a card or are in their "
                            "handshake: alert internal_error sent", self.name, peer,
                            self.admission.per_address_handshakes)
                self.tandem.handshake_ended("address_limit", peer)
                self._alert(writer, AlertDescription.INTERNAL_ERROR)
                return
            claimed = True

            def handshake_over() -> None:
                nonlocal claimed
                if claimed:
                    claimed = False
                    self.admission.release(address)

            try:
                lease = await self._card_for(reader, writer, peer, first)
                if lease is not None:
                    await self._session(lease, reader, writer, bytes(first), handshake_over)
            finally:
                handshake_over()
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
            self.tandem.handshake_ended("timeout", peer)
            return None
        except RecordError as exc:
            log.info("%s %s: %s: alert %s sent", self.name, peer, exc, exc.alert.name.lower())
            self.tandem.handshake_ended("bad_client_hello", peer)
            self._alert(writer, exc.alert)
            return None
        if first.alert:
            log.info("%s %s: the client sent an alert instead of a ClientHello", self.name, peer)
            self.tandem.handshake_ended("client_alert", peer)
            return None
        return first.data

    async def _card_for(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str,
                        first: bytearray) -> CardLease | None:
        """A card for a connection whose first flight is there, if at most `backlog` others wait
        for one. The connection is watched meanwhile: a client that leaves leaves the backlog, and
        anything more it sends is kept (in `first`) for the handshake."""
        if self.waiting >= self.backlog:
            # A fatal internal_error (RFC 5246 7.2.2: a failure unrelated to the peer) rather than
            # a bare close: the client can tell "busy" from a broken network.
            log.warning("%s backlog full (%d): connection from %s closed", self.name, self.backlog, peer)
            self.tandem.handshake_ended("backlog_full", peer)
            self._alert(writer, AlertDescription.INTERNAL_ERROR)
            return None
        self.queued.add(reader)
        prefer = self.tandem.route(client_hello_resumption(bytes(first)))
        acquire = asyncio.ensure_future(self.tandem.acquire(self.tandem.timeouts.backlog_wait, prefer))
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
            self.tandem.handshake_ended("timeout", peer)
        except NoCardError as exc:
            log.warning("%s %s: no card can serve: %s: alert internal_error sent", self.name, peer, exc)
            self.tandem.handshake_ended("no_card", peer)
            self._alert(writer, AlertDescription.INTERNAL_ERROR)
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
                       first: bytes, handshake_over: Callable[[], None]) -> None:
        peer = peer_of(writer)[1]
        start = time.monotonic()
        try:
            layer, info = await self.tandem.open_session(reader, writer, lease, first)
        except Exception as exc:
            self._handshake_failed(lease, writer, peer, exc)
            self.tandem.handshake_ended(handshake_outcome(exc), peer, lease.slot.name, "", self.tandem.record_mode,
                                        time.monotonic() - start)
            return
        finally:
            handshake_over()   # the address's claim (Admission) ends with the handshake
        log.info("%s %s card=%s suite=%s record=%s%s handshake=%.3fs apdus=%d bytes=%d/%d client=%s", self.name,
                 info.peer, info.card, info.suite_name, info.record_mode, " resumed" if info.resumed else "",
                 info.handshake_seconds, info.apdus, info.bytes_to_card, info.bytes_from_card,
                 "-" if info.client_subject is None else repr(info.client_subject))
        self.tandem.handshake_ended("ok", info.peer, info.card, info.suite_name, info.record_mode,
                                    info.handshake_seconds)
        key = self.tandem.session_opened(info)
        try:
            ended = await self.server.serve(layer, info)   # in card mode the session stays the card's until the end
        finally:
            self.tandem.session_closed(key)
        if ended is not None and card_lost(ended):
            lease.lose(ended)

    def _handshake_failed(self, lease: CardLease, writer: asyncio.StreamWriter, peer: str, exc: Exception) -> None:
        """One line, and the alert that is due, for a handshake that failed; a lost card leaves the pool."""
        alert = handshake_alert(exc)
        if alert is not None and not writer.transport.is_closing():
            self._alert(writer, alert)
        elif isinstance(exc, LocalAlert):   # the card's alert went out in its flight
            self.tandem.events.alert_sent(exc.description)
        if isinstance(exc, RemoteAlert):
            self.tandem.events.alert_received(exc.description)
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


class CardSupervisor:
    """Watches the pool's cards and brings lost ones back.

    Every `interval` seconds: a card that answered nothing for that long is probed by its keeper
    (one APDU exchange, queued behind the card's other operations); a failure or no answer within
    `probe_timeout` takes it out of the pool (`TlsTandem.lose`: its card-mode sessions closed at
    once). A lost card's keeper is asked to reopen it, every interval until it comes back
    (`TlsTandem.revive`); why it cannot is logged once per reason, not once per try. Cards
    without a keeper are neither probed nor reopened."""

    def __init__(self, tandem: TlsTandem, interval: float = 2.0, probe_timeout: float = 10.0,
                 reopen_timeout: float = 30.0) -> None:
        self.tandem = tandem
        self.interval = interval
        self.probe_timeout = probe_timeout
        self.reopen_timeout = reopen_timeout
        self.rounds = 0                       # completed rounds
        self._last_round: float | None = None
        self._why_not: dict[str, str] = {}    # card -> the last reason it could not be reopened

    async def run(self) -> None:
        """Checks the pool every interval, until cancelled."""
        self._last_round = time.monotonic()
        while True:
            await self.check()
            self._last_round = time.monotonic()
            await asyncio.sleep(self.interval)

    def stalled(self) -> str | None:
        """None while the supervisor completes its rounds (a watchdog's liveness check, whatever
        the number of cards), else why not. A round waits at most for its probes' and reopenings'
        timeouts."""
        if self._last_round is None:
            return "not started"
        late = time.monotonic() - self._last_round
        bound = self.interval + self.probe_timeout + 2 * self.reopen_timeout
        return f"no round for {late:.0f} s" if late > bound else None

    async def check(self) -> None:
        """One round over every card."""
        await asyncio.gather(*(self._check(slot) for slot in self.tandem.slots if slot.keeper is not None))
        self.rounds += 1

    async def _check(self, slot: CardSlot) -> None:
        if slot.lost:
            await self._reopen(slot)
            return
        quiet = time.monotonic() - slot.last_answer
        if slot.in_flight > 0:   # an operation runs: the card is alive unless it hangs
            if quiet > self.probe_timeout:
                self.tandem.lose(slot, f"no answer for {quiet:.0f} s")
            return
        if quiet < self.interval:
            return
        keeper, generation = slot.keeper, slot.generation
        assert keeper is not None
        try:
            tries = await asyncio.wait_for(slot.run(keeper.probe, slot.card), self.probe_timeout)
        except TimeoutError:
            reason = f"no answer within {self.probe_timeout:.0f} s"
        except Exception as exc:   # the keeper says why the card cannot serve
            reason = str(exc) or type(exc).__name__
        else:
            slot.facts.pin_tries_left = tries
            return
        if slot.generation == generation:
            self.tandem.lose(slot, reason)

    async def _reopen(self, slot: CardSlot) -> None:
        keeper, old = slot.keeper, slot.card
        assert keeper is not None
        try:
            card = await asyncio.wait_for(asyncio.to_thread(keeper.reopen, old), self.reopen_timeout)
            facts = CardFacts(**await asyncio.wait_for(asyncio.to_thread(keeper.facts, card), self.reopen_timeout))
        except Exception as exc:   # not back yet, or never (the keeper says which, and keeps saying it)
            reason = str(exc) or type(exc).__name__
            if self._why_not.get(slot.name) != reason:
                self._why_not[slot.name] = reason
                log.warning("card %s not reopened: %s", slot.name, reason)
            return
        self._why_not.pop(slot.name, None)
        self.tandem.revive(slot, card, facts)
