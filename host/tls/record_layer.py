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
from host.tls.numbers import MAX_PLAINTEXT, AlertDescription, AlertLevel, ContentType
from host.tls.protection import HostRecordProtection
from host.tls.records import Record, RecordError, RecordReader

log = logging.getLogger(__name__)


class RecordRejected(Exception):
    """The card refused a record (bad_record_mac); `alert` is the protected alert to send.

    Raised by the card's UNPROTECT RECORD (host.card.commands) and handled here."""

    def __init__(self, alert: bytes) -> None:
        super().__init__("the card rejected the record (bad_record_mac)")
        self.alert = alert


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

    async def recv(self) -> Record | None:
        """The next record from the client, None at the end of the stream."""
        while (record := self._records.next_record()) is None:
            data = await asyncio.wait_for(self._reader.read(65536), self.idle_timeout)
            if not data:
                return None
            self._records.feed(data)
        return record

    @abc.abstractmethod
    async def _unprotect(self, record: Record) -> tuple[int, bytes]:
        """Content type and plaintext of a protected record; RecordError if it fails."""

    @abc.abstractmethod
    async def _protect(self, content_type: int, data: bytes) -> bytes:
        """One protected record."""

    async def decrypt(self, record: Record) -> bytes:
        """Application data of a record; raises PeerClosed (close_notify) or RemoteAlert."""
        content_type, plain = await self._unprotect(record)
        if content_type == ContentType.APPLICATION_DATA:
            return plain
        if content_type == ContentType.ALERT:
            if len(plain) == 2 and plain[1] == AlertDescription.CLOSE_NOTIFY:
                raise PeerClosed("close_notify")
            raise RemoteAlert(plain[1] if len(plain) > 1 else 0, plain[0] if plain else 0)
        if content_type == ContentType.HANDSHAKE:
            # RFC 5746: renegotiation is refused with a warning; the session goes on.
            log.info("client asked to renegotiate: refused")
            await self.send(await self._protect(ContentType.ALERT,
                                                bytes([AlertLevel.WARNING, AlertDescription.NO_RENEGOTIATION])))
            return b""
        raise RecordError(f"unexpected content type {content_type}", AlertDescription.UNEXPECTED_MESSAGE)

    async def encrypt(self, data: bytes) -> bytes:
        """Protected records carrying data, cut at the 16 KB record limit."""
        out = b""
        for i in range(0, max(len(data), 1), MAX_PLAINTEXT):
            out += await self._protect(ContentType.APPLICATION_DATA, data[i:i + MAX_PLAINTEXT])
        return out

    async def send(self, records: bytes) -> None:
        self._writer.write(records)
        await self._writer.drain()

    async def close(self, alert: AlertDescription = AlertDescription.CLOSE_NOTIFY) -> None:
        """Sends an alert (close_notify by default) when possible and closes the connection."""
        if self.closed:
            return
        self.closed = True
        try:
            level = AlertLevel.WARNING if alert == AlertDescription.CLOSE_NOTIFY else AlertLevel.FATAL
            await self.send(await self._protect(ContentType.ALERT, bytes([level, alert])))
        except Exception as exc:  # the session may already be gone in the card or on the wire
            log.debug("no alert sent at close: %s", exc)
        await self._release()
        self._writer.close()

    async def _release(self) -> None:  # noqa: B027 (a hook: host mode holds nothing)
        """Gives back what the session holds (the card, for card mode)."""


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
            raise RecordError("record rejected by the card", AlertDescription.BAD_RECORD_MAC) from None

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
