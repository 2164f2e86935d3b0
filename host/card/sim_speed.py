"""Simulated cards at a real card's speed (`python -m host.server --sim --sim-speed ROW`).

jcardsim answers a handshake in ~15 ms; a JCOP4 takes ~half a second. `PacedChannel` sits right
on the simulator's channel, below the stack `host.card.session` builds (so the tracing layer never
sees its own APDUs). After each command it reads what the applet did (GET COUNTERS, read and
reset) and holds the response back until the modeled time of that command on one row of
`bench/card-op-costs.csv` has passed: the operations counted, one APDU's overhead and the
command's and response's bytes on the line, priced by `host.card.cost_model` as the benchmark
prices a handshake. Contention, backlog, eviction and timeouts then behave as on that card.

What it leaves as the card has it:
- the counters seen from above: a GET COUNTERS from above is answered from the counts this
  layer summed (its own reads left out), in the card's format, saturating as the card does;
- command chains and GET RESPONSE sequences: nothing is read between their APDUs (any other
  command would make the applet abandon them); what the card did is read, and priced, after the
  last one.

Left out of the price, because the counters do not say which command did it: the per-call cost
of a handshake's two transcript digests (their blocks are counted; ~1.6 ms of ~490 ms on a J3R180),
and the CBC suite's one AES call per record (every AES block is priced as one call, as for GCM and
CCM).
"""
from __future__ import annotations

import collections
import logging
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from host.card import cost_model
from host.card.cost_model import ASSUMED_GHASH_BLOCK_MS, COSTS_CSV, Link, UnitCosts, Workload
from host.card.numbers import COUNTERS_RESET, Cla, Counter, Ins
from host.iso7816.apdu import CLA_CHAINING, CommandApdu, ResponseApdu, StatusWord
from host.iso7816.channel import Channel, exchange
from host.iso7816.layers import Layer

log = logging.getLogger(__name__)

MAX_COUNT = 0x7FFF              # the applet's counters saturate here (OpCounters.java)
COUNTERS_BYTES = 2 * len(Counter)
DEFAULT_LINK = Link()          # the benchmark's reader line
HISTORY = 4096                  # the last APDUs' costs kept for a look (tests, diagnostics)
_MORE_DATA_SW1 = (0x61, 0x9F)
_READ_AND_RESET = CommandApdu(Cla.OPEN_EAP, Ins.GET_COUNTERS, COUNTERS_RESET, 0, ne=COUNTERS_BYTES).encode()


@dataclass(frozen=True)
class ApduCost:
    """One command as the layer priced it."""

    header: bytes                 # CLA INS P1 P2
    counts: dict[str, int]        # what the card did for it (GET COUNTERS names)
    wire_bytes: int               # command and response, status word included
    modeled_ms: float


def apdu_cost_ms(counts: dict[str, int], wire_bytes: int, costs: UnitCosts, link: Link,
                 ghash_block_ms: float) -> float:
    """The modeled time of one command: its operations, one APDU and its bytes (GHASH at the
    benchmark's assumed cost)."""
    work = Workload(counts, cost_model.digest_calls(counts.get(Counter.HMAC.key, 0), 0),
                    float(counts.get(Counter.AES_BLOCKS.key, 0)), apdus=1, bytes=wire_bytes)
    return cost_model.model(work, costs, link, ghash_block_ms).total_with_ghash


def parse_counters(data: bytes) -> dict[str, int]:
    values = struct.unpack(f">{len(Counter)}H", data[:COUNTERS_BYTES])
    return {counter.key: value for counter, value in zip(Counter, values, strict=True)}


class PacedChannel(Layer):
    """Answers each command no sooner than the modeled time of what the card did for it."""

    def __init__(self, inner: Channel, costs: UnitCosts, link: Link = DEFAULT_LINK,
                 ghash_block_ms: float = ASSUMED_GHASH_BLOCK_MS, *,
                 clock: Callable[[], float] = time.perf_counter,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(inner)
        self.costs, self.link, self.ghash_block_ms = costs, link, ghash_block_ms
        self._clock, self._sleep = clock, sleep
        self.totals = {counter.key: 0 for counter in Counter}   # what GET COUNTERS from above sees
        self.recent: collections.deque[ApduCost] = collections.deque(maxlen=HISTORY)

    def transmit(self, command: bytes) -> bytes:
        start = self._clock()
        if self._is_counters_read(command):
            response = self._counters_from_above(command)
            counts: dict[str, int] = {}
        else:
            response = self.inner.transmit(command)
            counts = {} if self._sequence_goes_on(command, response) else self._card_counts()
        self.totals[Counter.APDUS.key] += 1
        wire = len(command) + len(response)
        cost = ApduCost(command[:4], counts, wire,
                        apdu_cost_ms(counts, wire, self.costs, self.link, self.ghash_block_ms))
        self.recent.append(cost)
        left = start + cost.modeled_ms / 1000.0 - self._clock()
        if left > 0:
            self._sleep(left)
        return response

    @staticmethod
    def _is_counters_read(command: bytes) -> bool:
        return len(command) >= 4 and command[0] == Cla.OPEN_EAP and command[1] == Ins.GET_COUNTERS

    @staticmethod
    def _sequence_goes_on(command: bytes, response: bytes) -> bool:
        """A chained link the card accepted, or a response with more to fetch: a read now would
        break the sequence."""
        more = len(response) >= 2 and response[-2] in _MORE_DATA_SW1
        chained = len(response) >= 2 and bool(command[0] & CLA_CHAINING) and response[-2:] == b"\x90\x00"
        return more or chained

    def _card_counts(self) -> dict[str, int]:
        """The counters since the last read (which this read resets); nothing if the card does not
        answer them (no applet selected yet)."""
        response = exchange(self.inner, _READ_AND_RESET)
        if not response.ok or len(response.data) != COUNTERS_BYTES:
            return {}
        counts = parse_counters(response.data)
        counts[Counter.APDUS.key] = 0   # the command and this read: the layer counts APDUs itself
        for key, value in counts.items():
            self.totals[key] += value
        return counts

    def _counters_from_above(self, command: bytes) -> bytes:
        values = [min(self.totals[counter.key] + (counter is Counter.APDUS), MAX_COUNT) for counter in Counter]
        if command[2] == COUNTERS_RESET:
            self.totals = {counter.key: 0 for counter in Counter}
            self.totals[Counter.APDUS.key] = -1   # this command was counted before the reset
        return ResponseApdu(struct.pack(f">{len(values)}H", *values), StatusWord.OK).encode()


def paced_simulator(row: str, path: Path = COSTS_CSV, link: Link = DEFAULT_LINK,
                    ghash_block_ms: float = ASSUMED_GHASH_BLOCK_MS) -> Callable[[Channel], Channel]:
    """What `open_cards(sim_layer=...)` stacks on each simulated card for `--sim-speed ROW`;
    `cost_model.MissingCost` names the rows when `row` is not one of them."""
    rows = cost_model.load_costs(path)
    costs = cost_model.unit_costs(cost_model.find_row(rows, row), rows)
    for note in costs.notes:
        log.info("%s: %s", costs.card, note)

    def pace(channel: Channel) -> Channel:
        return PacedChannel(channel, costs, link, ghash_block_ms)

    return pace
