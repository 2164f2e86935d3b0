"""The Markdown summary (summary.md) of a run: the handshake per suite, the modeled time per card
row and where it goes, the APDU formats, one record each way, the host side, the targets, what
would cut the time, and notes on the method (docs/benchmark.md)."""
from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from host.bench.client import PHASE_RECORD, PHASE_RECORD_IN, PHASE_RECORD_OUT
from host.bench.client_auth import LABELS, TARGET_CLIENT_AUTH_MS, ClientAuthModeled
from host.bench.dtls import DtlsRun, dtls_table
from host.bench.modeled import (
    COMPONENT_LABELS,
    OTHER_CARD,
    REFERENCE_CARD,
    TARGET_FULL_MS,
    TARGET_PSK_MS,
    TARGET_RESUMED_MS,
    Modeled,
)
from host.bench.results import Result, Results, Settings, git_commit
from host.bench.runs import FULL, GCM, PHASES, PSK, RECORD_SIZE, SHORT_NAMES, SIM, SUITES, SimRun
from host.bench.throughput import HTTPS_PATH, KEEP_ALIVE_METRICS, MODE_NAMES, POOL_CLIENTS, POOL_ROW
from host.card import cost_model


@dataclass
class Report:
    """Everything the summary is written from."""

    runs: Sequence[SimRun]
    modeled: Sequence[Modeled]
    results: Results
    settings: Settings
    client_auth: Sequence[ClientAuthModeled] = ()
    dtls: Sequence[DtlsRun] = ()

    def sim(self, apdu_format: str = "extended") -> list[SimRun]:
        """The full handshakes in that APDU format (resumed and PSK ones: `modes()`)."""
        return [r for r in self.runs if r.apdu_format == apdu_format and r.mode == FULL]

    def modes(self) -> list[SimRun]:
        """The resumed and PSK handshakes (issue 12)."""
        return [r for r in self.runs if r.mode != FULL]

    def model(self, run: SimRun, card_prefix: str) -> Modeled | None:
        return next((m for m in self.modeled if m.run is run and m.costs.card.startswith(card_prefix)), None)

    def cards(self) -> list[str]:
        return list(dict.fromkeys(m.costs.card for m in self.modeled))


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
                ["## Resumed and PSK handshakes beside the full one (extended APDUs, issue 12)", ""],
                modes_table(report),
                ["## Modeled full handshake per card row, ms (extended APDUs)", ""], per_card_table(report, "extended"),
                ["## Modeled full handshake per card row, ms (short APDUs)", ""], per_card_table(report, "short"),
                ["## Where the time goes (J3R180, modeled ms and share of the priced total)", ""],
                breakdown_table(report),
                ["## APDU formats (per handshake; record = 1 KB each way)", ""], format_table(report),
                [f"## One {RECORD_SIZE} B record each way, record layer in the card", ""], record_table(report),
                [f"## Card-mode records per KB, each way ({RECORD_SIZE} B of application data per record, "
                 "extended APDUs)", ""], direction_table(report),
                client_auth_section(report), dtls_section(report), host_section(report), before_after_section(report),
                targets_section(report), cuts_section(report),
                notes_section(report)]
    return "\n".join(line for section in sections for line in section)


def dtls_section(report: Report) -> list[str]:
    """A DTLS 1.2 handshake beside TLS's (host.bench.dtls), on the J3R180's row."""
    if not report.dtls:
        return []
    return ["## DTLS 1.2 handshake beside TLS 1.2 (extended APDUs)", "",
            "`openssl s_client -dtls1_2` against host.dtls's server on one simulated card (host record mode); "
            "datagrams and UDP bytes count the cookie exchange (ClientHello, HelloVerifyRequest: 0 APDUs) and the "
            "client's close_notify; APDUs and bytes to and from the card are the handshake's; modeled as TLS's "
            "(docs/benchmark.md). The card's flight is the TLS flight with 8 more bytes per handshake message.", "",
            *dtls_table(report.dtls, report.modeled, "NXP JCOP4 J3R180"), ""]


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows] + [""]


def fmt(value: float | None, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


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


def modes_table(report: Report) -> list[str]:
    """Full GCM, resumed by session ID and by ticket (GCM), PSK (CCM_8): counts, modeled time and
    the floor beside each (what the priced operations alone cost: the sum of the breakdown's
    components but the APDU and line time)."""
    header = ["handshake", "suite", "APDUs", "bytes to / from card", "sign / ECDH / keygen", "SHA-256 blocks",
              "HMACs", "AES blocks", "jcardsim ms, median", "J3R180 modeled ms", "of which APDUs + line",
              "J3H145 modeled ms", "J3R180 target"]
    full = next((r for r in report.sim() if r.suite == GCM), None)
    rows = []
    for run in ([full] if full else []) + report.modes():
        ref, other = report.model(run, REFERENCE_CARD), report.model(run, OTHER_CARD)
        target = TARGET_FULL_MS if run.mode == FULL else TARGET_PSK_MS if run.mode == PSK else TARGET_RESUMED_MS
        meets = "n/a" if ref is None else ("yes" if ref.handshake.total <= target else "no")
        transfer = ref.handshake.apdu + ref.handshake.transfer if ref else None
        rows.append([run.mode, run.suite.openssl_name, fmt(run.handshake("apdus")),
                     f"{fmt(run.handshake('bytes_sent'))} / {fmt(run.handshake('bytes_received'))}",
                     f"{fmt(run.count('ecdsa_sign'))} / {fmt(run.count('ecdh'))} / {fmt(run.count('ec_keygen'))}",
                     fmt(run.count("sha256_blocks")), fmt(run.count("hmac")), fmt(run.count("aes_blocks")),
                     fmt(run.median(lambda s: s.wall_ms), 1), fmt(ref.handshake.total if ref else None),
                     fmt(transfer), fmt(other.handshake.total if other else None),
                     f"<= {target:.0f} ms: {meets}"])
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
    for run in sorted((r for r in report.runs if r.mode == FULL), key=lambda r: (SUITES.index(r.suite), r.apdu_format)):
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
    # The full handshakes' runs (each also measures the record round); resumed and PSK runs do not.
    full = (r for r in report.runs if r.mode == FULL)
    for run in sorted(full, key=lambda r: (SUITES.index(r.suite), r.apdu_format)):
        ref, other = report.model(run, REFERENCE_CARD), report.model(run, OTHER_CARD)
        rows.append([SHORT_NAMES[run.suite], run.apdu_format, fmt(run.phase(PHASE_RECORD, "apdus")),
                     f"{fmt(run.phase(PHASE_RECORD, 'bytes_sent'))} / {fmt(run.phase(PHASE_RECORD, 'bytes_received'))}",
                     fmt(run.count("aes_blocks", True)), fmt(run.count("ghash_blocks", True)),
                     fmt(run.count("sha256_blocks", True)), fmt(run.count("eeprom_bytes")),
                     fmt(run.count("eeprom_bytes", True)), fmt(run.median(lambda s: s.record_wall_ms), 1),
                     fmt(ref.record.total if ref else None), fmt(ref.record.total_with_ghash if ref else None),
                     fmt(other.record.total if other else None)])
    return table(["suite", "APDU format", "APDUs", "bytes to / from card", "AES blocks", "GHASH blocks",
                  "SHA-256 blocks", "EEPROM bytes written per handshake", "EEPROM bytes written per record round",
                  "jcardsim ms", "J3R180 modeled ms", "J3R180 + GHASH assumed", "J3H145 modeled ms"], rows)


def direction_table(report: Report) -> list[str]:
    """Bytes on the line and modeled ms of one 1 KB record to the card (UNPROTECT) and from it
    (PROTECT), per suite: what card mode costs per KB each way."""
    rows = []
    for run in report.sim():
        ref, other = report.model(run, REFERENCE_CARD), report.model(run, OTHER_CARD)
        cells = [SHORT_NAMES[run.suite]]
        for direction in (PHASE_RECORD_IN, PHASE_RECORD_OUT):
            sent, received = run.phase(direction, "bytes_sent"), run.phase(direction, "bytes_received")
            blocks = (f"{fmt(run.direction_count('aes_blocks', direction))} / "
                      f"{fmt(run.direction_count('ghash_blocks', direction))} / "
                      f"{fmt(run.direction_count('sha256_blocks', direction))}")
            modeled = (ref.record_in if direction == PHASE_RECORD_IN else ref.record_out) if ref else None
            slower = (other.record_in if direction == PHASE_RECORD_IN else other.record_out) if other else None
            ghash = f" (+{fmt(modeled.ghash_assumed)} GHASH assumed)" if modeled and modeled.ghash_blocks else ""
            cells += [f"{fmt(sent + received)} ({fmt(sent)} + {fmt(received)})", blocks,
                      fmt(modeled.total if modeled else None) + ghash, fmt(slower.total if slower else None)]
        rows.append(cells)
    lines = table(["suite", "to the card: bytes on the line (command + response)", "AES / GHASH / SHA-256 blocks",
                   "J3R180 ms / KB", "J3H145 ms / KB",
                   "from the card: bytes on the line (command + response)", "AES / GHASH / SHA-256 blocks",
                   "J3R180 ms / KB", "J3H145 ms / KB"], rows)
    return lines + [("To the card is the client's record checked and decrypted by the card (UNPROTECT RECORD); from "
                     "the card is the server's record encrypted and sealed by it (PROTECT RECORD). The modeled ms are "
                     "one APDU, the bytes at the reader's line rate and the card's AES and SHA-256 work; GHASH "
                     "(GCM only) is in bytecode and its per-block cost is an assumption (see Notes). RFC 9325 "
                     "(section 4.2) recommends AEAD suites only: CCM (native AES, no GHASH) is the card-mode "
                     "suite the README recommends."), ""]


def host_section(report: Report) -> list[str]:
    lines = ["## Host side (same run, jcardsim; simulator time)", ""]
    keep_alive = keep_alive_table(report.results)
    if keep_alive:
        lines += [(f"Keep-alive throughput over one TLS 1.2 connection ({GCM.openssl_name}, Python `ssl` "
                   f"client): `GET {HTTPS_PATH}` requests (`http.client`) to `python -m host.server --sim --https`, "
                   f"and {RECORD_SIZE} B echo round trips to `--tls-echo`; the software reference is Python `ssl` "
                   "with an ECDSA P-256 key from the same CA, serving the same h11 application (host/apps/https.py's "
                   "`HttpServerConnection` and status page) over asyncio's TLS streams. The three servers run side by "
                   f"side and are measured in turn, {report.settings.keep_alive_rounds} round(s) of "
                   f"{report.settings.round_trips} each (the order rotated each round), so that other work on the "
                   "machine weighs on all three alike; each figure is the median of its rounds."), ""]
        lines += keep_alive
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
            short = metric.split("_", 1)[0]   # echo, https
            value = results.value(kind="host", metric=metric, mode=mode)
            ratio = results.value(kind="host", metric=f"{short}_rate_vs_software", mode=mode)
            cpu = results.value(kind="host", metric=f"{short}_server_cpu_us_per_exchange", mode=mode)
            cells.append(fmt(value, 1) + (f" ({ratio:.3f} x software)" if ratio is not None else "")
                         + (f"; server CPU {fmt(cpu)} µs each" if cpu is not None else ""))
        rows.append(cells)
    runs = results.find(kind="host", metric=columns[0])[0].runs
    lines = table(["record layer", *(f"{KEEP_ALIVE_METRICS[m]} ({runs} per figure, median of the rounds)"
                                     for m in columns)], rows)
    return lines + [("The ratios are the median of each round's ratio (the two servers measured one right after "
                     "the other); the server CPU per exchange (from /proc, warm-up included) is the cost of the "
                     "record layer and the application together, which the load of the machine moves less than "
                     "the rates."), ""]


def scaling_lines(report: Report) -> list[str]:
    results = report.results
    lines: list[str] = []
    single = results.value(kind="scaling", card=SIM, metric="handshakes_per_s.cards_1")
    if single is not None:
        cpu = [results.value(kind="scaling-cpu", card=SIM, metric=f"cpu_ms_per_handshake.{what}.cards_1")
               for what in ("simulators", "server")]
        software = results.value(kind="scaling", card="software")
        lines += [(f"One card at the simulator's own speed (jcardsim answers in microseconds; 2 clients): "
                   f"{fmt(single, 1)} full handshakes/s, {fmt(cpu[0], 1)} ms of jcardsim CPU and {fmt(cpu[1], 1)} ms "
                   f"of host.server CPU per handshake; software TLS (Python ssl, 2 clients): {fmt(software, 1)} "
                   "full handshakes/s."), ""]
    return lines + pool_lines(report)


def pool_value(results: Results, metric: str, cards: int) -> float | None:
    return results.value(kind="pool", metric=f"{metric}.cards_{cards}")


def pool_lines(report: Report) -> list[str]:
    """The pool at a real card's pace: handshakes/s, speed-up, latency and CPU per pool size."""
    results = report.results
    rates = sorted((int(r.metric.rsplit("_", 1)[1]), r) for r in results.find(kind="pool")
                   if r.metric.startswith("handshakes_per_s."))
    if not rates:
        return []
    rows = []
    for cards, r in rates:
        def v(metric: str, digits: int = 1, n: int = cards) -> str:
            return fmt(pool_value(results, metric, n), digits)
        rows.append([str(cards), fmt(r.value, 2), v("speedup_vs_1_card", 2), v("handshake_latency_ms.p50", 0),
                     v("handshake_latency_ms.p99", 0), str(r.runs), v("handshakes_refused", 0),
                     v("cpu_ms_per_handshake.server"), v("cpu_ms_per_handshake.simulators"),
                     v("cpu_ms_per_handshake.clients"), v("cpu_cores_busy.server", 2),
                     v("cpu_cores_busy.simulators", 2)])
    lines = [f"### The card pool at the {POOL_ROW}'s pace ({POOL_CLIENTS} concurrent clients)", "",
             (f"`python -m host.server --sim N --sim-speed \"{POOL_ROW}\" --tls-echo PORT --backlog "
              f"{2 * POOL_CLIENTS}`: each simulated card answers every APDU no sooner than its modeled time on "
              f"that card (host.card.sim_speed, GHASH at the assumed cost), so a handshake takes what it takes on "
              f"the card. {POOL_CLIENTS} client threads (Python ssl) each do full handshakes one after another, "
              "after a warm-up pass; latency is the client's, from TCP connect to handshake done (waiting for a "
              "free card included). CPU per handshake: the host server process (its own, the host's cost), the "
              "jcardsim JVMs (the simulator's, which a real card would not put on the host), and the clients."), ""]
    lines += table(["cards", "full handshakes / s", "vs 1 card", "latency p50 ms", "latency p99 ms", "handshakes",
                    "refused", "host.server CPU ms / hs", "jcardsim CPU ms / hs", "clients CPU ms / hs",
                    "server cores busy", "jcardsim cores busy"], rows)
    return lines + pool_limit_lines(report, dict(rates))


def pool_limit_lines(report: Report, rates: dict[int, Result]) -> list[str]:
    """What bounds the pool: the card's time per handshake, and how many cards the host could feed."""
    gcm = next((r for r in report.sim() if r.suite == GCM), None)
    m = report.model(gcm, REFERENCE_CARD) if gcm else None
    one, server = rates.get(1), pool_value(report.results, "cpu_ms_per_handshake.server", 1)
    if one is None or m is None or not one.value:
        return []
    per_handshake = 1000 / one.value
    lines = [(f"What limits it: one card completes a handshake every {fmt(per_handshake)} ms under this load, "
              f"against {fmt(m.handshake.total_with_ghash)} ms modeled for the handshake itself (GCM, GHASH at the "
              "assumed cost): the rest is the card's share of each session's end (in card mode the close_notify "
              "is a PROTECT RECORD command, one more paced APDU) and the time the card's handshake slot waits "
              "for the client's second flight. The cards work in parallel (one worker thread per card, "
              "sleeping while its card computes), so the pool scales with the cards.")]
    if server:
        lines[0] += (f" The host server spends {fmt(server, 1)} ms of CPU per handshake: one core would feed "
                     f"about {fmt(1000 / server)} handshakes/s, {fmt(1000 / server / one.value)} cards at this pace; "
                     "the jcardsim JVMs' CPU is the simulator's, which real cards do not put on the host.")
    return lines + [""]


# The figures of the before/after table: (label, kind, mode or None, card prefix or None, metric, digits).
BEFORE_AFTER: list[tuple[str, str, str | None, str | None, str, int]] = [
    *[(f"J3R180 full handshake, {name}, extended APDUs, ms (modeled)", "target", None, None,
       "full_handshake_ms", 0) for name in ("GCM", "CCM_8", "CCM", "CBC-SHA256")],
    *[(f"pool at the J3R180's pace, {n} card(s), {POOL_CLIENTS} clients: handshakes/s", "pool", None, None,
       f"handshakes_per_s.cards_{n}", 2) for n in (1, 2, 4, 8)],
    *[(f"pool, {n} cards: speed-up vs 1 card", "pool", None, None, f"speedup_vs_1_card.cards_{n}", 2)
      for n in (2, 4, 8)],
    *[(f"pool, {n} card(s): latency {q}, ms", "pool", None, None, f"handshake_latency_ms.{q}.cards_{n}", 0)
      for n in (1, 4, 8) for q in ("p50", "p99")],
    *[(f"pool, {n} card(s): {what} CPU ms per handshake", "pool", None, None,
       f"cpu_ms_per_handshake.{key}.cards_{n}", 1) for n in (1, 4) for what, key in
      (("host.server", "server"), ("jcardsim", "simulators"))],
    ("tandem (host records): 1 KB echo round trips/s", "host", "host", None, "echo_round_trips_per_s", 0),
    ("software TLS: 1 KB echo round trips/s", "host", "software", None, "echo_round_trips_per_s", 0),
    ("tandem / software, 1 KB echo", "host", "host", None, "echo_rate_vs_software", 3),
    ("tandem (host records): HTTPS requests/s", "host", "host", None, "https_requests_per_s", 0),
    ("software TLS: HTTPS requests/s", "host", "software", None, "https_requests_per_s", 0),
    ("tandem / software, HTTPS", "host", "host", None, "https_rate_vs_software", 3),
    ("tandem: server CPU µs per 1 KB echo round trip", "host", "host", None, "echo_server_cpu_us_per_exchange", 0),
    ("software TLS: server CPU µs per 1 KB echo round trip", "host", "software", None,
     "echo_server_cpu_us_per_exchange", 0),
    ("tandem: server CPU µs per HTTPS request", "host", "host", None, "https_server_cpu_us_per_exchange", 0),
    ("software TLS: server CPU µs per HTTPS request", "host", "software", None,
     "https_server_cpu_us_per_exchange", 0),
    ("card records (jcardsim): 1 KB echo round trips/s", "host", "card", None, "echo_round_trips_per_s", 0),
    *[(f"card mode, {name}: J3R180 ms per KB {way} (modeled, GHASH excluded)", "model", "extended",
       "NXP JCOP4 J3R180", f"{phase}.total_ms", 0) for name in ("GCM", "CCM", "CBC-SHA256")
      for way, phase in (("to the card", PHASE_RECORD_IN), ("from the card", PHASE_RECORD_OUT))],
]
SHORT_TO_OPENSSL = {short: suite.openssl_name for suite, short in SHORT_NAMES.items()}


def figure(records: Sequence[dict[str, object]], kind: str, mode: str | None, card: str | None, metric: str,
           suite: str | None) -> tuple[float, str] | None:
    for r in records:
        if (r["kind"] == kind and r["metric"] == metric and (mode is None or r["mode"] == mode)
                and (card is None or str(r["card"]).startswith(card)) and (suite is None or r["suite"] == suite)):
            return float(str(r["value"])), str(r.get("commit", "this run"))
    return None


def before_after_section(report: Report) -> list[str]:
    """Every figure of issue 14 in this run beside an earlier run's (--baseline), with each commit."""
    import json

    path = report.settings.baseline
    if path is None or not path.exists():
        return []
    before: list[dict[str, object]] = json.loads(path.read_text(encoding="utf-8"))
    now = [{**dataclasses.asdict(r), "commit": git_commit()} for r in report.results.items]
    rows, commits = [], {"before": "", "after": ""}
    for label, kind, mode, card, metric, digits in BEFORE_AFTER:
        suite = next((SHORT_TO_OPENSSL[name] for name in SHORT_TO_OPENSSL if f", {name}" in label), None)
        cells = []
        for which, records in (("before", before), ("after", now)):
            found = figure(records, kind, mode, card, metric, suite)
            if found is not None:
                commits[which] = found[1]
            cells.append(fmt(found[0] if found else None, digits))
        rows.append([label, *cells])
    lines = ["## Before / after (issue 14)", "",
             (f"Before: `{path.name}`, commit `{commits['before'][:12]}`; after: this run, commit "
              f"`{commits['after'][:12]}`. Both on this 2-core machine shared with other work (see the load "
              "note); n/a: not measured by that run."), ""]
    return lines + table(["figure", "before", "after"], rows)


def client_auth_section(report: Report) -> list[str]:
    """Full handshake with client authentication beside the full one (GCM, extended APDUs)."""
    full = next((r for r in report.sim() if r.suite == GCM), None)
    if full is None or not report.client_auth:
        return []
    lines = ["## Full handshake with client authentication (GCM, extended APDUs, P-256 client certificate)", ""]
    runs: list[tuple[str, SimRun, float]] = [("full", full, 0.0)]
    runs += list({m.auth.variant: (m.auth.variant, m.auth.run, m.auth.transcript_copy_bytes)
                  for m in report.client_auth}.values())
    cards = [c for c in (REFERENCE_CARD, OTHER_CARD) if any(m.costs.card.startswith(c) for m in report.client_auth)]

    def modeled(variant: str, run: SimRun, card: str) -> float | None:
        if variant == "full":
            m = report.model(run, card)
            return m.handshake.total if m else None
        return next((m.handshake.total for m in report.client_auth
                     if m.auth.run is run and m.costs.card.startswith(card)), None)

    rows = []
    for variant, run, copy in runs:
        rows.append([LABELS[variant], fmt(run.handshake("apdus")), fmt(run.handshake("bytes_sent")),
                     fmt(run.handshake("bytes_received")), fmt(copy), fmt(run.count("ecdsa_verify")),
                     fmt(run.count("ecdsa_sign")), fmt(run.count("sha256_blocks")),
                     fmt(run.count("eeprom_bytes")) if "eeprom_bytes" in run.samples[0].counts else "n/a",
                     *(fmt(modeled(variant, run, card)) for card in cards)])
    lines += table(["handshake", "APDUs", "bytes to card", "bytes from card", "transcript copy bytes",
                    "ECDSA verify", "ECDSA sign", "SHA-256 blocks", "EEPROM bytes",
                    *(f"{card.split()[-1]} modeled ms" for card in cards)], rows)
    ref = [(variant, modeled(variant, run, REFERENCE_CARD)) for variant, run, _ in runs if variant != "full"]
    lines += ["", *(f"- {LABELS[variant]}, J3R180: {fmt(ms)} ms modeled (target <= {TARGET_CLIENT_AUTH_MS:.0f} ms): "
                    f"{'meets it' if ms is not None and ms <= TARGET_CLIENT_AUTH_MS else '**misses it**'}."
                    for variant, ms in ref),
              "- The client's chain is verified in the card (one ECDSA verify per certificate; Python's ssl, like "
              "openssl s_client, sends the leaf and the CA certificate it builds the chain with: two), then its "
              "CertificateVerify (one more). ALG_NULL verifies over the session hash the card "
              "already has; the transcript copy resends ClientHello .. ClientKeyExchange (the bytes above) for the "
              "card to hash twice (ECDSA_SHA_256 and the digest compared with its session hash).", ""]
    return lines


def targets_section(report: Report) -> list[str]:
    lines = ["## Targets (reported, not enforced)", ""]
    for run in report.sim():
        m = report.model(run, REFERENCE_CARD)
        if m:
            lines.append(f"- Full handshake, {SHORT_NAMES[run.suite]}, J3R180, extended APDUs: "
                         f"{fmt(m.handshake.total)} ms modeled (target <= {TARGET_FULL_MS:.0f} ms): {verdict(m)}.")
    for run in report.modes():
        m = report.model(run, REFERENCE_CARD)
        if m:
            target = TARGET_PSK_MS if run.mode == PSK else TARGET_RESUMED_MS
            lines.append(f"- {run.mode.capitalize()} handshake, {run.suite.openssl_name}, J3R180, extended APDUs: "
                         f"{fmt(m.handshake.total)} ms modeled (target <= {target:.0f} ms): "
                         f"{'yes' if m.handshake.total <= target else 'no'}.")
    lines.append("")
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
                 f"{fmt(run.count('ghash_blocks', True))} per 1 KB each way, computed in bytecode with a 4-bit "
                 f"table; at the assumed {report.settings.ghash_ms:g} ms per block that is "
                 f"{fmt(m.handshake.ghash_assumed)} ms per handshake and {fmt(m.record.ghash_assumed)} ms per KB "
                 "each way. An 8-bit table (4 KB of RAM per key) would cut it again but does not fit a card's RAM; "
                 "CCM and CCM_8 avoid GHASH entirely (native AES only).")
    lines.append(f"- **Asymmetric operations.** {fmt(m.handshake.asymmetric)} ms (key generation, signature, ECDH): "
                 "fixed per full handshake; only session resumption removes them.")
    lines.append("- **Session resumption.** Not implemented; the sketch under Targets says what it would leave.")
    return lines + [""]


def fragmenting_lines(results: Results) -> list[str]:
    """Issue 9: the host reassembles a fragmenting client's handshake messages for the card."""
    def value(metric: str) -> float | None:
        return results.value(kind="fragmenting", metric=metric)

    cut, whole = value("bytes_to_card.handshake.records_of_1"), value("bytes_to_card.handshake.whole_records")
    if cut is None or whole is None:
        return []
    return [(f"- **A client that fragments its handshake** (every plaintext handshake message in 1-byte records, "
             f"GCM, extended APDUs) sends {fmt(value('client_bytes.records_of_1'))} B where a normal client sends "
             f"{fmt(value('client_bytes.whole_records'))} B; the host reassembles the messages, so the card receives "
             f"{fmt(cut)} B of APDUs for the handshake against {fmt(whole)} B for the normal client.")]


def notes_section(report: Report) -> list[str]:
    lines = ["## Notes", ""]
    lines.append("- jcardsim wall times are simulator times on this machine (client included), not card times; "
                 "the modeled times are counts x published per-operation costs (docs/benchmark.md).")
    loads = {r.metric.split(".", 1)[1]: r.value for r in report.results.find(kind="load")}
    if loads:
        lines.append(f"- Load of this {os.cpu_count()}-core machine (1-minute load average, other engineers' work "
                     "included): " + ", ".join(f"{fmt(v, 2)} at {k.replace('_', ' ')}" for k, v in loads.items())
                     + "; the wall-clock figures of the host side (keep-alive rates, handshakes/s, latency) move "
                     "with it, the modeled figures do not.")
    lines += fragmenting_lines(report.results)
    refused = report.results.find(kind="scaling-failures")
    if refused:
        lines.append(f"- Handshakes the servers refused during the throughput runs (not in the rates): "
                     f"{fmt(sum(r.value for r in refused))} of {sum(r.runs for r in refused)}.")
    lines.append("- CBC-SHA256's record check in the card (RecordCipher.unprotectCbc, read for issue 14, not changed): "
                 "the padding bytes (the last min(n, 256)) are all read and masked in or out arithmetically, the MAC "
                 "is compared over all 32 bytes with an OR-accumulator, the one branch is on the result, and the "
                 "MAC costs as many SHA-256 compression blocks whatever the padding length (HmacSha256.burn feeds "
                 "the missing blocks). Residual: burn() feeds them in one `update()` call per block, 0 to 4 calls "
                 "depending on the padding length, while the MAC over the real data is one call; the time still "
                 "depends on the padding length by that many calls' fixed cost (the J3R180's fixed cost of a whole "
                 "digest call is ~0.8 ms against 1.4 ms per block; an `update()`'s share of it is not published). "
                 "One `update()` over extra x 64 bytes (any buffer) would make the call count constant: not "
                 "constant-time in the strict sense today. CBC-SHA256 is off by default in new identities.")
    lines.append("- The card's `apdus` counter includes the GET COUNTERS that reads it (wire APDUs + 1); the "
                 "tables use the host's count of APDUs on the wire.")
    lines.append("- Session handle (several sessions per card, docs/apdu.md): 0 extra APDUs; 1 byte per PROCESS EAP "
                 "PACKET (the handle before the EAP packet), 0 bytes per record command (P2); 1 CLOSE SESSION APDU "
                 "per session that ends without the card closing it (a close_notify it protects closes it).")
    lines.append("- EEPROM bytes written: the applet's writes to its persistent arrays (the I/O buffer, identities), "
                 "counted by the card (GET COUNTERS `eeprom_bytes`); the platform's own writes (PIN try counter, key "
                 "objects) are not counted.")
    lines.append(f"- Line rate: {report.settings.link.bit_rate:g} bit/s, {report.settings.link.bits_per_byte:g} bits "
                 f"per byte ({report.settings.link.byte_ms:.4f} ms per byte). GHASH cost: "
                 f"{report.settings.ghash_ms:g} ms per block is an assumption (no published figure); "
                 "totals leave it out.")
    for m in {m.costs.card: m for m in report.modeled}.values():
        for note in m.costs.notes:
            lines.append(f"- {m.costs.card}: {note}.")
    if not report.settings.host_side:
        lines.append("- Not measured: the host side (--no-host).")
    return lines + [""]


