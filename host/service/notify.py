"""sd_notify(3) for `Type=notify` units, written here: datagrams to `$NOTIFY_SOCKET`.

The protocol (systemd's sd_notify man page): one datagram of newline-separated `NAME=value`
assignments to the AF_UNIX socket named by `$NOTIFY_SOCKET` (a path, or `@name` for the abstract
namespace). The server sends `READY=1` with a `STATUS=` once its listeners are up, `STATUS=` when
the cards change, `WATCHDOG=1` every half of `$WATCHDOG_USEC` while it is alive, `STOPPING=1` on
the way out. Without `$NOTIFY_SOCKET` (not under systemd) every call does nothing.

`message()` is the sans-IO part; `Notifier` the socket; `watchdog_interval()` reads the
environment; `watchdog()` is the asyncio task: a ping only when every liveness check passes (the
loop running the task is the first check; the card supervisor registers its own in `checks`).
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

log = logging.getLogger(__name__)
NOTIFY_SOCKET = "NOTIFY_SOCKET"
WATCHDOG_USEC = "WATCHDOG_USEC"
WATCHDOG_PID = "WATCHDOG_PID"


def message(**assignments: str | int) -> bytes:
    """One notification: `READY=1\\nSTATUS=...`; names upper-cased; a value may not hold a newline
    (ValueError), since the protocol separates assignments with newlines."""
    lines = []
    for name, value in assignments.items():
        text = str(value)
        if "\n" in text:
            raise ValueError(f"{name}: a notification value may not contain a newline")
        lines.append(f"{name.upper()}={text}")
    return "\n".join(lines).encode()


def socket_address(value: str) -> str:
    """`$NOTIFY_SOCKET` as a socket address: `@name` is abstract (a leading NUL byte)."""
    return "\0" + value[1:] if value.startswith("@") else value


class Notifier:
    """Sends notifications to the service manager; a no-op without `$NOTIFY_SOCKET`. A failed send
    is logged once and never raised: the service goes on (systemd kills it if pings stop)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        value = env.get(NOTIFY_SOCKET, "")
        self.address = socket_address(value) if value else None
        self._socket: socket.socket | None = None
        self._warned = False
        self.last_status = ""

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, **assignments: str | int) -> bool:
        """One notification; a newline in a value (an error message) becomes a space."""
        if self.address is None:
            return False
        assignments = {name: str(value).replace("\n", " ") for name, value in assignments.items()}
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.sendto(message(**assignments), self.address)
        except OSError as exc:
            if not self._warned:
                log.warning("cannot notify the service manager at %s: %s", self.address.lstrip("\0"), exc)
                self._warned = True
            return False
        return True

    def ready(self, status: str) -> bool:
        self.last_status = status
        return self.send(READY=1, STATUS=status)

    def status(self, status: str) -> bool:
        """STATUS=, sent only when it changed."""
        if status == self.last_status:
            return True
        self.last_status = status
        return self.send(STATUS=status)

    def ping(self) -> bool:
        return self.send(WATCHDOG=1)

    def stopping(self, status: str = "stopping") -> bool:
        return self.send(STOPPING=1, STATUS=status)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def watchdog_interval(environ: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """Seconds between pings: half of `$WATCHDOG_USEC` (systemd's advice), None when the unit has
    no watchdog or `$WATCHDOG_PID` names another process."""
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get(WATCHDOG_USEC, ""))
    except ValueError:
        return None
    owner = env.get(WATCHDOG_PID)
    if owner and owner != str(os.getpid() if pid is None else pid):
        return None
    return usec / 2e6 if usec > 0 else None


@dataclass
class Liveness:
    """What must be alive for a ping: named checks returning None when fine, else the reason."""

    checks: dict[str, Callable[[], str | None]] = field(default_factory=dict)

    def register(self, name: str, check: Callable[[], str | None]) -> None:
        self.checks[name] = check

    def failures(self) -> list[str]:
        failed = []
        for name, check in list(self.checks.items()):
            try:
                reason = check()
            except Exception as exc:   # a check that fails is a failure, not a crash of the loop
                reason = f"its check raised {exc!r}"
            if reason:
                failed.append(f"{name}: {reason}")
        return failed


async def watchdog(notifier: Notifier, interval: float, liveness: Liveness) -> None:
    """WATCHDOG=1 every `interval` seconds while every check passes (the event loop runs this, so
    a blocked loop stops the pings too); a failing check is logged and the pings stop until it
    passes again (systemd restarts the service after WatchdogSec=). Cards are not checked: a
    service without cards is alive, and says so in STATUS=."""
    silent: list[str] = []
    while True:
        failures = liveness.failures()
        if failures:
            if failures != silent:
                log.error("watchdog: not alive (%s): no ping", "; ".join(failures))
            silent = failures
        else:
            if silent:
                log.info("watchdog: alive again")
            silent = []
            notifier.ping()
        await asyncio.sleep(interval)
