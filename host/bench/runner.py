"""`python -m host.bench [--quick] [--out bench/] [--runs N]`: what a TLS handshake costs the card.

1. On simulated cards (jcardsim), for every cipher suite and both APDU formats (extended length,
   and short APDUs with chaining and GET RESPONSE): full handshakes driven by Python's `ssl`
   client (host.bench_client), with APDUs and bytes per phase, the card's operation counters and
   the simulator's wall time; then one 1 KB record each way through the card's record layer.
2. The modeled time of the same work on real cards (host.cost_model, bench/card-op-costs.csv).
3. The host side: HTTPS requests (when host/https.py serves) and 1 KB echo round trips per second
   over one keep-alive TLS connection with the record layer in the card, in the host, and a
   software TLS server (Python ssl) for reference; handshakes per second with 1, 2 and 4 cards.
Writes results.json, summary.md and PNG plots into --out. docs/benchmark.md explains the model.
"""
from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import datetime
import functools
import http.client
import json
import logging
import math
import os
import platform
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from tqdm import tqdm  # type: ignore[import-untyped]

from host.bench import cost_model
from host.bench.client import (
    PHASE_FLIGHT1,
    PHASE_FLIGHT3,
    PHASE_RECORD,
    HandshakeError,
    HandshakeTrace,
    MemoryTlsClient,
    client_context,
    drive_handshake,
)
from host.bench.cost_model import Breakdown, Link, UnitCosts, Workload
from host.bench.daemon import ReadyProcess, start_ready
from host.card.commands import SeTlsCard, open_cards
from host.card.numbers import Counter
from host.card.session import CardSession
from host.demo_pki import DEMO_DIR, DemoCa
from host.iso7816.layers import Traffic
from host.paths import PROJECT_ROOT
from host.provision import IdentitySpec, personalise
from host.tls.numbers import CipherSuite, ContentType

log = logging.getLogger("host.bench")

GCM = CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
CBC_SHA256 = CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256
SUITES = (GCM, CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CCM, CBC_SHA256)
SHORT_NAMES = dict(zip(SUITES, ("GCM", "CCM_8", "CCM", "CBC-SHA256"), strict=True))
APDU_FORMATS = {"extended": None, "short": False}   # name -> CardSession(extended=...)
HANDSHAKE_PHASES = (PHASE_FLIGHT1, PHASE_FLIGHT3)
PHASES = (*HANDSHAKE_PHASES, PHASE_RECORD)
IDENTITY, PIN = "server", "2468"
RECORD_SIZE = 1024
TRANSCRIPT_DIGESTS = 2          # the card's session-hash and transcript digests
HANDSHAKE_RECORDS = 2           # the two encrypted Finished records
RECORD_PHASE_RECORDS = 2        # one record each way
REFERENCE_CARD = "NXP JCOP4 J3R180"
OTHER_CARD = "NXP JCOP3 J3H145"
TARGET_FULL_MS = 700.0
TARGET_RESUMED_MS = 250.0
SCALING_CARDS = (1, 2, 4)
SIM = "jcardsim"
DEFAULT_OUT = PROJECT_ROOT / "bench"
DEFAULT_COSTS = PROJECT_ROOT / "bench" / "card-op-costs.csv"
READY_TIMEOUT = 180.0
MAX_ATTEMPTS = 5
WARM_UP = 10                  # round trips before a keep-alive measurement (the simulator's JIT)
HTTPS_MODULE = PROJECT_ROOT / "host" / "apps" / "https.py"
HTTPS_PATH = "/status.json"   # answered by the host alone: the card only protects the records
JCARDSIM_SHORT_KEY = ("a failure would point at jcardsim 3.0.6.0, which computes ECDH and ECDSA wrongly with an "
                      "EC private key shorter than 32 bytes; the applet's EcKeyGenerator draws 32-byte scalars, "
                      "so none is expected")


@dataclass
class Settings:
    runs: int
    out: Path
    costs: Path
    link: Link
    ghash_ms: float
    round_trips: int          # echo round trips, and HTTPS requests, per keep-alive measurement
    handshakes_per_client: int
    host_side: bool = True


# ---- results ------------------------------------------------------------------------------------


@dataclass
class Result:
    """One measurement; written with the run's commit, timestamp and machine."""

    kind: str       # sim | model | host | scaling | scaling-failures | scaling-cpu | target
    suite: str
    mode: str       # APDU format (sim, model) or where records are protected (host)
    card: str       # jcardsim, a card row of the cost table, or software
    metric: str
    value: float
    unit: str
    runs: int


@dataclass
class Results:
    items: list[Result] = field(default_factory=list)

    def add(self, kind: str, suite: str, mode: str, card: str, metric: str, value: float, unit: str,
            runs: int) -> None:
        self.items.append(Result(kind, suite, mode, card, metric, float(value), unit, runs))

    def find(self, **match: object) -> list[Result]:
        return [r for r in self.items if all(getattr(r, k) == v for k, v in match.items())]

    def value(self, **match: object) -> float | None:
        found = self.find(**match)
        return found[0].value if found else None


def git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def java_version() -> str:
    from host.iso7816.simulator import SimulatorError, java_executable

    try:
        out = subprocess.run([java_executable(), "-version"], capture_output=True, text=True, timeout=30,
                             check=False)
    except (OSError, subprocess.TimeoutExpired, SimulatorError):
        return "unknown"
    lines = (out.stderr or out.stdout).splitlines()
    return lines[0] if lines else "unknown"


def machine_info() -> dict[str, str | int]:
    return {"platform": platform.platform(), "machine": platform.machine(), "cpus": os.cpu_count() or 0,
            "python": platform.python_version(), "openssl": ssl.OPENSSL_VERSION, "java": java_version()}


def write_json(results: Results, path: Path) -> None:
    context = {"commit": git_commit(),
               "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
               "machine": machine_info()}
    records = [{**asdict(r), **context} for r in results.items]
    bad = [r for r in records if not math.isfinite(r["value"])]
    if bad:
        raise ValueError(f"non-finite values: {bad[:3]}")
    lines = ",\n".join(json.dumps(r) for r in records)  # one record per line: small diffs
    path.write_text(f"[\n{lines}\n]\n", encoding="utf-8")


# ---- 1. handshakes on simulated cards --------------------------------------------------------------


@dataclass
class Sample:
    """One handshake and one record each way, on the simulator."""

    traffic: dict[str, Traffic]
    counts: dict[str, int]
    record_counts: dict[str, int]
    wall_ms: float
    record_wall_ms: float
    trace: HandshakeTrace


@dataclass
class SimRun:
    suite: int
    apdu_format: str
    certificate_bytes: int
    samples: list[Sample] = field(default_factory=list)
    failures: int = 0   # handshakes the card refused (retried; see measured_handshake)

    def median(self, value: Callable[[Sample], float]) -> float:
        return float(statistics.median(value(s) for s in self.samples))

    def phase(self, name: str, attribute: str) -> float:
        return self.median(lambda s: float(getattr(s.traffic.get(name, Traffic()), attribute)))

    def handshake(self, attribute: str) -> float:
        return sum(self.phase(p, attribute) for p in HANDSHAKE_PHASES)

    def count(self, name: str, record: bool = False) -> float:
        return self.median(lambda s: float((s.record_counts if record else s.counts)[name]))


def one_handshake(card: SeTlsCard, cafile: str, suite: int) -> Sample:
    """A full handshake (counters reset before, read after), then 1 KB each way via the card."""
    stats = card.session.stats
    client = MemoryTlsClient(client_context(cafile, suite))
    card.counters(reset=True)
    stats.reset()
    start = time.perf_counter()
    trace = drive_handshake(card, client, stats, IDENTITY)
    wall = time.perf_counter() - start
    if trace.suite != suite:
        raise RuntimeError(f"the card chose {trace.suite_name}, not {CipherSuite(suite).openssl_name}")
    counts = card.counters(reset=True)
    record_counts, record_wall = record_round(card, client)
    traffic = {name: replace(stats.phases.get(name, Traffic())) for name in PHASES}
    return Sample(traffic, counts, record_counts, wall * 1000, record_wall * 1000, trace)


def measured_handshake(card: SeTlsCard, cafile: str, run: SimRun) -> Sample:
    """one_handshake, retried when it fails: jcardsim computes ECDH and ECDSA wrongly with a
    private key shorter than 32 bytes, which ~0.6 % of its key generations give (JCARDSIM_SHORT_KEY);
    the failures are counted and reported."""
    for _ in range(MAX_ATTEMPTS):
        try:
            return one_handshake(card, cafile, run.suite)
        except (HandshakeError, ssl.SSLError) as exc:
            run.failures += 1
            log.warning("%s, %s APDUs: %s (retrying)", CipherSuite(run.suite).openssl_name, run.apdu_format, exc)
    raise RuntimeError(f"{MAX_ATTEMPTS} handshakes in a row failed for {CipherSuite(run.suite).openssl_name}")


def record_round(card: SeTlsCard, client: MemoryTlsClient) -> tuple[dict[str, int], float]:
    """One RECORD_SIZE application-data record each way through the card's record layer."""
    data = os.urandom(RECORD_SIZE)
    sent = client.protect(data)
    start = time.perf_counter()
    with card.session.stats.phase(PHASE_RECORD):
        content_type, plain = card.unprotect(sent)
        answer = card.protect(ContentType.APPLICATION_DATA, plain)
    wall = time.perf_counter() - start
    counts = card.counters()
    if content_type != ContentType.APPLICATION_DATA or client.unprotect(answer, RECORD_SIZE) != data:
        raise RuntimeError("the card's record layer did not echo the record")
    return counts, wall


def prepare_card(card: SeTlsCard, suite: int) -> int:
    """Unlocks the identity and makes `suite` its only suite; returns the certificate list size."""
    card.unlock(IDENTITY, PIN)
    slot = card.slot or 0
    card.put_suites(slot, (suite,))
    return len(card.certificate_list(slot))


def personalise_working(card: SeTlsCard, ca: DemoCa, cafile: str) -> None:
    """Personalises the identity, and again while its key is one jcardsim mishandles
    (JCARDSIM_SHORT_KEY: then every handshake fails on the client's signature check)."""
    for _ in range(MAX_ATTEMPTS):
        personalise(card, IdentitySpec(IDENTITY, PIN, export_keys=True), ca, out_dir=None)
        card.unlock(IDENTITY, PIN)  # also the right to personalise again
        if completes_a_handshake(card, cafile):
            return
        log.warning("no handshake completes with the new identity key: generating another (%s)", JCARDSIM_SHORT_KEY)
    raise RuntimeError(f"{MAX_ATTEMPTS} identity keys in a row could not complete a handshake")


def completes_a_handshake(card: SeTlsCard, cafile: str, tries: int = 3) -> bool:
    """True if one of `tries` GCM handshakes completes."""
    for _ in range(tries):
        try:
            drive_handshake(card, MemoryTlsClient(client_context(cafile, GCM)), card.session.stats, IDENTITY)
            return True
        except (HandshakeError, ssl.SSLError):
            continue
    return False


def sim_benchmark(settings: Settings) -> list[SimRun]:
    """Every suite in every APDU format, settings.runs handshakes each, on one simulated card."""
    runs: list[SimRun] = []
    total = len(SUITES) * len(APDU_FORMATS) * settings.runs
    with tempfile.TemporaryDirectory(prefix="setls-bench-ca-") as tmp, open_cards(sim=1) as cards:
        ca = DemoCa.load_or_create(Path(tmp))
        cafile = str(Path(tmp) / "ca.pem")
        personalise_working(cards[0], ca, cafile)
        with tqdm(total=total, desc="handshakes on jcardsim", unit="hs", file=sys.stderr) as bar:
            for name, extended in APDU_FORMATS.items():
                card = SeTlsCard(CardSession(cards[0].session.channel, extended=extended), f"sim0-{name}")
                for suite in SUITES:
                    run = SimRun(suite, name, prepare_card(card, suite))
                    measured_handshake(card, cafile, run)  # warm-up (the simulator's JIT), not counted
                    for _ in range(settings.runs):
                        run.samples.append(measured_handshake(card, cafile, run))
                        bar.update()
                    runs.append(run)
    return runs


def sim_results(runs: Sequence[SimRun], results: Results) -> None:
    for run in runs:
        add = _adder(results, "sim", run, SIM)
        for phase in PHASES:
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
        add("handshake_failures", run.failures, "handshakes (failed, retried)")


def _adder(results: Results, kind: str, run: SimRun, card: str) -> Callable[[str, float, str], None]:
    def add(metric: str, value: float, unit: str) -> None:
        results.add(kind, CipherSuite(run.suite).openssl_name, run.apdu_format, card, metric, value, unit, len(run.samples))
    return add


# ---- 2. modeled time on real cards -------------------------------------------------------------------


def handshake_workload(run: SimRun) -> Workload:
    counts = {name: run.count(name) for name in (counter.key for counter in Counter)}
    return Workload(counts, cost_model.digest_calls(counts["hmac"], TRANSCRIPT_DIGESTS),
                    cost_model.aes_calls(counts["aes_blocks"], run.suite == CBC_SHA256, HANDSHAKE_RECORDS),
                    run.handshake("apdus"), run.handshake("bytes_sent") + run.handshake("bytes_received"))


def record_workload(run: SimRun) -> Workload:
    counts = {name: run.count(name, record=True) for name in (counter.key for counter in Counter)}
    return Workload(counts, cost_model.digest_calls(counts["hmac"], 0),
                    cost_model.aes_calls(counts["aes_blocks"], run.suite == CBC_SHA256, RECORD_PHASE_RECORDS),
                    run.phase(PHASE_RECORD, "apdus"),
                    run.phase(PHASE_RECORD, "bytes_sent") + run.phase(PHASE_RECORD, "bytes_received"))


def card_costs(path: Path) -> list[UnitCosts]:
    rows = cost_model.load_costs(path)
    costs = []
    for row in rows:
        try:
            costs.append(cost_model.unit_costs(row, rows))
        except cost_model.MissingCost as exc:
            log.warning("card row left out of the model: %s", exc)
    return costs


@dataclass
class Modeled:
    run: SimRun
    costs: UnitCosts
    handshake: Breakdown
    record: Breakdown


def model_runs(runs: Sequence[SimRun], costs: Sequence[UnitCosts], settings: Settings) -> list[Modeled]:
    return [Modeled(run, card, cost_model.model(handshake_workload(run), card, settings.link, settings.ghash_ms),
                    cost_model.model(record_workload(run), card, settings.link, settings.ghash_ms))
            for run in runs for card in costs]


def model_results(modeled: Sequence[Modeled], results: Results) -> None:
    for m in modeled:
        add = _adder(results, "model", m.run, m.costs.card)
        for what, breakdown in (("handshake", m.handshake), ("record", m.record)):
            for component, ms in breakdown.components().items():
                add(f"{what}.{component}_ms", ms, "ms (modeled)")
            add(f"{what}.total_ms", breakdown.total, "ms (modeled)")
            add(f"{what}.ghash_blocks", breakdown.ghash_blocks, "blocks")
            add(f"{what}.ghash_assumed_ms", breakdown.ghash_assumed, "ms (assumed cost)")
            add(f"{what}.total_with_ghash_assumption_ms", breakdown.total_with_ghash, "ms (modeled + assumed)")


def target_results(modeled: Sequence[Modeled], results: Results) -> None:
    for m in modeled:
        if m.costs.card.startswith(REFERENCE_CARD) and m.run.apdu_format == "extended":
            add = _adder(results, "target", m.run, m.costs.card)
            add("full_handshake_ms", m.handshake.total, "ms (modeled)")
            add("full_handshake_target_ms", TARGET_FULL_MS, "ms")
            add("full_handshake_meets_target", float(m.handshake.total <= TARGET_FULL_MS), "bool")
            add("full_handshake_meets_target_with_ghash_assumption",
                float(m.handshake.total_with_ghash <= TARGET_FULL_MS), "bool")
            add("resumed_handshake_available", 0.0, "bool")
            add("resumed_handshake_target_ms", TARGET_RESUMED_MS, "ms")


# ---- 3. the host side: servers and clients ---------------------------------------------------------


@dataclass
class ServerProcess:
    daemon: ReadyProcess
    port: int              # the TLS echo port (also used for handshakes)
    https_port: int = 0    # 0: no HTTPS server

    @property
    def process(self) -> subprocess.Popen[str]:
        return self.daemon.process

    @property
    def lines(self) -> list[str]:
        return self.daemon.log


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_process(args: list[str], port: int, what: str, https_port: int = 0) -> ServerProcess:
    """Starts `python ARGS` and waits for its 'ready' line (host.daemon; no fixed sleep)."""
    return ServerProcess(start_ready(args, READY_TIMEOUT, what), port, https_port)


def stop_process(server: ServerProcess) -> None:
    server.daemon.stop()


def card_server(cards: int, record_layer: str, https: bool = False) -> ServerProcess:
    """`python -m host.server --sim N --tls-echo PORT [--https PORT]` with the record layer given."""
    port, https_port = free_port(), free_port() if https else 0
    args = ["-m", "host.server", "--sim", str(cards), "--tls-echo", str(port), "--record-layer", record_layer]
    if https:
        args += ["--https", str(https_port)]
    if record_layer == "host":
        args.append("--export-keys")
    what = f"host.server with {cards} simulated card(s), record layer in the {record_layer}"
    return start_process(args, port, what, https_port)


def card_server_with_https(cards: int, record_layer: str, notes: list[str]) -> ServerProcess:
    """card_server with HTTPS when host/https.py is there and the server starts with it; else
    the echo server alone, with a note saying why."""
    if not HTTPS_MODULE.exists():
        return card_server(cards, record_layer)
    try:
        return card_server(cards, record_layer, https=True)
    except RuntimeError as exc:
        notes.append(f"HTTPS not measured with the record layer in the {record_layer}: the server did not start "
                     f"with --https ({str(exc).splitlines()[-1].strip()})")
        return card_server(cards, record_layer)


def software_server(cert: Path, key: Path) -> ServerProcess:
    port, https_port = free_port(), free_port()
    args = ["-m", "host.bench", "--serve-software", str(port), str(https_port), "--cert", str(cert), "--key", str(key)]
    return start_process(args, port, "the software TLS servers", https_port)


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


def connect(port: int, context: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=60)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        return context.wrap_socket(raw, server_hostname="localhost")
    except BaseException:
        raw.close()
        raise


def connect_retrying(port: int, context: ssl.SSLContext) -> ssl.SSLSocket:
    """connect(), again when the card refuses the handshake (see measured_handshake)."""
    for attempt in range(MAX_ATTEMPTS):
        try:
            return connect(port, context)
        except (ssl.SSLError, ConnectionError) as exc:
            if attempt + 1 == MAX_ATTEMPTS:
                raise
            log.warning("handshake refused (%s): retrying", exc)
    raise AssertionError("unreachable")


def receive_exactly(tls: ssl.SSLSocket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = tls.recv(size - len(data))
        if not chunk:
            raise ConnectionError(f"the server closed the connection after {len(data)} of {size} bytes")
        data += chunk
    return data


def echo_rate(port: int, context: ssl.SSLContext, round_trips: int) -> float:
    """RECORD_SIZE echo round trips per second over one keep-alive TLS connection."""
    payload = os.urandom(RECORD_SIZE)
    with connect_retrying(port, context) as tls:
        for _ in range(WARM_UP):
            tls.sendall(payload)
            receive_exactly(tls, RECORD_SIZE)
        start = time.perf_counter()
        for _ in range(round_trips):
            tls.sendall(payload)
            if receive_exactly(tls, RECORD_SIZE) != payload:
                raise RuntimeError("the echo server answered other bytes")
        return round_trips / (time.perf_counter() - start)


def https_connection(port: int, context: ssl.SSLContext) -> http.client.HTTPSConnection:
    """A connected HTTPS connection, the handshake retried as in connect_retrying."""
    for attempt in range(MAX_ATTEMPTS):
        connection = http.client.HTTPSConnection("localhost", port, context=context, timeout=60)
        try:
            connection.connect()
            return connection
        except (ssl.SSLError, ConnectionError) as exc:
            connection.close()
            if attempt + 1 == MAX_ATTEMPTS:
                raise
            log.warning("handshake refused (%s): retrying", exc)
    raise AssertionError("unreachable")


def get(connection: http.client.HTTPSConnection) -> bytes:
    connection.request("GET", HTTPS_PATH)
    response = connection.getresponse()
    body = response.read()
    if response.status != 200:
        raise RuntimeError(f"GET {HTTPS_PATH} answered {response.status}")
    return body


def https_rate(port: int, context: ssl.SSLContext, requests: int) -> float:
    """GET HTTPS_PATH requests per second over one keep-alive HTTPS connection."""
    connection = https_connection(port, context)
    try:
        for _ in range(WARM_UP):
            get(connection)
        start = time.perf_counter()
        for _ in range(requests):
            get(connection)
        return requests / (time.perf_counter() - start)
    finally:
        connection.close()


@dataclass
class HandshakeRate:
    per_second: float   # completed handshakes per second in the measured pass
    refused: int        # handshakes the server refused in the measured pass
    attempted: int      # every handshake tried, warm-up included (for CPU per handshake)


def handshake_rate(port: int, context: ssl.SSLContext, clients: int, per_client: int) -> HandshakeRate:
    """Full handshakes per second with `clients` concurrent clients trying `per_client` each,
    after a warm-up pass of the same size; refused handshakes are counted, not in the rate."""
    def client() -> int:
        refused = 0
        for _ in range(per_client):
            try:
                connect(port, context).close()
            except (ssl.SSLError, ConnectionError):
                refused += 1
        return refused

    def all_clients() -> int:
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            return sum(future.result() for future in [pool.submit(client) for _ in range(clients)])

    connect_retrying(port, context).close()
    all_clients()  # warm-up: every card's JVM compiles its hot paths before the measured pass
    start = time.perf_counter()
    refused = all_clients()
    elapsed = time.perf_counter() - start
    return HandshakeRate((clients * per_client - refused) / elapsed, refused, 2 * clients * per_client + 1)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc; 0 where there is none)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pids(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return children


def server_cpu(server: ServerProcess) -> tuple[float, float]:
    """CPU seconds so far of the server process and of its children (the jcardsim JVMs)."""
    return cpu_seconds(server.process.pid), sum(cpu_seconds(pid) for pid in child_pids(server.process.pid))


@dataclass
class HostStep:
    """One server to start and what to measure on it."""

    name: str
    start: Callable[[], ServerProcess]
    measure: Callable[[ServerProcess], None]


@dataclass
class HostOutcome:
    problems: list[str] = field(default_factory=list)   # what could not be measured
    notes: list[str] = field(default_factory=list)      # what was measured otherwise than planned


def host_benchmark(settings: Settings, results: Results) -> HostOutcome:
    """Runs the host-side measurements; says what could not be measured."""
    DemoCa.load_or_create(DEMO_DIR)  # the servers' CA; clients trust it
    context = client_context(str(DEMO_DIR / "ca.pem"), GCM)
    outcome = HostOutcome()
    with tempfile.TemporaryDirectory(prefix="setls-bench-sw-") as tmp:
        steps = host_steps(settings, results, context, Path(tmp), outcome.notes)
        for step in tqdm(steps, desc="host-side servers", unit="server", file=sys.stderr):
            try:
                server = start_working(step, context)
            except (RuntimeError, OSError) as exc:
                log.warning("%s: %s", step.name, exc)
                outcome.problems.append(f"{step.name}: the server did not start ({str(exc).splitlines()[0]})")
                continue
            try:
                step.measure(server)
            except (OSError, RuntimeError, ssl.SSLError, http.client.HTTPException) as exc:
                log.warning("%s: %s", step.name, exc)
                outcome.problems.append(f"{step.name}: {exc}")
            finally:
                stop_process(server)
    return outcome


def start_working(step: HostStep, context: ssl.SSLContext) -> ServerProcess:
    """Starts the step's server, and again (new cards, new keys) while no handshake completes
    with it (JCARDSIM_SHORT_KEY in the identity key)."""
    for _ in range(MAX_ATTEMPTS):
        server = step.start()
        if server_works(server.port, context):
            return server
        stop_process(server)
        log.warning("%s: no handshake completes: starting it again (%s)", step.name, JCARDSIM_SHORT_KEY)
    raise RuntimeError(f"{MAX_ATTEMPTS} starts in a row served no handshake")


def server_works(port: int, context: ssl.SSLContext, tries: int = 3) -> bool:
    for _ in range(tries):
        try:
            connect(port, context).close()
            return True
        except (ssl.SSLError, ConnectionError):
            continue
    return False


def host_steps(settings: Settings, results: Results, context: ssl.SSLContext, tmp: Path,
               notes: list[str]) -> list[HostStep]:
    suite = GCM.openssl_name

    def keep_alive(mode: str, card: str) -> Callable[[ServerProcess], None]:
        def measure(server: ServerProcess) -> None:
            rate = echo_rate(server.port, context, settings.round_trips)
            results.add("host", suite, mode, card, "echo_round_trips_per_s", rate,
                        f"{RECORD_SIZE} B echo round trips/s", settings.round_trips)
            if not server.https_port:
                return
            try:
                rate = https_rate(server.https_port, context, settings.round_trips)
            except (OSError, RuntimeError, http.client.HTTPException) as exc:
                notes.append(f"HTTPS not measured with the record layer in the {mode}: {exc}")
                return
            results.add("host", suite, mode, card, "https_requests_per_s", rate,
                        f"GET {HTTPS_PATH} requests/s", settings.round_trips)
        return measure

    def scaling(cards: int, card: str, mode: str) -> Callable[[ServerProcess], None]:
        def measure(server: ServerProcess) -> None:
            clients = 2 * cards
            before = server_cpu(server)
            rate = handshake_rate(server.port, context, clients, settings.handshakes_per_client)
            after = server_cpu(server)
            tried = clients * settings.handshakes_per_client
            results.add("scaling", suite, mode, card, f"handshakes_per_s.cards_{cards}", rate.per_second,
                        "handshakes/s", tried)
            results.add("scaling-failures", suite, mode, card, f"handshakes_refused.cards_{cards}", rate.refused,
                        "handshakes", tried)
            for what, used in (("server", after[0] - before[0]), ("simulators", after[1] - before[1])):
                results.add("scaling-cpu", suite, mode, card, f"cpu_ms_per_handshake.{what}.cards_{cards}",
                            1000 * used / rate.attempted, "CPU ms per handshake", rate.attempted)
        return measure

    def both(*measures: Callable[[ServerProcess], None]) -> Callable[[ServerProcess], None]:
        def measure(server: ServerProcess) -> None:
            for m in measures:
                m(server)
        return measure

    def software() -> ServerProcess:
        return software_server(*software_identity(tmp))

    steps = [HostStep("record layer in the card, 1 card", lambda: card_server_with_https(1, "card", notes),
                      both(keep_alive("card", SIM), scaling(1, SIM, "card"))),
             HostStep("record layer in the host, 1 card", lambda: card_server_with_https(1, "host", notes),
                      keep_alive("host", SIM)),
             HostStep("software TLS (Python ssl)", software,
                      both(keep_alive("software", "software"), scaling(1, "software", "software")))]
    for cards in SCALING_CARDS[1:]:
        steps.append(HostStep(f"{cards} cards", functools.partial(card_server, cards, "card"),
                              scaling(cards, SIM, "card")))
    return steps


def ratio_results(results: Results) -> None:
    """Keep-alive rates relative to the software server, and host vs card."""
    for metric, name in (("echo_round_trips_per_s", "echo"), ("https_requests_per_s", "https")):
        rates = {r.mode: r for r in results.find(kind="host", metric=metric)}
        software = rates.get("software")
        for mode in ("card", "host"):
            if mode in rates and software is not None:
                r = rates[mode]
                results.add("host", r.suite, mode, r.card, f"{name}_rate_vs_software", r.value / software.value,
                            "ratio", r.runs)
        if "card" in rates and "host" in rates:
            r = rates["host"]
            results.add("host", r.suite, "host", r.card, f"{name}_rate_vs_card", r.value / rates["card"].value,
                        "ratio", r.runs)


# ---- the software TLS server (a subprocess of the benchmark) ----------------------------------------


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


SOFTWARE_STATUS = json.dumps({
    "cards": [], "identity": "software", "subject": "O=SE-TLS demo,CN=software TLS baseline",
    "record_mode": "software", "last_session": {
        "peer": "127.0.0.1:00000", "card": "none", "suite": GCM.openssl_name, "record_mode": "software",
        "handshake_ms": 0.0, "apdus": 0, "bytes_to_card": 0, "bytes_from_card": 0}}).encode() + b"\n"


async def _http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """HTTP/1.1 keep-alive on h11, as host/https.py serves it: every GET gets SOFTWARE_STATUS."""
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
    and an HTTPS server."""
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


# ---- 4. outputs: plots and summary ----------------------------------------------------------------


COMPONENT_LABELS = {"asymmetric": "ECDSA, ECDH, key generation", "sha256": "SHA-256 (transcript, PRF, HMAC)",
                    "aes": "AES", "apdu": "APDU overhead", "transfer": "bytes on the line"}


def plot_modeled(modeled: Sequence[Modeled], path: Path) -> None:
    import matplotlib.pyplot as plt

    chosen = [m for m in modeled if m.run.apdu_format == "extended"]
    cards = list(dict.fromkeys(m.costs.card for m in chosen))
    fig, axes = plt.subplots(1, len(cards), figsize=(3.2 * len(cards), 4.8), sharey=True, squeeze=False)
    for ax, card in zip(axes[0], cards):
        rows = [m for m in chosen if m.costs.card == card]
        labels = [SHORT_NAMES[m.run.suite] for m in rows]
        bottom = [0.0] * len(rows)
        for component, label in COMPONENT_LABELS.items():
            values = [m.handshake.components()[component] for m in rows]
            ax.bar(labels, values, bottom=bottom, label=label)
            bottom = [b + v for b, v in zip(bottom, values)]
        ghash = [m.handshake.ghash_assumed for m in rows]
        ax.bar(labels, ghash, bottom=bottom, fill=False, hatch="//", label="GHASH (assumed cost)")
        ax.axhline(TARGET_FULL_MS, color="black", linestyle="--", linewidth=1)
        ax.set_title(card, fontsize=8)
        ax.tick_params(axis="x", labelsize=7, rotation=30)
    axes[0][0].set_ylabel("modeled full handshake (ms)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
    fig.suptitle(f"Modeled handshake time on real cards (extended APDUs; dashed: {TARGET_FULL_MS:.0f} ms target)")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_phases(runs: Sequence[SimRun], path: Path) -> None:
    import matplotlib.pyplot as plt

    labels = [f"{SHORT_NAMES[r.suite]}\n{r.apdu_format}" for r in runs]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, (attribute, title) in zip(axes, (("apdus", "APDUs"), ("bytes_sent", "bytes to the card"),
                                             ("bytes_received", "bytes from the card"))):
        bottom = [0.0] * len(runs)
        for phase in PHASES:
            values = [r.phase(phase, attribute) for r in runs]
            ax.bar(labels, values, bottom=bottom, label=phase)
            bottom = [b + v for b, v in zip(bottom, values)]
        ax.set_title(f"{title} per phase")
        ax.tick_params(axis="x", labelsize=7)
    axes[0].legend()
    fig.suptitle(f"Card traffic per handshake (record: {RECORD_SIZE} B each way in card mode)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_scaling(results: Results, path: Path) -> None:
    import matplotlib.pyplot as plt

    points = sorted((int(r.metric.rsplit("_", 1)[1]), r.value) for r in results.find(kind="scaling", card=SIM))
    fig, ax = plt.subplots(figsize=(5.5, 4))
    if points:
        xs, ys = zip(*points)
        ax.plot(xs, ys, marker="o", label="simulated cards (clients = 2 x cards)")
        ax.plot(xs, [ys[0] * x / xs[0] for x in xs], linestyle=":", color="grey", label="linear")
        bound = [b for b in (cpu_bound(results, x) for x in xs) if b is not None]
        if len(bound) == len(xs):
            ax.plot(xs, bound, linestyle="--", color="red", label="CPU bound: cores / CPU per handshake")
        ax.set_xticks(list(xs))
        ax.legend(fontsize=8)
    ax.set_xlabel("simulated cards")
    ax.set_ylabel("full handshakes / s (simulator time)")
    ax.set_title(f"Handshake throughput, {os.cpu_count()} CPU cores")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cpu_bound(results: Results, cards: int) -> float | None:
    """Handshakes/s the machine's cores allow, given the CPU the simulators and server used."""
    used = [results.value(kind="scaling-cpu", card=SIM, metric=f"cpu_ms_per_handshake.{what}.cards_{cards}")
            for what in ("simulators", "server")]
    if any(u is None for u in used) or not sum(u or 0.0 for u in used):
        return None
    return 1000.0 * (os.cpu_count() or 1) / sum(u or 0.0 for u in used)


def plot_host(results: Results, path: Path) -> None:
    import matplotlib.pyplot as plt

    metrics = [m for m in KEEP_ALIVE_METRICS if results.find(kind="host", metric=m)]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    width = 0.8 / max(len(metrics), 1)
    for i, metric in enumerate(metrics):
        values = [results.value(kind="host", metric=metric, mode=mode) or 0.0 for mode in MODE_NAMES]
        ax.bar([x + i * width for x in range(len(MODE_NAMES))], values, width, label=KEEP_ALIVE_METRICS[metric])
    ax.set_xticks([x + width * (len(metrics) - 1) / 2 for x in range(len(MODE_NAMES))])
    ax.set_xticklabels([name.replace(" (", "\n(") for name in MODE_NAMES.values()], fontsize=8)
    if metrics:
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    ax.set_ylabel("per second (log scale)")
    ax.set_title("Keep-alive TLS 1.2: record layer in the card, in the host, software")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_plots(runs: Sequence[SimRun], modeled: Sequence[Modeled], results: Results, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    paths: dict[str, Callable[[Path], None]] = {
        "modeled_handshake.png": lambda p: plot_modeled(modeled, p),
        "apdus_bytes_per_phase.png": lambda p: plot_phases(runs, p),
        "scaling.png": lambda p: plot_scaling(results, p),
        "host_throughput.png": lambda p: plot_host(results, p)}
    for name, draw in paths.items():
        draw(out / name)
    return [out / name for name in paths]


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows] + [""]


def fmt(value: float | None, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


@dataclass
class Report:
    """Everything the summary is written from."""

    runs: Sequence[SimRun]
    modeled: Sequence[Modeled]
    results: Results
    settings: Settings
    host: HostOutcome

    def sim(self, apdu_format: str = "extended") -> list[SimRun]:
        return [r for r in self.runs if r.apdu_format == apdu_format]

    def model(self, run: SimRun, card_prefix: str) -> Modeled | None:
        return next((m for m in self.modeled if m.run is run and m.costs.card.startswith(card_prefix)), None)

    def cards(self) -> list[str]:
        return list(dict.fromkeys(m.costs.card for m in self.modeled))


def main_table(report: Report) -> list[str]:
    header = ["suite", "APDUs", "bytes to / from card", "sign / ECDH / keygen", "SHA-256 blocks", "HMACs",
              "AES blocks", "GHASH blocks", "jcardsim ms, median (min-max)", "J3R180 modeled ms",
              "J3R180 + GHASH assumed", "J3H145 modeled ms", f"J3R180 <= {TARGET_FULL_MS:.0f} ms"]
    rows = []
    for run in report.sim():
        ref, other = report.model(run, REFERENCE_CARD), report.model(run, OTHER_CARD)
        walls = [s.wall_ms for s in run.samples]
        rows.append([SHORT_NAMES[run.suite], fmt(run.handshake("apdus")),
                     f"{fmt(run.handshake('bytes_sent'))} / {fmt(run.handshake('bytes_received'))}",
                     f"{fmt(run.count('ecdsa_sign'))} / {fmt(run.count('ecdh'))} / {fmt(run.count('ec_keygen'))}",
                     fmt(run.count("sha256_blocks")), fmt(run.count("hmac")), fmt(run.count("aes_blocks")),
                     fmt(run.count("ghash_blocks")),
                     f"{fmt(statistics.median(walls), 1)} ({fmt(min(walls), 1)}-{fmt(max(walls), 1)})",
                     fmt(ref.handshake.total if ref else None), fmt(ref.handshake.total_with_ghash if ref else None),
                     fmt(other.handshake.total if other else None), verdict(ref)])
    return table(header, rows)


def verdict(m: Modeled | None) -> str:
    if m is None:
        return "n/a"
    plain = "yes" if m.handshake.total <= TARGET_FULL_MS else "no"
    if not m.handshake.ghash_blocks:
        return plain
    with_ghash = "yes" if m.handshake.total_with_ghash <= TARGET_FULL_MS else "no"
    return f"{plain} (with GHASH assumption: {with_ghash})"


def per_card_table(report: Report, apdu_format: str) -> list[str]:
    runs = report.sim(apdu_format)
    rows = []
    for card in report.cards():
        cells = []
        for run in runs:
            m = report.model(run, card)
            extra = f" (+{fmt(m.handshake.ghash_assumed)} GHASH)" if m and m.handshake.ghash_blocks else ""
            cells.append(fmt(m.handshake.total if m else None) + extra)
        rows.append([card, *cells])
    return table(["card", *(SHORT_NAMES[r.suite] for r in runs)], rows)


def breakdown_table(report: Report) -> list[str]:
    runs = report.sim()
    modeled = [report.model(run, REFERENCE_CARD) for run in runs]
    rows = []
    for component, label in COMPONENT_LABELS.items():
        cells = []
        for m in modeled:
            if m is None:
                cells.append("n/a")
                continue
            value = m.handshake.components()[component]
            cells.append(f"{fmt(value)} ({100 * value / m.handshake.total:.0f} %)")
        rows.append([label, *cells])
    rows.append(["**total (priced)**", *(fmt(m.handshake.total if m else None) for m in modeled)])
    rows.append(["GHASH blocks x assumed cost", *(
        f"{fmt(m.handshake.ghash_blocks)} x {report.settings.ghash_ms:g} = {fmt(m.handshake.ghash_assumed)}"
        if m else "n/a" for m in modeled)])
    return table(["component", *(SHORT_NAMES[r.suite] for r in runs)], rows)


def format_table(report: Report) -> list[str]:
    rows = []
    for run in sorted(report.runs, key=lambda r: (SUITES.index(r.suite), r.apdu_format)):
        m = report.model(run, REFERENCE_CARD)
        per_phase = " / ".join(fmt(run.phase(p, "apdus")) for p in PHASES)
        bytes_ = " / ".join(f"{fmt(run.phase(p, 'bytes_sent'))}+{fmt(run.phase(p, 'bytes_received'))}" for p in PHASES)
        wire = m.handshake.apdu + m.handshake.transfer if m else None
        rows.append([SHORT_NAMES[run.suite], run.apdu_format, per_phase, bytes_, fmt(wire),
                     fmt(m.handshake.total if m else None)])
    return table(["suite", "APDU format", "APDUs flight1 / flight3 / record", "bytes to+from card, same phases",
                  "J3R180 APDU + line ms (handshake)", "J3R180 handshake ms"], rows)


def record_table(report: Report) -> list[str]:
    rows = []
    for run in report.sim():
        ref, other = report.model(run, REFERENCE_CARD), report.model(run, OTHER_CARD)
        rows.append([SHORT_NAMES[run.suite], fmt(run.phase(PHASE_RECORD, "apdus")),
                     f"{fmt(run.phase(PHASE_RECORD, 'bytes_sent'))} / {fmt(run.phase(PHASE_RECORD, 'bytes_received'))}",
                     fmt(run.count("aes_blocks", True)), fmt(run.count("ghash_blocks", True)),
                     fmt(run.count("sha256_blocks", True)), fmt(run.median(lambda s: s.record_wall_ms), 1),
                     fmt(ref.record.total if ref else None), fmt(ref.record.total_with_ghash if ref else None),
                     fmt(other.record.total if other else None)])
    return table(["suite", "APDUs", "bytes to / from card", "AES blocks", "GHASH blocks", "SHA-256 blocks",
                  "jcardsim ms", "J3R180 modeled ms", "J3R180 + GHASH assumed", "J3H145 modeled ms"], rows)


KEEP_ALIVE_METRICS = {"https_requests_per_s": f"HTTPS GET {HTTPS_PATH} / s",
                      "echo_round_trips_per_s": f"{RECORD_SIZE} B echo round trips / s"}
MODE_NAMES = {"card": "card (jcardsim)", "host": "host (tandem, keys exported)", "software": "software TLS (Python ssl)"}


def host_section(report: Report) -> list[str]:
    lines = ["## Host side (same run, jcardsim; simulator time)", ""]
    keep_alive = keep_alive_table(report.results)
    if keep_alive:
        lines += [(f"Keep-alive throughput over one TLS 1.2 connection ({GCM.openssl_name}, Python `ssl` "
                   f"client): `GET {HTTPS_PATH}` requests (`http.client`) to `python -m host.server --sim --https`, "
                   f"and {RECORD_SIZE} B echo round trips to `--tls-echo`; the software reference is Python `ssl` "
                   "with an ECDSA P-256 key from the same CA, serving HTTP/1.1 with h11 as host/https.py does."), ""]
        lines += keep_alive
    lines += [f"- {note}." for note in report.host.notes] + ([""] if report.host.notes else [])
    lines += scaling_lines(report)
    return lines


def keep_alive_table(results: Results) -> list[str]:
    columns = [m for m in KEEP_ALIVE_METRICS if results.find(kind="host", metric=m)]
    if not columns:
        return []
    rows = []
    for mode, name in MODE_NAMES.items():
        cells = [name]
        for metric in columns:
            value = results.value(kind="host", metric=metric, mode=mode)
            software = results.value(kind="host", metric=metric, mode="software")
            ratio = f" ({value / software:.3f} x software)" if value is not None and software else ""
            cells.append(fmt(value, 1) + ratio)
        rows.append(cells)
    runs = results.find(kind="host", metric=columns[0])[0].runs
    return table(["record layer", *(f"{KEEP_ALIVE_METRICS[m]} ({runs} per figure)" for m in columns)], rows)


def scaling_lines(report: Report) -> list[str]:
    results = report.results
    scaling = sorted(results.find(kind="scaling", card=SIM), key=lambda r: int(r.metric.rsplit("_", 1)[1]))
    if not scaling:
        return []
    first = scaling[0].value
    rows = []
    for r in scaling:
        cards = r.metric.rsplit("_", 1)[1]
        cpu = [results.value(kind="scaling-cpu", card=SIM, metric=f"cpu_ms_per_handshake.{what}.cards_{cards}")
               for what in ("simulators", "server")]
        rows.append([cards, str(2 * int(cards)), fmt(r.value, 1), fmt(r.value / first, 2), str(r.runs),
                     fmt(cpu[0], 1), fmt(cpu[1], 1)])
    lines = table(["simulated cards", "concurrent clients", "full handshakes / s", "vs 1 card", "handshakes",
                   "jcardsim CPU ms / handshake", "host.server CPU ms / handshake"], rows)
    software = results.value(kind="scaling", card="software")
    if software is not None:
        lines += [f"Software TLS (Python ssl, same machine, 2 clients): {fmt(software, 1)} full handshakes/s.", ""]
    gcm = next((r for r in report.sim() if r.suite == GCM), None)
    single = f" (one handshake takes {fmt(gcm.median(lambda s: s.wall_ms), 0)} ms of simulator time)" if gcm else ""
    lines += [(f"Each simulated card is a JVM that computes its handshake on the CPU{single}; this machine has "
               f"{os.cpu_count()} cores, shared with the server and the clients, so once the JVMs' CPU time per "
               "handshake fills the cores more cards cannot add throughput here: the scaling measured is the "
               "simulator's. With real readers the card's own time (the modeled figures above) is the bottleneck "
               "and cards work in parallel; the host server's CPU per handshake bounds how many it can feed."), ""]
    return lines


def resumption_sketch(report: Report) -> str:
    run = next((r for r in report.sim() if r.suite == GCM), None)
    m = report.model(run, REFERENCE_CARD) if run else None
    if run is None or m is None:
        return ""
    prf_blocks = sum(cost_model.hmac_sha256_blocks(n) for n in cost_model.prf_hmac_messages(22 + 32, 48))
    prf_ms = prf_blocks * m.costs.sha_block_ms + 8 * m.costs.sha_call_ms
    cert_ms = run.certificate_bytes * report.settings.link.byte_ms
    estimate = m.handshake.total - m.handshake.asymmetric - prf_ms - cert_ms
    return (f"A resumed handshake would skip the asymmetric operations ({fmt(m.handshake.asymmetric)} ms), the "
            f"certificate ({run.certificate_bytes} B, {fmt(cert_ms)} ms on the line) and the master-secret PRF "
            f"({prf_blocks} SHA-256 blocks, {fmt(prf_ms)} ms); subtracting only those from the full GCM handshake "
            f"leaves about {fmt(estimate)} ms on the J3R180 (a sketch, not a measurement: the 3 APDUs, "
            f"{fmt(m.handshake.apdu)} ms, stay).")


def targets_section(report: Report) -> list[str]:
    lines = ["## Targets (reported, not enforced)", ""]
    for run in report.sim():
        m = report.model(run, REFERENCE_CARD)
        if m:
            lines.append(f"- Full handshake, {SHORT_NAMES[run.suite]}, J3R180, extended APDUs: "
                         f"{fmt(m.handshake.total)} ms modeled (target <= {TARGET_FULL_MS:.0f} ms): {verdict(m)}.")
    lines += [(f"- Resumed handshake (target <= {TARGET_RESUMED_MS:.0f} ms): **not available** - the card does "
               "not implement session resumption yet (empty session_id, no tickets)."),
              "- " + resumption_sketch(report), ""]
    return lines


def cuts_section(report: Report) -> list[str]:
    run = next((r for r in report.sim() if r.suite == GCM), None)
    short = next((r for r in report.sim("short") if r.suite == GCM), None)
    m = report.model(run, REFERENCE_CARD) if run else None
    if run is None or m is None:
        return []
    ms_short = report.model(short, REFERENCE_CARD) if short else None
    costs, link = m.costs, report.settings.link
    transcript_blocks = run.median(lambda s: float(cost_model.sha256_blocks(s.trace.session_hash_bytes)
                                                   + cost_model.sha256_blocks(s.trace.transcript_bytes)))
    prf_blocks = run.count("sha256_blocks") - transcript_blocks
    lines = ["## What would cut it (J3R180, GCM, extended APDUs unless said)", ""]
    lines.append(f"- **Round trips.** {fmt(run.handshake('apdus'))} APDUs x {costs.apdu_ms:g} ms = "
                 f"{fmt(m.handshake.apdu)} ms. Short APDUs (chaining + GET RESPONSE) need "
                 f"{fmt(short.handshake('apdus') if short else None)} APDUs, "
                 f"{fmt(ms_short.handshake.apdu if ms_short else None)} ms: extended APDUs are worth keeping. The EAP "
                 "Identity/Start exchange is one whole round trip; carrying the ClientHello in it would save one more.")
    lines.append(f"- **Bytes on the line.** {fmt(run.handshake('bytes_sent') + run.handshake('bytes_received'))} B x "
                 f"{link.byte_ms:.4f} ms = {fmt(m.handshake.transfer)} ms, of which the certificate list is "
                 f"{run.certificate_bytes} B; a faster reader rate (TA1 negotiation, or T=CL at 424-848 kbit/s) or a "
                 "smaller certificate cut it directly.")
    lines.append(f"- **SHA-256.** {fmt(run.count('sha256_blocks'))} blocks, {fmt(m.handshake.sha256)} ms: "
                 f"{fmt(transcript_blocks)} for the two transcript digests (the card runs two digests side by side "
                 f"because it cannot copy a digest's state) and {fmt(prf_blocks)} for the PRF's "
                 f"{fmt(run.count('hmac'))} HMACs (each hashes a 64-byte key block again, plus a 2-block outer "
                 "hash). The two transcript digests are inherent without a way to copy a digest's state; the PRF's "
                 "share would move into the crypto engine on a card with a native HMAC-SHA256, and only "
                 "resumption removes the master-secret PRF.")
    lines.append(f"- **GHASH.** {fmt(run.count('ghash_blocks'))} blocks per handshake and "
                 f"{fmt(run.count('ghash_blocks', True))} per 1 KB each way, computed in bytecode with a 4-bit table; at the "
                 f"assumed {report.settings.ghash_ms:g} ms per block that is {fmt(m.handshake.ghash_assumed)} ms per "
                 f"handshake and {fmt(m.record.ghash_assumed)} ms per KB each way. An 8-bit table (4 KB of RAM per key) "
                 "would cut it again but does not fit a card's RAM; CCM and CCM_8 avoid GHASH entirely (native AES only).")
    lines.append(f"- **Asymmetric operations.** {fmt(m.handshake.asymmetric)} ms (key generation, signature, ECDH): "
                 "fixed per full handshake; only session resumption removes them.")
    lines.append("- **Session resumption.** Not implemented; the sketch under Targets says what it would leave.")
    return lines + [""]


def notes_section(report: Report) -> list[str]:
    lines = ["## Notes", ""]
    lines.append("- jcardsim wall times are simulator times on this machine (client included), not card times; "
                 "the modeled times are counts x published per-operation costs (docs/benchmark.md).")
    failures = sum(r.failures for r in report.runs)
    attempts = failures + sum(len(r.samples) + 1 for r in report.runs)
    lines.append(f"- Handshakes that failed on the simulated card (retried, not in the figures): {failures} of "
                 f"{attempts}: {JCARDSIM_SHORT_KEY}.")
    refused = report.results.find(kind="scaling-failures")
    if refused:
        lines.append(f"- Handshakes the servers refused during the throughput runs (not in the rates): "
                     f"{fmt(sum(r.value for r in refused))} of {sum(r.runs for r in refused)}.")
    lines.append("- The card's `apdus` counter includes the GET COUNTERS that reads it (wire APDUs + 1); the "
                 "tables use the host's count of APDUs on the wire.")
    lines.append(f"- Line rate: {report.settings.link.bit_rate:g} bit/s, {report.settings.link.bits_per_byte:g} bits "
                 f"per byte ({report.settings.link.byte_ms:.4f} ms per byte). GHASH cost: "
                 f"{report.settings.ghash_ms:g} ms per block is an assumption (no published figure); totals leave it out.")
    for m in {m.costs.card: m for m in report.modeled}.values():
        for note in m.costs.notes:
            lines.append(f"- {m.costs.card}: {note}.")
    for problem in report.host.problems:
        lines.append(f"- Not measured: {problem}.")
    return lines + [""]


def summary(report: Report) -> str:
    commit = git_commit()
    head = ["# Benchmark: the TLS 1.2 handshake in the card", "",
            (f"`python -m host.bench` at commit `{commit}`, "
             f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
             f"{os.cpu_count()} cores; {report.settings.runs} handshakes per suite and APDU format. "
             "Method and formula: docs/benchmark.md. Plots: modeled_handshake.png, apdus_bytes_per_phase.png, "
             "scaling.png, host_throughput.png (git-ignored; `make bench` writes them)."), "",
            "## Full handshake per suite (extended APDUs)", ""]
    sections = [head, main_table(report),
                ["## Modeled full handshake per card row, ms (extended APDUs)", ""], per_card_table(report, "extended"),
                ["## Modeled full handshake per card row, ms (short APDUs)", ""], per_card_table(report, "short"),
                ["## Where the time goes (J3R180, modeled ms and share of the priced total)", ""],
                breakdown_table(report),
                ["## APDU formats (per handshake; record = 1 KB each way)", ""], format_table(report),
                [f"## One {RECORD_SIZE} B record each way, record layer in the card", ""], record_table(report),
                host_section(report), targets_section(report), cuts_section(report), notes_section(report)]
    return "\n".join(line for section in sections for line in section)


# ---- the command line ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m host.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 handshakes per suite, short host-side runs")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where results.json, summary.md and the PNGs go")
    parser.add_argument("--runs", type=int, help="handshakes per suite and APDU format (default 10, quick 2)")
    parser.add_argument("--costs", type=Path, default=DEFAULT_COSTS, help="per-operation costs of real cards (CSV)")
    parser.add_argument("--bit-rate", type=float, default=cost_model.DEFAULT_BIT_RATE, help="reader line rate, bit/s")
    parser.add_argument("--bits-per-byte", type=float, default=cost_model.DEFAULT_BITS_PER_BYTE)
    parser.add_argument("--ghash-ms", type=float, default=cost_model.ASSUMED_GHASH_BLOCK_MS,
                        help="ASSUMED cost of one software GHASH block on a real card (reported apart)")
    parser.add_argument("--no-host", action="store_true", help="skip the host-side servers (part 3)")
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("--serve-software", type=int, nargs=2, metavar=("ECHO", "HTTPS"), help=argparse.SUPPRESS)
    parser.add_argument("--cert", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--key", type=Path, help=argparse.SUPPRESS)
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    runs = args.runs if args.runs is not None else (2 if args.quick else 10)
    if runs < 1:
        raise SystemExit("--runs must be at least 1")
    return Settings(runs=runs, out=args.out, costs=args.costs, link=Link(args.bit_rate, args.bits_per_byte),
                    ghash_ms=args.ghash_ms, round_trips=40 if args.quick else 300,
                    handshakes_per_client=3 if args.quick else 10, host_side=not args.no_host)


def run(settings: Settings) -> Report:
    from tqdm.contrib.logging import logging_redirect_tqdm  # type: ignore[import-untyped]

    results = Results()
    costs = card_costs(settings.costs)
    with logging_redirect_tqdm():
        runs = sim_benchmark(settings)
        sim_results(runs, results)
        modeled = model_runs(runs, costs, settings)
        model_results(modeled, results)
        target_results(modeled, results)
        host = host_benchmark(settings, results) if settings.host_side else HostOutcome(["the host side (--no-host)"])
        ratio_results(results)
    return Report(runs, modeled, results, settings, host)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.serve_software:
        echo_port, https_port = args.serve_software
        asyncio.run(serve_software(echo_port, https_port, args.cert, args.key))
        return 0
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = settings_from(args)
    settings.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    report = run(settings)
    write_json(report.results, settings.out / "results.json")
    write_plots(report.runs, report.modeled, report.results, settings.out)
    (settings.out / "summary.md").write_text(summary(report), encoding="utf-8")
    log.info("wrote %d results, summary.md and plots to %s in %.0f s", len(report.results.items), settings.out,
             time.monotonic() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
