"""The Markdown summary (summary.md) of a run: the handshake per suite, the modeled time per card
row and where it goes, the APDU formats, one record each way, the host side, the targets, what
would cut the time, and notes on the method (docs/benchmark.md)."""
from __future__ import annotations

import datetime
import os
import platform
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from host.bench.client import PHASE_RECORD
from host.bench.client_auth import LABELS, TARGET_CLIENT_AUTH_MS, ClientAuthModeled
from host.bench.modeled import (
    COMPONENT_LABELS,
    OTHER_CARD,
    REFERENCE_CARD,
    TARGET_FULL_MS,
    TARGET_PSK_MS,
    TARGET_RESUMED_MS,
    Modeled,
)
from host.bench.results import Results, Settings, git_commit
from host.bench.runs import FULL, GCM, PHASES, PSK, RECORD_SIZE, SHORT_NAMES, SIM, SUITES, SimRun
from host.bench.throughput import HTTPS_PATH, KEEP_ALIVE_METRICS, MODE_NAMES
from host.card import cost_model


@dataclass
class Report:
    """Everything the summary is written from."""

    runs: Sequence[SimRun]
    modeled: Sequence[Modeled]
    results: Results
    settings: Settings
    client_auth: Sequence[ClientAuthModeled] = ()

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
                client_auth_section(report),
                host_section(report), targets_section(report), cuts_section(report), notes_section(report)]
    return "\n".join(line for section in sections for line in section)


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


def host_section(report: Report) -> list[str]:
    lines = ["## Host side (same run, jcardsim; simulator time)", ""]
    keep_alive = keep_alive_table(report.results)
    if keep_alive:
        lines += [(f"Keep-alive throughput over one TLS 1.2 connection ({GCM.openssl_name}, Python `ssl` "
                   f"client): `GET {HTTPS_PATH}` requests (`http.client`) to `python -m host.server --sim --https`, "
                   f"and {RECORD_SIZE} B echo round trips to `--tls-echo`; the software reference is Python `ssl` "
                   "with an ECDSA P-256 key from the same CA, serving HTTP/1.1 with h11 as host/apps/https.py "
                   "does."), ""]
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
    lines += fragmenting_lines(report.results)
    refused = report.results.find(kind="scaling-failures")
    if refused:
        lines.append(f"- Handshakes the servers refused during the throughput runs (not in the rates): "
                     f"{fmt(sum(r.value for r in refused))} of {sum(r.runs for r in refused)}.")
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


