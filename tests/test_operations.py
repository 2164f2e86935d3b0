"""The service as an operator watches it: Prometheus metrics scraped and parsed with
prometheus_client's own parser, the status page in headless Chromium at phone and desktop widths
(screenshots in build/test-artifacts/), /status.json, and a card pool that loses its simulated
cards one by one (their jcardsim processes killed) while clients (Python ssl) are connected.

Every server here is `python -m host.server --sim N` as users start it; no pcscd is needed
(tests/test_hotplug_pcsc.py covers readers, card resets and a pcscd restart).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import DEMO, ROOT, ServerProcess, start_server, stop_server
from prometheus_client.parser import text_string_to_metric_families

from host.iso7816.simulator import free_port

pytestmark = pytest.mark.timeout(240)
ARTIFACTS = ROOT / "build" / "test-artifacts"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    """Every sample of the metrics endpoint, parsed by prometheus_client's text parser."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 if none)."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= have)


def context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(DEMO / "ca.pem"))


def https_json(port: int, path: str = "/status.json") -> dict:  # type: ignore[type-arg]
    with urllib.request.urlopen(f"https://localhost:{port}{path}", context=context(), timeout=20) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def echo_session(port: int) -> ssl.SSLSocket:
    """An open TLS echo session (handshake done, one echo answered)."""
    tls = context().wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=20),
                                server_hostname="localhost")
    tls.sendall(b"ping")
    assert tls.recv(16) == b"ping"
    return tls


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        time.sleep(0.2)


def simulators(server: ServerProcess) -> list[int]:
    """The server's jcardsim processes, in the order the cards were opened (sim0 first)."""
    found = subprocess.run(["pgrep", "-P", str(server.daemon.process.pid), "java"], capture_output=True,
                           text=True, check=False).stdout.split()
    return sorted(int(pid) for pid in found)


@pytest.fixture(scope="module")
def server(applet_classes: Path) -> Iterator[tuple[ServerProcess, int]]:
    metrics = free_port()
    started = start_server(["--sim", "2", "--https", "0", "--tls-echo", "0", "--metrics-port", str(metrics),
                            "--card-check", "1"])
    yield started, metrics
    stop_server(started)


def test_metrics_count_handshakes_alerts_sessions_and_card_traffic(server: tuple[ServerProcess, int]) -> None:
    process, metrics = server
    before = scrape(metrics)
    assert value(before, "setls_cards_serving") == 2 and value(before, "setls_backlog_depth") == 0
    session = echo_session(process.ports["tls-echo"])
    try:
        during = scrape(metrics)
        assert value(during, "setls_sessions_open", record_mode="card") == 1
    finally:
        session.close()
    # A client that trusts another CA refuses the card's certificate with an alert.
    with pytest.raises(ssl.SSLCertVerificationError):
        ssl.create_default_context().wrap_socket(socket.create_connection(("127.0.0.1", process.ports["tls-echo"])),
                                                 server_hostname="localhost")
    # Bytes that are not TLS get a fatal alert from the host.
    with socket.create_connection(("127.0.0.1", process.ports["tls-echo"]), timeout=10) as raw:
        raw.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert raw.recv(16)[:1] == b"\x15"
    https_json(process.ports["https"], "/sensors/temperature")

    def counted() -> bool:
        now = scrape(metrics)
        return (value(now, "setls_handshakes_total", outcome="ok") - value(before, "setls_handshakes_total",
                                                                         outcome="ok") >= 2
                and value(now, "setls_handshakes_total", outcome="client_alert") >= 1
                and value(now, "setls_sessions_open") == 0)
    wait_for(counted, 10, "the handshakes counted and the sessions closed")
    after = scrape(metrics)
    suite = "ECDHE-ECDSA-AES128-GCM-SHA256"
    assert value(after, "setls_handshakes_total", outcome="ok", suite=suite, record_mode="card") >= 2
    assert value(after, "setls_handshakes_total", outcome="bad_client_hello") >= 1
    assert value(after, "setls_handshake_duration_seconds_count", record_mode="card") >= 2
    assert value(after, "setls_alerts_received_total", description="unknown_ca") >= 1
    assert value(after, "setls_alerts_sent_total", description="close_notify") >= 2
    assert sum(value(after, "setls_alerts_sent_total", description=d)
               for d in ("unexpected_message", "decode_error", "protocol_version", "record_overflow")) >= 1
    for card in ("0:sim0", "1:sim1"):
        assert value(after, "setls_card_up", card=card) == 1
        assert value(after, "setls_card_errors_total", card=card) == 0
        assert value(after, "setls_card_reopens_total", card=card) == 0
    assert value(after, "setls_card_apdus_total") > value(before, "setls_card_apdus_total")
    assert value(after, "setls_card_bytes_total", direction="to_card") > 0
    assert value(after, "setls_card_bytes_total", direction="from_card") > 0
    assert value(after, "setls_card_busy_seconds_total") > 0


def test_the_metrics_endpoint_listens_on_the_loopback_only(server: tuple[ServerProcess, int]) -> None:
    process, metrics = server
    assert f"metrics on http://127.0.0.1:{metrics}/metrics" in process.lines()
    listening = subprocess.run(["ss", "-Hltn", f"sport = :{metrics}"], capture_output=True, text=True,
                               check=False).stdout
    local = [line.split()[3] for line in listening.splitlines()]
    assert local in ([], [f"127.0.0.1:{metrics}"]), listening   # [] where ss is missing


def test_status_json_follows_its_schema(server: tuple[ServerProcess, int]) -> None:
    process, _ = server
    session = echo_session(process.ports["tls-echo"])
    try:
        status = https_json(process.ports["https"])
    finally:
        session.close()
    assert status["schema"] == 1 and status["cards_serving"] == 2 and status["record_mode"] == "card"
    assert set(status) >= {"time", "uptime_seconds", "identity", "subject", "cards", "sessions", "backlog",
                           "handshakes", "resources", "last_session", "plug_on"}
    for card in status["cards"]:
        assert card["state"] == "serving" and card["reader"] == "" and len(bytes.fromhex(card["atr"])) >= 2
        assert card["identity_subject"] == "CN=server (SE-TLS card),O=SE-TLS demo"
        assert card["certificate_not_after"].endswith("Z") and card["pin_tries_left"] == 3
        assert isinstance(card["busy"], bool)
    echo = [s for s in status["sessions"] if s["suite"] and s["client_subject"] is None]
    assert len(echo) == 2   # the echo session and the session that fetched the page
    assert all(s["record_mode"] == "card" and s["age_seconds"] >= 0 for s in status["sessions"])
    assert status["handshakes"][0]["outcome"] == "ok" and status["handshakes"][0]["duration_ms"] > 0
    resources = status["resources"]
    assert len(resources["load_average"]) == 3 and resources["memory_total_bytes"] > 0
    assert resources["disk_total_bytes"] >= resources["disk_free_bytes"] > 0


def card_pins(port: int, cards: int) -> str:
    """The SPKI pins (base64 SHA-256) of the certificates the pool's cards present, each card its own
    key: Chromium trusts these keys alone, every other certificate check stays on."""
    import base64
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    pins: set[str] = set()
    for _ in range(10 * cards):
        with context().wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=20),
                                   server_hostname="localhost") as tls:
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        key = x509.load_der_x509_certificate(der).public_key()
        spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        pins.add(base64.b64encode(hashlib.sha256(spki).digest()).decode())
        if len(pins) == cards:
            break
    return ",".join(sorted(pins))


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed (make setup)")
@pytest.mark.parametrize(("width", "height", "name"), [(1280, 1000, "desktop"), (390, 1600, "phone")])
def test_chromium_shows_the_status_page_at_desktop_and_phone_widths(server: tuple[ServerProcess, int], width: int,
                                                                    height: int, name: str) -> None:
    process, _ = server
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / f"status-page-{name}.png"
    screenshot.unlink(missing_ok=True)
    url = f"https://localhost:{process.ports['https']}/"
    session = echo_session(process.ports["tls-echo"])   # an open session for the page to list
    try:
        with tempfile.TemporaryDirectory() as profile:
            flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     f"--user-data-dir={profile}", f"--window-size={width},{height}",
                     f"--ignore-certificate-errors-spki-list={card_pins(process.ports['https'], 2)}"]
            dom = subprocess.run(["chromium", *flags, "--dump-dom", url], capture_output=True, text=True,
                                 timeout=120)
            shot = subprocess.run(["chromium", *flags, f"--screenshot={screenshot}", url], capture_output=True,
                                  text=True, timeout=120)
    finally:
        session.close()
    page = dom.stdout
    assert "Cards serving <b>2 of 2</b>" in page, page + dom.stderr
    assert "0:sim0" in page and "1:sim1" in page and "Certificate expires" in page and "PIN tries left" in page
    assert "ECDHE-ECDSA-AES128-GCM-SHA256" in page and "Your client certificate <b>none</b>" in page
    assert "<svg" in page and "<circle" in page and "Load (1, 5, 15 min)" in page
    assert "<script" not in page
    assert screenshot.exists() and screenshot.stat().st_size > 5000, shot.stderr


def test_killed_cards_leave_the_pool_their_sessions_close_and_the_last_one_gone_means_a_fatal_alert(
        applet_classes: Path) -> None:
    metrics = free_port()
    server = start_server(["--sim", "2", "--https", "0", "--tls-echo", "0", "--metrics-port", str(metrics),
                           "--card-check", "1"])
    sessions: list[ssl.SSLSocket] = []
    try:
        echo, https = server.ports["tls-echo"], server.ports["https"]
        pids = simulators(server)
        assert len(pids) == 2, pids
        on: dict[str, list[ssl.SSLSocket]] = {"0:sim0": [], "1:sim1": []}
        while not all(on.values()) and len(sessions) < 12:   # sessions on both cards
            session = echo_session(echo)
            sessions.append(session)
            port = session.getsockname()[1]
            listed = {s["client"]: s["card"] for s in https_json(https)["sessions"]}
            on[listed[f"127.0.0.1:{port}"]].append(session)
        assert all(on.values()), "no session landed on one of the cards"

        os.kill(pids[0], signal.SIGKILL)   # card 0:sim0's simulator dies
        wait_for(lambda: value(scrape(metrics), "setls_card_up", card="0:sim0") == 0, 10, "card 0 noticed lost")
        for session in on["0:sim0"]:   # its sessions end: the client sees the end of the stream
            session.settimeout(10)
            try:
                assert session.recv(16) == b""
            except ConnectionResetError:
                pass
        for session in on["1:sim1"]:   # the other card's sessions go on
            session.sendall(b"still")
            assert session.recv(16) == b"still"
        echo_session(echo).close()      # and new clients are served by it
        samples = scrape(metrics)
        assert value(samples, "setls_cards_serving") == 1
        assert value(samples, "setls_card_errors_total", card="0:sim0") == 1
        status = https_json(https)
        lost = [c for c in status["cards"] if c["name"] == "0:sim0"][0]
        assert lost["state"] == "lost" and lost["lost_reason"]

        os.kill(pids[1], signal.SIGKILL)   # the last card
        wait_for(lambda: value(scrape(metrics), "setls_cards_serving") == 0, 10, "no card left noticed")
        with pytest.raises(ssl.SSLError, match="internal error"):
            echo_session(echo)
        with pytest.raises(ssl.SSLError, match="internal error"):
            echo_session(echo)
        wait_for(lambda: value(scrape(metrics), "setls_handshakes_total", outcome="no_card") >= 2
                 and value(scrape(metrics), "setls_alerts_sent_total", description="internal_error") >= 2, 5,
                 "the refused handshakes counted")
        assert server.lines().count("no card left") == 1
        assert "Traceback" not in server.lines()
    finally:
        for session in sessions:
            session.close()
        stop_server(server)
