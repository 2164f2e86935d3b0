"""The card measurements (docs/benchmark.md, part 1): on one jcardsim card, full handshakes for every
cipher suite in both APDU formats (extended length; short APDUs with chaining and GET RESPONSE),
driven by Python's `ssl` client (host.bench.client), with APDUs and bytes per phase, the card's
operation counters and the simulator's wall time; then one 1 KB record each way through the card's
record layer. A failed handshake stops the run (MeasurementError): nothing is retried."""
from __future__ import annotations

import os
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from host.bench.client import (
    PHASE_FLIGHT1,
    PHASE_FLIGHT3,
    PHASE_RECORD,
    PHASE_RECORD_IN,
    PHASE_RECORD_OUT,
    HandshakeError,
    HandshakeTrace,
    MemoryTlsClient,
    client_context,
    drive_handshake,
)
from host.bench.psk_client import PskClient
from host.bench.results import MeasurementError, Results, Settings
from host.card.commands import SeTlsCard, open_cards
from host.card.numbers import Counter
from host.card.session import CardSession
from host.demo_pki import DemoCa
from host.iso7816.layers import Traffic
from host.provision import IdentitySpec, demo_operator, personalise
from host.tls.numbers import CipherSuite, ContentType

if TYPE_CHECKING:
    from host.bench.client_auth import ClientAuthRun

GCM = CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
CBC_SHA256 = CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256
SUITES = (GCM, CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CCM, CBC_SHA256)
SHORT_NAMES = dict(zip(SUITES, ("GCM", "CCM_8", "CCM", "CBC-SHA256"), strict=True))
APDU_FORMATS = {"extended": None, "short": False}   # name -> CardSession(extended=...)
HANDSHAKE_PHASES = (PHASE_FLIGHT1, PHASE_FLIGHT3)
PHASES = (*HANDSHAKE_PHASES, PHASE_RECORD)
RECORD_DIRECTIONS = (PHASE_RECORD_IN, PHASE_RECORD_OUT)   # to the card / from the card, one record each
IDENTITY, PIN = "server", "2468"
RECORD_SIZE = 1024
SIM = "jcardsim"
# Issue 12: handshakes beside the full one (GCM; PSK: TLS_PSK_WITH_AES_128_CCM_8), extended APDUs.
FULL, RESUMED_ID, RESUMED_TICKET, PSK = "full", "resumed (ID)", "resumed (ticket)", "PSK"
MODES = (RESUMED_ID, RESUMED_TICKET, PSK)
PSK_IDENTITY, PSK_KEY = b"bench-psk", bytes(range(16))


@dataclass
class Sample:
    """One handshake and one record each way, on the simulator."""

    traffic: dict[str, Traffic]   # per phase; PHASE_RECORD is the sum of the two directions
    counts: dict[str, int]
    record_counts: dict[str, int]   # both directions
    wall_ms: float
    record_wall_ms: float
    trace: HandshakeTrace
    direction_counts: dict[str, dict[str, int]] = field(default_factory=dict)  # PHASE_RECORD_IN/OUT -> counts


@dataclass
class SimRun:
    """The handshakes of one suite in one APDU format."""

    suite: CipherSuite
    apdu_format: str
    certificate_bytes: int
    samples: list[Sample] = field(default_factory=list)
    mode: str = FULL   # or one of MODES: a resumed or PSK handshake

    @property
    def short_label(self) -> str:
        """The suite's short name, with the mode when the handshake is not a full one (plots)."""
        name = SHORT_NAMES.get(self.suite, self.suite.openssl_name)
        return name if self.mode == FULL else f"{name} {self.mode}"

    @property
    def format_label(self) -> str:
        """The APDU format, with the mode when the handshake is not a full one (results' `mode`)."""
        return self.apdu_format if self.mode == FULL else f"{self.apdu_format} {self.mode}"

    def median(self, value: Callable[[Sample], float]) -> float:
        return float(statistics.median(value(s) for s in self.samples))

    def phase(self, name: str, attribute: str) -> float:
        return self.median(lambda s: float(getattr(s.traffic.get(name, Traffic()), attribute)))

    def handshake(self, attribute: str) -> float:
        return sum(self.phase(p, attribute) for p in HANDSHAKE_PHASES)

    def count(self, name: str, record: bool = False) -> float:
        return self.median(lambda s: float((s.record_counts if record else s.counts)[name]))

    def direction_count(self, name: str, direction: str) -> float:
        """`name` counted for one record in one direction (PHASE_RECORD_IN or PHASE_RECORD_OUT)."""
        return self.median(lambda s: float(s.direction_counts[direction][name]))


def one_handshake(card: SeTlsCard, cafile: str, run: SimRun) -> Sample:
    """A full handshake (counters reset before, read after), then 1 KB each way via the card;
    MeasurementError, with the suite, the APDU format and the reason, if either fails."""
    where = f"{run.suite.openssl_name}, {run.apdu_format} APDUs"
    stats = card.session.stats
    client = MemoryTlsClient(client_context(cafile, run.suite))
    card.counters(reset=True)
    stats.reset()
    start = time.perf_counter()
    try:
        trace = drive_handshake(card, client, stats, IDENTITY)
    except (HandshakeError, ssl.SSLError) as exc:
        raise MeasurementError(f"{where}: the handshake failed: {exc}") from exc
    wall = time.perf_counter() - start
    if trace.suite != run.suite:
        raise MeasurementError(f"{where}: the card chose {trace.suite_name}")
    counts = card.counters(reset=True)
    return record_sample(card, client, counts, wall, trace, where)


def record_sample(card: SeTlsCard, client: MemoryTlsClient | PskClient, counts: dict[str, int], wall: float,
                  trace: HandshakeTrace, where: str) -> Sample:
    """The Sample of a handshake just done (`counts`: its counters, `wall`: its seconds), with one
    record each way measured now (record_round)."""
    directions, record_wall = record_round(card, client, where)
    stats = card.session.stats
    traffic = {name: replace(stats.phases.get(name, Traffic())) for name in (*HANDSHAKE_PHASES, *RECORD_DIRECTIONS)}
    traffic[PHASE_RECORD] = Traffic()
    record_counts: dict[str, int] = {}
    for direction in RECORD_DIRECTIONS:
        traffic[PHASE_RECORD].add(traffic[direction])
        for name, value in directions[direction].items():
            record_counts[name] = record_counts.get(name, 0) + value
    return Sample(traffic, counts, record_counts, wall * 1000, record_wall * 1000, trace, directions)


def one_resumed_handshake(card: SeTlsCard, cafile: str, run: SimRun) -> Sample:
    """A full handshake (not counted) whose session Python's client then resumes, by session ID
    (no ticket offered) or by ticket; the resumed one is measured like one_handshake()."""
    where = f"{run.suite.openssl_name}, {run.mode}"
    context = client_context(cafile, run.suite)
    if run.mode == RESUMED_ID:
        context.options |= ssl.OP_NO_TICKET
    stats = card.session.stats
    first = MemoryTlsClient(context)
    try:
        drive_handshake(card, first, stats, IDENTITY)
        client = MemoryTlsClient(context, session=first.tls.session)
        card.counters(reset=True)
        stats.reset()
        start = time.perf_counter()
        trace = drive_handshake(card, client, stats, IDENTITY)
    except (HandshakeError, ssl.SSLError) as exc:
        raise MeasurementError(f"{where}: the handshake failed: {exc}") from exc
    wall = time.perf_counter() - start
    if not client.tls.session_reused:
        raise MeasurementError(f"{where}: the card did not resume the session")
    counts = card.counters(reset=True)
    return record_sample(card, client, counts, wall, trace, where)


def one_psk_handshake(card: SeTlsCard, run: SimRun) -> Sample:
    """A TLS_PSK_WITH_AES_128_CCM_8 handshake by the benchmark's PSK client, measured like one_handshake()."""
    stats = card.session.stats
    client = PskClient(PSK_IDENTITY, PSK_KEY)
    card.counters(reset=True)
    stats.reset()
    start = time.perf_counter()
    try:
        with stats.phase(PHASE_FLIGHT1):
            card.begin_conversation(IDENTITY)
            answer = card.exchange(client.client_hello())
        with stats.phase(PHASE_FLIGHT3):
            answer = card.exchange(client.flight3(answer))
        client.check_finished(answer)
    except ValueError as exc:
        raise MeasurementError(f"PSK: the handshake failed: {exc}") from exc
    wall = time.perf_counter() - start
    counts = card.counters(reset=True)
    trace = HandshakeTrace()
    trace.suite = run.suite
    return record_sample(card, client, counts, wall, trace, "PSK")


def mode_runs(card: SeTlsCard, cafile: str, settings: Settings, bar: tqdm[object]) -> list[SimRun]:
    """The resumed (ID, ticket) and PSK handshakes, settings.runs each, extended APDUs."""
    runs = []
    certificate = prepare_card(card, GCM)
    card.set_psk(PSK_IDENTITY, PSK_KEY)   # the operator session prepare_card opened
    for mode in MODES:
        suite = CipherSuite.TLS_PSK_WITH_AES_128_CCM_8 if mode == PSK else GCM
        run = SimRun(suite, "extended", 0 if mode == PSK else certificate, mode=mode)

        def measure(run: SimRun = run) -> Sample:
            return one_psk_handshake(card, run) if run.mode == PSK else one_resumed_handshake(card, cafile, run)

        measure()  # warm-up, not counted
        for _ in range(settings.runs):
            run.samples.append(measure())
            bar.update()
        runs.append(run)
    return runs



def record_round(card: SeTlsCard, client: MemoryTlsClient | PskClient,
                 where: str) -> tuple[dict[str, dict[str, int]], float]:
    """One RECORD_SIZE application-data record each way through the card's record layer: the
    card's counters of each direction (read and reset after each) and the wall time of both."""
    data = os.urandom(RECORD_SIZE)
    sent = client.protect(data)
    stats = card.session.stats
    start = time.perf_counter()
    with stats.phase(PHASE_RECORD_IN):
        content_type, plain = card.unprotect(sent)
    wall = time.perf_counter() - start
    counts_in = card.counters(reset=True)
    start = time.perf_counter()
    with stats.phase(PHASE_RECORD_OUT):
        answer = card.protect(ContentType.APPLICATION_DATA, plain)
    wall += time.perf_counter() - start
    counts_out = card.counters()
    if content_type != ContentType.APPLICATION_DATA or client.unprotect(answer, RECORD_SIZE) != data:
        raise MeasurementError(f"{where}: the card's record layer did not echo the record")
    return {PHASE_RECORD_IN: counts_in, PHASE_RECORD_OUT: counts_out}, wall


def prepare_card(card: SeTlsCard, suite: int) -> int:
    """Unlocks the identity and makes `suite` its only suite; returns the certificate list size."""
    card.unlock(IDENTITY, PIN)
    slot = card.slot or 0
    card.open_operator_session(demo_operator())  # the suites are the operator's to change
    card.put_suites(slot, (suite,))
    return len(card.certificate_list(slot))


def personalise_identity(card: SeTlsCard, ca: DemoCa) -> None:
    """Personalises the benchmark's identity (a key generated in the card, certified by `ca`) and
    unlocks it."""
    personalise(card, IdentitySpec(IDENTITY, PIN, export_keys=True), ca, out_dir=None)
    card.unlock(IDENTITY, PIN)


FRAGMENT_RECORD_SIZE = 1  # the client's plaintext handshake records, in bytes each


@dataclass
class FragmentingClient:
    """One GCM handshake (extended APDUs) by a client that sends its handshake messages in
    FRAGMENT_RECORD_SIZE-byte records, beside one that does not: what each sent, and what the
    host passed on to the card (it reassembles the messages, issue 9)."""

    client_bytes: int
    card_message_bytes: int
    bytes_to_card: int  # APDU bytes of the handshake phases, headers included
    plain_client_bytes: int
    plain_bytes_to_card: int


def fragmenting_handshake(card: SeTlsCard, cafile: str) -> FragmentingClient:
    card.session.stats.reset()
    plain = drive_handshake(card, MemoryTlsClient(client_context(cafile, GCM)), card.session.stats, IDENTITY)
    plain_to_card = sum(card.session.stats.phases[p].bytes_sent for p in HANDSHAKE_PHASES)
    card.session.stats.reset()
    cut = drive_handshake(card, MemoryTlsClient(client_context(cafile, GCM)), card.session.stats, IDENTITY,
                          record_size=FRAGMENT_RECORD_SIZE)
    to_card = sum(card.session.stats.phases[p].bytes_sent for p in HANDSHAKE_PHASES)
    return FragmentingClient(cut.client_record_bytes, cut.card_message_bytes, to_card,
                             plain.client_record_bytes, plain_to_card)


def sim_benchmark(settings: Settings) -> tuple[list[SimRun], FragmentingClient, list[ClientAuthRun]]:
    """Every suite in every APDU format, settings.runs handshakes each, on one simulated card;
    then the fragmenting client (GCM, extended APDUs) and the handshakes with client
    authentication (host.bench.client_auth)."""
    runs: list[SimRun] = []
    total = (len(SUITES) * len(APDU_FORMATS) + len(MODES)) * settings.runs
    with tempfile.TemporaryDirectory(prefix="setls-bench-ca-") as tmp, open_cards(sim=1) as cards:
        ca = DemoCa.load_or_create(Path(tmp))
        cafile = str(Path(tmp) / "ca.pem")
        personalise_identity(cards[0], ca)
        with tqdm(total=total, desc="handshakes on jcardsim", unit="hs", file=sys.stderr) as bar:
            for name, extended in APDU_FORMATS.items():
                card = SeTlsCard(CardSession(cards[0].session.channel, extended=extended), f"sim0-{name}")
                for suite in SUITES:
                    run = SimRun(suite, name, prepare_card(card, suite))
                    one_handshake(card, cafile, run)  # warm-up (the simulator's JIT), not counted
                    for _ in range(settings.runs):
                        run.samples.append(one_handshake(card, cafile, run))
                        bar.update()
                    runs.append(run)
            card = SeTlsCard(CardSession(cards[0].session.channel, extended=None), "sim0-extended")
            runs += mode_runs(card, cafile, settings, bar)
        card = SeTlsCard(CardSession(cards[0].session.channel, extended=None), "sim0-extended")
        prepare_card(card, GCM)
        fragmenting = fragmenting_handshake(card, cafile)
        from host.bench.client_auth import client_auth_benchmark  # it builds on this module
        client_auth = client_auth_benchmark(card, ca, cafile, Path(tmp), settings)
    return runs, fragmenting, client_auth


def fragmenting_results(fragmenting: FragmentingClient, results: Results) -> None:
    def add(metric: str, value: float) -> None:
        results.add("fragmenting", GCM.openssl_name, "extended", SIM, metric, value, "bytes", 1)

    add(f"client_bytes.records_of_{FRAGMENT_RECORD_SIZE}", fragmenting.client_bytes)
    add(f"card_message_bytes.records_of_{FRAGMENT_RECORD_SIZE}", fragmenting.card_message_bytes)
    add(f"bytes_to_card.handshake.records_of_{FRAGMENT_RECORD_SIZE}", fragmenting.bytes_to_card)
    add("client_bytes.whole_records", fragmenting.plain_client_bytes)
    add("bytes_to_card.handshake.whole_records", fragmenting.plain_bytes_to_card)


def sim_results(runs: Sequence[SimRun], results: Results) -> None:
    for run in runs:
        add = adder(results, "sim", run, SIM)
        for phase in (*PHASES, *RECORD_DIRECTIONS):
            add(f"apdus.{phase}", run.phase(phase, "apdus"), "APDUs")
            add(f"bytes_to_card.{phase}", run.phase(phase, "bytes_sent"), "bytes")
            add(f"bytes_from_card.{phase}", run.phase(phase, "bytes_received"), "bytes")
        add("apdus.handshake", run.handshake("apdus"), "APDUs")
        add("bytes_to_card.handshake", run.handshake("bytes_sent"), "bytes")
        add("bytes_from_card.handshake", run.handshake("bytes_received"), "bytes")
        for name in (counter.key for counter in Counter):
            add(f"ops.handshake.{name}", run.count(name), "operations")
            add(f"ops.record.{name}", run.count(name, record=True), "operations")
        walls = [s.wall_ms for s in run.samples]
        add("sim_wall_ms.handshake.median", statistics.median(walls), "ms (simulator)")
        add("sim_wall_ms.handshake.min", min(walls), "ms (simulator)")
        add("sim_wall_ms.handshake.max", max(walls), "ms (simulator)")
        add("sim_wall_ms.record.median", run.median(lambda s: s.record_wall_ms), "ms (simulator)")
        add("transcript_bytes", run.median(lambda s: float(s.trace.transcript_bytes)), "bytes")
        add("certificate_bytes", run.certificate_bytes, "bytes")


def adder(results: Results, kind: str, run: SimRun, card: str) -> Callable[[str, float, str], None]:
    """`add(metric, value, unit)` for results of `run` (its suite, APDU format and sample count)."""
    def add(metric: str, value: float, unit: str) -> None:
        results.add(kind, run.suite.openssl_name, run.format_label, card, metric, value, unit, len(run.samples))
    return add
