"""The EAP-TLS transport on the real applet in jcardsim, through the diagnostic echo identity.

Three ways to the card: direct (host.simulator.SimulatorChannel, vpcd protocol) with short or
extended APDUs, and through pcscd + vpcd + pyscard (PcscChannel), skipped when pcscd with the vpcd
driver is not running (`sudo scripts/pcscd-vpcd.sh start`; `make test-python` runs it). Each
echo prints its APDU traffic: `pytest tests/test_echo_transport.py -s` shows the counts.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from host.card.eap import (
    EAP_TLS_HEADER_SIZE,
    EapCode,
    EapPacket,
    EapTlsData,
    EapType,
    TlsFlags,
    fragment_message,
)
from host.card.errors import EapRejectedError, MessageTooLargeError, UnknownIdentityError
from host.card.numbers import AppletStatus, Cla, Ins
from host.card.session import CardSession, select
from host.card.transport import EapTlsTransport, Outcome
from host.iso7816.apdu import CommandApdu, StatusWord
from host.iso7816.channel import Channel, NoCardError, NoReaderError
from host.iso7816.layers import Traffic
from host.iso7816.pcsc import PcscChannel
from host.iso7816.simulator import (
    JCARDSIM_JAR,
    VPCD_PORT,
    SimulatorChannel,
    SimulatorError,
    attach_to_pcscd,
    card_present,
    java_executable,
    vpcd_reader_name,
)

pytestmark = [pytest.mark.simulator, pytest.mark.timeout(120)]

ECHO = b"@echo"
SIZES = [1, 100, 255, 256, 1000, 4096, 16384]
SHORT_COMMAND_MAX = 4 + 1 + 255 + 1
SHORT_RESPONSE_MAX = 256 + 2
FRAGMENT_PACKET = 253  # one short APDU (with Le) per EAP packet: 254 bytes, the session handle and the packet
PCSCD_SCRIPT = "scripts/pcscd-vpcd.sh"


def require_java() -> None:
    try:
        java_executable()
    except SimulatorError as e:
        pytest.skip(str(e))
    if not JCARDSIM_JAR.is_file():
        pytest.skip(f"{JCARDSIM_JAR} is missing: run scripts/fetch-jars.sh (make setup)")


@pytest.fixture(scope="module")
def simulator(applet_classes: Path) -> Iterator[SimulatorChannel]:
    """One jcardsim for the module, reached directly (no pcscd)."""
    require_java()
    with SimulatorChannel(classes=applet_classes) as channel:
        yield channel


@pytest.fixture(scope="module")
def pcscd_simulator(applet_classes: Path) -> Iterator[Channel]:
    """One jcardsim behind pcscd's vpcd reader, driven through pyscard."""
    require_java()
    try:
        reader = vpcd_reader_name()
    except NoReaderError as e:
        pytest.skip(f"pcscd with the vpcd driver is not running ({e}): sudo {PCSCD_SCRIPT} start")
    if card_present(reader, timeout=0):
        pytest.skip(f"{reader!r} already has a card: another simulator is attached")
    with attach_to_pcscd(reader=reader, classes=applet_classes) as channel:
        yield channel


# path -> (channel fixture, extended APDUs, max EAP packet)
PATHS: dict[str, tuple[str, bool, int | None]] = {
    "direct-short": ("simulator", False, None),  # chaining out, GET RESPONSE back
    "direct-short-eap-fragments": ("simulator", False, FRAGMENT_PACKET),
    "direct-extended": ("simulator", True, None),
    "pcscd-short": ("pcscd_simulator", False, None),
    "pcscd-extended": ("pcscd_simulator", True, None),
}


def open_echo(request: pytest.FixtureRequest, path: str) -> EapTlsTransport:
    fixture, extended, max_packet = PATHS[path]
    session = select(request.getfixturevalue(fixture), extended=extended)
    transport = EapTlsTransport(session, ECHO, max_packet=max_packet)
    transport.start()
    return transport


def message_of(size: int) -> bytes:
    return random.Random(size).randbytes(size)


def short_links(length: int) -> int:
    """Short APDUs for one command of `length` data bytes with Le (chained, last link <= 254)."""
    links = math.ceil(length / 255)
    return links + (1 if length % 255 == 0 else 0) if length > 254 else 1


def expected_apdus(path: str, size: int) -> int:
    """APDUs one echo of `size` bytes takes on each path (pinned, so a change shows)."""
    if path.endswith("extended"):
        return 1
    if path.endswith("eap-fragments"):
        fragments = len(fragment_message(message_of(size), FRAGMENT_PACKET))
        return 2 * fragments - 1  # the last fragment's answer is the echo's first fragment
    packet = size + EAP_TLS_HEADER_SIZE
    return short_links(packet) + max(0, math.ceil((packet - 256) / 256))


def report(request: pytest.FixtureRequest, label: str, traffic: Traffic) -> None:
    print(f"\n{label}: {traffic}")
    request.node.user_properties.append(("traffic", f"{label}: {traffic}"))


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("path", PATHS)
def test_echo_returns_every_message_intact(
    request: pytest.FixtureRequest, path: str, size: int
) -> None:
    transport = open_echo(request, path)
    message = message_of(size)
    with transport.session.stats.phase("echo") as traffic:
        answer = transport.exchange(message)
    report(request, f"{path} {size} B", traffic)
    assert answer == message
    assert traffic.apdus == expected_apdus(path, size)
    if not transport.session.extended:
        assert traffic.largest_sent <= SHORT_COMMAND_MAX
        assert traffic.largest_received <= SHORT_RESPONSE_MAX


@pytest.mark.parametrize("path", ["direct-short", "direct-extended"])
def test_conversation_carries_several_messages_and_stays_open(
    request: pytest.FixtureRequest, path: str
) -> None:
    transport = open_echo(request, path)
    for size in (300, 5000, 2):
        assert transport.exchange(message_of(size)) == message_of(size)
    assert transport.finish() is Outcome.CONTINUE  # the echo never ends a conversation
    assert transport.exchange(b"again") == b"again"


def process_eap(session: CardSession, packet: EapPacket, p1p2: int = 0x0400, handle: int = 0) -> int:
    """One PROCESS EAP PACKET in session `handle` (its first data byte, docs/apdu.md)."""
    command = CommandApdu(
        Cla.OPEN_EAP, Ins.PROCESS_EAP, p1p2 >> 8, p1p2 & 0xFF, bytes([handle]) + packet.encode(), session.max_ne
    )
    return session.transmit(command).sw


def test_bad_eap_identifier_is_refused_and_the_card_serves_a_new_conversation(
    simulator: SimulatorChannel,
) -> None:
    session = select(simulator)
    identity = EapPacket(EapCode.RESPONSE, 0, EapType.IDENTITY, ECHO)
    assert process_eap(session, identity) == StatusWord.OK  # Start, identifier 1
    wrong = EapTlsData(TlsFlags.NONE, b"hello").packet(EapCode.RESPONSE, 0x42)
    assert process_eap(session, wrong) == AppletStatus.EAP_UNEXPECTED
    transport = EapTlsTransport(session, ECHO)
    transport.start()
    assert transport.exchange(b"hello") == b"hello"


def test_unknown_identity_is_refused_with_6a88(simulator: SimulatorChannel) -> None:
    transport = EapTlsTransport(select(simulator), b"nobody")
    with pytest.raises(UnknownIdentityError, match="6A88") as refused:
        transport.start()
    assert refused.value.status is StatusWord.REFERENCED_DATA_NOT_FOUND


def test_packet_size_below_16_is_refused_with_6a86(simulator: SimulatorChannel) -> None:
    session = select(simulator)
    identity = EapPacket(EapCode.RESPONSE, 0, EapType.IDENTITY, ECHO)
    assert process_eap(session, identity, p1p2=15) == StatusWord.INCORRECT_P1P2
    assert process_eap(session, identity, p1p2=16) == StatusWord.OK


def test_card_refuses_an_announced_length_beyond_its_capacity(simulator: SimulatorChannel) -> None:
    session = select(simulator)
    transport = EapTlsTransport(session, ECHO)
    transport.start()
    too_long = session.caps.message_capacity + 1
    first = EapTlsData(TlsFlags.LENGTH_INCLUDED | TlsFlags.MORE_FRAGMENTS, b"x" * 100, too_long)
    assert process_eap(session, first.packet(EapCode.RESPONSE, 1)) == StatusWord.FILE_FULL


def test_message_beyond_the_card_capacity_is_refused_before_sending(
    simulator: SimulatorChannel,
) -> None:
    session = select(simulator)
    transport = EapTlsTransport(session, ECHO)
    transport.start()
    before = session.stats.total.apdus
    with pytest.raises(MessageTooLargeError, match="exceeds the card's capacity"):
        transport.exchange(bytes(session.caps.message_capacity + 1))
    assert session.stats.total.apdus == before
    assert transport.exchange(bytes(session.caps.message_capacity)) == bytes(
        session.caps.message_capacity
    )


@pytest.mark.parametrize("channel", ["simulator", "pcscd_simulator"])
@pytest.mark.parametrize("how", ["select", "reset"])
def test_reselect_or_reset_drops_the_conversation(
    request: pytest.FixtureRequest, channel: str, how: str
) -> None:
    session = select(request.getfixturevalue(channel))
    transport = EapTlsTransport(session, ECHO)
    transport.start()
    assert transport.exchange(b"before") == b"before"
    if how == "select":
        session.select()
    else:
        session.reset()
    with pytest.raises(EapRejectedError, match="6F01"):
        transport.exchange(b"after")
    transport.start()
    assert transport.exchange(b"after") == b"after"


def test_select_reports_the_applet_capabilities(simulator: SimulatorChannel) -> None:
    session = select(simulator)
    caps = session.caps
    assert caps.version[0] >= 1
    assert caps.extended_length and caps.command_chaining and caps.get_response
    assert caps.message_capacity >= 16384 + 256  # a full TLS record and its expansion
    assert caps.default_packet_size >= 16
    assert session.extended  # jcardsim over vpcd carries extended APDUs


def test_second_simulator_on_the_same_vpcd_port_is_refused(pcscd_simulator: Channel) -> None:
    with pytest.raises(SimulatorError, match="already has a card"):
        attach_to_pcscd()


def test_pcsc_channel_names_the_missing_reader_or_card() -> None:
    try:
        empty = vpcd_reader_name(VPCD_PORT + 1)  # vpcd's second slot: no card connects there
    except NoReaderError as e:
        pytest.skip(f"pcscd with the vpcd driver is not running ({e}): sudo {PCSCD_SCRIPT} start")
    with pytest.raises(NoCardError, match="no card in reader 'Virtual PCD"):
        PcscChannel(empty)
    with pytest.raises(NoReaderError, match="no reader named 'No Such Reader'"):
        PcscChannel("No Such Reader")
