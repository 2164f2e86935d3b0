"""Modeled time of card operations on real Java Cards: exact operation counts (GET COUNTERS,
docs/apdu.md) times published per-operation costs (bench/card-op-costs.csv, from JCAlgTest).
Pure functions: no card, no file system except `load_costs`. The benchmark (host.bench.modeled)
and the simulated cards that answer at a real card's speed (host.card.sim_speed) share it.

The formula (docs/benchmark.md says why):

    time = asymmetric + sha256 + aes + apdus + transfer          (+ GHASH, reported apart)
    asymmetric = ecdsa_sign * ecdsa_p256_sign_ms + ecdsa_verify * ecdsa_p256_verify_ms
               + ecdh * ecdh_p256_ms + ec_keygen * ec_p256_keygen_ms
    sha256     = digests * sha_call_ms + sha256_blocks * sha_block_ms
    aes        = aes_calls * aes_call_ms + aes_blocks * aes_block_ms
    apdus      = APDUs * apdu_baseline_ms
    transfer   = bytes * 1000 * bits_per_byte / bit_rate           (ms)
    ghash      = ghash_blocks * assumed_ghash_block_ms             (an assumption: no published row)

Each symmetric primitive is a straight line, cost(one call over n blocks) = call + n * block,
fitted to the CSV's points: a SHA-256 of 64 bytes is 2 compression blocks (FIPS 180-4 padding),
of 256 bytes 5 blocks; an AES call on 16 / 256 / 512 bytes is 1 / 16 / 32 blocks.
"""
from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from host.paths import PROJECT_ROOT

COSTS_CSV = PROJECT_ROOT / "bench" / "card-op-costs.csv"   # the published table, with its sources
ASYMMETRIC_COLUMNS = {
    "ecdsa_sign": "ecdsa_p256_sign_ms",
    "ecdsa_verify": "ecdsa_p256_verify_ms",
    "ecdh": "ecdh_p256_ms",
    "ec_keygen": "ec_p256_keygen_ms",
}
SHA_64B, SHA_256B, SHA_SLOPE = "sha256_64B_ms", "sha256_256B_ms", "sha256_per_extra_block_ms"
AES_16B, AES_256B, AES_512B = "aes128_cbc_16B_ms", "aes128_cbc_256B_ms", "aes128_cbc_512B_ms"
APDU_BASELINE = "apdu_baseline_ms"
SHA_BLOCKS_64B, SHA_BLOCKS_256B = 2, 5          # compression blocks, padding included
AES_BLOCKS_16B, AES_BLOCKS_256B, AES_BLOCKS_512B = 1, 16, 32
COMPONENTS = ("asymmetric", "sha256", "aes", "apdu", "transfer")
DEFAULT_BIT_RATE = 115200.0     # T=1 at TA1 = 18 (F 372, D 12) and 3.57 MHz: a common reader setting
DEFAULT_BITS_PER_BYTE = 10.0    # start + 8 data + parity; guard time and T=1 block framing ignored
# An assumption, not a measurement (no published figure): the applet's GF(2^128) multiplication
# uses a 4-bit table (Shoup; AesGcm.multiplyYbyH, shiftZAddM), 32 nibble steps of shifts, a reduction lookup
# and XORs on 8 shorts, about 8e3 bytecodes per block; at an assumed ~1.4e6 bytecodes/s of a
# card's interpreter that is ~6 ms per GHASH block. The true figure may be several times either way.
ASSUMED_GHASH_BLOCK_MS = 6.0


class MissingCost(ValueError):
    """A cost the model needs is missing from the row and from every other row."""


# ---- the published table ------------------------------------------------------------------------


@dataclass(frozen=True)
class CardRow:
    """One line of card-op-costs.csv: cells in ms, None where the cell is empty."""

    card: str
    cells: Mapping[str, float | None]

    def get(self, column: str) -> float | None:
        return self.cells.get(column)


def parse_costs(text: str) -> list[CardRow]:
    """The rows of the CSV text; lines starting with '#' are comments."""
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    rows = []
    for record in csv.DictReader(io.StringIO("\n".join(lines))):
        card = record.pop("card").strip()
        cells = {column: _cell(value) for column, value in record.items()}
        rows.append(CardRow(card, cells))
    return rows


def _cell(value: str | None) -> float | None:
    text = (value or "").strip()
    return float(text) if text else None


def load_costs(path: Path) -> list[CardRow]:
    return parse_costs(path.read_text(encoding="utf-8"))


def find_row(rows: Sequence[CardRow], name: str) -> CardRow:
    """The row named `name`, or the one row whose name starts with it; MissingCost names the
    rows when none or several match."""
    exact = [row for row in rows if row.card == name]
    matches = exact or [row for row in rows if row.card.startswith(name)]
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(repr(row.card) for row in rows)
    what = "no" if not matches else "more than one"
    raise MissingCost(f"{what} card row is named {name!r} (rows: {known})")


# ---- per-operation unit costs ---------------------------------------------------------------


@dataclass(frozen=True)
class UnitCosts:
    """What the model charges on one card; `notes` says which costs were filled and how."""

    card: str
    asymmetric_ms: Mapping[str, float]   # counter name -> ms per operation
    sha_call_ms: float
    sha_block_ms: float
    aes_call_ms: float
    aes_block_ms: float
    apdu_ms: float
    notes: tuple[str, ...] = ()


@dataclass
class _Filler:
    """Takes a row's cells, and a missing one from the first other row that has it."""

    row: CardRow
    others: Sequence[CardRow]
    notes: list[str] = field(default_factory=list)

    def own(self, column: str) -> float | None:
        return self.row.get(column)

    def borrowed(self, column: str, what: str) -> float:
        for other in self.others:
            value = other.get(column)
            if value is not None and other.card != self.row.card:
                self.notes.append(f"{what} taken from {other.card} ({column} = {value:g})")
                return value
        raise MissingCost(f"{self.row.card}: {column} is empty in every row")

    def cell(self, column: str) -> float:
        value = self.own(column)
        return value if value is not None else self.borrowed(column, column)


def sha_line(filler: _Filler) -> tuple[float, float]:
    """(ms per digest call, ms per compression block) for SHA-256."""
    slope = filler.own(SHA_SLOPE)
    short, long_ = filler.own(SHA_64B), filler.own(SHA_256B)
    if slope is None and short is not None and long_ is not None:
        slope = (long_ - short) / (SHA_BLOCKS_256B - SHA_BLOCKS_64B)
        filler.notes.append(f"SHA-256 block slope fitted from its 64 B and 256 B cells ({slope:.3f} ms)")
    if slope is None:
        slope = filler.borrowed(SHA_SLOPE, "SHA-256 block slope")
    if short is not None:
        return short - SHA_BLOCKS_64B * slope, slope
    if long_ is not None:
        filler.notes.append(f"SHA-256 call cost from its 256 B cell less 5 blocks ({long_ - 5 * slope:.3f} ms)")
        return long_ - SHA_BLOCKS_256B * slope, slope
    return filler.borrowed(SHA_64B, "SHA-256 64 B") - SHA_BLOCKS_64B * slope, slope


def aes_line(filler: _Filler) -> tuple[float, float]:
    """(ms per AES call, ms per 16-byte block) for AES-128."""
    one, mid, big = filler.own(AES_16B), filler.own(AES_256B), filler.own(AES_512B)
    if mid is not None and big is not None:
        slope = (big - mid) / (AES_BLOCKS_512B - AES_BLOCKS_256B)
    elif one is not None and mid is not None:
        slope = (mid - one) / (AES_BLOCKS_256B - AES_BLOCKS_16B)
    else:
        slope = _borrowed_aes_slope(filler)
    if one is not None:
        return one - slope, slope
    if mid is not None:
        filler.notes.append(f"AES call cost from its 256 B cell less 16 blocks ({mid - 16 * slope:.3f} ms)")
        return mid - AES_BLOCKS_256B * slope, slope
    return filler.borrowed(AES_16B, "AES 16 B") - slope, slope


def _borrowed_aes_slope(filler: _Filler) -> float:
    for other in filler.others:
        mid, big = other.get(AES_256B), other.get(AES_512B)
        if other.card != filler.row.card and mid is not None and big is not None:
            slope = (big - mid) / (AES_BLOCKS_512B - AES_BLOCKS_256B)
            filler.notes.append(f"AES block slope taken from {other.card} ({slope:.4f} ms)")
            return slope
    raise MissingCost(f"{filler.row.card}: no row gives an AES block slope")


def unit_costs(row: CardRow, others: Sequence[CardRow] = ()) -> UnitCosts:
    """The row's unit costs; an empty cell is fitted from the row's other cells when two points
    allow it, else taken from the first of `others` that has it (the CSV lists the reference
    card, the JCOP4 J3R180, first); every fill is written in `notes`."""
    filler = _Filler(row, others)
    asymmetric = {op: filler.cell(column) for op, column in ASYMMETRIC_COLUMNS.items()}
    sha_call, sha_block = sha_line(filler)
    aes_call, aes_block = aes_line(filler)
    apdu = filler.cell(APDU_BASELINE)
    return UnitCosts(row.card, asymmetric, sha_call, sha_block, aes_call, aes_block, apdu, tuple(filler.notes))


# ---- what the card did, and what it costs -------------------------------------------------------


@dataclass(frozen=True)
class Link:
    """The reader's line: bytes take bits_per_byte / bit_rate seconds each."""

    bit_rate: float = DEFAULT_BIT_RATE
    bits_per_byte: float = DEFAULT_BITS_PER_BYTE

    @property
    def byte_ms(self) -> float:
        return 1000.0 * self.bits_per_byte / self.bit_rate


@dataclass(frozen=True)
class Workload:
    """Operation counts (GET COUNTERS names), the SHA-256 and AES calls they imply, and the APDUs
    and bytes (both ways, headers and status words included) on the wire."""

    counts: Mapping[str, float]
    digests: float
    aes_calls: float
    apdus: float
    bytes: float


def digest_calls(hmacs: float, transcript_digests: int) -> float:
    """SHA-256 computations: two per HMAC (inner, outer) and the transcript digests (2 in a
    handshake: the session hash and the full transcript; 0 for records)."""
    return 2 * hmacs + transcript_digests


def sha256_blocks(message_bytes: int) -> int:
    """Compression blocks of one SHA-256 over `message_bytes` (0x80, 8 length bytes, padding)."""
    return (message_bytes + 8) // 64 + 1


def hmac_sha256_blocks(message_bytes: int) -> int:
    """Blocks of one HMAC-SHA256: inner hash over the 64-byte key block + message, outer hash
    over the key block + the 32-byte inner hash."""
    return sha256_blocks(64 + message_bytes) + sha256_blocks(64 + 32)


def prf_hmac_messages(seed_bytes: int, output_bytes: int) -> list[int]:
    """Message lengths of the HMACs of P_SHA256 (RFC 5246 5) with a seed of label + seed bytes:
    A(1) = HMAC(seed), then per 32-byte output HMAC(A(i) + seed) and, if more follows, A(i+1)."""
    messages = [seed_bytes]
    outputs = -(-output_bytes // 32)
    for i in range(outputs):
        messages.append(32 + seed_bytes)
        if i + 1 < outputs:
            messages.append(32)
    return messages


def aes_calls(aes_blocks: float, cbc: bool, records: int) -> float:
    """AES engine calls: GCM and CCM call it once per block; the CBC suite once per record."""
    return float(records) if cbc else aes_blocks


@dataclass(frozen=True)
class Breakdown:
    """Modeled milliseconds per component; GHASH is apart because its cost is assumed."""

    asymmetric: float
    sha256: float
    aes: float
    apdu: float
    transfer: float
    ghash_blocks: float
    ghash_assumed: float

    @property
    def total(self) -> float:
        """Everything the published table prices (GHASH excluded)."""
        return self.asymmetric + self.sha256 + self.aes + self.apdu + self.transfer

    @property
    def total_with_ghash(self) -> float:
        return self.total + self.ghash_assumed

    @property
    def crypto(self) -> float:
        return self.asymmetric + self.sha256 + self.aes

    def components(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in COMPONENTS}


def model(work: Workload, costs: UnitCosts, link: Link = Link(),
          ghash_block_ms: float = ASSUMED_GHASH_BLOCK_MS) -> Breakdown:
    """The modeled time of `work` on the card `costs` describes (see the module's formula)."""
    counts = work.counts
    asymmetric = sum(counts.get(op, 0) * ms for op, ms in costs.asymmetric_ms.items())
    sha = work.digests * costs.sha_call_ms + counts.get("sha256_blocks", 0) * costs.sha_block_ms
    aes = work.aes_calls * costs.aes_call_ms + counts.get("aes_blocks", 0) * costs.aes_block_ms
    ghash = counts.get("ghash_blocks", 0)
    result = Breakdown(asymmetric, sha, aes, work.apdus * costs.apdu_ms, work.bytes * link.byte_ms,
                       ghash, ghash * ghash_block_ms)
    if not all(math.isfinite(v) for v in (*result.components().values(), result.ghash_assumed)):
        raise ValueError(f"non-finite modeled time for {costs.card}: {result}")
    return result
