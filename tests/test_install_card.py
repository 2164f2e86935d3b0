"""`make install-card` with a stand-in `gp` that records its arguments: the exact command line,
nothing secret in it, and the one-sentence errors for a missing gp, a failing one and a missing CAP."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT

pytestmark = pytest.mark.timeout(120)
STAND_IN = """#!/bin/sh
printf '%s\\n' "$@" > "{log}"
[ -n "$GP_FAIL" ] && {{ echo "$GP_FAIL" >&2; exit 1; }}
echo "CAP loaded"
"""


def make_install(tmp: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**{k: v for k, v in os.environ.items() if k not in ("GP", "READER", "UPGRADE", "CAP")},
            "PATH": f"{tmp / 'bin'}:/usr/bin:/bin", **env}
    return subprocess.run(["make", "-s", "install-card"], cwd=ROOT, env=full, capture_output=True, text=True,
                          timeout=60)


@pytest.fixture()
def stand_in(tmp_path: Path) -> Path:
    (tmp_path / "bin").mkdir()
    gp = tmp_path / "bin" / "gp"
    gp.write_text(STAND_IN.format(log=tmp_path / "gp-args"))
    gp.chmod(0o755)
    (tmp_path / "setls.cap").write_bytes(b"PK\x03\x04 a CAP file")
    return tmp_path


def test_the_exact_command_line_with_no_secret(stand_in: Path) -> None:
    cap = str(stand_in / "setls.cap")
    result = make_install(stand_in, CAP=cap, READER="ACS ACR39U 00 00", GP_KEY="404142434445464748494A4B4C4D4E4F")
    assert result.returncode == 0, result.stderr
    assert "python -m host.provision init --reader 'ACS ACR39U 00 00'" in result.stdout
    args = (stand_in / "gp-args").read_text().splitlines()
    assert args == ["--reader", "ACS ACR39U 00 00", "--install", cap]
    assert not any("4041424344" in a or "key" in a.lower() for a in args)
    make_install(stand_in, CAP=cap, UPGRADE="1")
    assert (stand_in / "gp-args").read_text().splitlines() == ["--force", "--install", cap]


@pytest.mark.parametrize(("gp_says", "sentence"), [
    ("No smart card readers found", "no card reader found: connect the reader"),
    ("Card cryptogram invalid! Probably wrong keys", "the card refused gp's authentication"),
    ("Package F05345544C53 already present on card", "make install-card UPGRADE=1"),
    ("something unexpected", "gp failed (exit 1): something unexpected"),
])
def test_a_failing_gp_is_one_sentence(stand_in: Path, gp_says: str, sentence: str) -> None:
    result = make_install(stand_in, CAP=str(stand_in / "setls.cap"), GP_FAIL=gp_says)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("install-card:")]
    assert len(lines) == 1 and sentence in lines[0], result.stderr


def test_a_missing_gp_or_cap_is_one_sentence(stand_in: Path) -> None:
    (stand_in / "bin" / "gp").unlink()
    result = make_install(stand_in, CAP=str(stand_in / "setls.cap"))
    assert "install-card: GlobalPlatformPro not found: put gp on PATH or set GP=" in result.stderr
    result = make_install(stand_in, CAP=str(stand_in / "setls.cap"), GP=str(stand_in / "gp.jar"))
    assert "does not exist: download gp.jar" in result.stderr
    result = make_install(stand_in, CAP=str(stand_in / "missing.cap"))
    assert "missing.cap is missing: build it with `make applet`" in result.stderr
    assert "Traceback" not in result.stderr
