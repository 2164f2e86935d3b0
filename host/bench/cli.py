"""`python -m host.bench [--quick] [--out bench/] [--runs N]`: what a TLS handshake costs the card.

1. On simulated cards (jcardsim), for every cipher suite and both APDU formats (extended length,
   and short APDUs with chaining and GET RESPONSE): full handshakes driven by Python's `ssl`
   client (host.bench.client), with APDUs and bytes per phase, the card's operation counters and
   the simulator's wall time; then one 1 KB record each way through the card's record layer
   (host.bench.runs).
2. The modeled time of the same work on real cards (host.bench.modeled, host.card.cost_model,
   bench/card-op-costs.csv).
3. The host side: HTTPS requests and 1 KB echo round trips per second over one keep-alive TLS
   connection with the record layer in the card, in the host, and a software TLS server (Python
   ssl, host.bench.software) for reference; handshakes per second on one card at the simulator's
   speed, and for a pool of 1, 2, 4 and 8 cards paced at the J3R180's modeled speed under 20
   concurrent clients, with p50/p99 latency and CPU per handshake (host.bench.throughput).
Writes results.json (host.bench.results), summary.md (host.bench.report) and PNG plots
(host.bench.plots) into --out. docs/benchmark.md explains the model. This module only parses the
arguments and runs the parts in order; a failed measurement stops the run with its reason.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import time
from pathlib import Path

from host.bench.client_auth import client_auth_results, model_client_auth
from host.bench.dtls import dtls_benchmark, dtls_results, model_dtls
from host.bench.modeled import card_costs, model_results, model_runs, target_results
from host.bench.plots import write_plots
from host.bench.report import Report, summary
from host.bench.results import MeasurementError, Results, Settings, write_json
from host.bench.runs import fragmenting_results, sim_benchmark, sim_results
from host.bench.software import serve_software
from host.bench.throughput import POOL_CARDS, POOL_CARDS_QUICK, host_benchmark, ratio_results
from host.card import cost_model
from host.card.cost_model import Link
from host.paths import PROJECT_ROOT

log = logging.getLogger("host.bench")

DEFAULT_OUT = PROJECT_ROOT / "bench"
DEFAULT_COSTS = cost_model.COSTS_CSV
DEFAULT_BASELINE = DEFAULT_OUT / "baseline.json"


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
    parser.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE if DEFAULT_BASELINE.exists() else None,
                        help="an earlier results.json: summary.md compares this run with it (before/after, with "
                             f"the commit of each; default {DEFAULT_BASELINE.relative_to(PROJECT_ROOT)} if present)")
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
                    keep_alive_rounds=1 if args.quick else 9,
                    handshakes_per_client=3 if args.quick else 10, host_side=not args.no_host,
                    pool_cards=POOL_CARDS_QUICK if args.quick else POOL_CARDS,
                    pool_handshakes_per_client=1 if args.quick else 3, baseline=args.baseline)


def run(settings: Settings) -> Report:
    """Parts 1 to 3 in order; MeasurementError as soon as one measurement fails."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    results = Results()
    load_average(results, "start")
    costs = card_costs(settings.costs)
    with logging_redirect_tqdm():
        runs, fragmenting, client_auth = sim_benchmark(settings)
        sim_results(runs, results)
        fragmenting_results(fragmenting, results)
        modeled = model_runs(runs, costs, settings)
        model_results(modeled, results)
        target_results(modeled, results)
        client_auth_modeled = model_client_auth(client_auth, costs, settings)
        client_auth_results(client_auth, client_auth_modeled, results)
        dtls = dtls_benchmark(settings)
        model_dtls(dtls, costs, settings)
        dtls_results(dtls, results)
        load_average(results, "before_host_side")
        if settings.host_side:
            host_benchmark(settings, results)
        ratio_results(results)
    load_average(results, "end")
    return Report(runs, modeled, results, settings, client_auth_modeled, dtls)


def load_average(results: Results, when: str) -> None:
    """The machine's 1-minute load average (other work on the shared cores skews the wall-clock
    figures of the host side; the modeled figures are counts and do not depend on it)."""
    try:
        one_minute = os.getloadavg()[0]
    except OSError:
        return
    results.add("load", "-", "-", "machine", f"loadavg_1min.{when}", one_minute, "runnable processes", 1)


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
    try:
        report = run(settings)
    except MeasurementError as exc:
        raise SystemExit(f"benchmark failed, nothing written: {exc}") from exc
    write_json(report.results, settings.out / "results.json")
    write_plots(report.runs, report.modeled, report.results, settings.out)
    (settings.out / "summary.md").write_text(summary(report), encoding="utf-8")
    log.info("wrote %d results, summary.md and plots to %s in %.0f s", len(report.results.items), settings.out,
             time.monotonic() - started)
    return 0
