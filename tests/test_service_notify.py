"""`python -m host.server` under a service manager, without systemd (issue 15 items 2 and 6): a
datagram socket of the test stands for systemd's NOTIFY_SOCKET and receives READY=1 once the
listeners are up, the cards' state in STATUS=, and WATCHDOG=1 pings at half of WATCHDOG_USEC,
which go on after the only card is gone (its jcardsim killed) while STATUS= says so. A device
booted without its card still starts. `--log-format json` writes one JSON object per line."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import start_server, stop_server

from host.service.notify import Liveness, Notifier, message, watchdog_interval

pytestmark = pytest.mark.timeout(180)
WATCHDOG_USEC = 400_000   # pings every 0.2 s


class FakeManager:
    """The service manager's end of NOTIFY_SOCKET: every datagram, with its arrival time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._running = True
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while self._running:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().split("\n"))
            with self._lock:
                self.messages.append((time.monotonic(), fields))

    def wait_for(self, predicate: Callable[[dict[str, str]], bool], timeout: float = 60.0) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            with self._lock:
                pending = self.messages[seen:]
                seen = len(self.messages)
            for _, fields in pending:
                if predicate(fields):
                    return fields
            time.sleep(0.05)
        raise AssertionError(f"no such notification in {timeout} s; got {self.messages[-10:]}")

    def pings_after(self, since: float) -> int:
        with self._lock:
            return sum(1 for at, fields in self.messages if at > since and fields.get("WATCHDOG") == "1")

    def close(self) -> None:
        self._running = False
        self._thread.join()
        self.sock.close()


@pytest.fixture()
def manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeManager]:
    fake = FakeManager(tmp_path / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", str(fake.path))
    monkeypatch.setenv("WATCHDOG_USEC", str(WATCHDOG_USEC))
    yield fake
    fake.close()


def test_ready_status_and_watchdog_pings_go_on_with_every_card_removed(manager: FakeManager,
                                                                       applet_classes: Path) -> None:
    server = start_server(["--sim", "--tls-echo", "0"])
    try:
        port = server.ports["tls-echo"]
        ready = manager.wait_for(lambda f: "READY" in f, timeout=5)   # sent before the "ready" line
        assert ready["READY"] == "1"
        assert ready["STATUS"] == f"tls-echo :{port}; 1 of 1 card(s) serving"
        manager.wait_for(lambda f: f.get("WATCHDOG") == "1", timeout=5)

        pid = int(re.search(r"jcardsim pid (\d+)", server.lines()).group(1))  # type: ignore[union-attr]
        os.killpg(pid, signal.SIGKILL)   # the only card is gone
        context = ssl.create_default_context(cafile=str(Path(__file__).parent.parent / "build/demo/ca.pem"))
        with pytest.raises((ssl.SSLError, OSError)), socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:   # a real client notices it
                tls.sendall(b"x")
                tls.recv(1)
        lost = manager.wait_for(lambda f: "STATUS" in f and "0 of 1" in f["STATUS"], timeout=30)
        assert "no card: clients are refused" in lost["STATUS"] and "lost" in lost["STATUS"], lost
        since = time.monotonic()
        time.sleep(2.0)
        assert manager.pings_after(since) >= 3   # ~10 at 0.2 s; the count, not the pace, is pinned
        assert server.daemon.process.poll() is None
    finally:
        stop_server(server)
    manager.wait_for(lambda f: f.get("STOPPING") == "1", timeout=10)


def test_a_device_booted_without_its_card_starts_and_says_so_in_status(manager: FakeManager, tmp_path: Path,
                                                                       applet_classes: Path) -> None:
    config = tmp_path / "setls.toml"
    config.write_text('[cards]\nreaders = ["SE-TLS test reader that is not there"]\nmissing = "wait"\n'
                      '[servers]\ntls_echo = 0\n')
    server = start_server(["--config", str(config), "--tls-echo", "0"])
    try:
        ready = manager.wait_for(lambda f: "READY" in f, timeout=5)
        assert "0 of 1 card(s) serving, no card" in ready["STATUS"], ready
        assert "SE-TLS test reader that is not there" in ready["STATUS"], ready
        manager.wait_for(lambda f: f.get("WATCHDOG") == "1", timeout=5)
    finally:
        stop_server(server)


def test_json_log_format_writes_one_object_per_line(monkeypatch: pytest.MonkeyPatch, applet_classes: Path) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    server = start_server(["--sim", "--tls-echo", "0", "--log-format", "json"])
    stop_server(server)
    lines = [line for line in server.lines().splitlines() if line.strip() and line.strip() != "ready"]
    entries = [json.loads(line) for line in lines]   # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= entry.keys() for entry in entries)
    port = server.ports["tls-echo"]
    assert any(entry["message"] == f"tls-echo listening on 127.0.0.1:{port} (record layer in the card)"
               for entry in entries), lines


def test_notifications_are_newline_separated_and_reach_an_abstract_socket() -> None:
    assert message(ready=1, status="1 of 1 card(s) serving") == b"READY=1\nSTATUS=1 of 1 card(s) serving"
    with pytest.raises(ValueError, match="newline"):
        message(status="two\nlines")
    name = f"setls-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind("\0" + name)
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready("up")
        assert receiver.recv(100) == b"READY=1\nSTATUS=up"
        assert notifier.status("error: a message\nof two lines")   # one assignment, not two
        assert receiver.recv(100) == b"STATUS=error: a message of two lines"
        notifier.close()
    assert not Notifier({}).ping()   # not under systemd: nothing sent, nothing raised


def test_the_watchdog_interval_is_half_of_watchdog_usec_and_only_for_its_pid() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, pid=2) is None
    assert watchdog_interval({}) is None
    liveness = Liveness()
    liveness.register("card supervisor", lambda: "stopped")
    assert liveness.failures() == ["card supervisor: stopped"]


def test_the_watchdog_pings_only_while_every_check_passes() -> None:
    import asyncio

    class Counting(Notifier):
        def __init__(self) -> None:
            super().__init__({})
            self.pings = 0

        def ping(self) -> bool:
            self.pings += 1
            return True

    async def run() -> tuple[int, int, int]:
        from host.service.notify import watchdog
        notifier, supervisor = Counting(), {"alive": True}
        liveness = Liveness()
        liveness.register("card supervisor", lambda: None if supervisor["alive"] else "stopped")
        task = asyncio.ensure_future(watchdog(notifier, 0.01, liveness))
        await asyncio.sleep(0.2)
        alive = notifier.pings
        supervisor["alive"] = False
        await asyncio.sleep(0.05)
        stopped = notifier.pings
        await asyncio.sleep(0.2)
        silent = notifier.pings - stopped
        task.cancel()
        return alive, stopped, silent

    alive, _, silent = asyncio.run(run())
    assert alive > 0 and silent == 0
