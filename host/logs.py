"""Logging for daemons on small devices: a log that cannot flood the storage.

`RateLimit` is a `logging.Filter` for the handler: records at INFO and above that share a message
template (the logger, level and format string, whatever the arguments: "backlog full ... %s" for
every client) pass `burst` times per `interval`; the rest of that interval is counted, and one
summary line says how many were left out. `flush()` writes the summaries of the intervals that
have ended (the server calls it every interval, so a flood that stopped is still summarised).
DEBUG records (asked for with -v) always pass, and so do the audit lines: one per successful
connection, whose template names the client (`client=%s`, the handshake line of host.se_tls):
they are the record of who connected, and a flood of failures must not hide them.

Arguments that are connection errors (`ConnectionResetError` and its kin) are shown as plain
sentences ("connection reset by the client"), not Python's "[Errno 104] ..." (`plain_error`).

`setup(verbose)` installs it on the root handler; `python -m host.server` uses it. With
`log_format="json"` each record is one JSON object on one line (`JsonFormatter`: time, level,
logger, message, and the exception when there is one) for log shippers; text is the default.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

INTERVAL = 10.0      # seconds
BURST = 10           # lines per template and interval before counting starts
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
SUMMARY_LOGGER = "host.logs"
_SUMMARY = "summary"  # the attribute that marks a summary record (never limited)
AUDIT_MARK = "client=%s"   # in a template: one line per successful connection (never limited)


def plain_error(exc: BaseException) -> str:
    """A connection error as a sentence for the log ("connection reset by the client"); other
    OSErrors as their lower-case strerror; anything else as str()."""
    if isinstance(exc, ConnectionResetError):
        return "connection reset by the client"
    if isinstance(exc, BrokenPipeError):
        return "the client closed the connection"
    if isinstance(exc, ConnectionAbortedError):
        return "connection aborted"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return str(exc) or "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[:1].lower() + exc.strerror[1:]
    return str(exc)


def _plain_args(record: logging.LogRecord) -> None:
    if isinstance(record.args, tuple) and any(isinstance(a, OSError) for a in record.args):
        record.args = tuple(plain_error(a) if isinstance(a, OSError) else a for a in record.args)


@dataclass
class _Window:
    start: float
    passed: int = 0
    suppressed: int = 0
    example: str = ""


class RateLimit(logging.Filter):
    """At most `burst` lines per message template and `interval`; the rest counted and summarised."""

    def __init__(self, interval: float = INTERVAL, burst: int = BURST, level: int = logging.INFO,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval, self.burst, self.level, self.clock = interval, burst, level, clock
        self._windows: dict[tuple[str, int, str], _Window] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        _plain_args(record)
        if record.levelno < self.level or getattr(record, _SUMMARY, False):
            return True
        if record.levelno == logging.INFO and AUDIT_MARK in str(record.msg):
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        window = self._windows.get(key)
        if window is None or now - window.start >= self.interval:
            if window is not None:
                self._summarise(key, window)
            window = self._windows[key] = _Window(now)
        if window.passed < self.burst:
            window.passed += 1
            return True
        window.suppressed += 1
        if not window.example:
            window.example = record.getMessage()
        return False

    def flush(self, force: bool = False) -> None:
        """Summarises, and forgets, every window whose interval has ended (every one: `force`)."""
        now = self.clock()
        for key, window in list(self._windows.items()):
            if force or now - window.start >= self.interval:
                del self._windows[key]
                self._summarise(key, window)

    def _summarise(self, key: tuple[str, int, str], window: _Window) -> None:
        if window.suppressed:
            name, level, _ = key
            logging.getLogger(SUMMARY_LOGGER).log(
                level, "%d more like this in the last %.0f s (%s): %s", window.suppressed, self.interval, name,
                window.example, extra={_SUMMARY: True})


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: `time` (ISO 8601, UTC, milliseconds), `level`,
    `logger`, `message` (arguments merged), `exception` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                    + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup(verbose: bool = False, interval: float = INTERVAL, burst: int = BURST, log_format: str = "text",
          level: int | None = None) -> RateLimit:
    """The root handler on stderr (text or one JSON object per line), with the rate limit; returns
    the limit (to flush it). `level` overrides `verbose` (DEBUG) / INFO."""
    chosen = level if level is not None else logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=chosen, format=FORMAT)
    limit = RateLimit(interval, burst)
    for handler in logging.getLogger().handlers:
        handler.addFilter(limit)
        if log_format == "json":
            handler.setFormatter(JsonFormatter())
    return limit
