"""The software TLS reference the card is compared with (docs/benchmark.md, part 3): TLS 1.2 in
Python's `ssl` with an ECDSA P-256 key made on the host and certified by the demo CA, serving 1 KB
echoes and HTTP/1.1 on h11 as host/apps/https.py does. The benchmark runs it as a subprocess
(`python -m host.bench --serve-software ECHO HTTPS --cert … --key …`), which prints 'ready'."""
from __future__ import annotations

import asyncio
import json
import signal
import ssl
from pathlib import Path

from host.demo_pki import DEMO_DIR, DemoCa
from host.tls.numbers import CipherSuite

SOFTWARE_STATUS = json.dumps({
    "cards": [], "identity": "software", "subject": "O=SE-TLS demo,CN=software TLS baseline",
    "record_mode": "software", "last_session": {
        "peer": "127.0.0.1:00000", "card": "none",
        "suite": CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256.openssl_name, "record_mode": "software",
        "handshake_ms": 0.0, "apdus": 0, "bytes_to_card": 0, "bytes_from_card": 0}}).encode() + b"\n"


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


async def _http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """HTTP/1.1 keep-alive on h11, as host/apps/https.py serves it: every GET gets SOFTWARE_STATUS."""
    import h11

    connection = h11.Connection(h11.SERVER)
    try:
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                connection.receive_data(await reader.read(65536))
            elif isinstance(event, h11.EndOfMessage):
                headers = [("Content-Type", "application/json"), ("Content-Length", str(len(SOFTWARE_STATUS)))]
                writer.write(connection.send(h11.Response(status_code=200, headers=headers))
                             + connection.send(h11.Data(data=SOFTWARE_STATUS)) + connection.send(h11.EndOfMessage()))
                await writer.drain()
                connection.start_next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                break
    except (ConnectionError, ssl.SSLError, h11.ProtocolError):
        pass
    finally:
        writer.close()


async def serve_software(echo_port: int, https_port: int, cert: Path, key: Path) -> None:
    """TLS 1.2 servers in Python's ssl, the reference the card is compared with: an echo server
    and an HTTPS server; 'ready' once both listen, until SIGINT or SIGTERM."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    servers = [await asyncio.start_server(_echo, "127.0.0.1", echo_port, ssl=context),
               await asyncio.start_server(_http, "127.0.0.1", https_port, ssl=context)]
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    for server in servers:
        server.close()
