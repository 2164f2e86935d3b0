"""The applet under random and mutated APDUs (issue 10, "How it is checked"): seeded, in-process
against jcardsim through SimulatorChannel. No command may end in 6F00 (an exception escaped the
applet) or 6F03 (one the dispatcher caught: a bug), none may go unanswered, and afterwards the card
still completes a handshake and the session it kept through the storm still works.

The APDUs are well-formed ISO 7816 encodings (Lc and Le consistent with the data; extended where
the data needs it): a command whose Lc disagrees with its length never reaches an applet on a real
card's transport, and jcardsim waits for the missing bytes. What they carry is anything: random
classes, instructions, parameters and data, and the APDUs of real handshakes and records with
bytes flipped, cut, repeated or extended. Commands that change identity slot 0 (PUT DATA, GENERATE
KEY, VERIFY) are sent to slot 1, and SELECT only ever names this applet, so that the handshake after
the storm can use the identity set up before it.

CI runs FUZZ_SECONDS (default 45) with one seed; `pytest -m long_fuzz` runs the long one
(LONG_FUZZ_SECONDS, default 900, and several seeds).
"""
from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from test_card_sessions import establish, round_trip
from test_card_tls import PIN

from host.card.commands import SeTlsCard
from host.card.numbers import AppletStatus, Cla, Ins
from host.card.session import CardSession
from host.demo_pki import DemoCa
from host.iso7816.apdu import MAX_EXTENDED_NE, CommandApdu, ResponseApdu
from host.iso7816.channel import Channel, exchange
from host.iso7816.layers import Layer
from host.iso7816.simulator import SimulatorChannel
from host.paths import applet_info
from host.provision import IdentitySpec, personalise

pytestmark = pytest.mark.timeout(3600)
FUZZ_SECONDS = float(os.environ.get("FUZZ_SECONDS", "45"))
LONG_FUZZ_SECONDS = float(os.environ.get("LONG_FUZZ_SECONDS", "900"))
FORBIDDEN = {0x6F00, AppletStatus.INTERNAL_ERROR}
APDU_TIMEOUT = 10.0   # an answer slower than this is a hang
INS_CODES = [int(i) for i in Ins] + [0x00, 0x0E, 0x82, 0x84, 0xB0, 0xC2, 0xD6, 0xE0, 0xFF]
CLAS = [Cla.OPEN_EAP, Cla.OPEN_EAP | Cla.CHAINING, Cla.ISO, Cla.ISO | Cla.CHAINING, 0x80, 0x84, 0xFF]
SLOT_0_WRITERS = {Ins.PUT_DATA, Ins.GENERATE_KEY, Ins.VERIFY}


class Recorder(Layer):
    """Keeps every command that passes (the corpus the mutations start from)."""

    def __init__(self, inner: Channel) -> None:
        super().__init__(inner)
        self.commands: list[bytes] = []

    def transmit(self, command: bytes) -> bytes:
        self.commands.append(command)
        return self.inner.transmit(command)


def parse(command: bytes) -> CommandApdu:
    """A short or extended command APDU back into its fields."""
    cla, ins, p1, p2, body = command[0], command[1], command[2], command[3], command[4:]
    if not body:
        return CommandApdu(cla, ins, p1, p2)
    if len(body) == 1:
        return CommandApdu(cla, ins, p1, p2, ne=body[0] or 256)
    if body[0] == 0 and len(body) >= 3:   # extended
        n = int.from_bytes(body[1:3], "big")
        if len(body) == 3:
            return CommandApdu(cla, ins, p1, p2, ne=n or MAX_EXTENDED_NE)
        data = body[3:3 + n]
        rest = body[3 + n:]
        return CommandApdu(cla, ins, p1, p2, data, int.from_bytes(rest, "big") or MAX_EXTENDED_NE if rest else 0)
    n = body[0]
    data, rest = body[1:1 + n], body[1 + n:]
    return CommandApdu(cla, ins, p1, p2, data, (rest[0] or 256) if rest else 0)


@dataclass
class Fuzzer:
    rng: random.Random
    corpus: list[CommandApdu]
    sent: int = 0
    status: dict[int, int] = field(default_factory=dict)

    def random_command(self) -> CommandApdu:
        r = self.rng
        ins = r.choice(INS_CODES)
        p1 = r.choice([0, 0, 1, 2, 4, 5, 6, 7, 8, 9, 0x15, 0x17, 0x80, r.randrange(256)])
        p2 = r.choice([0, 0, 1, 2, 5, 6, 7, 0xFF, r.randrange(256)])
        size = r.choice([0, 0, 1, 2, 5, 6, 10, 13, 16, 40, 200, 254, 255, 256, 600, r.randrange(3000)])
        data = r.randbytes(size)
        if ins == Ins.PROCESS_EAP and data and r.random() < 0.7:   # a plausible handle and EAP header
            data = bytes([r.randrange(8), 2, r.randrange(4)]) + len(data[3:]).to_bytes(2, "big") + data[5:]
        ne = r.choice([0, 0, 1, 16, 256, 257, MAX_EXTENDED_NE])
        return CommandApdu(r.choice(CLAS), ins, p1, p2, data, ne)

    def mutated_command(self) -> CommandApdu:
        r = self.rng
        c = r.choice(self.corpus)
        data = bytearray(c.data)
        for _ in range(r.choice([1, 1, 2, 3, 8])):
            what = r.randrange(8)
            if what == 0 and data:
                data[r.randrange(len(data))] ^= 1 << r.randrange(8)
            elif what == 1 and data:
                data[r.randrange(len(data))] = r.randrange(256)
            elif what == 2 and data:
                del data[r.randrange(len(data)):]
            elif what == 3:
                data += r.randbytes(r.choice([1, 5, 100]))
            elif what == 4 and data:
                i = r.randrange(len(data))
                data[i:i] = data[i:i + r.randrange(1, 50)]
            elif what == 5:
                c = CommandApdu(c.cla, c.ins, r.randrange(256), c.p2, c.data, c.ne)
            elif what == 6:
                c = CommandApdu(c.cla, c.ins, c.p1, r.randrange(8), c.data, c.ne)
            else:
                c = CommandApdu(r.choice(CLAS), c.ins, c.p1, c.p2, c.data, r.choice([0, c.ne, 256]))
        return CommandApdu(c.cla, c.ins, c.p1, c.p2, bytes(data[:4000]), c.ne)

    def next_command(self) -> CommandApdu:
        command = self.mutated_command() if self.corpus and self.rng.random() < 0.5 else self.random_command()
        if command.ins in SLOT_0_WRITERS:
            command = CommandApdu(command.cla, command.ins, command.p1, 1, command.data, command.ne)
        if command.ins == Ins.SELECT:   # only this applet: another would deselect it
            command = CommandApdu(0x00, Ins.SELECT, 0x04, 0x00, applet_info().aid, 256)
        return command

    def send(self, channel: Channel, command: CommandApdu) -> ResponseApdu:
        encoded = command.encode(max_lc_with_le=channel.quirks.max_short_lc_with_le)
        response = exchange(channel, encoded)   # ChannelError (no answer in APDU_TIMEOUT) fails the test
        self.sent += 1
        self.status[response.sw] = self.status.get(response.sw, 0) + 1
        assert response.sw not in FORBIDDEN, f"{encoded.hex().upper()} -> {response.sw:04X}"
        return response


@pytest.fixture
def fuzz_card(applet_classes: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SeTlsCard, Recorder]]:
    """A simulated card, personalised, its identity unlocked; the recorder under its session."""
    channel = SimulatorChannel(timeout=APDU_TIMEOUT)
    recorder = Recorder(channel)
    try:
        card = SeTlsCard(CardSession(recorder), "fuzz")
        personalise(card, IdentitySpec("server", PIN, export_keys=True),
                    DemoCa.load_or_create(tmp_path_factory.mktemp("ca")), out_dir=None)
        yield card, recorder
    finally:
        channel.close()


def storm(card: SeTlsCard, recorder: Recorder, seed: int, seconds: float) -> Fuzzer:
    card.unlock("server", PIN)
    kept = establish(card, 5)                        # a session kept through the storm
    for handle in range(3):                          # the corpus: real handshakes and records
        client = establish(card, handle)
        round_trip(card, client, handle, bytes(range(256)) * 3)
    card.begin_conversation("@echo", 3)
    card.exchange(b"echo" * 100, 3)
    fuzzer = Fuzzer(random.Random(seed), [parse(c) for c in recorder.commands if len(c) >= 4])
    channel = card.session.channel.inner if isinstance(card.session.channel, Layer) else card.session.channel
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        command = fuzzer.next_command()
        if command.p2 == 5 and command.ins in (Ins.UNPROTECT_RECORD, Ins.PROTECT_RECORD, Ins.EXPORT_KEYS,
                                               Ins.CLOSE_SESSION):
            command = CommandApdu(command.cla, command.ins, command.p1, 4, command.data, command.ne)
        if command.ins == Ins.PROCESS_EAP and command.data[:1] == b"\x05":
            command = CommandApdu(command.cla, command.ins, command.p1, command.p2, b"\x04" + command.data[1:],
                                  command.ne)
        if command.ins == Ins.SELECT:
            continue   # a SELECT ends every session, the kept one too
        fuzzer.send(channel, command)
    print(f"seed {seed}: {fuzzer.sent} APDUs in {seconds:.0f} s; status words: "
          + ", ".join(f"{sw:04X} x{n}" for sw, n in sorted(fuzzer.status.items(), key=lambda kv: -kv[1])[:12]))
    # The session kept through the storm (no fuzzed command named it) still works ...
    round_trip(card, kept, 5, b"kept through the storm")
    # ... and, the card selected again, a fresh handshake completes.
    card.session.select()
    card.unlock("server", PIN)
    client = establish(card, 0)
    round_trip(card, client, 0, b"after the storm")
    return fuzzer


def test_random_and_mutated_apdus_never_break_the_applet(fuzz_card: tuple[SeTlsCard, Recorder]) -> None:
    card, recorder = fuzz_card
    fuzzer = storm(card, recorder, seed=20251129, seconds=FUZZ_SECONDS)
    assert fuzzer.sent > 1000


@pytest.mark.long_fuzz
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_long_fuzzing_run(fuzz_card: tuple[SeTlsCard, Recorder], seed: int, request: pytest.FixtureRequest) -> None:
    if "long_fuzz" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("the long fuzzing run: pytest -m long_fuzz")
    card, recorder = fuzz_card
    storm(card, recorder, seed=seed, seconds=LONG_FUZZ_SECONDS)
