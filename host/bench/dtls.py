"""A DTLS 1.2 handshake beside TLS's (docs/benchmark.md): on one jcardsim card, `openssl s_client
-dtls1_2` against host.dtls's server (host record mode: the handshake only reaches the card), per
AEAD suite: datagrams and UDP bytes each way (the cookie exchange and the client's close_notify
included), APDUs and bytes to and from the card for the handshake, the card's operation counters,
and the modeled card time per card row (host.card.cost_model, as for TLS)."""
from __future__ import annotations

import asyncio
import statistics
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field

from host.bench.modeled import HANDSHAKE_RECORDS, TRANSCRIPT_DIGESTS, Modeled
from host.bench.results import MeasurementError, Results, Settings
from host.bench.runs import IDENTITY, SHORT_NAMES, SIM, personalise_identity, prepare_card
from host.card import cost_model
from host.card.commands import SeTlsCard, open_cards
from host.card.cost_model import UnitCosts, Workload
from host.card.session import CardSession
from host.demo_pki import DemoCa
from host.dtls import DtlsConfig, DtlsServer
from host.dtls.server import DtlsAssociation
from host.se_tls import CardSlot, SessionInfo, TlsTandem
from host.tls.numbers import CipherSuite

DTLS_SUITES = (CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8,
               CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CCM)


@dataclass
class DtlsSample:
    datagrams_in: int
    datagrams_out: int
    udp_bytes_in: int
    udp_bytes_out: int
    apdus: int
    bytes_to_card: int
    bytes_from_card: int
    counts: dict[str, int]


@dataclass
class DtlsRun:
    suite: CipherSuite
    samples: list[DtlsSample] = field(default_factory=list)
    modeled_ms: dict[str, float] = field(default_factory=dict)   # card row -> modeled handshake ms

    def median(self, name: str) -> float:
        return float(statistics.median(getattr(s, name) for s in self.samples))

    def count(self, name: str) -> float:
        return float(statistics.median(s.counts.get(name, 0) for s in self.samples))


async def _idle(association: DtlsAssociation, info: SessionInfo) -> None:
    while True:
        await association.recv()


async def _handshakes(card: SeTlsCard, runs: int) -> list[DtlsRun]:
    slot = CardSlot("sim0", card)
    tandem = TlsTandem([slot], identity=IDENTITY, record_mode="host")
    server = DtlsServer(tandem, _idle, DtlsConfig())
    await server.start("127.0.0.1", 0)
    out = []
    try:
        for suite in DTLS_SUITES:
            run = DtlsRun(suite)
            await slot.run(prepare_card, card, suite)
            for i in range(runs + 1):   # the first one warms the simulator up, not counted
                await slot.run(card.counters, True)
                server.datagrams_in = server.datagrams_out = server.bytes_in = server.bytes_out = 0
                tandem.last_session = None
                process = await asyncio.create_subprocess_exec(
                    "openssl", "s_client", "-dtls1_2", "-connect", f"127.0.0.1:{server.port}",
                    "-cipher", suite.openssl_name, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL)
                await asyncio.wait_for(process.wait(), 60)
                await asyncio.sleep(0.05)   # the close_notify's datagram
                info = tandem.last_session
                if info is None or info.suite != suite:
                    raise MeasurementError(f"DTLS {suite.openssl_name}: the handshake did not complete")
                counts = await slot.run(card.counters, True)
                if i:
                    run.samples.append(DtlsSample(server.datagrams_in, server.datagrams_out, server.bytes_in,
                                                  server.bytes_out, info.apdus, info.bytes_to_card,
                                                  info.bytes_from_card, counts))
            out.append(run)
    finally:
        await server.close()
        slot._executor.shutdown(wait=True)
    return out


def dtls_benchmark(settings: Settings, ca: DemoCa | None = None) -> list[DtlsRun]:
    """settings.runs DTLS handshakes per AEAD suite on a fresh simulated card (extended APDUs)."""
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory(prefix="setls-bench-dtls-") as tmp, open_cards(sim=1) as cards:
        personalise_identity(cards[0], ca or DemoCa.load_or_create(Path(tmp)))
        card = SeTlsCard(CardSession(cards[0].session.channel, extended=None), "sim0-extended")
        return asyncio.run(_handshakes(card, settings.runs))


def model_dtls(runs: Sequence[DtlsRun], costs: Sequence[UnitCosts], settings: Settings) -> None:
    for run in runs:
        counts = {name: run.count(name) for name in run.samples[0].counts}
        work = Workload(counts, cost_model.digest_calls(counts.get("hmac", 0), TRANSCRIPT_DIGESTS),
                        cost_model.aes_calls(counts.get("aes_blocks", 0), False, HANDSHAKE_RECORDS),
                        run.median("apdus"), run.median("bytes_to_card") + run.median("bytes_from_card"))
        for card in costs:
            run.modeled_ms[card.card] = cost_model.model(work, card, settings.link, settings.ghash_ms).total


def dtls_results(runs: Sequence[DtlsRun], results: Results) -> None:
    for run in runs:
        def add(metric: str, value: float, unit: str, card: str = SIM, run: DtlsRun = run) -> None:
            results.add("dtls", run.suite.openssl_name, "extended", card, metric, value, unit, len(run.samples))

        for name, unit in (("datagrams_in", "datagrams"), ("datagrams_out", "datagrams"),
                           ("udp_bytes_in", "bytes"), ("udp_bytes_out", "bytes"), ("apdus", "APDUs"),
                           ("bytes_to_card", "bytes"), ("bytes_from_card", "bytes")):
            add(f"{name}.handshake", run.median(name), unit)
        for card, ms in run.modeled_ms.items():
            add("handshake.total_ms", ms, "ms (modeled)", card)


def dtls_table(runs: Sequence[DtlsRun], modeled: Sequence[Modeled], card_prefix: str) -> list[str]:
    """DTLS beside TLS per suite (extended APDUs): datagrams or TLS records' bytes, APDUs, bytes,
    modeled handshake ms on the card row `card_prefix` names."""
    lines = ["| suite | protocol | datagrams in / out | UDP bytes in / out | APDUs | bytes to / from card "
             f"| modeled ms ({card_prefix}) |", "|---|---|---|---|---|---|---|"]
    for run in runs:
        tls = next((m for m in modeled if m.run.suite == run.suite and m.run.apdu_format == "extended"
                    and m.costs.card.startswith(card_prefix)), None)
        dtls_ms = next((ms for card, ms in run.modeled_ms.items() if card.startswith(card_prefix)), None)
        name = SHORT_NAMES.get(run.suite, run.suite.openssl_name)
        lines.append(f"| {name} | DTLS 1.2 | {run.median('datagrams_in'):.0f} / {run.median('datagrams_out'):.0f} "
                     f"| {run.median('udp_bytes_in'):.0f} / {run.median('udp_bytes_out'):.0f} "
                     f"| {run.median('apdus'):.0f} | {run.median('bytes_to_card'):.0f} / "
                     f"{run.median('bytes_from_card'):.0f} | {dtls_ms:.0f} |" if dtls_ms is not None else
                     f"| {name} | DTLS 1.2 | - | - | {run.median('apdus'):.0f} | - | - |")
        if tls is not None:
            r = tls.run
            lines.append(f"| {name} | TLS 1.2 | (TCP) | - | {r.handshake('apdus'):.0f} | "
                         f"{r.handshake('bytes_sent'):.0f} / {r.handshake('bytes_received'):.0f} "
                         f"| {tls.handshake.total:.0f} |")
    return lines
