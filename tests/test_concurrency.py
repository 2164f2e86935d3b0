"""One card at a real card's speed (--sim-speed J3R180), in card mode, with the handshake and idle
timeouts at 60 s so that only the card's sessions, not a timeout, can let anyone through (issue 10,
"How it is checked"): three long-lived clients (an idle HTTPS keep-alive session, a CoAP client
sending Pings, a TLS echo client that never reads) and a stream of fresh handshakes. Each fresh
client completes well within 30 s; the long-lived ones stay open while the sessions fit the card's
slots, and beyond that the least recently used session is closed with close_notify. Then 50 silent
TCP connections and 20 slow ones, and curl still completes within the same bound."""
from __future__ import annotations

import socket
import ssl
import subprocess
import threading
import time

import pytest
from conftest import DEMO, ServerFactory, ServerProcess
from tls12_client import RawTlsClient, slow_client

pytestmark = pytest.mark.timeout(600)
ROW = "NXP JCOP4 J3R180 (P71)"
LIMIT = 30.0          # the test's own bound for each fresh client
SESSION_SLOTS = 6     # the card's (SELECT tag 85)
COAP_CSM, COAP_PING, COAP_PONG = 0xE1, 0xE2, 0xE3   # RFC 8323 signalling codes 7.01, 7.02, 7.03


@pytest.fixture(scope="module")
def paced(server_factory: ServerFactory) -> ServerProcess:
    return server_factory("--sim", "--sim-speed", ROW, "--https", "0", "--coaps-tcp", "0", "--tls-echo", "0",
                          "--handshake-timeout", "60", "--idle-timeout", "60", "--hello-timeout", "60")


def tls(port: int) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(DEMO / "ca.pem"))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    raw = socket.create_connection(("127.0.0.1", port), timeout=LIMIT)
    return context.wrap_socket(raw, server_hostname="localhost")


def closed_with_close_notify(sock: ssl.SSLSocket, timeout: float = LIMIT) -> bool:
    """True once the server's close_notify arrives (recv answers b"" on a clean TLS close)."""
    sock.settimeout(timeout)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except (ssl.SSLError, OSError):
        return False


def https_keep_alive(port: int) -> ssl.SSLSocket:
    sock = tls(port)
    sock.sendall(b"GET /sensors/temperature HTTP/1.1\r\nHost: localhost\r\n\r\n")
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(65536)
    head, _, body = response.partition(b"\r\n\r\n")
    headers = dict(line.split(b":", 1) for line in head.split(b"\r\n")[1:])
    length = int({k.lower(): v for k, v in headers.items()}[b"content-length"])
    while len(body) < length:
        body += sock.recv(65536)
    assert head.startswith(b"HTTP/1.1 200") and b"celsius" in body
    return sock


class CoapPinger(threading.Thread):
    """CoAP over TLS (RFC 8323): a CSM, then a Ping every `every` seconds; counts the Pongs."""

    def __init__(self, port: int, every: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.sock = tls(port)
        self.every = every
        self.pongs = 0
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self.sock.sendall(bytes([0, COAP_CSM]))

    def run(self) -> None:
        buffer = b""
        try:
            while not self.stop.is_set():
                self.sock.sendall(bytes([0, COAP_PING]))
                deadline = time.monotonic() + LIMIT
                while COAP_PONG not in self._codes(buffer):
                    assert time.monotonic() < deadline, "no Pong"
                    data = self.sock.recv(65536)
                    if not data:
                        raise ConnectionError("closed")
                    buffer += data
                buffer = b""
                self.pongs += 1
                self.stop.wait(self.every)
        except BaseException as exc:  # reported by the test
            if not self.stop.is_set():
                self.error = exc

    @staticmethod
    def _codes(data: bytes) -> list[int]:
        """The codes of the whole messages in `data` (RFC 8323 3.2 framing)."""
        codes, at = [], 0
        while at < len(data):
            length, tkl = data[at] >> 4, data[at] & 0x0F
            extra = {13: 1, 14: 2, 15: 4}.get(length, 0)
            if at + 1 + extra >= len(data):
                break
            if extra:
                length = int.from_bytes(data[at + 1:at + 1 + extra], "big") + {13: 13, 14: 269, 15: 65805}[length]
            end = at + 1 + extra + 1 + tkl + length
            if end > len(data):
                break
            codes.append(data[at + 1 + extra])
            at = end
        return codes


def fresh_client(port: int) -> tuple[RawTlsClient, float]:
    started = time.monotonic()
    client = RawTlsClient("127.0.0.1", port, timeout=LIMIT)
    client.handshake()
    client.send_data(b"fresh")
    assert client.receive_data() == b"fresh"
    return client, time.monotonic() - started


def test_long_lived_clients_stay_until_the_slots_are_full_then_the_least_recently_used_goes(
        paced: ServerProcess) -> None:
    https = https_keep_alive(paced.ports["https"])                       # 1: idle from now on
    coap = CoapPinger(paced.ports["coaps-tcp"])                          # 2: pings every second
    coap.start()
    never_reads = tls(paced.ports["tls-echo"])                           # 3: sends, never reads
    never_reads.sendall(b"echo this, I will not read it" * 10)
    time.sleep(1.0)
    fresh: list[RawTlsClient] = []
    try:
        # Three fresh sessions fill the six slots: nobody is closed.
        for _ in range(SESSION_SLOTS - 3):
            client, took = fresh_client(paced.ports["tls-echo"])
            fresh.append(client)
            assert took < LIMIT
        assert coap.error is None and coap.pongs > 0
        https.settimeout(0.2)
        with pytest.raises(TimeoutError):
            https.recv(1)                                               # still open, nothing sent to it
        # The seventh session: the least recently used, the idle HTTPS one, is closed with close_notify.
        client, took = fresh_client(paced.ports["tls-echo"])
        fresh.append(client)
        assert took < LIMIT
        assert closed_with_close_notify(https)
        # The eighth: next least recently used is the echo client that never reads (it sent once).
        pongs = coap.pongs
        client, took = fresh_client(paced.ports["tls-echo"])
        fresh.append(client)
        assert took < LIMIT
        assert closed_with_close_notify(never_reads)
        # The CoAP client, busy all along, is never the least recently used: it is still served.
        deadline = time.monotonic() + LIMIT
        while coap.pongs <= pongs + 1:
            assert coap.error is None, coap.error
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert paced.lines().count("closed with close_notify to make room") == 2
        for older in fresh[:2]:                                         # the fresh sessions kept theirs
            older.send_data(b"still here")
            assert older.receive_data() == b"still here"
    finally:
        coap.stop.set()
        coap.join(5)
        for sock in (https, never_reads, coap.sock):
            sock.close()
        for client in fresh:
            client.close()


def test_fifty_silent_and_twenty_slow_connections_leave_the_card_to_curl_at_card_speed(
        paced: ServerProcess) -> None:
    ports = [paced.ports[name] for name in ("https", "coaps-tcp", "tls-echo")]
    silent = [socket.create_connection(("127.0.0.1", ports[i % 3])) for i in range(50)]
    stop = threading.Event()
    slow = [threading.Thread(target=slow_client, args=(ports[i % 3], stop), daemon=True) for i in range(20)]
    for thread in slow:
        thread.start()
    try:
        started = time.monotonic()
        got = subprocess.run(["curl", "-sS", "--cacert", str(DEMO / "ca.pem"), "--max-time", str(LIMIT),
                              "--resolve", f"localhost:{ports[0]}:127.0.0.1",
                              f"https://localhost:{ports[0]}/sensors/temperature"],
                             capture_output=True, text=True, timeout=LIMIT + 10)
        took = time.monotonic() - started
        assert got.returncode == 0, got.stderr
        assert "celsius" in got.stdout
        assert took < LIMIT, f"curl took {took:.1f} s"
        client, took = fresh_client(paced.ports["tls-echo"])
        client.close()
        assert took < LIMIT
    finally:
        stop.set()
        for thread in slow:
            thread.join(10)
        for sock in silent:
            sock.close()
