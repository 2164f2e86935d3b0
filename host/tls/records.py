"""TLS 1.2 record framing and the client's flights, sans-IO (RFC 5246 sections 6.2 and 7.3).

The host cuts the TCP byte stream into records and normalises what the client fragmented before
the card sees it (RFC 5246 6.2.1 lets a client split any handshake message over any number of
records, down to one byte each, and the same for alerts): plaintext handshake messages are
reassembled and handed to the card in records of whole messages, alerts are reassembled, and a
record the handshake's state does not allow is refused at once with the alert it deserves. The
card still checks everything; the host only cuts the bytes it is sent (a thousand record headers
are 5 KB on a 115 kbit/s line) and answers early what it can see.
"""
from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from host.tls.numbers import (
    CLIENT_HELLO_MAX,
    CLIENT_KEY_EXCHANGE_MAX,
    HANDSHAKE_HEADER_SIZE,
    MAX_CIPHERTEXT,
    MAX_PLAINTEXT,
    RECORD_HEADER_SIZE,
    TLS12,
    AlertDescription,
    AlertLevel,
    ContentType,
    HandshakeType,
)


class RecordError(Exception):
    """The peer sent bytes that are not a TLS record; `alert` says what to answer."""

    def __init__(self, message: str, alert: AlertDescription) -> None:
        super().__init__(message)
        self.alert = alert


_RECORD_HEADER = struct.Struct(">BHH")   # type, version, length (RFC 5246 6.2.1)
_CONTENT_TYPES = frozenset(int(t) for t in ContentType)


@dataclass(frozen=True)
class Record:
    content_type: int
    version: int
    fragment: bytes

    @classmethod
    def parse_header(cls, header: bytes) -> tuple[int, int, int]:
        content_type, version, length = struct.unpack(">BHH", header)
        return content_type, version, length

    def encode(self) -> bytes:
        return _RECORD_HEADER.pack(self.content_type, self.version, len(self.fragment)) + self.fragment

    @property
    def is_alert(self) -> bool:
        return self.content_type == ContentType.ALERT


def alert_record(description: AlertDescription, level: AlertLevel = AlertLevel.FATAL) -> bytes:
    """A plaintext alert record (what a server sends before its ChangeCipherSpec)."""
    return Record(ContentType.ALERT, TLS12, bytes([level, description])).encode()


class RecordReader:
    """Cuts a byte stream into records: feed() bytes, then next_record() until it gives None."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def next_record(self) -> Record | None:
        buffer = self._buffer
        if len(buffer) < RECORD_HEADER_SIZE:
            return None
        content_type, version, length = _RECORD_HEADER.unpack_from(buffer)
        if content_type not in _CONTENT_TYPES:
            raise RecordError(f"unknown record content type {content_type}", AlertDescription.UNEXPECTED_MESSAGE)
        if version >> 8 != 3:
            raise RecordError(f"not a TLS record (version {version:#06x})", AlertDescription.PROTOCOL_VERSION)
        if length > MAX_CIPHERTEXT:
            raise RecordError(f"record of {length} bytes exceeds 2^14+2048", AlertDescription.RECORD_OVERFLOW)
        end = RECORD_HEADER_SIZE + length
        if len(buffer) < end:
            return None
        with memoryview(buffer) as view:   # one copy of the fragment, none of the rest
            fragment = bytes(view[RECORD_HEADER_SIZE:end])
        del buffer[:end]
        return Record(content_type, version, fragment)


class FlightPhase(enum.Enum):
    """Where a server is in the client's flights (RFC 5246 7.3)."""

    CLIENT_HELLO = 1          # flight 1: the ClientHello
    CLIENT_KEY_EXCHANGE = 2   # flight 3: ClientKeyExchange, ChangeCipherSpec, the encrypted Finished
    DONE = 3                  # the card answered the Finished: the handshake is over
    FINISHED = 4              # flight 3 went to the card; more of the Finished may follow


# A message to the card holds at most two records, the first full: at most MAX_CIPHERTEXT bytes,
# which every card takes (a whole protected record). Less than this much ClientHello is held back
# until more comes; a record adds at most MAX_PLAINTEXT, so what is then sent always fits.
_HELLO_STREAM_THRESHOLD = MAX_CIPHERTEXT - MAX_PLAINTEXT - 2 * RECORD_HEADER_SIZE
# The client Certificate and CertificateVerify the host reassembles: one record's worth (the card takes
# two certificates of 1 KB and answers unsupported_certificate beyond).
_CLIENT_AUTH_MESSAGE_MAX = MAX_PLAINTEXT - HANDSHAKE_HEADER_SIZE


class FlightAssembler:
    """The client's records during the handshake, turned into messages for the card.

    `add(record)` takes each record as it arrives and returns what to send to the card now (whole
    records), or None. Flight 1: the ClientHello, reassembled from any number of records and sent
    as one record, or streamed in records of up to 2^14 bytes when it is longer (the card parses
    it as a stream); the card answers each part but the last with nothing. Flight 3: the
    ClientKeyExchange reassembled into one record, the ChangeCipherSpec checked, both sent with
    the first protected record (the Finished, which the host cannot read); each further protected
    record goes to the card alone until `answered()` sees the card's answer (the card needs them
    when the client split its Finished). A complete plaintext alert is returned as one record and
    noted in `alert`. RecordError for a record the state does not allow.

    Client authentication (RFC 5246 7.4.6, 7.4.8): the client's Certificate and CertificateVerify
    are reassembled like the ClientKeyExchange and go in the same message (the card takes
    Certificate .. CertificateVerify in one message). With `transcript_copy` (a content type),
    the handshake messages ClientHello .. ClientKeyExchange, as received and as the card answered
    them (`answered()`), go before the CertificateVerify in records of that type: the transcript
    copy a card without ECDSA over a precomputed hash verifies the CertificateVerify over.
    `client_certificate` is True once a non-empty Certificate passed.
    """

    def __init__(self, transcript_copy: int | None = None) -> None:
        self.phase = FlightPhase.CLIENT_HELLO
        self.alert: tuple[int, int] | None = None  # (level, description) of the client's alert
        self.received = 0   # bytes of the client's records (headers included)
        self.forwarded = 0  # bytes returned for the card
        self._message = bytearray()   # handshake bytes of the message being reassembled
        self._hello_sent = 0          # ClientHello bytes already returned
        self._hello_version = TLS12   # the ClientHello's record version, kept in its records
        self._alert = bytearray()
        self._pending: list[bytes] = []  # flight 3's records, sent with the first protected one
        self._key_exchange_done = False
        self._after_ccs = False
        self._transcript_copy = transcript_copy
        self.transcript = bytearray()  # ClientHello .. ClientKeyExchange, kept for transcript_copy
        self.client_certificate = False
        self._verify_done = False
        self.resumed = False   # the card answered the ClientHello with an abbreviated handshake

    @property
    def hello_complete(self) -> bool:
        """The whole ClientHello arrived (it may have been returned in parts)."""
        return self.phase is not FlightPhase.CLIENT_HELLO

    def add(self, record: Record) -> bytes | None:
        """Takes a record; returns whole records for the card, or None while it waits for more."""
        self.received += RECORD_HEADER_SIZE + len(record.fragment)
        if self.phase is FlightPhase.DONE:
            raise RecordError("handshake record after the handshake", AlertDescription.UNEXPECTED_MESSAGE)
        if not self._after_ccs:
            if len(record.fragment) > MAX_PLAINTEXT:
                raise RecordError(f"plaintext record of {len(record.fragment)} bytes exceeds 2^14",
                                  AlertDescription.RECORD_OVERFLOW)
            if not record.fragment:  # RFC 5246 6.2.1
                raise RecordError("empty handshake, alert or ChangeCipherSpec record",
                                  AlertDescription.UNEXPECTED_MESSAGE)
        elif record.content_type not in (ContentType.HANDSHAKE, ContentType.ALERT):
            raise RecordError(f"content type {record.content_type} before the client's Finished",
                              AlertDescription.UNEXPECTED_MESSAGE)
        if self.phase is not FlightPhase.CLIENT_HELLO and record.version != TLS12:
            raise RecordError(f"record version {record.version:#06x} after the ServerHello",
                              AlertDescription.PROTOCOL_VERSION)
        if record.content_type == ContentType.ALERT and not self._after_ccs:
            return self._out(self._on_alert(record.fragment))
        if self.phase is FlightPhase.CLIENT_HELLO:
            return self._out(self._on_hello(record))
        if self._after_ccs:
            self._pending.append(record.encode())
            self.phase = FlightPhase.FINISHED
            return self._out(self._take())
        if record.content_type == ContentType.HANDSHAKE:
            self._on_key_exchange(record.fragment)
            return None
        if record.content_type == ContentType.CHANGE_CIPHER_SPEC:
            self._on_change_cipher_spec(record)
            return None
        raise RecordError(f"content type {record.content_type} during the handshake",
                          AlertDescription.UNEXPECTED_MESSAGE)

    def answered(self, answer: bytes) -> None:
        """The card's answer to the last message: a non-empty one after the Finished ends a full
        handshake. An answer to the ClientHello that holds a ChangeCipherSpec starts an abbreviated
        one (RFC 5246 7.3, a resumed session): the client's flight is then ChangeCipherSpec and
        Finished, no ClientKeyExchange, and the card answers it with nothing (`resumed_done()`)."""
        if answer and self.phase is FlightPhase.FINISHED and not self.resumed:
            self.phase = FlightPhase.DONE
        elif answer and self.phase is FlightPhase.CLIENT_KEY_EXCHANGE:
            try:
                records = split_records(answer)
            except RecordError:
                return  # not a flight: the card's alert ends the handshake anyway
            if not self._key_exchange_done and any(r.content_type == ContentType.CHANGE_CIPHER_SPEC
                                                   for r in records):
                self.resumed = True
                self._key_exchange_done = True   # no ClientKeyExchange in an abbreviated handshake
            elif self._transcript_copy is not None:
                self.transcript += b"".join(r.fragment for r in records if r.content_type == ContentType.HANDSHAKE)

    def resumed_done(self) -> None:
        """The card verified the client's Finished of an abbreviated handshake: it is over."""
        self.phase = FlightPhase.DONE

    def _out(self, message: bytes | None) -> bytes | None:
        if message is not None:
            self.forwarded += len(message)
        return message

    def _take(self) -> bytes:
        message, self._pending = b"".join(self._pending), []
        return message

    def _on_alert(self, fragment: bytes) -> bytes | None:
        """Alerts may be split over records too (RFC 5246 6.2.1): the first whole one counts."""
        self._alert += fragment
        if len(self._alert) < 2:
            return None
        level, description = self._alert[0], self._alert[1]
        self.alert = (level, description)
        return Record(ContentType.ALERT, TLS12, bytes((level, description))).encode()

    def _on_hello(self, record: Record) -> bytes | None:
        if record.content_type != ContentType.HANDSHAKE:
            raise RecordError(f"content type {record.content_type} instead of a ClientHello",
                              AlertDescription.UNEXPECTED_MESSAGE)
        if not self._message:
            self._hello_version = record.version
        self._message += record.fragment
        message = self._message
        if message[0] != HandshakeType.CLIENT_HELLO:
            raise RecordError(f"handshake message {message[0]} instead of a ClientHello",
                              AlertDescription.UNEXPECTED_MESSAGE)
        complete = False
        if len(message) >= HANDSHAKE_HEADER_SIZE:
            length = int.from_bytes(message[1:HANDSHAKE_HEADER_SIZE], "big")
            if length > CLIENT_HELLO_MAX:
                raise RecordError(f"ClientHello of {length} bytes: longer than any can be",
                                  AlertDescription.DECODE_ERROR)
            whole = HANDSHAKE_HEADER_SIZE + length
            if len(message) > whole:
                raise RecordError("a message follows the ClientHello in flight 1",
                                  AlertDescription.UNEXPECTED_MESSAGE)
            complete = len(message) == whole
        unsent = len(message) - self._hello_sent
        if not complete and unsent < _HELLO_STREAM_THRESHOLD:
            return None
        part = bytes(message[self._hello_sent:])
        self._hello_sent = len(message)
        if complete:
            if self._transcript_copy is not None:
                self.transcript += message
            self.phase = FlightPhase.CLIENT_KEY_EXCHANGE
            self._message = bytearray()
            self._hello_sent = 0
        return b"".join(Record(ContentType.HANDSHAKE, self._hello_version, part[i:i + MAX_PLAINTEXT]).encode()
                        for i in range(0, len(part), MAX_PLAINTEXT))

    def _on_key_exchange(self, fragment: bytes) -> None:
        """Flight 3's handshake messages before the ChangeCipherSpec, each reassembled: the
        Certificate and CertificateVerify (client authentication) and the ClientKeyExchange."""
        if self.resumed:
            raise RecordError("handshake message before the ChangeCipherSpec of an abbreviated handshake",
                              AlertDescription.UNEXPECTED_MESSAGE)
        self._message += fragment
        while self._message:
            message = self._message
            kind = message[0]
            expected = ((HandshakeType.CERTIFICATE_VERIFY,) if self._key_exchange_done
                        else (HandshakeType.CERTIFICATE, HandshakeType.CLIENT_KEY_EXCHANGE))
            if kind not in expected or (self._key_exchange_done and self._verify_done):
                raise RecordError(f"handshake message {kind} instead of a "
                                  f"{' or '.join(HandshakeType(k).name for k in expected)}",
                                  AlertDescription.UNEXPECTED_MESSAGE)
            if len(message) < HANDSHAKE_HEADER_SIZE:
                return
            length = int.from_bytes(message[1:HANDSHAKE_HEADER_SIZE], "big")
            limit = CLIENT_KEY_EXCHANGE_MAX if kind == HandshakeType.CLIENT_KEY_EXCHANGE else _CLIENT_AUTH_MESSAGE_MAX
            if length > limit:
                raise RecordError(f"{HandshakeType(kind).name} of {length} bytes", AlertDescription.DECODE_ERROR
                                  if kind == HandshakeType.CLIENT_KEY_EXCHANGE else AlertDescription.BAD_CERTIFICATE)
            whole = HANDSHAKE_HEADER_SIZE + length
            if len(message) < whole:
                return
            body, self._message = bytes(message[:whole]), message[whole:]
            if kind == HandshakeType.CERTIFICATE_VERIFY:
                if self._transcript_copy is not None:
                    copy = bytes(self.transcript)
                    self._pending.extend(Record(self._transcript_copy, TLS12, copy[i:i + MAX_PLAINTEXT]).encode()
                                         for i in range(0, len(copy), MAX_PLAINTEXT))
                self._verify_done = True
            else:
                if self._transcript_copy is not None:
                    self.transcript += body
                if kind == HandshakeType.CERTIFICATE:
                    self.client_certificate = length > 3
                else:
                    self._key_exchange_done = True
            self._pending.append(Record(ContentType.HANDSHAKE, TLS12, body).encode())

    def _on_change_cipher_spec(self, record: Record) -> None:
        """Exactly one byte, 1 (RFC 5246 7.1): a longer record holds a second ChangeCipherSpec."""
        if not self._key_exchange_done:
            raise RecordError("ChangeCipherSpec before the ClientKeyExchange", AlertDescription.UNEXPECTED_MESSAGE)
        if record.fragment[0] != 1:
            raise RecordError(f"ChangeCipherSpec of value {record.fragment[0]}", AlertDescription.DECODE_ERROR)
        if len(record.fragment) != 1:
            raise RecordError("ChangeCipherSpec repeated", AlertDescription.UNEXPECTED_MESSAGE)
        self._pending.append(record.encode())
        self._after_ccs = True


def split_records(data: bytes) -> list[Record]:
    """All the records of a complete byte string (a flight the card wrote)."""
    reader = RecordReader()
    reader.feed(data)
    records = []
    while (record := reader.next_record()) is not None:
        records.append(record)
    if reader.buffered:
        raise RecordError("truncated record", AlertDescription.DECODE_ERROR)
    return records
