"""Where `python -m host.server` listens (`--bind`): both loopbacks by default, so that a client
resolving localhost to ::1 first is not refused; several addresses, repeatable or comma-separated;
`::` also takes IPv4 clients; a bad address is a sentence, not a traceback."""
from __future__ import annotations

import argparse
import http.client
import json
import ssl
import subprocess
import sys

import pytest
from conftest import DEMO, ROOT, ServerFactory

from host.iso7816.simulator import free_port
from host.server import bind_addresses, build_parser, endpoint, listen_addresses

pytestmark = pytest.mark.timeout(300)
LOOPBACKS = ("127.0.0.1", "::1")


def test_bind_is_repeatable_and_comma_separated_and_defaults_to_both_loopbacks() -> None:
    parser = build_parser()
    assert parser.parse_args([]).bind is None
    assert listen_addresses(parser.parse_args([]).bind) == ["127.0.0.1", "::1"]
    args = parser.parse_args(["--bind", "127.0.0.1", "--bind", "[::1], 192.0.2.7", "--bind", "::1"])
    assert listen_addresses(args.bind) == ["127.0.0.1", "::1", "192.0.2.7"]


def test_a_wildcard_listens_for_its_whole_family_and_ipv6s_brings_ipv4_along() -> None:
    assert listen_addresses(["::"]) == ["::", "0.0.0.0"]
    assert listen_addresses(["127.0.0.1", "0.0.0.0", "::1"]) == ["0.0.0.0", "::1"]
    assert listen_addresses(["::1", "::", "127.0.0.1"]) == ["::", "0.0.0.0"]
    assert [endpoint(a, 5684) for a in ("::", "0.0.0.0")] == ["[::]:5684", "0.0.0.0:5684"]


@pytest.mark.parametrize("value", ["1.2.3.4.5", "::1::2", "", "127.0.0.1,", "no-such-host.invalid"])
def test_a_bad_address_is_refused_when_parsing(value: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        bind_addresses(value)


def get_temperature(host: str, port: int) -> dict[str, object]:
    """GET /sensors/temperature over Python's ssl, checking the certificate names `host` (an IP SAN)."""
    context = ssl.create_default_context(cafile=str(DEMO / "ca.pem"))
    connection = http.client.HTTPSConnection(host, port, context=context, timeout=60)
    try:
        connection.request("GET", "/sensors/temperature")
        response = connection.getresponse()
        assert response.status == 200
        document: dict[str, object] = json.loads(response.read())
        return document
    finally:
        connection.close()


@pytest.mark.parametrize("bind", [(), ("--bind", "127.0.0.1", "--bind", "::1"), ("--bind", "::")],
                         ids=["default", "repeated", "wildcard"])
def test_clients_of_either_loopback_complete(server_factory: ServerFactory, bind: tuple[str, ...]) -> None:
    server = server_factory("--sim", "--https", "0", *bind)
    port = server.ports["https"]
    for host in LOOPBACKS:
        assert "celsius" in get_temperature(host, port)
    curl = subprocess.run(["curl", "-sS", "--cacert", str(DEMO / "ca.pem"), "--max-time", "60",
                           f"https://[::1]:{port}/sensors/temperature"], capture_output=True, text=True, timeout=90)
    assert curl.returncode == 0 and "celsius" in json.loads(curl.stdout), curl.stderr
    expected = ["[::]", "0.0.0.0"] if bind[-1:] == ("::",) else ["127.0.0.1", "[::1]"]
    for where in expected:   # each listener is logged
        assert f"https listening on {where}:{port} " in server.lines()


def run_server(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "host.server", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_a_malformed_address_is_a_usage_error_before_any_card_starts() -> None:
    result = run_server("--sim", "--https", "0", "--bind", "127.0.0.1,1.2.3.4.5")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "'1.2.3.4.5' is neither an IP address nor a host name" in result.stderr


def test_an_address_of_another_machine_is_named_in_one_sentence(applet_classes: object) -> None:
    port = free_port()
    result = run_server("--sim", "--https", str(port), "--bind", "::1,192.0.2.1")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"error: cannot listen on 192.0.2.1:{port}: cannot assign requested address" in result.stderr
