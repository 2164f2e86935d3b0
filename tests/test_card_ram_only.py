"""Issue 10 item 10: no record plaintext and no Finished rest in the card's persistent memory.

The applet's persistent I/O buffer is a plain Java `byte[]` in the jcardsim JVM: the test dumps
that JVM's heap (`jcmd PID GC.heap_dump`), finds the one byte array of the buffer's size (SELECT
tag 82, the message capacity, + the 10 bytes of EAP-TLS header room before it) and looks in it for
what must never be there: the plaintext of records the card decrypted and encrypted, whole in one
APDU or in pieces across short APDUs (every suite), and the verify_data of both Finished messages.
The card's own count (GET COUNTERS eeprom_bytes) must be 0 per record. Before issue 10 item 10 a
record longer than one short APDU was decrypted in that buffer, and the client's Finished always
was: this test then fails."""
from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from card_socket import CardSocket
from tls12_client import CBC_SUITE, CCM8_SUITE, CCM_SUITE, GCM_SUITE, RawTlsClient, prf

from host.card.commands import SeTlsCard, open_cards
from host.demo_pki import DemoCa
from host.iso7816.simulator import SimulatorChannel
from host.provision import APPLET_SUITES, IdentitySpec, personalise
from host.tls.numbers import ContentType

PIN = "1234"
IO_HEADER_ROOM = 10  # EapTls.MSG_OFF: the I/O buffer is the message capacity and this
pytestmark = [pytest.mark.timeout(300),
              pytest.mark.skipif(shutil.which("jcmd") is None, reason="needs the JDK's jcmd")]


@pytest.fixture(scope="module", params=[True, False], ids=["extended", "short"])
def sim_card(request: pytest.FixtureRequest, applet_classes: Path, card_target: object,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeTlsCard]:
    """A simulated card (its JVM's heap is what the test reads), extended or short APDUs."""
    if getattr(card_target, "reader", None) is not None:
        pytest.skip("reads the simulator's heap: simulated cards only")
    with open_cards(sim=1, extended=request.param) as cards:
        ca = DemoCa.load_or_create(tmp_path_factory.mktemp("ca"))
        personalise(cards[0], IdentitySpec("server", PIN, export_keys=True, suites=APPLET_SUITES), ca, out_dir=None)
        yield cards[0]


def persistent_io_buffer(card: SeTlsCard, tmp_path: Path) -> bytes:
    """The applet's persistent I/O buffer, read from a heap dump of the simulator's JVM."""
    channel = card.session.channel
    assert isinstance(channel, SimulatorChannel)
    pid = channel.process.pid
    assert pid is not None
    dump = tmp_path / "heap.hprof"
    subprocess.run(["jcmd", str(pid), "GC.heap_dump", str(dump)], check=True, capture_output=True, timeout=120)
    data = dump.read_bytes()
    os.unlink(dump)
    size = card.session.caps.message_capacity + IO_HEADER_ROOM
    # HPROF PRIMITIVE ARRAY DUMP: tag 23, object id (8), stack serial (4), length (4), type 08 (byte).
    header = re.compile(rb"\x23[\x00-\xff]{12}" + re.escape(size.to_bytes(4, "big")) + rb"\x08")
    arrays = [data[m.end():m.end() + size] for m in header.finditer(data)]
    assert len(arrays) == 1, f"{len(arrays)} byte arrays of {size} bytes in the heap"
    return arrays[0]


def marker(size: int) -> bytes:
    """Plaintext no card would write by chance: random bytes, recognisable in 16-byte windows."""
    return secrets.token_bytes(size)


def windows(data: bytes, width: int = 12) -> set[bytes]:
    return {data[i:i + width] for i in range(0, len(data) - width + 1, width)}


@pytest.mark.parametrize("suite", [GCM_SUITE, CCM_SUITE, CCM8_SUITE, CBC_SUITE], ids=["gcm", "ccm", "ccm8", "cbc"])
def test_no_record_plaintext_or_finished_rests_in_the_persistent_buffer(
        sim_card: SeTlsCard, suite: int, tmp_path: Path) -> None:
    card = sim_card
    card.session.select()
    card.unlock("server", PIN)
    card.begin_conversation("server", 0)
    client = RawTlsClient("card", 0, sock=CardSocket(card, handle=0))
    client.handshake(suites=(suite,))
    client_verify = prf(client.master, b"client finished", client.session_hash, 12)
    server_verify = prf(client.master, b"server finished", hashlib.sha256(client.transcript).digest(), 12)
    card.counters(reset=True)
    secret_in, secret_out = marker(4000), marker(4000)
    sent = []
    for size in (1, 200, 4000):     # whole in one APDU, and in pieces when APDUs are short
        data = secret_in[:size]
        content_type, plain = card.unprotect(client.protect(ContentType.APPLICATION_DATA, data), 0)
        assert (content_type, plain) == (ContentType.APPLICATION_DATA, data)
        record = card.protect(ContentType.APPLICATION_DATA, secret_out[:size], 0)
        assert client.unprotect(record[0], record[5:]) == secret_out[:size]
        sent.append(size)
    assert card.counters()["eeprom_bytes"] == 0, "no EEPROM byte written for records"
    io = persistent_io_buffer(card, tmp_path)
    # The right array: the server's last flight (ChangeCipherSpec, the protected Finished) is there.
    assert b"\x14\x03\x03\x00\x01\x01\x16\x03\x03" in io, "the scan reads the I/O buffer"
    found = [w for w in windows(secret_in) | windows(secret_out) if w in io]
    assert not found, f"{len(found)} plaintext windows in the persistent I/O buffer"
    assert client_verify not in io, "the client's verify_data rests in the persistent I/O buffer"
    assert server_verify not in io, "the server's verify_data rests in the persistent I/O buffer"
    card.close_session(0)
