"""A real, unmodified TLS client (Python's `ssl`) driven against a card without sockets.

The client runs over a pair of `ssl.MemoryBIO`s; its output is cut into records and flights
(host.tls_records) exactly as the servers do, each flight goes to the card with
`card.exchange(flight)`, and the card's answer is fed back to the client. Every cipher suite
OpenSSL offers works, so the benchmark measures what a stock client makes the card do.

    client = MemoryTlsClient(client_context(ca_pem, CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256))
    trace = drive_handshake(card, client, card.session.stats, "server")
    record = client.protect(data)                 # what the client would send
    content_type, plain = card.unprotect(record)  # the card's record layer
"""
from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from host.tls.handshake import alert_in, suite_of_server_flight
from host.tls.numbers import CipherSuite, ContentType, suite_name
from host.tls.records import FlightAssembler, FlightPhase, Record, RecordReader, split_records

log = logging.getLogger(__name__)

PHASE_FLIGHT1 = "flight1"   # begin_conversation + the ClientHello flight
PHASE_FLIGHT3 = "flight3"   # ClientKeyExchange, ChangeCipherSpec, Finished
PHASE_RECORD = "record"     # one application-data record each way, protected by the card
PHASE_RECORD_IN = "record_in"    # the client's record, checked and decrypted by the card (UNPROTECT)
PHASE_RECORD_OUT = "record_out"  # the server's record, encrypted and sealed by the card (PROTECT)
FINISHED_SIZE = 4 + 12      # the client Finished message in the transcript (header + verify_data)
RECORD_HEADER = 5           # type, version, length (RFC 5246 6.2.1)
MAX_PLAINTEXT = 2 ** 14     # a record's plaintext at most
SERVER_NAME = "localhost"   # the demo certificates' DNS name


class HandshakeError(Exception):
    """The handshake did not complete (the card answered an alert, or the client stalled)."""


class Card(Protocol):
    """What driving a handshake needs of a card (host.card.SeTlsCard implements it)."""

    def begin_conversation(self, identity: str) -> None: ...
    def exchange(self, flight: bytes) -> bytes: ...


class Phases(Protocol):
    """host.channel.TraceStats: attributes APDUs to a named phase."""

    def phase(self, name: str) -> AbstractContextManager[object]: ...


def client_context(cafile: str, suite: int) -> ssl.SSLContext:
    """A TLS 1.2 client context that offers only `suite` and checks the server's name."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(CipherSuite(suite).openssl_name)
    context.load_verify_locations(cafile)
    context.check_hostname = True
    return context


class MemoryTlsClient:
    """An SSLObject over two memory BIOs: bytes in with feed(), bytes out with take_output()."""

    def __init__(self, context: ssl.SSLContext, server_hostname: str = SERVER_NAME,
                 session: ssl.SSLSession | None = None) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self.tls = context.wrap_bio(self._incoming, self._outgoing, server_hostname=server_hostname,
                                    session=session)

    def handshake_step(self) -> bool:
        """Advances the handshake; True once it is complete."""
        try:
            self.tls.do_handshake()
        except ssl.SSLWantReadError:
            return False
        return True

    def take_output(self) -> bytes:
        return self._outgoing.read()

    def feed(self, data: bytes) -> None:
        self._incoming.write(data)

    def protect(self, data: bytes) -> bytes:
        """The records the client sends for `data`."""
        self.tls.write(data)
        return self.take_output()

    def unprotect(self, records: bytes, size: int) -> bytes:
        """The application data of the server's `records` (at most `size` bytes)."""
        self.feed(records)
        out = b""
        while len(out) < size:
            try:
                chunk = self.tls.read(size - len(out))
            except ssl.SSLWantReadError:
                break
            if not chunk:
                break
            out += chunk
        return out


@dataclass
class HandshakeTrace:
    """What one handshake carried: the suite, and the handshake bytes each transcript digest
    of the card covered (session hash: through ClientKeyExchange; full: through client Finished)."""

    suite: int = 0
    client_hello: int = 0
    server_flight: int = 0
    client_key_exchange: int = 0
    client_record_bytes: int = 0  # what the client sent in its flights, record headers included
    card_message_bytes: int = 0   # what the host passed on to the card after reassembly
    transcript_copy_bytes: int = 0  # the transcript copy's records (headers included), client auth only

    @property
    def session_hash_bytes(self) -> int:
        return self.client_hello + self.server_flight + self.client_key_exchange

    @property
    def transcript_bytes(self) -> int:
        return self.session_hash_bytes + FINISHED_SIZE

    @property
    def suite_name(self) -> str:
        return suite_name(self.suite)


def handshake_bytes(records: bytes, before_ccs: bool = True) -> int:
    """Handshake-message bytes in plaintext records (stopping at ChangeCipherSpec)."""
    total, at = 0, 0
    while at + RECORD_HEADER <= len(records):  # by hand: a transcript copy's type is no TLS type
        content_type, length = records[at], int.from_bytes(records[at + 3:at + 5], "big")
        if content_type == ContentType.CHANGE_CIPHER_SPEC and before_ccs:
            break
        if content_type == ContentType.HANDSHAKE:
            total += length
        at += RECORD_HEADER + length
    return total


def fragment_handshake(data: bytes, size: int, after_ccs: list[bool]) -> bytes:
    """The client's plaintext handshake records cut into records of `size` bytes, as RFC 5246
    6.2.1 allows a client to; records after its ChangeCipherSpec (protected) pass unchanged.
    `after_ccs` carries that state from one call to the next."""
    out = bytearray()
    for record in split_records(data):
        if after_ccs[0] or record.content_type != ContentType.HANDSHAKE:
            after_ccs[0] = after_ccs[0] or record.content_type == ContentType.CHANGE_CIPHER_SPEC
            out += record.encode()
            continue
        for at in range(0, len(record.fragment), size):
            out += Record(record.content_type, record.version, record.fragment[at:at + size]).encode()
    return bytes(out)


def client_flights(client: MemoryTlsClient, records: RecordReader, flights: FlightAssembler,
                   cut: Callable[[bytes], bytes] = lambda data: data) -> Iterator[tuple[FlightPhase, bytes]]:
    """The client's complete flights, with the phase each one answers; `cut` re-frames the
    client's bytes first (a fragmenting client)."""
    records.feed(cut(client.take_output()))
    while (record := records.next_record()) is not None:
        phase = flights.phase
        flight = flights.add(record)
        if flight is not None:
            yield phase, flight


def drive_handshake(card: Card, client: MemoryTlsClient, stats: Phases, identity: str,
                    record_size: int | None = None, transcript_copy: int | None = None) -> HandshakeTrace:
    """One full handshake: EAP-TLS start, flight 1 and flight 3 through the card, APDUs
    attributed to the phases "flight1" and "flight3". With `record_size` the client cuts its
    plaintext handshake messages into records of that many bytes; with `transcript_copy` (its
    content type) the host puts the transcript copy before a client's CertificateVerify."""
    trace = HandshakeTrace()
    with stats.phase(PHASE_FLIGHT1):
        card.begin_conversation(identity)
    records, flights = RecordReader(), FlightAssembler(transcript_copy=transcript_copy)
    after_ccs = [False]
    cut: Callable[[bytes], bytes] = (lambda data: data) if record_size is None else (
        lambda data: fragment_handshake(data, record_size, after_ccs))
    while not client.handshake_step():
        sent = False
        for phase, flight in client_flights(client, records, flights, cut):
            sent = True
            answer = exchange(card, stats, phase, flight, trace)
            flights.answered(answer)
            client.feed(answer)
        if not sent:
            raise HandshakeError(f"the client waits for the server but has no flight to send ({flights.phase})")
    # An abbreviated handshake (RFC 5246 7.3) ends with the client's flight: the card answers nothing.
    for phase, flight in client_flights(client, records, flights, cut):
        flights.answered(exchange(card, stats, phase, flight, trace))
    trace.client_record_bytes, trace.card_message_bytes = flights.received, flights.forwarded
    if transcript_copy is not None and flights.client_certificate:
        copy = len(flights.transcript)
        trace.transcript_copy_bytes = copy + RECORD_HEADER * -(-copy // MAX_PLAINTEXT)
    return trace


def exchange(card: Card, stats: Phases, phase: FlightPhase, flight: bytes, trace: HandshakeTrace) -> bytes:
    """Sends one client flight to the card and notes the transcript bytes it and the answer add."""
    first = phase is FlightPhase.CLIENT_HELLO
    with stats.phase(PHASE_FLIGHT1 if first else PHASE_FLIGHT3):
        answer = card.exchange(flight)
    alert = alert_in(answer)
    if alert is not None:
        raise HandshakeError(f"the card answered the {'first' if first else 'third'} flight with alert {alert}")
    if first:
        trace.client_hello = handshake_bytes(flight)
        trace.server_flight = handshake_bytes(answer)
        trace.suite = suite_of_server_flight(answer)
    else:
        trace.client_key_exchange = handshake_bytes(flight)
    return answer
