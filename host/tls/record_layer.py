"""The RecordLayer of the paper (figure 12): recv, decrypt, encrypt, send, with the record
protection either in the card or in the host (tandem mode). Both are driven the same way by the
application servers; only where the keys live differs.
"""
from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from host.tls.alerts import RemoteAlert
from host.tls.numbers import HANDSHAKE_HEADER_SIZE, MAX_PLAINTEXT, AlertDescription, AlertLevel, ContentType
from host.tls.protection import HostRecordProtection
from host.tls.records import Record, RecordError, RecordReader

log = logging.getLogger(__name__)


class RecordRejected(Exception):
    """The card refused a record and ended the session; `alert` is the protected fatal alert to
    send, `description` what it says (bad_record_mac, record_overflow, unexpected_message...).

    Raised by the card's UNPROTECT RECORD (host.card.commands) and handled here."""

    def __init__(self, alert: bytes, description: int = AlertDescription.BAD_RECORD_MAC) -> None:
        self.description = _alert_description(description)
        super().__init__(f"the card rejected the record ({self.description.name.lower()})")
        self.alert = alert


def _alert_description(value: int) -> AlertDescription:
    try:
        return AlertDescription(value)
    except ValueError:
        return AlertDescription.BAD_RECORD_MAC


class PeerClosed(Exception):
    """The client closed the session (close_notify or end of stream)."""


class RecordCard(Protocol):
    """What the card-mode record layer needs of a card (host.card.commands.SeTlsCard)."""

    def unprotect(self, record: bytes) -> tuple[int, bytes]: ...

    def protect(self, content_type: int, data: bytes) -> bytes: ...


class RecordLayer(abc.ABC):
    """One established TLS session: records in from the client, records out to it."""

    record_mode = ""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 records: RecordReader, idle_timeout: float) -> None:
        self._reader = reader
        self._writer = writer
        self._records = records
        self.idle_timeout = idle_timeout
        self.closed = False
        # Alerts and handshake messages may be split over records (RFC 5246 6.2.1): their bytes so far.
        self._alert = bytearray()
        self._handshake = bytearray()

    async def recv(self) -> Record | None:
        """The next record from the client, None at the end of the stream; TimeoutError after
        `idle_timeout` seconds without one. (`asyncio.timeout`, not `wait_for`: no task per read.)"""
        records = self._records
        while (record := records.next_record()) is None:
            async with asyncio.timeout(self.idle_timeout):
                data = await self._reader.read(65536)
            if not data:
                return None
            records.feed(data)
        return record

    @abc.abstractmethod
    async def _unprotect(self, record: Record) -> tuple[int, bytes]:
        """Content type and plaintext of a protected record; RecordError if it fails."""

    @abc.abstractmethod
    async def _protect(self, content_type: int, data: bytes) -> bytes:
        """One protected record."""

    async def decrypt(self, record: Record) -> bytes:
        """Application data of a record (b"" for one that only carried part of an alert or of a
        handshake message); raises PeerClosed (close_notify) or RemoteAlert, and RecordError for
        a record no established session takes (a ChangeCipherSpec: unexpected_message)."""
        if record.content_type == ContentType.CHANGE_CIPHER_SPEC:
            raise RecordError("ChangeCipherSpec after the handshake", AlertDescription.UNEXPECTED_MESSAGE)
        content_type, plain = await self._unprotect(record)
        if content_type == ContentType.APPLICATION_DATA:
            return plain
        if content_type == ContentType.ALERT:
            self._alert += plain
            if len(self._alert) < 2:
                return b""
            level, description = self._alert[0], self._alert[1]
            if description == AlertDescription.CLOSE_NOTIFY:
                raise PeerClosed("close_notify")
            raise RemoteAlert(description, level)
        if content_type == ContentType.HANDSHAKE:
            self._handshake += plain
            while (whole := _whole_message(self._handshake)) is not None:
                del self._handshake[:whole]
                # RFC 5746: renegotiation is refused with a warning; the session goes on.
                log.info("client asked to renegotiate: refused")
                await self.send(await self._protect(ContentType.ALERT,
                                                    bytes([AlertLevel.WARNING, AlertDescription.NO_RENEGOTIATION])))
            if len(self._handshake) > MAX_PLAINTEXT:  # no ClientHello of a renegotiation is heard out
                raise RecordError("handshake message too long after the handshake",
                                  AlertDescription.UNEXPECTED_MESSAGE)
            return b""
        raise RecordError(f"unexpected content type {content_type}", AlertDescription.UNEXPECTED_MESSAGE)

    async def encrypt(self, data: bytes) -> bytes:
        """Protected records carrying data, cut at the 16 KB record limit."""
        if len(data) <= MAX_PLAINTEXT:
            return await self._protect(ContentType.APPLICATION_DATA, data)
        return b"".join([await self._protect(ContentType.APPLICATION_DATA, data[i:i + MAX_PLAINTEXT])
                         for i in range(0, len(data), MAX_PLAINTEXT)])

    async def send(self, records: bytes) -> None:
        """Writes the records; waits for the client to take them only when the kernel did not
        take them all at once (one write, and no wait, per flight in the common case)."""
        writer = self._writer
        writer.write(records)
        transport = writer.transport
        if transport.get_write_buffer_size() or transport.is_closing():
            await self._drain()

    async def _drain(self) -> None:
        """Waits until the transport's buffer is below its limit (ConnectionError if it is gone)."""
        await self._writer.drain()

    async def close(self, alert: AlertDescription = AlertDescription.CLOSE_NOTIFY) -> bool:
        """Sends an alert (close_notify by default) when possible and closes the connection;
        True if the alert went out."""
        if self.closed:
            return False
        self.closed = True
        sent = False
        try:
            level = AlertLevel.WARNING if alert == AlertDescription.CLOSE_NOTIFY else AlertLevel.FATAL
            await self.send(await self._protect(ContentType.ALERT, bytes([level, alert])))
            sent = True
        except Exception as exc:  # the session may already be gone in the card or on the wire
            log.debug("no alert sent at close: %s", exc)
        await self._release()
        self._writer.close()
        return sent

    async def _release(self) -> None:  # noqa: B027 (a hook: host mode holds nothing)
        """Gives back what the session holds (the card, for card mode)."""


def _whole_message(data: bytearray) -> int | None:
    """The length of the handshake message that starts `data`, if it is all there."""
    if len(data) < HANDSHAKE_HEADER_SIZE:
        return None
    whole = HANDSHAKE_HEADER_SIZE + int.from_bytes(data[1:HANDSHAKE_HEADER_SIZE], "big")
    return whole if len(data) >= whole else None


class CardRecordLayer(RecordLayer):
    """Records protected by the card: every record costs an APDU exchange."""

    record_mode = "card"

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, records: RecordReader,
                 idle_timeout: float, run: Callable[..., Awaitable[Any]], card: RecordCard,
                 release: Callable[[], Awaitable[None]]) -> None:
        super().__init__(reader, writer, records, idle_timeout)
        self._run = run
        self._card = card
        self._release_card = release

    async def _unprotect(self, record: Record) -> tuple[int, bytes]:
        try:
            unprotected: tuple[int, bytes] = await self._run(self._card.unprotect, record.encode())
            return unprotected
        except RecordRejected as rejected:
            # The card has closed the session and wrote the alert: forward it, nothing more.
            await self.send(rejected.alert)
            self.closed = True
            await self._release()
            self._writer.close()
            raise RecordError(str(rejected), rejected.description) from None

    async def _protect(self, content_type: int, data: bytes) -> bytes:
        protected: bytes = await self._run(self._card.protect, content_type, data)
        return protected

    async def _release(self) -> None:
        await self._release_card()


class HostRecordLayer(RecordLayer):
    """Records protected by the host with keys the card exported once."""

    record_mode = "host"

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, records: RecordReader,
                 idle_timeout: float, protection: HostRecordProtection) -> None:
        super().__init__(reader, writer, records, idle_timeout)
        self._protection = protection

    async def _unprotect(self, record: Record) -> tuple[int, bytes]:
        return record.content_type, self._protection.unprotect(record)

    async def _protect(self, content_type: int, data: bytes) -> bytes:
        return self._protection.protect(content_type, data)

    async def encrypt(self, data: bytes) -> bytes:
        """As RecordLayer.encrypt, without a coroutine per record: the host protects at once."""
        protect = self._protection.protect
        if len(data) <= MAX_PLAINTEXT:
            return protect(ContentType.APPLICATION_DATA, data)
        return b"".join([protect(ContentType.APPLICATION_DATA, data[i:i + MAX_PLAINTEXT])
                         for i in range(0, len(data), MAX_PLAINTEXT)])
