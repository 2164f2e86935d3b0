"""The modeled time on real cards (docs/benchmark.md, part 2): the simulated runs' counts as
cost_model Workloads, priced with every card row of bench/card-op-costs.csv, and the targets."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from host.bench.client import PHASE_RECORD, PHASE_RECORD_IN, PHASE_RECORD_OUT
from host.bench.results import Results, Settings
from host.bench.runs import CBC_SHA256, FULL, PSK, SimRun, adder
from host.card import cost_model
from host.card.cost_model import Breakdown, UnitCosts, Workload
from host.card.numbers import Counter

log = logging.getLogger(__name__)

TRANSCRIPT_DIGESTS = 2          # the card's session-hash and transcript digests
HANDSHAKE_RECORDS = 2           # the two encrypted Finished records
RECORD_PHASE_RECORDS = 2        # one record each way
REFERENCE_CARD = "NXP JCOP4 J3R180"
OTHER_CARD = "NXP JCOP3 J3H145"
TARGET_FULL_MS = 700.0
TARGET_RESUMED_MS = 220.0   # issue 12: a resumed handshake (session ID or ticket) on the J3R180
TARGET_PSK_MS = 260.0       # issue 12: a PSK handshake (TLS_PSK_WITH_AES_128_CCM_8) on the J3R180
COMPONENT_LABELS = {"asymmetric": "ECDSA, ECDH, key generation", "sha256": "SHA-256 (transcript, PRF, HMAC)",
                    "aes": "AES", "apdu": "APDU overhead", "transfer": "bytes on the line"}


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


def direction_workload(run: SimRun, direction: str) -> Workload:
    """One record in one direction (PHASE_RECORD_IN: to the card, UNPROTECT; PHASE_RECORD_OUT:
    from the card, PROTECT)."""
    counts = {name: run.direction_count(name, direction) for name in (counter.key for counter in Counter)}
    return Workload(counts, cost_model.digest_calls(counts["hmac"], 0),
                    cost_model.aes_calls(counts["aes_blocks"], run.suite == CBC_SHA256, 1),
                    run.phase(direction, "apdus"),
                    run.phase(direction, "bytes_sent") + run.phase(direction, "bytes_received"))


def card_costs(path: Path) -> list[UnitCosts]:
    """The unit costs of every card row the model can price (the others are logged and left out)."""
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
    """One simulated run priced on one card row."""

    run: SimRun
    costs: UnitCosts
    handshake: Breakdown
    record: Breakdown       # one record each way
    record_in: Breakdown    # the client's record through the card (UNPROTECT)
    record_out: Breakdown   # the server's record from the card (PROTECT)


def model_runs(runs: Sequence[SimRun], costs: Sequence[UnitCosts], settings: Settings) -> list[Modeled]:
    def price(work: Workload, card: UnitCosts) -> Breakdown:
        return cost_model.model(work, card, settings.link, settings.ghash_ms)

    return [Modeled(run, card, price(handshake_workload(run), card), price(record_workload(run), card),
                    price(direction_workload(run, PHASE_RECORD_IN), card),
                    price(direction_workload(run, PHASE_RECORD_OUT), card))
            for run in runs for card in costs]


def model_results(modeled: Sequence[Modeled], results: Results) -> None:
    for m in modeled:
        add = adder(results, "model", m.run, m.costs.card)
        for what, breakdown in (("handshake", m.handshake), ("record", m.record), (PHASE_RECORD_IN, m.record_in),
                                (PHASE_RECORD_OUT, m.record_out)):
            for component, ms in breakdown.components().items():
                add(f"{what}.{component}_ms", ms, "ms (modeled)")
            add(f"{what}.total_ms", breakdown.total, "ms (modeled)")
            add(f"{what}.ghash_blocks", breakdown.ghash_blocks, "blocks")
            add(f"{what}.ghash_assumed_ms", breakdown.ghash_assumed, "ms (assumed cost)")
            add(f"{what}.total_with_ghash_assumption_ms", breakdown.total_with_ghash, "ms (modeled + assumed)")


def target_results(modeled: Sequence[Modeled], results: Results) -> None:
    for m in modeled:
        if m.costs.card.startswith(REFERENCE_CARD) and m.run.apdu_format == "extended" and m.run.mode != FULL:
            add = adder(results, "target", m.run, m.costs.card)
            target = TARGET_PSK_MS if m.run.mode == PSK else TARGET_RESUMED_MS
            add("handshake_ms", m.handshake.total, "ms (modeled)")
            add("handshake_target_ms", target, "ms")
            add("handshake_meets_target", float(m.handshake.total <= target), "bool")
        elif m.costs.card.startswith(REFERENCE_CARD) and m.run.apdu_format == "extended":
            add = adder(results, "target", m.run, m.costs.card)
            add("full_handshake_ms", m.handshake.total, "ms (modeled)")
            add("full_handshake_target_ms", TARGET_FULL_MS, "ms")
            add("full_handshake_meets_target", float(m.handshake.total <= TARGET_FULL_MS), "bool")
            add("full_handshake_meets_target_with_ghash_assumption",
                float(m.handshake.total_with_ghash <= TARGET_FULL_MS), "bool")
            add("resumed_handshake_available", 1.0, "bool")
            add("resumed_handshake_target_ms", TARGET_RESUMED_MS, "ms")
