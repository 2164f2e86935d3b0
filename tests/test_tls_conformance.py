"""RFC 5246 conformance of the card's TLS server and of the host around it (issue 9): handshake
messages and alerts split over any records, ClientHellos of any size streamed through the card,
the client's signature_algorithms, parsing before negotiating, the 2^14 plaintext limit, and
refusals that come at once.

Real clients where one can produce the input (openssl s_client), the crafted client of
tests/tls12_client.py otherwise; the sans-IO flight assembler alone; the card alone (through its
commands, without the host's normalisation) where it must hold the line itself.
"""
from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
from card_socket import CardSocket
from conftest import DEMO, ServerFactory, ServerProcess
from test_protocol_numbers import differences, java_constants, with_prefix
from tls12_client import (
    ALERT,
    APPDATA,
    CCS,
    GCM_SUITE,
    HANDSHAKE,
    AlertReceived,
    RawTlsClient,
    client_hello,
    extension,
    handshake_message,
    record,
    records,
)

from host.card.commands import SeTlsCard
from host.provision import DEMO_PIN
from host.tls.handshake import alert_in
from host.tls.numbers import (
    MAX_PLAINTEXT,
    AlertDescription,
    AlertLevel,
    ExtensionType,
    HandshakeType,
    SignatureScheme,
)
from host.tls.record_layer import RecordRejected
from host.tls.records import FlightAssembler, FlightPhase, Record, RecordError, RecordReader

pytestmark = pytest.mark.timeout(300)

RSA_ONLY = (0xC02F, 0x009C)
PROMPT = 3.0  # seconds: "at once", against a handshake timeout of 20


# ---- the sans-IO flight assembler -------------------------------------------------------------


def _records(data: bytes) -> list[Record]:
    reader = RecordReader()
    reader.feed(data)
    out = []
    while (one := reader.next_record()) is not None:
        out.append(one)
    return out


def test_the_assembler_reframes_a_hello_split_into_bytes_as_one_record() -> None:
    hello = client_hello(bytes(32), [GCM_SUITE], padding=20)
    flights = FlightAssembler()
    answers = [flights.add(one) for one in _records(records(HANDSHAKE, hello, 1, 0x0301))]
    assert answers[:-1] == [None] * (len(hello) - 1)
    assert answers[-1] == record(HANDSHAKE, hello, 0x0301)
    assert flights.phase is FlightPhase.CLIENT_KEY_EXCHANGE
    assert flights.received == 6 * len(hello) and flights.forwarded == 5 + len(hello)


def test_the_assembler_streams_a_long_hello_in_parts_the_card_takes() -> None:
    hello = client_hello(bytes(32), [GCM_SUITE], padding=36_000)
    for size in (MAX_PLAINTEXT, 1000, 7):
        flights = FlightAssembler()
        parts = [part for one in _records(records(HANDSHAKE, hello, size)) if (part := flights.add(one))]
        assert all(len(part) <= MAX_PLAINTEXT + 2048 for part in parts), [len(p) for p in parts]
        assert b"".join(r.fragment for part in parts for r in _records(part)) == hello
        assert flights.hello_complete


def test_the_assembler_reassembles_an_alert_split_over_records() -> None:
    flights = FlightAssembler()
    assert flights.add(Record(ALERT, 0x0303, b"\x02")) is None
    assert flights.add(Record(ALERT, 0x0303, b"\x5a")) == record(ALERT, b"\x02\x5a")
    assert flights.alert == (AlertLevel.FATAL, AlertDescription.USER_CANCELED)


@pytest.mark.parametrize(("flight", "alert"), [
    (record(HANDSHAKE, b"\x01\x00\x40\x00" + bytes(MAX_PLAINTEXT - 3)), AlertDescription.RECORD_OVERFLOW),
    (record(APPDATA, b"early"), AlertDescription.UNEXPECTED_MESSAGE),
    (record(HANDSHAKE, handshake_message(16, bytes(66))), AlertDescription.UNEXPECTED_MESSAGE),
    (record(HANDSHAKE, b""), AlertDescription.UNEXPECTED_MESSAGE),
    (record(HANDSHAKE, b"\x01\x03\x00\x00"), AlertDescription.DECODE_ERROR),  # longer than any hello
], ids=["plaintext-over-2^14", "application-data", "not-a-hello", "empty-record", "hello-too-long"])
def test_the_assembler_refuses_what_flight_1_does_not_allow(flight: bytes, alert: AlertDescription) -> None:
    with pytest.raises(RecordError) as refused:
        for one in _records(flight):
            FlightAssembler().add(one)
    assert refused.value.alert == alert


def test_the_assembler_refuses_a_repeated_change_cipher_spec_at_once() -> None:
    flights = FlightAssembler()
    assert flights.add(Record(HANDSHAKE, 0x0301, client_hello(bytes(32), [GCM_SUITE]))) is not None
    assert flights.add(Record(HANDSHAKE, 0x0303, handshake_message(16, bytes(66)))) is None
    with pytest.raises(RecordError) as refused:
        flights.add(Record(CCS, 0x0303, b"\x01\x01"))
    assert refused.value.alert == AlertDescription.UNEXPECTED_MESSAGE


# ---- the card through its commands ------------------------------------------------------------


def card_client(card: SeTlsCard, assemble: bool = True) -> tuple[RawTlsClient, CardSocket]:
    card.session.select()
    card.unlock("server", DEMO_PIN)
    card.begin_conversation("server")
    sock = CardSocket(card, assemble)
    return RawTlsClient("card", 0, sock=sock), sock


def bytes_to_card(card: SeTlsCard) -> int:
    return card.traffic()[1]


def test_reassembly_cuts_the_bytes_sent_to_the_card(card: SeTlsCard) -> None:
    """Item 1: a client that sends every handshake message in 1-byte records costs the card no
    more bytes than one that does not: the host reassembles (a thousand record headers are 5 KB)."""
    costs = {}
    for size in (None, 1):
        client, sock = card_client(card)
        before = bytes_to_card(card)
        client.handshake(record_size=size, padding=1024)
        costs[size] = (bytes_to_card(card) - before, sock.sent)
    (whole_card, whole_sent), (split_card, split_sent) = costs[None], costs[1]
    assert split_sent > whole_sent + 5 * 1000, costs  # the client sent >1000 more record headers
    assert split_card == whole_card, costs             # the card saw the same bytes
    assert split_card < split_sent / 4, costs


def test_the_card_takes_a_finished_split_over_protected_records(card: SeTlsCard) -> None:
    client, sock = card_client(card)
    client.handshake(finished_record_size=1)  # 16 protected records of one byte
    assert sock.flights.phase is FlightPhase.DONE
    data = b"after a Finished in 16 records"
    assert client.unprotect(*_split(card.protect(APPDATA, data))) == data


def _split(protected: bytes) -> tuple[int, bytes]:
    return protected[0], protected[5:]


def test_the_card_streams_a_client_hello_longer_than_its_buffer(card: SeTlsCard) -> None:
    """Item 2: 36 KB of ClientHello reach the card in parts of whole records; it parses them as
    they come and answers the last one."""
    client, sock = card_client(card)
    client.handshake(record_size=MAX_PLAINTEXT, padding=36_000)
    assert sock.messages >= 3 + 1  # three parts of the hello, then flight 3
    assert client.suite == GCM_SUITE


def test_the_card_refuses_a_repeated_change_cipher_spec_by_itself(card: SeTlsCard) -> None:
    """Item 4: without the host's checks, the card answers unexpected_message."""
    client, sock = card_client(card, assemble=False)
    client.send_client_hello()
    client.read_server_flight()
    cke = client.key_exchange()
    client.send(record(HANDSHAKE, cke) + record(CCS, b"\x01\x01"))
    assert alert_in(sock.pending) == AlertDescription.UNEXPECTED_MESSAGE


@pytest.mark.parametrize(("hello", "alert"), [
    (dict(suites=RSA_ONLY, extra=extension(ExtensionType.EXTENDED_MASTER_SECRET, b"\x00"), ems=False),
     AlertDescription.DECODE_ERROR),
    (dict(suites=RSA_ONLY, groups=(), extra=b""), AlertDescription.DECODE_ERROR),  # groups list empty
    (dict(sig_algs=None), AlertDescription.HANDSHAKE_FAILURE),
    (dict(sig_algs=(SignatureScheme.ECDSA_SHA1, SignatureScheme.ECDSA_SHA224)), AlertDescription.HANDSHAKE_FAILURE),
], ids=["non-empty-ems-without-common-suite", "empty-groups-without-common-suite", "no-signature-algorithms",
        "sha1-and-sha224-only"])
def test_the_card_parses_before_it_negotiates(card: SeTlsCard, hello: dict[str, object],
                                              alert: AlertDescription) -> None:
    client, sock = card_client(card, assemble=False)
    options = dict(hello)
    suites = options.pop("suites", (GCM_SUITE,))
    client.send_client_hello(suites, **options)  # type: ignore[arg-type]
    assert alert_in(sock.pending) == alert


def test_the_card_refuses_records_over_the_limits_after_the_handshake(card: SeTlsCard) -> None:
    """Item 5, card side: 2^14 + 1 bytes of plaintext is record_overflow, a ChangeCipherSpec
    unexpected_message; each ends the session with the protected alert."""
    for protected, description in ((None, AlertDescription.RECORD_OVERFLOW),
                                   (record(CCS, b"\x01"), AlertDescription.UNEXPECTED_MESSAGE)):
        client, _ = card_client(card)
        client.handshake()
        with pytest.raises(RecordRejected) as rejected:
            card.unprotect(protected or client.protect(APPDATA, bytes(MAX_PLAINTEXT + 1)))
        assert rejected.value.description == description
        alert = client.unprotect(*_split(rejected.value.alert))
        assert alert == bytes([AlertLevel.FATAL, description])


def test_the_select_response_names_the_signature_hashes(card: SeTlsCard) -> None:
    caps = card.session.caps
    assert caps.version >= (1, 1)
    assert caps.ecdsa_sha384 and caps.ecdsa_sha512  # jcardsim has both


# ---- a server, as clients see it ----------------------------------------------------------------


@pytest.fixture(scope="module", params=["card", "host"])
def server(request: pytest.FixtureRequest, server_factory: ServerFactory) -> ServerProcess:
    return server_factory("--sim", "--tls-echo", "0", "--record-layer", request.param, "--export-keys",
                          "--handshake-timeout", "20")


def connect(server: ServerProcess) -> RawTlsClient:
    return RawTlsClient("127.0.0.1", server.ports["tls-echo"], timeout=20)


def echoed(client: RawTlsClient, data: bytes = b"still here") -> bool:
    client.send_data(data)
    received = b""
    while len(received) < len(data):
        received += client.receive_data()
    return received == data


@pytest.mark.parametrize("padding", [20, 1024])
def test_every_handshake_message_in_one_byte_records(server: ServerProcess, padding: int) -> None:
    """Item 1: the ClientHello and the ClientKeyExchange byte by byte, the Finished in 16
    protected records of one byte."""
    client = connect(server)
    client.handshake(record_size=1, finished_record_size=1, padding=padding)
    assert echoed(client)
    client.close()


def test_openssl_with_small_records_completes(server: ServerProcess) -> None:
    """Item 1 with a real client: at -max_send_frag 512 openssl splits its ClientHello, made
    longer than that by a long ALPN list, over two records."""
    alpn = ",".join(["p" * 200, "q" * 200, "http/1.1"])
    result = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{server.ports['tls-echo']}", "-tls1_2",
         "-max_send_frag", "512", "-alpn", alpn, "-CAfile", str(DEMO / "ca.pem"),
         "-verify_return_error", "-servername", "localhost", "-msg"],
        input=b"", capture_output=True, timeout=60)
    output = result.stdout.decode(errors="replace")
    assert "Verify return code: 0 (ok)" in output, output
    hello = re.search(r">>> TLS 1\.2, Handshake \[length ([0-9a-f]+)\], ClientHello", output)
    assert hello is not None and int(hello[1], 16) > 512, output


def test_an_alert_split_over_records_ends_the_handshake(server: ServerProcess) -> None:
    client = connect(server)
    client.send_client_hello()
    client.read_server_flight()
    start = time.monotonic()
    client.send_alert(AlertLevel.FATAL, AlertDescription.USER_CANCELED, record_size=1)
    assert client._sock.recv(100) == b""  # closed without an answer
    assert time.monotonic() - start < PROMPT
    client.close()


def test_close_notify_split_over_protected_records_closes_the_session(server: ServerProcess) -> None:
    client = connect(server)
    client.handshake()
    assert echoed(client)
    client.send_alert(AlertLevel.WARNING, AlertDescription.CLOSE_NOTIFY, record_size=1, protected=True)
    with pytest.raises(AlertReceived) as alert:
        client.receive_data()
    assert alert.value.description == AlertDescription.CLOSE_NOTIFY
    client.close()


@pytest.mark.parametrize("size", [18_467, 36_000])
def test_long_client_hellos_complete(server: ServerProcess, size: int) -> None:
    """Item 2: a ClientHello of `size` bytes in records of 2^14 bytes and the rest."""
    client = connect(server)
    base = len(client_hello(bytes(32), [GCM_SUITE], padding=0))
    client.handshake(record_size=MAX_PLAINTEXT, padding=size - base)
    assert len(client.transcript) > size
    assert echoed(client)
    client.close()


def expect_alert_at_once(client: RawTlsClient, data: bytes, description: AlertDescription) -> None:
    start = time.monotonic()
    client.send(data)
    with pytest.raises(AlertReceived) as alert:
        while True:
            client.read_record()
    assert alert.value.description == description
    assert time.monotonic() - start < PROMPT
    client.close()


def test_a_plaintext_record_over_2_14_gets_record_overflow(server: ServerProcess) -> None:
    hello = client_hello(bytes(32), [GCM_SUITE], padding=MAX_PLAINTEXT)
    expect_alert_at_once(connect(server), record(HANDSHAKE, hello[:MAX_PLAINTEXT + 1]),
                         AlertDescription.RECORD_OVERFLOW)


def test_a_protected_record_over_2_14_plus_2048_gets_record_overflow(server: ServerProcess) -> None:
    client = connect(server)
    client.send_client_hello()
    client.read_server_flight()
    cke = client.key_exchange()
    expect_alert_at_once(client, record(HANDSHAKE, cke) + record(CCS, b"\x01") + b"\x16\x03\x03\x48\x01",
                         AlertDescription.RECORD_OVERFLOW)


@pytest.mark.parametrize(("hello", "alert"), [
    (dict(suites=RSA_ONLY, ems=False, extra=extension(ExtensionType.EXTENDED_MASTER_SECRET, b"\x00")),
     AlertDescription.DECODE_ERROR),
    (dict(suites=RSA_ONLY, groups=None, extra=extension(ExtensionType.SUPPORTED_GROUPS, b"\x00\x04\x00\x17")),
     AlertDescription.DECODE_ERROR),
], ids=["non-empty-ems", "truncated-supported-groups"])
def test_a_malformed_hello_without_common_suite_gets_decode_error(server: ServerProcess, hello: dict[str, object],
                                                                 alert: AlertDescription) -> None:
    """Item 4: parse before negotiate."""
    client = connect(server)
    options = dict(hello)
    suites = options.pop("suites")
    hello_msg = client_hello(bytes(32), suites, **options)  # type: ignore[arg-type]
    expect_alert_at_once(client, record(HANDSHAKE, hello_msg), alert)


def test_a_repeated_change_cipher_spec_gets_unexpected_message_at_once(server: ServerProcess) -> None:
    """Item 4: `01 01` after the ClientKeyExchange; the client sends nothing more and waits."""
    client = connect(server)
    client.send_client_hello()
    client.read_server_flight()
    cke = client.key_exchange()
    expect_alert_at_once(client, record(HANDSHAKE, cke) + record(CCS, b"\x01\x01"),
                         AlertDescription.UNEXPECTED_MESSAGE)


@pytest.mark.parametrize("stage", ["after-hello", "after-key-exchange"])
def test_application_data_in_the_handshake_gets_unexpected_message_at_once(server: ServerProcess,
                                                                          stage: str) -> None:
    client = connect(server)
    client.send_client_hello()
    client.read_server_flight()
    early = b""
    if stage == "after-key-exchange":
        early = record(HANDSHAKE, client.key_exchange())
    expect_alert_at_once(client, early + record(APPDATA, b"too early"), AlertDescription.UNEXPECTED_MESSAGE)


def test_a_finished_in_place_of_the_key_exchange_gets_unexpected_message(server: ServerProcess) -> None:
    client = connect(server)
    client.send_client_hello()
    client.read_server_flight()
    expect_alert_at_once(client, record(HANDSHAKE, handshake_message(HandshakeType.FINISHED, bytes(12))),
                         AlertDescription.UNEXPECTED_MESSAGE)


def test_a_client_without_signature_algorithms_gets_handshake_failure(server: ServerProcess) -> None:
    """Item 3 (RFC 9155): no signature_algorithms, no handshake."""
    client = connect(server)
    with pytest.raises(AlertReceived) as alert:
        client.handshake(sig_algs=None)
    assert alert.value.description == AlertDescription.HANDSHAKE_FAILURE
    client.close()


@pytest.mark.parametrize("offered", [
    (SignatureScheme.ECDSA_SHA384,),
    (SignatureScheme.ECDSA_SHA512, SignatureScheme.ECDSA_SHA256),
    (SignatureScheme.ECDSA_SHA1, SignatureScheme.ECDSA_SHA224, SignatureScheme.ECDSA_SHA384),
])
def test_the_card_signs_with_the_clients_preferred_hash(server: ServerProcess, offered: tuple[int, ...]) -> None:
    client = connect(server)
    client.handshake(sig_algs=offered)
    usable = [s for s in offered if s >= SignatureScheme.ECDSA_SHA256]
    assert client.signature_scheme == usable[0]
    assert echoed(client)
    client.close()


@pytest.mark.parametrize("hash_name", ["SHA384", "SHA512"])
def test_openssl_offering_only_a_longer_hash_completes(server: ServerProcess, hash_name: str) -> None:
    """Item 3 with a real client: openssl -sigalgs ECDSA+SHA384 (or SHA512) alone."""
    result = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{server.ports['tls-echo']}", "-tls1_2",
         "-sigalgs", f"ECDSA+{hash_name}", "-CAfile", str(DEMO / "ca.pem"), "-verify_return_error",
         "-servername", "localhost"],
        input=b"", capture_output=True, timeout=60)
    output = result.stdout.decode(errors="replace")
    assert "Verify return code: 0 (ok)" in output, output
    assert f"Peer signing digest: {hash_name}" in output, output


@pytest.mark.parametrize("size", [MAX_PLAINTEXT + 1, MAX_PLAINTEXT + 2048 - 24])
def test_a_protected_record_over_2_14_bytes_of_plaintext_gets_record_overflow(server: ServerProcess,
                                                                               size: int) -> None:
    """Item 5, both record modes; the second record is 2^14 + 2048 bytes of ciphertext, the most
    a record may carry (the card's buffer takes it)."""
    client = connect(server)
    client.handshake()
    client.send(client.protect(APPDATA, bytes(size)))
    with pytest.raises(AlertReceived) as alert:
        client.receive_data()
    assert alert.value.description == AlertDescription.RECORD_OVERFLOW
    client.close()


def test_a_change_cipher_spec_after_the_handshake_gets_unexpected_message(server: ServerProcess) -> None:
    client = connect(server)
    client.handshake()
    assert echoed(client)
    client.send(record(CCS, b"\x01"))
    with pytest.raises(AlertReceived) as alert:
        client.receive_data()
    assert alert.value.description == AlertDescription.UNEXPECTED_MESSAGE
    client.close()


def test_the_server_still_serves_after_all_this(server: ServerProcess) -> None:
    client = connect(server)
    client.handshake()
    assert echoed(client, b"x" * MAX_PLAINTEXT)
    client.close()


# ---- numbers and secrets in the sources ---------------------------------------------------------


def test_the_new_tls_numbers_are_the_applets() -> None:
    tls = java_constants("Tls.java")
    schemes = {f"ECDSA_{name}": value for name, value in with_prefix(tls, "SIG_ECDSA_").items()}
    assert schemes and not differences(schemes, {k: v for k, v in
                                                 {m.name: int(m) for m in SignatureScheme}.items() if k in schemes})
    extensions = with_prefix(tls, "EXT_")
    assert extensions and not differences(extensions, {m.name: int(m) for m in ExtensionType if m.name in extensions})
    from host.tls.numbers import CLIENT_HELLO_MAX
    assert tls["CLIENT_HELLO_MAX_HIGH"] << 16 | tls["CLIENT_HELLO_MAX_LOW"] == CLIENT_HELLO_MAX


def test_secrets_are_never_compared_with_an_early_exit() -> None:
    """Item 9: Finished, MACs and tags are compared byte by byte into one accumulator; nothing
    that handles them uses Util.arrayCompare (which stops at the first difference)."""
    applet = Path(__file__).resolve().parent.parent / "applet" / "src" / "org" / "setls" / "applet"
    for name in ("TlsServer.java", "RecordCipher.java", "AesGcm.java", "AesCcm.java", "HmacSha256.java",
                 "TlsPrf.java", "ClientHelloParser.java"):
        assert "arrayCompare" not in (applet / name).read_text(), name
