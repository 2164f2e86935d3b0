"""Simulated cards at a real card's speed (host.card.sim_speed, `--sim-speed ROW`): each APDU is
answered no sooner than its modeled cost, and a handshake's APDUs add up to what the benchmark
models for the same handshake on the same card row."""
from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from host.bench.client import PHASE_FLIGHT1, PHASE_FLIGHT3, MemoryTlsClient, client_context, drive_handshake
from host.bench.modeled import handshake_workload
from host.bench.runs import GCM, IDENTITY, PIN, Sample, SimRun, personalise_identity
from host.card import cost_model
from host.card.commands import SeTlsCard, open_cards
from host.card.cost_model import COSTS_CSV, Link, MissingCost
from host.card.session import CardSession
from host.card.sim_speed import PacedChannel, paced_simulator
from host.demo_pki import DemoCa
from host.iso7816.channel import Channel
from host.iso7816.layers import Layer, Traffic

pytestmark = pytest.mark.timeout(120)
ROW = "NXP JCOP4 J3R180 (P71)"


class Stopwatch(Layer):
    """How long each command took, seen from above the layer under test."""

    def __init__(self, inner: Channel) -> None:
        super().__init__(inner)
        self.seconds: list[float] = []

    def transmit(self, command: bytes) -> bytes:
        start = time.perf_counter()
        response = self.inner.transmit(command)
        self.seconds.append(time.perf_counter() - start)
        return response


@pytest.fixture(scope="module")
def card(applet_classes: Path) -> Iterator[tuple[SeTlsCard, str]]:
    with tempfile.TemporaryDirectory(prefix="setls-speed-ca-") as tmp, open_cards(sim=1) as cards:
        personalise_identity(cards[0], DemoCa.load_or_create(Path(tmp)))
        yield cards[0], str(Path(tmp) / "ca.pem")


def row_costs() -> cost_model.UnitCosts:
    rows = cost_model.load_costs(COSTS_CSV)
    return cost_model.unit_costs(cost_model.find_row(rows, ROW), rows)


def bench_figure(card: SeTlsCard, cafile: str) -> tuple[float, dict[str, int]]:
    """One handshake on the plain simulated card, measured and modeled as host.bench does it:
    counters reset before and read after, APDUs and bytes of the flight phases."""
    stats = card.session.stats
    card.counters(reset=True)
    stats.reset()
    trace = drive_handshake(card, MemoryTlsClient(client_context(cafile, GCM)), stats, IDENTITY)
    counts = card.counters(reset=True)
    traffic = {name: replace(stats.phases.get(name, Traffic())) for name in (PHASE_FLIGHT1, PHASE_FLIGHT3)}
    run = SimRun(GCM, "extended", 0, [Sample(traffic, counts, {}, 0.0, 0.0, trace)])
    return cost_model.model(handshake_workload(run), row_costs(), Link()).total_with_ghash, counts


def test_each_apdu_takes_its_modeled_cost_and_a_handshake_adds_up_to_the_bench_model(
        card: tuple[SeTlsCard, str]) -> None:
    plain, cafile = card
    expected_ms, plain_counts = bench_figure(plain, cafile)
    paced = PacedChannel(plain.session.channel, row_costs())
    stopwatch = Stopwatch(paced)
    slow = SeTlsCard(CardSession(stopwatch), "paced")
    slow.unlock(IDENTITY, PIN)
    slow.counters(reset=True)
    paced.recent.clear()
    stopwatch.seconds.clear()
    started = time.perf_counter()
    drive_handshake(slow, MemoryTlsClient(client_context(cafile, GCM)), slow.session.stats, IDENTITY)
    wall = time.perf_counter() - started
    costs, times = list(paced.recent), list(stopwatch.seconds)
    counts = slow.counters()
    assert len(costs) == len(times) >= 3
    for cost, seconds in zip(costs, times, strict=True):
        assert seconds * 1000 >= cost.modeled_ms, f"{cost.header.hex()} answered in {seconds * 1000:.1f} ms"
    modeled = sum(cost.modeled_ms for cost in costs)
    print(f"paced handshake: {modeled:.1f} ms modeled, {wall * 1000:.1f} ms wall; bench model {expected_ms:.1f} ms")
    assert modeled == pytest.approx(expected_ms, rel=0.01)
    assert wall * 1000 >= modeled
    # The counters seen from above are the card's, as if nothing had read them in between. Two
    # handshakes differ only by their ECDSA signature's DER length (70 to 72 bytes): a SHA-256 block
    # of the transcript, and the bytes of the server's flight written into the I/O buffer.
    tolerance = {"sha256_blocks": 1, "eeprom_bytes": 2}
    for key, value in plain_counts.items():
        assert abs(counts[key] - value) <= tolerance.get(key, 0), (key, counts, plain_counts)


def test_an_unknown_card_row_is_refused_naming_the_rows() -> None:
    with pytest.raises(MissingCost, match="J3R180"):
        paced_simulator("No Such Card")
    assert paced_simulator("NXP JCOP4 J3R180") is not None   # a unique prefix is enough
