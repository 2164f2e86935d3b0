"""DTLS 1.2 (RFC 6347) over UDP, the handshake in the card: the host's half.

The interface the applications (echo, CoAP over DTLS: RFC 7252 section 9) code against:

- `DtlsServer(tandem, application, config)`: one UDP socket. It answers cookie-less ClientHellos
  with a HelloVerifyRequest itself (RFC 6347 4.2.1: stateless, 0 APDUs, cookie = HMAC-SHA256
  under the host's own rotating secret over the client's address and port and the ClientHello's
  fields), associates datagrams by (address, port), runs the handshake with a card session of
  the `TlsTandem` (the card sees the ClientHello that carries the cookie first), retransmits the
  server's last flight on timeout (RFC 6347 4.2.4: 1 s, doubled up to 60 s), drops duplicates,
  and once the association is established calls `application(association, info)` in its own
  task. A ClientHello of epoch 0 on an established address starts a fresh handshake (4.2.8): the
  old association is closed (its `recv()` raises `PeerClosed`).
  `await server.start(host, port)`; `server.port` (the bound port, also for port 0);
  `await server.close()`.
- `DtlsAssociation`: the interface of one established association (one client address and
  port); `CardDtlsAssociation` implements it for DTLS (a plain-UDP association may implement it
  too, so an application serves both).
  `await recv() -> bytes`: the plaintext of the next application_data record (one record is one
  datagram's payload: the datagram boundary is kept, as CoAP needs); raises `PeerClosed` on
  close_notify, a fresh handshake of the peer, or `close()`; `TimeoutError` after `idle` seconds
  without a record (the server's idle expiry). Replayed records and records of a wrong epoch are
  dropped silently (RFC 6347 4.1.2.6, 4.1.2.1) and never reach `recv()`.
  `await send(data)`: one application_data record in one datagram; `len(data) <= max_payload`
  (the MTU less the record overhead), else `ValueError`.
  `await close()`: close_notify and the card session given back; idempotent.
  `peer` ("host:port"), `address` ((host, port)), `info` (`SessionInfo`), `max_payload`.
- `DtlsApplication = Callable[[DtlsAssociation, SessionInfo], Awaitable[None]]`: when it returns
  or raises, the association is closed (close_notify, or internal_error for a raise).
- `DtlsConfig`: `mtu` (the path MTU the card fragments its flight to, default 1200,
  `--dtls-mtu`), `idle` (seconds), `retransmit_initial` / `retransmit_max` (seconds),
  `max_associations`, `handshake` (seconds from the first cookie-carrying hello to established).

The record layer of an association is the card's (card mode: the card checks the anti-replay
window and opens/seals each record) or the host's (host mode: the exported epoch 1 keys, the
sequence numbers and the replay window in `host.dtls.records`).
"""
from __future__ import annotations

from host.dtls.server import CardDtlsAssociation, DtlsApplication, DtlsAssociation, DtlsConfig, DtlsServer

__all__ = ["CardDtlsAssociation", "DtlsApplication", "DtlsAssociation", "DtlsConfig", "DtlsServer"]
