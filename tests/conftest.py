"""Shared fixtures: the compiled applet, the card the suite runs against, and servers started the
way users start them.

One suite, several targets: by default the card and end-to-end tests run on simulated cards
(jcardsim). `pytest --reader NAME` runs them against the card in a PC/SC reader instead; the
tests that personalise the card (they overwrite identity slot 0 with the demo identity and its
PIN) run only with `--destructive` as well, and those that need several cards are skipped.
"""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from host.bench.daemon import ReadyProcess, start_ready
from host.card import SeTlsCard, open_cards
from host.demo_pki import DEMO_DIR, DemoCa, ensure_demo_operator_key
from host.iso7816.simulator import free_port
from host.provision import DEMO_PIN, DEMO_PUK, IdentitySpec, personalise

ROOT = Path(__file__).resolve().parent.parent



def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("setls", "the card the card and end-to-end tests run against")
    group.addoption("--reader", metavar="NAME", default=None,
                    help="a PC/SC reader whose card runs the applet (default: simulated cards)")
    group.addoption("--destructive", action="store_true", default=False,
                    help="with --reader: allow the tests that personalise the card (identity slot 0)")


@dataclass(frozen=True)
class CardTarget:
    """Simulated cards (`reader` None) or the card in one PC/SC reader."""

    reader: str | None
    destructive: bool

    def require(self, cards: int = 1, personalises: bool = True) -> None:
        """Skips the calling test when this target cannot give it what it needs."""
        if self.reader is None:
            return
        if cards > 1:
            pytest.skip(f"needs {cards} cards; --reader gives one")
        if personalises and not self.destructive:
            pytest.skip("personalises the card: add --destructive to run it on a real card")

    @contextlib.contextmanager
    def cards(self, count: int = 1) -> Iterator[list[SeTlsCard]]:
        """`count` opened cards, applet selected (simulated, or the reader's)."""
        self.require(count)
        if self.reader is None:
            with open_cards(sim=count) as cards:
                yield cards
        else:
            with open_cards(readers=[self.reader]) as cards:
                yield cards

    def server_args(self, args: list[str]) -> list[str]:
        """`python -m host.server` arguments for this target: `--sim [N]` becomes the reader
        (personalised first with the demo identity, as `--sim` would be)."""
        if self.reader is None or "--sim" not in args:
            return args
        i = args.index("--sim")
        has_count = i + 1 < len(args) and args[i + 1].isdigit()
        count = int(args[i + 1]) if has_count else 1
        self.require(count)
        suites = args[args.index("--suites") + 1] if "--suites" in args else None
        provision_with_cli(self.reader, DEMO_PIN, export_keys="--export-keys" in args, suites=suites)
        rest = args[:i] + args[i + 1 + has_count:]
        if suites is not None:   # --suites and --export-keys are --sim options: the CLI set them
            j = rest.index("--suites")
            rest = rest[:j] + rest[j + 2:]
        rest = [a for a in rest if a != "--export-keys"]
        return ["--reader", self.reader, "--pin", DEMO_PIN, *rest]


def provision_with_cli(reader: str, pin: str, export_keys: bool, suites: str | None = None) -> list[str]:
    """Provisions identity slot 0 of the reader's card as a device maker does, one CLI process per
    step: init (if the card is blank), keygen, csr, demo-ca issue, load-chain, policy, reset-pin.
    The demo operator key and CA (build/demo/). Returns the steps' standard outputs."""
    env = {**os.environ, "SETLS_PIN": pin, "SETLS_PUK": DEMO_PUK, "SETLS_NEW_PIN": pin,
           "SETLS_OPERATOR_KEY": str(ensure_demo_operator_key())}
    csr, pem = DEMO_DIR / "server.csr", DEMO_DIR / "server.pem"
    outputs = []

    def step(*args: str, card: bool = True) -> str:
        where = ["--reader", reader] if card else []
        result = subprocess.run([sys.executable, "-m", "host.provision", *args, *where], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{args[0]}: {result.stderr}"
        outputs.append(result.stdout)
        return result.stdout

    if '"initialised": false' in step("info", "--json"):
        step("init")
    step("keygen")
    step("csr", "--subject", "O=SE-TLS demo,CN=server (SE-TLS card)", "--san", "DNS:localhost",
         "--san", "IP:127.0.0.1", "--san", "IP:::1", "--out", str(csr))
    step("demo-ca", "issue", str(csr), "--out", str(pem), card=False)
    step("load-chain", str(pem))
    step("policy", "--name", "server", "--export-keys", "yes" if export_keys else "no",
         *(["--suites", suites] if suites is not None else []))
    step("reset-pin")
    return outputs


@pytest.fixture(scope="module")
def card(applet_classes: Path, card_target: CardTarget,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeTlsCard]:
    """One card of the target, personalised with the demo identity "server" (PIN DEMO_PIN, key
    export allowed) by a CA of its own; modules that need another card define their own."""
    with card_target.cards(1) as cards:
        ca = DemoCa.load_or_create(tmp_path_factory.mktemp("ca"))
        personalise(cards[0], IdentitySpec("server", DEMO_PIN, export_keys=True), ca, out_dir=None)
        yield cards[0]


@pytest.fixture(scope="session")
def card_target(request: pytest.FixtureRequest) -> CardTarget:
    return CardTarget(request.config.getoption("--reader"), request.config.getoption("--destructive"))
CLASSES = ROOT / "build" / "applet" / "classes"
DEMO = ROOT / "build" / "demo"


@pytest.fixture(scope="session")
def applet_classes() -> Path:
    """The applet compiled against the Java Card API (ant compile), built once if missing."""
    if not (CLASSES / "org" / "setls" / "applet" / "SeTlsApplet.class").exists():
        subprocess.run(["ant", "-q", "compile"], cwd=ROOT, check=True)
    return CLASSES


ServerFactory = Callable[..., "ServerProcess"]


@dataclass
class ServerProcess:
    daemon: ReadyProcess
    ports: dict[str, int]

    def lines(self) -> str:
        return self.daemon.output()


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port free right now (`--coaps 0` would bind a different one per address)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def start_server(args: list[str], ready_timeout: float = 120.0) -> ServerProcess:
    """`python -m host.server ARGS` (a port 0 is replaced by a free one), once it is ready."""
    ports: dict[str, int] = {}
    full = list(args)
    for flag in ("--tls-echo", "--https", "--coaps-tcp", "--coaps", "--dtls-echo"):
        if flag in full:
            i = full.index(flag)
            if full[i + 1] == "0":
                full[i + 1] = str(free_udp_port() if flag == "--coaps" else free_port())
            ports[flag.lstrip("-")] = int(full[i + 1])
    return ServerProcess(start_ready(["-m", "host.server", *full], ready_timeout), ports)


def stop_server(server: ServerProcess) -> None:
    server.daemon.stop()


@pytest.fixture(scope="module")
def server_factory(applet_classes: Path, card_target: CardTarget) -> Iterator[ServerFactory]:
    started: list[ServerProcess] = []

    def factory(*args: str) -> ServerProcess:
        if card_target.reader is not None:  # one card serves one server process at a time
            while started:
                stop_server(started.pop())
        server = start_server(card_target.server_args(list(args)))
        started.append(server)
        return server

    yield factory
    for server in started:
        stop_server(server)
