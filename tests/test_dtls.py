"""DTLS 1.2 (RFC 6347) with the handshake in the card: the host's sans-IO pieces (cookies, the
reassembly of fragments, the replay window), then `--dtls-echo` proven with an unmodified
`openssl s_client -dtls1_2`, in both record modes, through a UDP relay that drops, duplicates and
replays datagrams, and with a client that restarts on the same address and port."""
from __future__ import annotations

import asyncio
import datetime
import os
import selectors
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import DEMO, ServerFactory, ServerProcess
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from s_client import talk

from host.apps.echo import dtls_echo_application
from host.card.commands import open_cards
from host.dtls import DtlsConfig, DtlsServer
from host.dtls.records import (
    CookieJar,
    DtlsRecord,
    HandshakeFragment,
    HostDtlsProtection,
    MessageAssembler,
    ReplayWindow,
    fragment_bytes,
    fragment_flight,
    hello_verify_request,
    parse_datagram,
    parse_fragments,
    split_client_hello,
)
from host.provision import DEMO_PIN, initialise_demo
from host.provision.csr import parse_san
from host.provision.lifecycle import generate_key, load_chain, request_certificate
from host.se_tls import CardSlot, TlsTandem
from host.tls.numbers import CipherSuite, ContentType
from host.tls.protection import SessionKeys

pytestmark = pytest.mark.timeout(300)

SUITES = ["ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES128-CCM8", "ECDHE-ECDSA-AES128-CCM"]


# ---- sans-IO ----------------------------------------------------------------------------------

def test_the_replay_window_takes_each_sequence_number_once_and_forgets_those_64_behind() -> None:
    window = ReplayWindow()
    for seq in (5, 3, 70, 7):
        assert window.fresh(seq)
        window.accept(seq)
    assert not window.fresh(5) and not window.fresh(70) and not window.fresh(7)
    assert window.fresh(69) and window.fresh(8)
    assert not window.fresh(3)   # 67 behind the right edge: outside the window


def test_fragments_in_any_order_and_repeated_make_each_message_once_in_order() -> None:
    body_a, body_b = os.urandom(700), os.urandom(90)
    messages = [fragment_bytes(16, len(body_a), 2, 0, body_a), fragment_bytes(20, len(body_b), 3, 0, body_b)]
    pieces = [f for record in fragment_flight(messages, 200) for f in parse_fragments(record)]
    assert len(pieces) == 5 and all(len(fragment_bytes(p.msg_type, p.length, p.message_seq, p.offset, p.body)) <= 200
                                    for p in pieces)
    assembler = MessageAssembler(next_seq=2)
    for piece in reversed(pieces + pieces[:2]):
        assembler.add(piece)
    assert assembler.pop() == messages[0]
    assert assembler.pop() == messages[1]
    assert assembler.pop() is None
    assembler.add(pieces[0])   # a retransmission of a message already passed on: dropped
    assert assembler.pop() is None


def client_hello_body(cookie: bytes) -> bytes:
    return (b"\xfe\xfd" + bytes(32) + b"\x00" + bytes([len(cookie)]) + cookie
            + b"\x00\x02\xc0\x2b\x01\x00")


def test_the_cookie_binds_the_client_address_port_and_hello() -> None:
    jar = CookieJar()
    _, rest = split_client_hello(client_hello_body(b""))
    cookie = jar.cookie(("127.0.0.1", 4000), rest)
    assert split_client_hello(client_hello_body(cookie)) == (cookie, rest)
    assert jar.valid(("127.0.0.1", 4000), rest, cookie)
    assert not jar.valid(("127.0.0.1", 4001), rest, cookie)
    assert not jar.valid(("127.0.0.2", 4000), rest, cookie)
    assert not jar.valid(("127.0.0.1", 4000), rest[:-1] + b"\x01", cookie)


def test_the_hello_verify_request_answers_with_the_hellos_message_and_record_numbers() -> None:
    hello = HandshakeFragment(1, 10, 0, 0, bytes(10))
    (record,) = parse_datagram(hello_verify_request(hello, 7, b"c" * 32))
    assert (record.content_type, record.epoch, record.seq) == (ContentType.HANDSHAKE, 0, 7)
    (fragment,) = parse_fragments(record.fragment)
    assert (fragment.msg_type, fragment.message_seq, fragment.body) == (3, 0, b"\xfe\xff\x20" + b"c" * 32)


def test_the_host_record_layer_drops_replays_other_epochs_and_forgeries() -> None:
    keys = SessionKeys(CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, os.urandom(16), os.urandom(16),
                       os.urandom(4), os.urandom(4), read_seq=(1 << 48) | 1, write_seq=(1 << 48) | 1)
    server = HostDtlsProtection(keys)
    # The client's side: the same keys the other way round.
    client = HostDtlsProtection(SessionKeys(keys.suite, keys.server_key, keys.client_key, keys.server_iv,
                                            keys.client_iv, read_seq=(1 << 48) | 1, write_seq=(1 << 48) | 1))
    (record,) = parse_datagram(client.protect(ContentType.APPLICATION_DATA, b"ping"))
    assert server.unprotect(record) == b"ping"
    assert server.unprotect(record) is None                          # replayed
    (later,) = parse_datagram(client.protect(ContentType.APPLICATION_DATA, b"pong"))
    assert server.unprotect(DtlsRecord(later.content_type, later.version, 2, later.seq, later.fragment)) is None
    forged = later.fragment[:-1] + bytes([later.fragment[-1] ^ 1])
    assert server.unprotect(DtlsRecord(later.content_type, later.version, 1, later.seq, forged)) is None
    assert server.unprotect(later) == b"pong"                        # the genuine one still passes


# ---- a UDP relay for the loss tests ----------------------------------------------------------

Filter = Callable[[str, bytes], list[bytes]]


class Relay:
    """Forwards datagrams between one client and the server through ONE upstream socket (so every
    client behind it is the same address and port to the server); `change(direction, datagram)`
    ("up": client to server, "down") returns what to forward instead."""

    def __init__(self, server_port: int, change: Filter | None = None) -> None:
        self.change = change or (lambda direction, data: [data])
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.front.bind(("127.0.0.1", 0))
        self.port = self.front.getsockname()[1]
        self.back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.back.connect(("127.0.0.1", server_port))
        self.client: tuple[str, int] | None = None
        self.log: list[tuple[str, bytes]] = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self.front, selectors.EVENT_READ, "up")
        selector.register(self.back, selectors.EVENT_READ, "down")
        while not self._stop:
            for key, _ in selector.select(0.2):
                if key.data == "up":
                    data, self.client = self.front.recvfrom(65536)
                    self.log.append(("up", data))
                    for out in self.change("up", data):
                        self.back.send(out)
                else:
                    data = self.back.recv(65536)
                    self.log.append(("down", data))
                    for out in self.change("down", data):
                        if self.client is not None:
                            self.front.sendto(out, self.client)

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        self.front.close()
        self.back.close()


# ---- openssl s_client -dtls1_2 -----------------------------------------------------------------

@pytest.fixture(scope="module", params=["card", "host"])
def dtls_server(request: pytest.FixtureRequest, server_factory: ServerFactory) -> ServerProcess:
    return server_factory("--sim", "--dtls-echo", "0", "--record-layer", request.param, "--export-keys",
                          "--bind", "127.0.0.1", "-v")


def s_client(port: int, message: bytes, *args: str, timeout: float = 60.0, copies: int = 1) -> str:
    """openssl s_client -dtls1_2: writes a line once the handshake verified, waits for `copies`
    of it to come back (or the timeout); returns the output."""
    return talk(["openssl", "s_client", "-dtls1_2", "-connect", f"127.0.0.1:{port}", "-CAfile", str(DEMO / "ca.pem"),
                 "-verify_return_error", *args], message, copies=copies, timeout=timeout)


@pytest.mark.parametrize("cipher", SUITES)
def test_openssl_dtls_client_completes_each_suite_and_gets_its_data_echoed(dtls_server: ServerProcess,
                                                                          cipher: str) -> None:
    message = f"dtls over {cipher}".encode()
    output = s_client(dtls_server.ports["dtls-echo"], message, "-cipher", cipher)
    assert f"Cipher is {cipher}" in output and "Verify return code: 0 (ok)" in output, output
    assert message.decode() in output.split("Verify return code")[-1], output


def test_a_lost_server_flight_is_sent_again_and_the_handshake_completes(dtls_server: ServerProcess) -> None:
    dropped: list[bytes] = []

    def drop_first_server_hello(direction: str, data: bytes) -> list[bytes]:
        records = parse_datagram(data)
        if direction == "down" and not dropped and any(
                r.epoch == 0 and r.content_type == ContentType.HANDSHAKE and r.fragment[0] == 2 for r in records):
            dropped.append(data)
            return []
        return [data]

    relay = Relay(dtls_server.ports["dtls-echo"], drop_first_server_hello)
    try:
        output = s_client(relay.port, b"after a loss")
    finally:
        relay.close()
    assert dropped, "the relay saw no ServerHello"
    assert "after a loss" in output.split("Verify return code")[-1], output
    hellos = [d for direction, d in relay.log if direction == "down"
              and any(r.epoch == 0 and r.fragment[:1] == b"\x02" for r in parse_datagram(d))]
    assert len(hellos) >= 2
    # RFC 6347 4.1: the flight sent again has new record sequence numbers.
    seqs = [parse_datagram(d)[0].seq for d in hellos]
    assert len(set(seqs)) == len(seqs)


def test_a_replayed_record_is_dropped(dtls_server: ServerProcess) -> None:
    def replay_application_data(direction: str, data: bytes) -> list[bytes]:
        if direction == "up" and any(r.content_type == ContentType.APPLICATION_DATA for r in parse_datagram(data)):
            return [data, data, data]
        return [data]

    relay = Relay(dtls_server.ports["dtls-echo"], replay_application_data)
    try:
        output = s_client(relay.port, b"only once", timeout=8, copies=2)
    finally:
        relay.close()
    echoed = output.split("Verify return code")[-1]
    assert echoed.count("only once") == 1, output


def test_a_record_of_a_wrong_epoch_is_dropped_and_the_association_goes_on(dtls_server: ServerProcess) -> None:
    def add_wrong_epoch_copy(direction: str, data: bytes) -> list[bytes]:
        records = parse_datagram(data)
        if direction == "up" and any(r.content_type == ContentType.APPLICATION_DATA for r in records):
            wrong = b"".join(DtlsRecord(r.content_type, r.version, r.epoch + 1, r.seq + 1000, r.fragment).encode()
                             for r in records)
            return [wrong, data]
        return [data]

    relay = Relay(dtls_server.ports["dtls-echo"], add_wrong_epoch_copy)
    try:
        output = s_client(relay.port, b"epoch two is not ours", timeout=8, copies=2)
    finally:
        relay.close()
    assert output.split("Verify return code")[-1].count("epoch two is not ours") == 1, output


def test_a_client_restarting_on_the_same_address_and_port_gets_a_fresh_handshake(dtls_server: ServerProcess) -> None:
    relay = Relay(dtls_server.ports["dtls-echo"])   # one upstream socket: the same address and port
    try:
        first = s_client(relay.port, b"first life")
        second = s_client(relay.port, b"second life")
    finally:
        relay.close()
    assert "first life" in first.split("Verify return code")[-1], first
    assert "second life" in second.split("Verify return code")[-1], second
    assert "a new handshake replaces the association" in dtls_server.lines() or \
        dtls_server.lines().count("handshake=") >= 2


def test_a_burst_of_cookie_less_hellos_gets_hello_verify_requests_and_no_apdu(dtls_server: ServerProcess) -> None:
    """1,000 ClientHellos without a cookie, answered by the host alone, while a real client
    completes its handshake: the card sees that client's three EAP packets and nothing else."""
    body = client_hello_body(b"")
    hello = DtlsRecord(ContentType.HANDSHAKE, 0xFEFD, 0, 0, fragment_bytes(1, len(body), 0, 0, body)).encode()
    answered: list[int] = []

    def burst() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            for _ in range(1000):
                sock.sendto(hello, ("127.0.0.1", dtls_server.ports["dtls-echo"]))
                (record,) = parse_datagram(sock.recv(2048))
                (verify,) = parse_fragments(record.fragment)
                if verify.msg_type == 3 and len(verify.body) == 3 + CookieJar.SIZE:
                    answered.append(1)

    before = dtls_server.lines().count("> A080")
    sender = threading.Thread(target=burst)
    sender.start()
    output = s_client(dtls_server.ports["dtls-echo"], b"beside the burst")
    sender.join()
    assert "beside the burst" in output.split("Verify return code")[-1], output
    assert len(answered) == 1000
    # PROCESS EAP PACKET: the real client's identity, flight 1 and flight 3 only.
    assert dtls_server.lines().count("> A080") - before == 3


@pytest.fixture(scope="module")
def small_mtu_server(server_factory: ServerFactory) -> ServerProcess:
    return server_factory("--sim", "--dtls-echo", "0", "--dtls-mtu", "256", "--bind", "127.0.0.1")


def test_with_a_256_byte_mtu_the_server_flight_spans_several_fragmented_records(
        small_mtu_server: ServerProcess) -> None:
    relay = Relay(small_mtu_server.ports["dtls-echo"])
    try:
        output = s_client(relay.port, b"small datagrams", "-mtu", "256")
    finally:
        relay.close()
    assert "small datagrams" in output.split("Verify return code")[-1], output
    down = [d for direction, d in relay.log if direction == "down"]
    assert all(len(d) <= 256 for d in down)
    certificate = [f for d in down for r in parse_datagram(d) if r.epoch == 0 and r.content_type == 22
                   for f in parse_fragments(r.fragment) if f.msg_type == 11]
    assert len(certificate) >= 2 and not certificate[0].whole


def test_a_lost_last_server_flight_is_sent_again_when_the_client_repeats_its_flight(
        dtls_server: ServerProcess) -> None:
    dropped: list[bytes] = []

    def drop_server_finished(direction: str, data: bytes) -> list[bytes]:
        if direction == "down" and not dropped and any(
                r.content_type == ContentType.CHANGE_CIPHER_SPEC for r in parse_datagram(data)):
            dropped.append(data)
            return []
        return [data]

    relay = Relay(dtls_server.ports["dtls-echo"], drop_server_finished)
    try:
        output = s_client(relay.port, b"finished twice")
    finally:
        relay.close()
    assert dropped
    assert "finished twice" in output.split("Verify return code")[-1], output


@pytest.fixture(scope="module")
def mixed_server(server_factory: ServerFactory) -> ServerProcess:
    return server_factory("--sim", "--dtls-echo", "0", "--tls-echo", "0", "--bind", "127.0.0.1")


def test_tls_and_dtls_sessions_share_one_card_in_card_mode(mixed_server: ServerProcess) -> None:
    tls = subprocess.Popen(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{mixed_server.ports['tls-echo']}", "-tls1_2",
         "-CAfile", str(DEMO / "ca.pem"), "-quiet"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert tls.stdin is not None and tls.stdout is not None
    try:
        tls.stdin.write(b"tls before\n")
        tls.stdin.flush()
        assert tls.stdout.readline() == b"tls before\n"
        # A DTLS association on the same card while the TLS session holds its handle.
        output = s_client(mixed_server.ports["dtls-echo"], b"dtls between")
        assert "dtls between" in output.split("Verify return code")[-1], output
        tls.stdin.write(b"tls after\n")
        tls.stdin.flush()
        assert tls.stdout.readline() == b"tls after\n"
    finally:
        tls.kill()
        tls.wait()


SLOWEST = "Infineon CJTOP 80K"


@pytest.fixture(scope="module")
def slow_server(server_factory: ServerFactory) -> ServerProcess:
    return server_factory("--sim", "--sim-speed", SLOWEST, "--dtls-echo", "0", "--bind", "127.0.0.1", "-v",
                          "--handshake-timeout", "60")


def test_a_card_slower_than_the_clients_timer_receives_each_flight_once(slow_server: ServerProcess) -> None:
    """The card takes longer than the client's 1 s retransmission timer: the client's repeated
    flights are dropped by the host while the card works; the card sees each flight once."""
    before = slow_server.lines().count("> A080")
    output = s_client(slow_server.ports["dtls-echo"], b"slow but once", timeout=120)
    assert "slow but once" in output.split("Verify return code")[-1], output
    # PROCESS EAP PACKET: the identity, flight 1, flight 3 (one conversation, extended APDUs).
    assert slow_server.lines().count("> A080") - before == 3, slow_server.lines()[-3000:]


def ca_certificate(key: Any, subject: str, issuer_key: Any, issuer: x509.Name | None) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(issuer_key, hashes.SHA256()))


def test_a_two_certificate_chain_over_a_256_byte_mtu_spans_several_fragmented_records(
        applet_classes: Path, tmp_path: Path) -> None:
    """The card's chain is its certificate and an intermediate CA's; the server's flight
    goes in datagrams of at most 256 bytes, the Certificate message in several fragments."""
    root_key, inter_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root = ca_certificate(root_key, "DTLS test root", root_key, None)
    inter = ca_certificate(inter_key, "DTLS test intermediate", root_key, root.subject)
    (tmp_path / "root.pem").write_bytes(root.public_bytes(serialization.Encoding.PEM))
    with open_cards(sim=1) as cards:
        card = cards[0]
        initialise_demo(card, DEMO_PIN)
        generate_key(card, 0)
        csr = request_certificate(card, 0, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dtls chain")]),
                                  [parse_san("IP:127.0.0.1")])
        now = datetime.datetime.now(datetime.UTC)
        leaf = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(inter.subject)
                .public_key(csr.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
                .sign(inter_key, hashes.SHA256()))
        load_chain(card, 0, [leaf, inter])
        card.put_name(0, "server")
        card.put_policy(0, export_keys=True, client_auth="none", client_dates=False)
        card.reset_pin(0, DEMO_PIN)
        card.unlock("server", DEMO_PIN)

        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        slot = CardSlot("sim0", card)

        async def start() -> DtlsServer:
            server = DtlsServer(TlsTandem([slot], identity="server", record_mode="card"), dtls_echo_application,
                                DtlsConfig(mtu=256))
            await server.start("127.0.0.1", 0)
            return server

        server = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
        relay = Relay(server.port)
        try:
            process = subprocess.run(
                ["openssl", "s_client", "-dtls1_2", "-connect", f"127.0.0.1:{relay.port}", "-mtu", "256",
                 "-CAfile", str(tmp_path / "root.pem"), "-verify_return_error", "-showcerts"],
                input=b"", capture_output=True, timeout=60)
        finally:
            relay.close()
            asyncio.run_coroutine_threadsafe(server.close(), loop).result(30)
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
    output = process.stdout.decode(errors="replace")
    assert "Verify return code: 0 (ok)" in output and "DTLS test intermediate" in output, output
    down = [d for direction, d in relay.log if direction == "down"]
    assert all(len(d) <= 256 for d in down)
    certificate = [f for d in down for r in parse_datagram(d) if r.epoch == 0 and r.content_type == 22
                   for f in parse_fragments(r.fragment) if f.msg_type == 11]
    assert len({f.offset for f in certificate}) >= 3 and certificate[0].length > 500


MBEDTLS_CLIENT = """
import socket, sys
from mbedtls import tls, x509
store = tls.TrustStore()
store.add(x509.CRT.from_file(sys.argv[2]))
context = tls.ClientContext(tls.DTLSConfiguration(trust_store=store, validate_certificates=True))
sock = context.wrap_socket(socket.socket(socket.AF_INET, socket.SOCK_DGRAM), server_hostname="localhost")
sock.connect(("127.0.0.1", int(sys.argv[1])))
sock.settimeout(30)
while True:
    try:
        sock.do_handshake()
        break
    except (tls.WantReadError, tls.WantWriteError, tls.HelloVerifyRequest):
        continue
print(sock.negotiated_tls_version(), sock.cipher()[0])
sock.send(b"hello from mbed TLS")
print(sock.recv(100).decode())
"""


def test_the_python_mbedtls_dtls_client_completes_and_gets_its_data_echoed(dtls_server: ServerProcess) -> None:
    pytest.importorskip("mbedtls", reason="python-mbedtls (requirements.txt) is not installed")
    process = subprocess.run([sys.executable, "-c", MBEDTLS_CLIENT, str(dtls_server.ports["dtls-echo"]),
                              str(DEMO / "ca.pem")], capture_output=True, timeout=60)
    output = process.stdout.decode() + process.stderr.decode()
    assert "DTLSv1_2" in output and "hello from mbed TLS" in output, output


PSK_IDENTITY, PSK_KEY = "client1", "00112233445566778899aabbccddeeff"


def server_has_sim_psk() -> bool:
    from host import server
    return "--sim-psk" in server.build_parser().format_help()


@pytest.fixture(scope="module", params=["card", "host"])
def psk_server(request: pytest.FixtureRequest, server_factory: ServerFactory) -> ServerProcess:
    if not server_has_sim_psk():
        pytest.skip("--sim-psk (session resumption and PSK, branch merge1) is not in this tree yet")
    return server_factory("--sim", "--sim-psk", f"{PSK_IDENTITY}:{PSK_KEY}", "--dtls-echo", "0", "--record-layer",
                          request.param, "--export-keys", "--bind", "127.0.0.1")


def test_openssl_dtls_psk_client_completes_with_rfc_7925s_ccm_8_suite(psk_server: ServerProcess) -> None:
    output = s_client(psk_server.ports["dtls-echo"], b"dtls with a psk", "-psk", PSK_KEY, "-psk_identity",
                      PSK_IDENTITY, "-cipher", "PSK-AES128-CCM8")
    assert "Cipher is PSK-AES128-CCM8" in output, output
    assert "dtls with a psk" in output.split("SSL-Session")[-1], output
