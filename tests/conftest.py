"""Shared fixtures: the compiled applet, and servers started the way users start them."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLASSES = ROOT / "build" / "applet" / "classes"
DEMO = ROOT / "build" / "demo"


@pytest.fixture(scope="session")
def applet_classes() -> Path:
    """The applet compiled against the Java Card API (ant compile), built once if missing."""
    if not (CLASSES / "org" / "setls" / "applet" / "SeTlsApplet.class").exists():
        subprocess.run(["ant", "-q", "compile"], cwd=ROOT, check=True)
    return CLASSES


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    process: subprocess.Popen[str]
    ports: dict[str, int]
    log: list[str]

    def lines(self) -> str:
        return "".join(self.log)


def start_server(args: list[str], ready_timeout: float = 120.0) -> ServerProcess:
    """`python -m host.server ARGS`, waiting for its 'ready' line (no fixed sleep)."""
    import queue
    import threading

    ports: dict[str, int] = {}
    full = list(args)
    for flag in ("--tls-echo", "--https", "--coaps-tcp"):
        if flag in full:
            i = full.index(flag)
            if full[i + 1] == "0":
                full[i + 1] = str(free_port())
            ports[flag.lstrip("-")] = int(full[i + 1])
    process = subprocess.Popen([sys.executable, "-m", "host.server", *full], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    server = ServerProcess(process, ports, [])
    lines: queue.Queue[str | None] = queue.Queue()

    def drain() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            server.log.append(line)
            lines.put(line)
        lines.put(None)

    threading.Thread(target=drain, daemon=True).start()
    deadline = time.monotonic() + ready_timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            break
        if line.strip() == "ready":
            return server
    stop_server(server)
    raise RuntimeError("server did not become ready:\n" + server.lines())


def stop_server(server: ServerProcess) -> None:
    if server.process.poll() is None:
        os.killpg(server.process.pid, signal.SIGTERM)
        try:
            server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait()


@pytest.fixture(scope="module")
def server_factory(applet_classes: Path) -> Iterator[object]:
    started: list[ServerProcess] = []

    def factory(*args: str) -> ServerProcess:
        server = start_server(list(args))
        started.append(server)
        return server

    yield factory
    for server in started:
        stop_server(server)
