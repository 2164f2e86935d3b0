"""Plain UDP associations with the interface of `host.dtls` (no security: `coap://`).

`UdpServer(application, config)` hands each client address and port to `application(association,
info)` exactly as `host.dtls.DtlsServer` hands it an established DTLS association, so an
application written for DTLS (CoAP over UDP, `host.apps.coap_udp`) runs unchanged on plain UDP:
the tests drive it with unmodified clients over `coap://`, and a trusted link could use it. The
server never reaches a card.

- One socket; datagrams are associated by (address, port); a new address gets an association
  while fewer than `config.max_associations` exist (datagrams of others are dropped, and said in
  the log once per address).
- `UdpAssociation.recv()`: the next datagram's bytes; `TimeoutError` after `config.idle` seconds
  without one (the association then ends: idle expiry); `PeerClosed` after `close()` or when the
  server closes. `send(data)`: one datagram of at most `max_payload` bytes, else ValueError.
- At most `QUEUE` datagrams wait per association; more are dropped (UDP may drop them anyway).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from host.dtls import DtlsApplication, DtlsAssociation, DtlsConfig
from host.se_tls import SessionInfo
from host.tls.record_layer import PeerClosed

log = logging.getLogger(__name__)

QUEUE = 64
MAX_PAYLOAD = 1152   # RFC 7252 4.6: what one datagram carries when the path MTU is unknown


def peer_name(address: tuple[str, int]) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class UdpAssociation(DtlsAssociation):
    """One client address and port on a `UdpServer` (the interface of `host.dtls.DtlsAssociation`)."""

    def __init__(self, server: UdpServer, address: tuple[str, int]) -> None:
        self.server = server
        self.address = (address[0], address[1])
        self.peer = peer_name(address)
        self.info = SessionInfo(peer=self.peer, card="-", record_mode="none")
        self.max_payload = server.max_payload
        self.closed = False
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE)

    def deliver(self, data: bytes) -> None:
        if not self.closed:
            try:
                self._queue.put_nowait(data)
            except asyncio.QueueFull:
                log.debug("%s: UDP: %d datagrams waiting: one dropped", self.peer, QUEUE)

    async def recv(self) -> bytes:
        if self.closed:
            raise PeerClosed("the association is closed")
        try:
            data = await asyncio.wait_for(self._queue.get(), self.server.config.idle)
        except TimeoutError:
            raise TimeoutError(f"no datagram for {self.server.config.idle:g} s") from None
        if data is None:
            raise PeerClosed("the association is closed")
        return data

    async def send(self, data: bytes) -> None:
        if len(data) > self.max_payload:
            raise ValueError(f"{len(data)} bytes are over the {self.max_payload}-byte datagram limit")
        if self.closed or self.server.transport is None:
            raise PeerClosed("the association is closed")
        self.server.transport.sendto(data, self.address)

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            while self._queue.full():   # the reader is far behind: what waits no longer matters
                self._queue.get_nowait()
            self._queue.put_nowait(None)
            self.server.forget(self)


class UdpServer(asyncio.DatagramProtocol):
    """Serves `application` on one UDP socket, one association per client address and port."""

    def __init__(self, application: DtlsApplication, config: DtlsConfig | None = None, name: str = "coap",
                 max_payload: int = MAX_PAYLOAD) -> None:
        self.application = application
        self.max_payload = max_payload
        self.config = config or DtlsConfig()
        self.name = name
        self.port = 0
        self.transport: asyncio.DatagramTransport | None = None
        self.associations: dict[tuple[str, int], UdpAssociation] = {}
        self._refused: set[tuple[str, int]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(host, port))
        self.transport = transport
        self.port = transport.get_extra_info("sockname")[1]

    async def close(self) -> None:
        for association in list(self.associations.values()):
            await association.close()
        for task in list(self._tasks):
            task.cancel()
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    def datagram_received(self, data: bytes, addr: Any) -> None:
        address = (str(addr[0]), int(addr[1]))
        association = self.associations.get(address)
        if association is None:
            if len(self.associations) >= self.config.max_associations:
                if address not in self._refused:
                    self._refused.add(address)
                    log.warning("%s: %s: %d associations already: datagrams dropped", self.name,
                                peer_name(address), len(self.associations))
                return
            association = UdpAssociation(self, address)
            self.associations[address] = association
            self._refused.discard(address)
            task = asyncio.ensure_future(self._run(association))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        association.deliver(data)

    def forget(self, association: UdpAssociation) -> None:
        if self.associations.get(association.address) is association:
            del self.associations[association.address]

    async def _run(self, association: UdpAssociation) -> None:
        log.info("%s: %s: new association", self.name, association.peer)
        try:
            await self.application(association, association.info)
        except Exception:
            log.exception("%s: %s: the application failed", self.name, association.peer)
        finally:
            await association.close()
