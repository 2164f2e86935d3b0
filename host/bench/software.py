"""The software TLS reference the card is compared with (docs/benchmark.md, part 3): TLS 1.2 in
Python's `ssl` with an ECDSA P-256 key made on the host and certified by the demo CA, serving 1 KB
echoes and HTTP/1.1 with the same h11 application as the card's servers (host/apps/https.py's
`HttpServerConnection`, `HttpApp` and status page, with a status that names no card), so the
comparison measures the TLS record layers and nothing else. The benchmark runs it as a subprocess
(`python -m host.bench --serve-software ECHO HTTPS --cert … --key …`), which prints 'ready'."""
from __future__ import annotations

import asyncio
import signal
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from host.apps.device import process_device
from host.apps.https import HttpApp, HttpServerConnection
from host.demo_pki import DEMO_DIR, DemoCa
from host.se_tls import SessionInfo
from host.tls.numbers import CipherSuite


@dataclass
class SoftwareStatus:
    """What the status page reads of a TlsTandem, for the software server (no card)."""

    identity: str = "software"
    identity_subject: str = "O=SE-TLS demo,CN=software TLS baseline"
    record_mode: str = "software"
    slots: list[object] = field(default_factory=list)
    last_session: SessionInfo = field(default_factory=lambda: SessionInfo(
        "127.0.0.1:00000", "none", CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, "software"))


def software_identity(directory: Path) -> tuple[Path, Path]:
    """An ECDSA P-256 key made on the host and a certificate from the demo CA, as the card has."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    point = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    cert = DemoCa.load_or_create(DEMO_DIR).issue_server_certificate(point, common_name="software TLS baseline")
    cert_path, key_path = directory / "software.pem", directory / "software.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


def _http_server(app: HttpApp) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """HTTP/1.1 keep-alive on the card servers' `HttpServerConnection` (the loop of
        host/apps/pump.py over TLS streams)."""
        connection = HttpServerConnection(app)
        try:
            while True:
                out = connection.data_to_send()
                if out:
                    writer.write(out)
                    await writer.drain()
                if connection.closed:
                    break
                data = await reader.read(65536)
                if data:
                    connection.receive_data(data)
                else:
                    connection.receive_eof()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()
    return serve


async def serve_software(echo_port: int, https_port: int, cert: Path, key: Path) -> None:
    """TLS 1.2 servers in Python's ssl, the reference the card is compared with: an echo server
    and an HTTPS server; 'ready' once both listen, until SIGINT or SIGTERM."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    servers = [await asyncio.start_server(_echo, "127.0.0.1", echo_port, ssl=context),
               await asyncio.start_server(_http_server(HttpApp(process_device(), SoftwareStatus())), "127.0.0.1",
                                          https_port, ssl=context)]
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    for server in servers:
        server.close()
