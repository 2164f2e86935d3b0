"""The benchmark's settings and results: one `Result` per measurement, written to results.json with
the run's commit, time and machine (docs/benchmark.md, Outputs), and the error that stops a run."""
from __future__ import annotations

import datetime
import json
import math
import os
import platform
import ssl
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

from host.card.cost_model import Link
from host.iso7816.simulator import SimulatorError, java_executable
from host.paths import PROJECT_ROOT


class MeasurementError(RuntimeError):
    """A measurement failed: the run stops with this reason (nothing is retried)."""


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
    keep_alive_rounds: int = 9   # rounds of keep-alive measurements, the three servers in turn
    pool_cards: tuple[int, ...] = (1, 2, 4, 8)   # simulated cards paced at a real card's speed
    pool_handshakes_per_client: int = 3         # per client of the pool's load
    baseline: Path | None = None                # an earlier results.json: the summary's before/after table


@dataclass
class Result:
    """One measurement; written with the run's commit, timestamp and machine."""

    kind: str       # sim | model | host | scaling | scaling-failures | scaling-cpu | pool | target
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
        # The benchmark's own outputs do not make the tree dirty (summary.md is written after results.json).
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)bench/results.json", ":(exclude)bench/summary.md"], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def java_version() -> str:
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
