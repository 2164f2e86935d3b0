"""The DTLS server over UDP: cookies, associations by address, retransmission (RFC 6347 4.2)."""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from host.se_tls import SessionInfo, TlsTandem
from host.tls.record_layer import PeerClosed

log = logging.getLogger(__name__)

RECORD_HEADER = 13      # RFC 6347 4.1: type, version, epoch, sequence_number(6), length
AEAD_OVERHEAD = 8 + 16  # explicit nonce + tag of GCM/CCM (CCM_8: 8 + 8)


@dataclass
class DtlsConfig:
    mtu: int = 1200                 # bytes per datagram the card fragments its flight to
    idle: float = 120.0             # seconds without a record before an association expires
    retransmit_initial: float = 1.0  # RFC 6347 4.2.4.1
    retransmit_max: float = 60.0
    handshake: float = 60.0         # seconds from the cookie-carrying ClientHello to established
    max_associations: int = 256


class DtlsAssociation:
    """One established association with a client address and port (see the package docstring)."""

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


class DtlsServer:
    """Serves `application` over DTLS on one UDP socket (see the package docstring)."""

    def __init__(self, tandem: TlsTandem, application: DtlsApplication, config: DtlsConfig | None = None) -> None:
        self.tandem = tandem
        self.application = application
        self.config = config or DtlsConfig()
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


__all__ = ["DtlsApplication", "DtlsAssociation", "DtlsConfig", "DtlsServer", "PeerClosed"]
