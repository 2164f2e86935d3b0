"""Shared fixtures: the compiled applet, and servers started the way users start them."""
from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from host.bench.daemon import ReadyProcess, start_ready

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


ServerFactory = Callable[..., "ServerProcess"]


@dataclass
class ServerProcess:
    daemon: ReadyProcess
    ports: dict[str, int]

    def lines(self) -> str:
        return self.daemon.output()


def start_server(args: list[str], ready_timeout: float = 120.0) -> ServerProcess:
    """`python -m host.server ARGS` (a port 0 is replaced by a free one), once it is ready."""
    ports: dict[str, int] = {}
    full = list(args)
    for flag in ("--tls-echo", "--https", "--coaps-tcp"):
        if flag in full:
            i = full.index(flag)
            if full[i + 1] == "0":
                full[i + 1] = str(free_port())
            ports[flag.lstrip("-")] = int(full[i + 1])
    return ServerProcess(start_ready(["-m", "host.server", *full], ready_timeout), ports)


def stop_server(server: ServerProcess) -> None:
    server.daemon.stop()


@pytest.fixture(scope="module")
def server_factory(applet_classes: Path) -> Iterator[ServerFactory]:
    started: list[ServerProcess] = []

    def factory(*args: str) -> ServerProcess:
        server = start_server(list(args))
        started.append(server)
        return server

    yield factory
    for server in started:
        stop_server(server)
