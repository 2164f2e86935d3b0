"""TLS 1.2 record framing and flight assembly, sans-IO (RFC 5246 section 6.2).

The host never looks inside the handshake (the card does); it only needs to cut the TCP byte
stream into records, and to know when a client's flight is complete so that the whole flight
goes to the card in one EAP-TLS message.
"""
from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from host.tls.numbers import (
    MAX_CIPHERTEXT,
    RECORD_HEADER_SIZE,
    TLS12,
    AlertDescription,
    AlertLevel,
    ContentType,
)


class RecordError(Exception):
    """The peer sent bytes that are not a TLS record; `alert` says what to answer."""

    def __init__(self, message: str, alert: AlertDescription) -> None:
        super().__init__(message)
        self.alert = alert


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
        return struct.pack(">BHH", self.content_type, self.version, len(self.fragment)) + self.fragment

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
        if len(self._buffer) < RECORD_HEADER_SIZE:
            return None
        content_type, version, length = Record.parse_header(bytes(self._buffer[:RECORD_HEADER_SIZE]))
        if content_type not in ContentType.__members__.values():
            raise RecordError(f"unknown record content type {content_type}", AlertDescription.UNEXPECTED_MESSAGE)
        if version >> 8 != 3:
            raise RecordError(f"not a TLS record (version {version:#06x})", AlertDescription.PROTOCOL_VERSION)
        if length > MAX_CIPHERTEXT:
            raise RecordError(f"record of {length} bytes exceeds 2^14+2048", AlertDescription.RECORD_OVERFLOW)
        if len(self._buffer) < RECORD_HEADER_SIZE + length:
            return None
        fragment = bytes(self._buffer[RECORD_HEADER_SIZE:RECORD_HEADER_SIZE + length])
        del self._buffer[:RECORD_HEADER_SIZE + length]
        return Record(content_type, version, fragment)


class FlightPhase(enum.Enum):
    CLIENT_HELLO = 1
    CLIENT_KEY_EXCHANGE = 2
    DONE = 3


class FlightAssembler:
    """Groups a client's handshake records into flights (RFC 5246 7.3).

    Flight 1 ends with the ClientHello message, flight 3 with the first record after the client's
    ChangeCipherSpec (its encrypted Finished). An alert ends a flight at once.
    """

    def __init__(self) -> None:
        self.phase = FlightPhase.CLIENT_HELLO
        self._records: list[Record] = []
        self._handshake = bytearray()
        self._after_ccs = False

    def add(self, record: Record) -> bytes | None:
        """Adds a record; returns the flight's bytes when it is complete."""
        if self.phase is FlightPhase.DONE:
            raise RecordError("handshake record after the handshake", AlertDescription.UNEXPECTED_MESSAGE)
        self._records.append(record)
        if record.is_alert or self._complete(record):
            return self._take()
        if sum(len(r.fragment) + RECORD_HEADER_SIZE for r in self._records) > MAX_CIPHERTEXT:
            raise RecordError("client flight too large for the card", AlertDescription.HANDSHAKE_FAILURE)
        return None

    def _complete(self, record: Record) -> bool:
        if self.phase is FlightPhase.CLIENT_HELLO:
            if record.content_type != ContentType.HANDSHAKE:
                raise RecordError("expected a ClientHello", AlertDescription.UNEXPECTED_MESSAGE)
            self._handshake += record.fragment
            if len(self._handshake) < 4:
                return False
            length = int.from_bytes(self._handshake[1:4], "big")
            return len(self._handshake) >= 4 + length
        if self._after_ccs:
            return True
        if record.content_type == ContentType.CHANGE_CIPHER_SPEC:
            self._after_ccs = True
        return False

    def _take(self) -> bytes:
        flight = b"".join(r.encode() for r in self._records)
        self._records = []
        self._handshake = bytearray()
        self.phase = FlightPhase.CLIENT_KEY_EXCHANGE if self.phase is FlightPhase.CLIENT_HELLO else FlightPhase.DONE
        return flight


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
