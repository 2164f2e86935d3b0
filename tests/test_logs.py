"""The log cannot flood the device (issue 10 item 6): repeated lines are counted and summarised,
one line per interval with the count (host.logs.RateLimit, on a fake clock)."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from host.logs import RateLimit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def limited(caplog: pytest.LogCaptureFixture) -> Iterator[tuple[RateLimit, Clock, pytest.LogCaptureFixture]]:
    clock = Clock()
    limit = RateLimit(interval=10.0, burst=3, clock=clock)
    caplog.set_level(logging.DEBUG)
    caplog.handler.addFilter(limit)
    yield limit, clock, caplog
    caplog.handler.removeFilter(limit)


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records]


def test_a_flood_of_one_template_is_a_burst_then_one_summary_with_the_count(
        limited: tuple[RateLimit, Clock, pytest.LogCaptureFixture]) -> None:
    limit, clock, caplog = limited
    log = logging.getLogger("host.se_tls")
    for i in range(20_000):
        log.warning("%s backlog full (%d): connection from %s closed", "https", 16, f"10.0.0.{i % 250}:{i}")
    assert len(caplog.records) == 3
    clock.now += 10.0
    log.warning("%s backlog full (%d): connection from %s closed", "https", 16, "10.0.0.1:1")
    summary = messages(caplog)[3]
    assert summary.startswith("19997 more like this in the last 10 s (host.se_tls): https backlog full (16)")
    assert caplog.records[3].levelno == logging.WARNING
    assert len(caplog.records) == 5   # the summary, then the new interval's first line


def test_a_flood_that_stopped_is_summarised_by_flush_and_other_templates_pass(
        limited: tuple[RateLimit, Clock, pytest.LogCaptureFixture]) -> None:
    limit, clock, caplog = limited
    log = logging.getLogger("host.se_tls")
    for i in range(50):
        log.info("%s %s: handshake timed out", "https", i)
        log.info("%s %s card=%s", "https", i, "0:sim0")
    log.debug("every debug line passes %d", 1)
    assert len(caplog.records) == 3 + 3 + 1
    limit.flush()
    assert len(caplog.records) == 7   # the intervals have not ended yet
    clock.now += 10.0
    limit.flush()
    summaries = [m for m in messages(caplog) if "more like this" in m]
    assert sorted(m.split(" ")[0] for m in summaries) == ["47", "47"]
    limit.flush()
    assert len([m for m in messages(caplog) if "more like this" in m]) == 2   # summarised once


def test_successful_connection_lines_are_never_rate_limited_but_failures_are(
        limited: tuple[RateLimit, Clock, pytest.LogCaptureFixture]) -> None:
    """The audit trail: host.se_tls's handshake line (one per connection, client=...) all pass."""
    _, _, caplog = limited
    source = (Path(__file__).parents[1] / "host" / "se_tls.py").read_text()
    template = next(line for line in source.splitlines() if "client=%s" in line and "log.info(" in line)
    template = template.split('log.info("', 1)[1].split('"', 1)[0]
    log = logging.getLogger("host.se_tls")
    for i in range(50):
        log.info(template, "https", f"10.0.0.{i}:1", "0:sim0", "ECDHE-ECDSA-AES128-GCM-SHA256", "card", "",
                 0.5, 12, 900, 800, "-")
        log.info("%s %s: handshake timed out", "https", i)
    messages_ = messages(caplog)
    assert sum("handshake timed out" in m for m in messages_) == 3
    assert sum("10.0.0." in m for m in messages_) == 50


def test_a_connection_reset_is_logged_as_a_sentence_not_an_errno(
        limited: tuple[RateLimit, Clock, pytest.LogCaptureFixture]) -> None:
    _, _, caplog = limited
    logging.getLogger("host.se_tls").warning("%s %s: %s%s", "tls-echo", "127.0.0.1:5",
                                             ConnectionResetError(104, "Connection reset by peer"), "")
    assert messages(caplog) == ["tls-echo 127.0.0.1:5: connection reset by the client"]
