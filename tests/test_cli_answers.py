"""What a new user typed wrong, answered in one sentence with the documented exit code: found by
trying the README as a newcomer would (no traceback, and a card's refusal is never reported as an
unreachable card)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

pytestmark = pytest.mark.timeout(180)


def run(module: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


def assert_answer(result: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert result.returncode == code, result
    assert "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


@pytest.mark.parametrize(("args", "words"), [
    (["--sim", "--https", "70000"], ["port 70000 is outside 0-65535"]),
    (["--sim", "0", "--https", "9443"], ["at least 1 card"]),
    (["--sim", "-1", "--https", "9443"], ["at least 1 card"]),
    (["--sim", "--tls-echo", "echo"], ["is not a port number"]),
])
def test_server_arguments_out_of_range_are_usage_errors(args: list[str], words: list[str]) -> None:
    assert_answer(run("host.server", *args), 2, *words)


def test_a_refusal_of_the_card_is_a_refusal_not_an_unreachable_card(applet_classes: Path) -> None:
    """keygen on a blank simulated card: the card refuses (not initialised), exit 1."""
    result = run("host.provision", "keygen", "--sim")
    assert_answer(result, 1)
    assert "cannot reach the card" not in result.stderr
    assert "init" in result.stderr.lower()


@pytest.mark.parametrize("pin", ["123", "x" * 17, "x" * 300])
def test_a_pin_of_the_wrong_length_is_refused_before_the_card_sees_it(applet_classes: Path, pin: str) -> None:
    result = run("host.provision", "init", "--sim", env={"SETLS_PIN": pin, "SETLS_PUK": "12345678"})
    assert_answer(result, 2, "4 to 16")


def test_a_psk_identity_too_long_for_the_card_is_one_sentence(applet_classes: Path) -> None:
    result = run("host.provision", "set-psk", "x" * 300, "00" * 16, "--sim")
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode in (1, 2) and result.stderr.startswith("error:"), result


def test_csr_into_a_missing_directory_is_refused_before_the_card_signs(applet_classes: Path, tmp_path: Path) -> None:
    result = run("host.provision", "csr", "--subject", "CN=x", "--out", str(tmp_path / "no" / "x.csr"), "--sim")
    assert_answer(result, 2, "no directory")
