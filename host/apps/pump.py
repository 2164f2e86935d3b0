"""The one loop that serves a sans-IO application connection over a `RecordLayer`.

A connection core (h11's shape: `receive_data()`, `receive_eof()`, `data_to_send()`, `closed`)
knows the application protocol and nothing of TLS; the record layer knows TLS and nothing of the
application. `pump()` moves bytes between them until the connection is done.
"""

from __future__ import annotations

from typing import Protocol

from host.tls.record_layer import RecordLayer


class SansIoConnection(Protocol):
    """What `pump()` needs of an application's connection core."""

    @property
    def closed(self) -> bool: ...

    def receive_data(self, data: bytes) -> None: ...

    def receive_eof(self) -> None: ...

    def data_to_send(self) -> bytes: ...


async def pump(connection: SansIoConnection, layer: RecordLayer) -> None:
    """What the connection has to say first (CoAP's CSM), then records in and answers out, until
    the connection is closed; the end of the client's stream is passed on as EOF."""
    while True:
        out = connection.data_to_send()
        if out:
            await layer.send(await layer.encrypt(out))
        if connection.closed:
            return
        record = await layer.recv()
        if record is None:
            connection.receive_eof()
        else:
            connection.receive_data(await layer.decrypt(record))
