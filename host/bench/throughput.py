"""The host side (docs/benchmark.md, part 3): servers started as users start them (`python -m
host.server --sim N …`, and the software reference of host.bench.software), then over one keep-alive
TLS 1.2 connection HTTPS requests and 1 KB echo round trips per second with the record layer in the
card, in the host and in software; full handshakes per second on one card at the simulator's own
speed; and the pool: 1, 2, 4 and 8 simulated cards paced at a real card's modeled speed
(`--sim-speed`, host.card.sim_speed) under a load of POOL_CLIENTS concurrent clients, with
handshakes per second, the clients' p50/p99 handshake latency and the CPU time per handshake of
the server, of the jcardsim JVMs and of the clients. A server that does not start or a
measurement that fails stops the run (MeasurementError): nothing is retried."""
from __future__ import annotations

import concurrent.futures
import functools
import http.client
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from host.bench.client import client_context
from host.bench.daemon import ReadyProcess, start_ready
from host.bench.results import MeasurementError, Results, Settings
from host.bench.runs import GCM, RECORD_SIZE, SIM
from host.bench.software import software_identity
from host.demo_pki import DEMO_DIR, DemoCa
from host.iso7816.simulator import free_port

POOL_CARDS = (1, 2, 4, 8)
POOL_CARDS_QUICK = (1, 4)
POOL_CLIENTS = 20             # concurrent clients of the pool measurement
POOL_ROW = "NXP JCOP4 J3R180"  # the card row whose modeled speed the pool's simulated cards keep
POOL_CARD = f"{POOL_ROW} (paced jcardsim)"
READY_TIMEOUT = 180.0
WARM_UP = 10                  # round trips before a keep-alive measurement (the simulator's JIT)
HTTPS_PATH = "/status.json"   # answered by the host alone: the card only protects the records
KEEP_ALIVE_METRICS = {"https_requests_per_s": f"HTTPS GET {HTTPS_PATH} / s",
                      "echo_round_trips_per_s": f"{RECORD_SIZE} B echo round trips / s"}
MODE_NAMES = {"card": "card (jcardsim)", "host": "host (tandem, keys exported)",
              "software": "software TLS (Python ssl)"}


# ---- the servers --------------------------------------------------------------------------------


@dataclass
class ServerProcess:
    daemon: ReadyProcess
    port: int              # the TLS echo port (also used for handshakes)
    https_port: int = 0    # 0: no HTTPS server

    @property
    def process(self) -> subprocess.Popen[str]:
        return self.daemon.process


def start_process(args: list[str], port: int, what: str, https_port: int = 0) -> ServerProcess:
    """Starts `python ARGS` and waits for its 'ready' line (host.bench.daemon; no fixed sleep)."""
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


def paced_server(cards: int, row: str = POOL_ROW) -> ServerProcess:
    """`python -m host.server --sim N --sim-speed ROW --tls-echo PORT`, with a backlog that holds
    every client of the pool measurement (the default 16 would refuse some with one card)."""
    port = free_port()
    args = ["-m", "host.server", "--sim", str(cards), "--sim-speed", row, "--tls-echo", str(port),
            "--backlog", str(2 * POOL_CLIENTS)]
    return start_process(args, port, f"host.server with {cards} simulated card(s) paced as the {row}")


def software_server(cert: Path, key: Path) -> ServerProcess:
    """The software reference (host.bench.software): an echo and an HTTPS server."""
    port, https_port = free_port(), free_port()
    args = ["-m", "host.bench", "--serve-software", str(port), str(https_port), "--cert", str(cert), "--key", str(key)]
    return start_process(args, port, "the software TLS servers", https_port)


# ---- the clients --------------------------------------------------------------------------------


def connect(port: int, context: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=60)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        return context.wrap_socket(raw, server_hostname="localhost")
    except BaseException:
        raw.close()
        raise


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
    with connect(port, context) as tls:
        for _ in range(WARM_UP):
            tls.sendall(payload)
            receive_exactly(tls, RECORD_SIZE)
        start = time.perf_counter()
        for _ in range(round_trips):
            tls.sendall(payload)
            if receive_exactly(tls, RECORD_SIZE) != payload:
                raise RuntimeError("the echo server answered other bytes")
        return round_trips / (time.perf_counter() - start)


def get(connection: http.client.HTTPSConnection) -> bytes:
    connection.request("GET", HTTPS_PATH)
    response = connection.getresponse()
    body = response.read()
    if response.status != 200:
        raise RuntimeError(f"GET {HTTPS_PATH} answered {response.status}")
    return body


def https_rate(port: int, context: ssl.SSLContext, requests: int) -> float:
    """GET HTTPS_PATH requests per second over one keep-alive HTTPS connection."""
    connection = http.client.HTTPSConnection("localhost", port, context=context, timeout=60)
    try:
        connection.connect()
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
    after one handshake alone (which must complete) and a warm-up pass of the same size;
    handshakes refused under load are counted, not in the rate."""
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

    connect(port, context).close()
    all_clients()  # warm-up: every card's JVM compiles its hot paths before the measured pass
    start = time.perf_counter()
    refused = all_clients()
    elapsed = time.perf_counter() - start
    return HandshakeRate((clients * per_client - refused) / elapsed, refused, 2 * clients * per_client + 1)


@dataclass
class PoolLoad:
    """One pass of concurrent clients doing full handshakes, each timed from the TCP connect to
    the end of the client's handshake (the client's view: queueing for a card included)."""

    per_second: float
    latencies_ms: list[float]
    refused: int
    elapsed: float
    client_cpu: float   # CPU seconds of this process (the clients) during the pass

    def percentile(self, q: float) -> float:
        """The q-th percentile (0-100) of the latencies, nearest rank."""
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return 0.0
        rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
        return ordered[rank - 1]


def pool_load(port: int, context: ssl.SSLContext, clients: int, per_client: int) -> PoolLoad:
    """`clients` threads each doing `per_client` full handshakes one after another."""
    latencies: list[float] = []
    refused = [0]
    lock = threading.Lock()

    def client() -> None:
        for _ in range(per_client):
            start = time.perf_counter()
            try:
                connect(port, context).close()
            except (ssl.SSLError, ConnectionError, TimeoutError):
                with lock:
                    refused[0] += 1
                continue
            with lock:
                latencies.append(1000 * (time.perf_counter() - start))

    cpu, start = time.process_time(), time.perf_counter()
    threads = [threading.Thread(target=client, name=f"pool-client-{i}") for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    return PoolLoad(len(latencies) / elapsed, latencies, refused[0], elapsed, time.process_time() - cpu)


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


# ---- the measurements ---------------------------------------------------------------------------


@dataclass
class HostStep:
    """Servers to start side by side and what to measure on them (all stopped afterwards)."""

    name: str
    starts: list[Callable[[], ServerProcess]]
    measure: Callable[[list[ServerProcess]], None]


def host_benchmark(settings: Settings, results: Results) -> None:
    """Runs the host-side measurements; MeasurementError with the step and the reason if a server
    does not start or a measurement fails."""
    DemoCa.load_or_create(DEMO_DIR)  # the servers' CA; clients trust it
    context = client_context(str(DEMO_DIR / "ca.pem"), GCM)
    with tempfile.TemporaryDirectory(prefix="setls-bench-sw-") as tmp:
        steps = host_steps(settings, results, context, Path(tmp))
        for step in tqdm(steps, desc="host-side servers", unit="server", file=sys.stderr):
            servers: list[ServerProcess] = []
            try:
                for start in step.starts:
                    try:
                        servers.append(start())
                    except (RuntimeError, OSError) as exc:
                        raise MeasurementError(f"{step.name}: a server did not start: {exc}") from exc
                try:
                    step.measure(servers)
                except (OSError, RuntimeError, ssl.SSLError, http.client.HTTPException) as exc:
                    raise MeasurementError(f"{step.name}: {exc}") from exc
            finally:
                for server in servers:
                    stop_process(server)


def host_steps(settings: Settings, results: Results, context: ssl.SSLContext, tmp: Path) -> list[HostStep]:
    suite = GCM.openssl_name

    modes = (("card", SIM), ("host", SIM), ("software", "software"))

    def keep_alive(servers: list[ServerProcess]) -> None:
        """Rounds that take the three servers in turn (card, host, software; each round's order
        rotated), so that what else the machine runs weighs on all three alike; each rate is the
        median of its rounds."""
        rates: dict[tuple[str, str], list[float]] = {}
        cpu: dict[tuple[str, str], float] = {}
        for r in range(settings.keep_alive_rounds):
            for i in range(len(modes)):
                k = (i + r) % len(modes)
                mode, server = modes[k][0], servers[k]
                for name, rate_of, port in (("echo", echo_rate, server.port), ("https", https_rate, server.https_port)):
                    before = cpu_seconds(server.process.pid)
                    rates.setdefault((mode, name), []).append(rate_of(port, context, settings.round_trips))
                    cpu[mode, name] = cpu.get((mode, name), 0.0) + cpu_seconds(server.process.pid) - before
        rounds = settings.keep_alive_rounds
        runs = rounds * settings.round_trips
        for mode, card in modes:
            for name, metric, what in (("echo", "echo_round_trips_per_s", f"{RECORD_SIZE} B echo round trips/s"),
                                       ("https", "https_requests_per_s", f"GET {HTTPS_PATH} requests/s")):
                results.add("host", suite, mode, card, metric, statistics.median(rates[mode, name]),
                            f"{what} (median of {rounds} rounds)", runs)
                # Warm-up exchanges included: the server's CPU per exchange, a figure the load moves less.
                results.add("host", suite, mode, card, f"{name}_server_cpu_us_per_exchange",
                            1e6 * cpu[mode, name] / (rounds * (settings.round_trips + WARM_UP)),
                            "server CPU us per round trip / request (/proc)", runs)
        for mode, card in modes[:2]:
            for name in ("echo", "https"):
                # Round by round: the two servers measured one right after the other.
                ratios = [a / b for a, b in zip(rates[mode, name], rates["software", name], strict=True)]
                results.add("host", suite, mode, card, f"{name}_rate_vs_software", statistics.median(ratios),
                            f"ratio (median of {rounds} rounds' ratios)", runs)

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

    def pool(cards: int) -> Callable[[ServerProcess], None]:
        def measure(server: ServerProcess) -> None:
            connect(server.port, context).close()          # one handshake alone must complete
            pool_load(server.port, context, 2 * cards, 1)  # warm-up: every card's JVM, not counted
            before = server_cpu(server)
            load = pool_load(server.port, context, POOL_CLIENTS, settings.pool_handshakes_per_client)
            after = server_cpu(server)
            done = len(load.latencies_ms)
            if not done:
                raise MeasurementError(f"{cards} paced card(s): no handshake of {load.refused} completed")

            def add(metric: str, value: float, unit: str) -> None:
                results.add("pool", suite, "card", POOL_CARD, f"{metric}.cards_{cards}", value, unit, done)

            add("handshakes_per_s", load.per_second, f"handshakes/s ({POOL_CLIENTS} clients)")
            add("handshake_latency_ms.p50", load.percentile(50), "ms (client: connect to handshake done)")
            add("handshake_latency_ms.p99", load.percentile(99), "ms (client: connect to handshake done)")
            add("handshake_latency_ms.mean", statistics.fmean(load.latencies_ms), "ms")
            add("handshakes_refused", load.refused, "handshakes")
            for what, used in (("server", after[0] - before[0]), ("simulators", after[1] - before[1]),
                               ("clients", load.client_cpu)):
                add(f"cpu_ms_per_handshake.{what}", 1000 * used / done, "CPU ms per handshake")
            add("cpu_cores_busy.server", (after[0] - before[0]) / load.elapsed, "cores")
            add("cpu_cores_busy.simulators", (after[1] - before[1]) / load.elapsed, "cores")
        return measure

    def on_first(measure: Callable[[ServerProcess], None], servers: list[ServerProcess]) -> None:
        measure(servers[0])

    def keep_alive_and_handshakes(servers: list[ServerProcess]) -> None:
        keep_alive(servers)
        scaling(1, SIM, "card")(servers[0])
        scaling(1, "software", "software")(servers[2])

    def software() -> ServerProcess:
        return software_server(*software_identity(tmp))

    steps = [HostStep("keep-alive: record layer in the card, in the host, software TLS (Python ssl)",
                      [functools.partial(card_server, 1, "card", https=True),
                       functools.partial(card_server, 1, "host", https=True), software],
                      keep_alive_and_handshakes)]
    for cards in settings.pool_cards:
        steps.append(HostStep(f"{cards} card(s) paced as the {POOL_ROW}", [functools.partial(paced_server, cards)],
                              functools.partial(on_first, pool(cards))))
    return steps


def ratio_results(results: Results) -> None:
    """Keep-alive rates relative to the software server, host vs card, and the pool's speed-up."""
    pool = {int(r.metric.rsplit("_", 1)[1]): r for r in results.find(kind="pool")
            if r.metric.startswith("handshakes_per_s.")}
    if 1 in pool:
        for cards, r in sorted(pool.items()):
            results.add("pool", r.suite, r.mode, r.card, f"speedup_vs_1_card.cards_{cards}",
                        r.value / pool[1].value, "ratio", r.runs)
    for metric, name in (("echo_round_trips_per_s", "echo"), ("https_requests_per_s", "https")):
        rates = {r.mode: r for r in results.find(kind="host", metric=metric)}
        software = rates.get("software")
        for mode in ("card", "host"):
            if mode in rates and software is not None and not results.find(
                    kind="host", mode=mode, metric=f"{name}_rate_vs_software"):
                r = rates[mode]
                results.add("host", r.suite, mode, r.card, f"{name}_rate_vs_software", r.value / software.value,
                            "ratio", r.runs)
        if "card" in rates and "host" in rates:
            r = rates["host"]
            results.add("host", r.suite, "host", r.card, f"{name}_rate_vs_card", r.value / rates["card"].value,
                        "ratio", r.runs)
