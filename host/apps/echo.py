"""`--tls-echo` and `--dtls-echo`: every byte of application data comes back (a test and benchmark
application)."""

from __future__ import annotations

from host.dtls import DtlsAssociation
from host.se_tls import SessionInfo
from host.tls.record_layer import RecordLayer


async def echo_application(layer: RecordLayer, info: SessionInfo) -> None:
    """Echoes each record's application data in one protected record (16 KB records cut)."""
    while (record := await layer.recv()) is not None:
        data = await layer.decrypt(record)
        if data:
            await layer.send(await layer.encrypt(data))


async def dtls_echo_application(association: DtlsAssociation, info: SessionInfo) -> None:
    """`--dtls-echo`: each datagram's application data comes back in one record (RFC 6347)."""
    while True:
        data = await association.recv()
        if data:
            await association.send(data[:association.max_payload])
