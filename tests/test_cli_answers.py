"""What a new user typed wrong, answered in one sentence with the documented exit code: found by
trying the README as a newcomer would (no traceback, and a card's refusal is never reported as an
unreachable card)."""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT

from host.card.commands import SeTlsCard, open_cards
from host.card.numbers import Policy
from host.demo_pki import ensure_demo_operator_key
from host.provision.cli import EXIT_OK, EXIT_REFUSED, EXIT_USAGE, main
from host.provision.lifecycle import REVOKED_MAX

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


# ---- client authentication: revoked serials, the policy's client dates, demo client certificates ----

@pytest.fixture()
def initialised_card(applet_classes: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SeTlsCard]:
    """A blank simulated card after `init` (PIN, PUK, the demo operator key in $SETLS_OPERATOR_KEY)."""
    monkeypatch.setenv("SETLS_PIN", "2468")
    monkeypatch.setenv("SETLS_PUK", "13579135")
    monkeypatch.setenv("SETLS_OPERATOR_KEY", str(ensure_demo_operator_key()))
    with open_cards(sim=1) as cards:
        assert main(["init"], card=cards[0]) == EXIT_OK
        yield cards[0]


def test_revoke_adds_serials_revoked_lists_them_and_unrevoke_takes_them_off(
        initialised_card: SeTlsCard, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["revoke", "5EC0DE", "0x01", "ab:cd"], card=initialised_card) == EXIT_OK
    assert main(["revoke", "5ec0de"], card=initialised_card) == EXIT_OK  # already there: listed once
    capsys.readouterr()
    assert main(["revoked"], card=initialised_card) == EXIT_OK
    assert capsys.readouterr().out.strip() == "revoked serials: 5EC0DE 1 ABCD"
    assert initialised_card.revoked() == [0x5EC0DE, 1, 0xABCD]
    assert main(["unrevoke", "1"], card=initialised_card) == EXIT_OK
    assert main(["revoked", "--json"], card=initialised_card) == EXIT_OK
    assert '"5EC0DE"' in capsys.readouterr().out
    assert initialised_card.revoked() == [0x5EC0DE, 0xABCD]


def test_unrevoking_a_serial_not_on_the_list_is_refused_in_one_sentence_and_changes_nothing(
        initialised_card: SeTlsCard, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["revoke", "5EC0DE"], card=initialised_card) == EXIT_OK
    assert main(["unrevoke", "5EC0DE", "77"], card=initialised_card) == EXIT_REFUSED
    err = capsys.readouterr().err
    assert err.startswith("error: unrevoke: serial 77 is not on the card's revoked list") and err.count("\n") == 1
    assert initialised_card.revoked() == [0x5EC0DE]


@pytest.mark.parametrize(("serial", "words"), [
    ("xyz", "is not hexadecimal"), ("0", "not a certificate serial"), ("-5", "not a certificate serial"),
    ("ff" * 21, "at most 20 octets"),
])
def test_a_serial_that_is_not_one_is_a_usage_error_before_the_card_is_asked(
        initialised_card: SeTlsCard, capsys: pytest.CaptureFixture[str], serial: str, words: str) -> None:
    assert main(["revoke", "--", serial], card=initialised_card) == EXIT_USAGE
    assert words in capsys.readouterr().err
    assert initialised_card.revoked() == []


def test_more_serials_than_the_card_holds_are_refused_naming_its_capacity(
        initialised_card: SeTlsCard, capsys: pytest.CaptureFixture[str]) -> None:
    serials = [f"{0x7F000000 + i:X}" for i in range(REVOKED_MAX // 5 + 1)]  # 5 bytes each on the card
    assert main(["revoke", *serials], card=initialised_card) == EXIT_REFUSED
    assert f"holds {REVOKED_MAX} bytes" in capsys.readouterr().err
    assert initialised_card.revoked() == []


def test_revoke_without_the_operator_key_is_the_card_asking_for_the_operator_session(
        initialised_card: SeTlsCard, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("SETLS_OPERATOR_KEY")
    assert main(["revoke", "5EC0DE"], card=initialised_card) == EXIT_REFUSED
    assert "needs the operator session" in capsys.readouterr().err


def test_policy_sets_client_auth_and_client_dates_and_keeps_what_it_is_not_told(
        initialised_card: SeTlsCard, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keygen"], card=initialised_card) == EXIT_OK
    assert main(["policy", "--client-auth", "required", "--client-dates"], card=initialised_card) == EXIT_OK
    assert "client auth required (dates checked)" in capsys.readouterr().out
    assert initialised_card.status(0).policy & Policy.CLIENT_DATES_REQUIRED
    assert main(["policy", "--client-auth", "optional"], card=initialised_card) == EXIT_OK  # dates kept
    assert "client auth optional (dates checked)" in capsys.readouterr().out
    assert main(["policy", "--no-client-dates", "--json"], card=initialised_card) == EXIT_OK
    out = capsys.readouterr().out
    assert '"client_auth": "optional"' in out and '"client_dates": false' in out


def test_demo_ca_client_writes_a_certificate_and_key_that_openssl_verifies(tmp_path: Path) -> None:
    result = run("host.provision", "demo-ca", "client", "alice", "--out-dir", str(tmp_path),
                 "--ca-dir", str(tmp_path / "ca"))
    assert result.returncode == 0, result
    assert "issued CN=alice,O=SE-TLS demo by" in result.stdout
    verify = subprocess.run(["openssl", "verify", "-purpose", "sslclient", "-CAfile", str(tmp_path / "ca" / "ca.pem"),
                             str(tmp_path / "alice.pem")], capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0 and "OK" in verify.stdout, verify
    check = subprocess.run(["openssl", "pkey", "-in", str(tmp_path / "alice.key"), "-noout", "-text"],
                           capture_output=True, text=True, timeout=60)
    assert "prime256v1" in check.stdout, check
    assert (tmp_path / "alice.key").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(("args", "words"), [
    (["alice", "--out-dir", "/nonexistent/dir"], "no such directory"),
    (["../alice"], "no '/'"),
    (["alice", "--days", "0"], "outside 1-36500"),
])
def test_demo_ca_client_with_an_unusable_name_or_place_is_a_usage_error(
        tmp_path: Path, args: list[str], words: str) -> None:
    assert_answer(run("host.provision", "demo-ca", "client", *args, "--ca-dir", str(tmp_path / "ca")), 2, words)
