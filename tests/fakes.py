"""Stand-ins shared by the application-layer tests. They test the layers above the card only:
end-to-end tests always use the card in jcardsim."""
from __future__ import annotations

from dataclasses import dataclass, field

from host.se_tls import HandshakeRecord, SessionInfo
from host.tls.numbers import TLS12
from host.tls.record_layer import RecordLayer
from host.tls.records import Record


@dataclass
class Slot:
    name: str


@dataclass
class Tandem:
    """The attributes of host.se_tls.TlsTandem that the status model reads."""

    identity: str = "server"
    record_mode: str = "card"
    slots: list[Slot] = field(default_factory=lambda: [Slot("0:jcardsim")])
    last_session: SessionInfo | None = None
    identity_subject: object = "CN=localhost"
    sessions: dict[int, SessionInfo] = field(default_factory=dict)
    recent: list[HandshakeRecord] = field(default_factory=list)


class PlainRecordLayer(RecordLayer):
    """Records carry plaintext: tests the application layer, never a substitute for the card."""

    record_mode = "plain"

    async def _unprotect(self, record: Record) -> tuple[int, bytes]:
        return record.content_type, record.fragment

    async def _protect(self, content_type: int, data: bytes) -> bytes:
        return Record(content_type, TLS12, data).encode()
