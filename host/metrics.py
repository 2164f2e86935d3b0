"""Prometheus metrics of the servers and their card pool (prometheus_client, its own registry).

`PoolMetrics` is the pool's `PoolEvents`: counters grow as handshakes, alerts and card failures
happen; what the pool holds now (cards up, sessions open, backlog, each card's APDUs, bytes and
busy time) is read from the `TlsTandem` when Prometheus scrapes. `serve_metrics()` starts the
exposition endpoint (`GET /metrics`, text format 0.0.4) on its own port, bound to 127.0.0.1 by
default: the clients' addresses are not in it, but the device's load is nobody else's business.

Names (docs/operations.md lists them with their labels):

  setls_handshakes_total{outcome,suite,record_mode,card}   outcome: host.se_tls.OUTCOMES
  setls_handshake_duration_seconds{record_mode}             histogram, successful handshakes
  setls_alerts_sent_total{description}, setls_alerts_received_total{description}   RFC 5246 7.2 names
  setls_card_errors_total{card}, setls_card_reopens_total{card}
  setls_card_up{card}, setls_cards_serving, setls_cards
  setls_card_apdus_total{card}, setls_card_bytes_total{card,direction}   direction: to_card | from_card
  setls_card_busy_seconds_total{card}
  setls_sessions_open{record_mode}, setls_backlog_depth
"""
from __future__ import annotations

import logging
import threading
from collections import Counter as Tally
from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from host.se_tls import PoolEvents, TlsTandem
from host.tls.numbers import ALERT_NAMES

log = logging.getLogger(__name__)

DEFAULT_ADDRESS = "127.0.0.1"
# Handshakes take ~20 ms on jcardsim and ~0.5-2 s on real cards (bench/summary.md).
DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0)


def alert_name(description: int) -> str:
    """The alert's RFC name (`alert_N` for a number no RFC names)."""
    return ALERT_NAMES.get(description, f"alert_{description}")


class PoolMetrics(PoolEvents):
    """The pool's events as Prometheus counters, and its state as gauges read at scrape time.
    `attach(tandem)` once the pool exists; `registry` is what to expose."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.handshakes = Counter("setls_handshakes", "Handshakes by how they ended",
                                  ["outcome", "suite", "record_mode", "card"], registry=self.registry)
        self.duration = Histogram("setls_handshake_duration_seconds",
                                  "Time from taking a card to the last server flight, successful handshakes",
                                  ["record_mode"], buckets=DURATION_BUCKETS, registry=self.registry)
        self.sent = Counter("setls_alerts_sent", "TLS alerts the server sent, by description", ["description"],
                            registry=self.registry)
        self.received = Counter("setls_alerts_received", "TLS alerts clients sent, by description",
                                ["description"], registry=self.registry)
        self.card_errors = Counter("setls_card_errors", "Cards lost from the pool (removed, reset, failed)",
                                   ["card"], registry=self.registry)
        self.reopens = Counter("setls_card_reopens", "Lost cards reopened and unlocked again", ["card"],
                               registry=self.registry)
        self._state: PoolState | None = None

    def attach(self, tandem: TlsTandem) -> None:
        """Reads the pool's state at every scrape; the pool reports its events here."""
        tandem.events = self
        self._state = PoolState(tandem)
        self.registry.register(self._state)
        for slot in tandem.slots:   # every card's series exist from the start, at zero
            self.card_errors.labels(slot.name)
            self.reopens.labels(slot.name)

    # -- PoolEvents ---------------------------------------------------------------------------
    def handshake(self, outcome: str, card: str, suite: str, record_mode: str, seconds: float) -> None:
        self.handshakes.labels(outcome, suite, record_mode, card).inc()
        if outcome == "ok":
            self.duration.labels(record_mode).observe(seconds)

    def alert_sent(self, description: int) -> None:
        self.sent.labels(alert_name(description)).inc()

    def alert_received(self, description: int) -> None:
        self.received.labels(alert_name(description)).inc()

    def card_error(self, card: str, reason: str) -> None:
        self.card_errors.labels(card).inc()

    def card_reopened(self, card: str) -> None:
        self.reopens.labels(card).inc()


class PoolState(Collector):
    """The pool as it is at scrape time (read from the scrape's thread: plain counts, no lock)."""

    def __init__(self, tandem: TlsTandem) -> None:
        self.tandem = tandem

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        tandem = self.tandem
        up = GaugeMetricFamily("setls_card_up", "1 while the card serves, 0 while it is lost", labels=["card"])
        apdus = CounterMetricFamily("setls_card_apdus", "APDUs exchanged with the card", labels=["card"])
        moved = CounterMetricFamily("setls_card_bytes", "APDU bytes to and from the card",
                                    labels=["card", "direction"])
        busy = CounterMetricFamily("setls_card_busy_seconds", "Time the card spent on operations",
                                   labels=["card"])
        for slot in list(tandem.slots):
            count, to_card, from_card = slot.traffic()
            up.add_metric([slot.name], 0 if slot.lost else 1)
            apdus.add_metric([slot.name], count)
            moved.add_metric([slot.name, "to_card"], to_card)
            moved.add_metric([slot.name, "from_card"], from_card)
            busy.add_metric([slot.name], slot.busy_seconds)
        yield from (up, apdus, moved, busy)
        yield GaugeMetricFamily("setls_cards", "Cards in the pool's configuration", value=len(tandem.slots))
        yield GaugeMetricFamily("setls_cards_serving", "Cards serving now (0: new connections get a fatal alert)",
                                value=len(tandem.serving))
        sessions = GaugeMetricFamily("setls_sessions_open", "TLS sessions open", labels=["record_mode"])
        modes = Tally(info.record_mode for info in list(tandem.sessions.values()))
        for mode in ("card", "host"):
            sessions.add_metric([mode], modes.get(mode, 0))
        yield sessions
        yield GaugeMetricFamily("setls_backlog_depth", "Connections with a ClientHello waiting for a card",
                                value=tandem.backlog)


def serve_metrics(metrics: PoolMetrics, port: int, address: str = DEFAULT_ADDRESS) -> tuple[WSGIServer, int]:
    """Starts the exposition endpoint in a thread of its own; returns the server and its port
    (`port` 0: a free one). OSError when the address cannot be bound."""
    server, thread = start_http_server(port, addr=address, registry=metrics.registry)
    assert isinstance(thread, threading.Thread)
    bound = int(server.server_address[1])
    log.info("metrics on http://%s/metrics", f"[{address}]:{bound}" if ":" in address else f"{address}:{bound}")
    return server, bound
