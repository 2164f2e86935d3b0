#!/usr/bin/env python3
"""`make install-card`: loads and installs the applet's CAP file on a card with GlobalPlatformPro
(`gp`), run as a subprocess, and leaves the applet in its transport state: no PIN, no key, no
operator; `python -m host.provision init` follows (docs/provisioning.md).

    GP       the gp command, or the path of gp.jar (default: gp on PATH)
    READER   the PC/SC reader (default: gp's choice, the first reader with a card)
    CAP      the CAP file (default: build/cap/setls.cap, made by `make applet`)
    UPGRADE  1: replace an applet already installed. This deletes the applet's keys and data:
             every identity must be provisioned again.
    ECDSA_HASHES  sha384, sha512 or sha384,sha512: also allocate these ECDSA signers for the
             ServerKeyExchange (the install parameters' options byte, gp --params; docs/apdu.md
             "Install parameters"). Default none: ECDSA-SHA256 only, which every TLS 1.2 client
             offers; each longer signer costs 224 bytes of RAM, and with both the applet does not
             fit a J3R180's 4144 bytes (docs/resources.md).

Nothing secret goes on gp's command line: a card whose GlobalPlatform keys are not the default
test keys gets them from the environment (GP_KEY, which gp reads), never from an argument. Every
failure is one sentence with its fix, on stderr, exit status 2.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CAP = ROOT / "build" / "cap" / "setls.cap"
GP_RELEASES = "https://github.com/martinpaljak/GlobalPlatformPro/releases"

# gp's messages (lower case) -> the sentence we say, with its fix.
FAILURES = [
    (("no smart card readers", "no readers", "scard_e_no_readers_available", "no such reader"),
     "no card reader found: connect the reader and start pcscd, or name it with READER=..."),
    (("no card", "scard_e_no_smartcard", "card not present", "scard_w_removed_card"),
     "no card in the reader: insert the card (or name its reader with READER=...)"),
    (("cryptogram", "authentication failed", "mutual authentication", "6982", "wrong key"),
     "the card refused gp's authentication: it does not use the test keys; give its keys in the environment "
     "(GP_KEY), never on the command line, and stop before ten failures, which lock a card for good"),
    (("already", "6985", "6a80 - already"),
     "the applet is already on the card: an upgrade deletes its keys; run `make install-card UPGRADE=1`, then "
     "provision every identity again (docs/provisioning.md)"),
]


class InstallError(Exception):
    """One sentence with the fix."""


# The install options byte (host.card.numbers.InstallOption; Constants.INSTALL_* on the card).
ECDSA_HASH_OPTIONS = {"sha384": 0x01, "sha512": 0x02}


def install_parameters(ecdsa_hashes: str) -> str:
    """gp's --params (hex; gp puts it in tag C9) for ECDSA_HASHES, a comma list of sha384 and
    sha512: "" for none, the default. Raises InstallError naming the accepted values."""
    options = 0
    for name in filter(None, (part.strip().lower() for part in ecdsa_hashes.split(","))):
        if name not in ECDSA_HASH_OPTIONS:
            raise InstallError(f"ECDSA_HASHES={ecdsa_hashes}: name sha384, sha512 or both (sha384,sha512), "
                               "or leave it empty for ECDSA-SHA256 only")
        options |= ECDSA_HASH_OPTIONS[name]
    return f"{options:02X}" if options else ""


def gp_command(env: dict[str, str]) -> list[str]:
    gp = env.get("GP", "")
    if gp.endswith(".jar"):
        if not Path(gp).is_file():
            raise InstallError(f"GP={gp} does not exist: download gp.jar from {GP_RELEASES}")
        return ["java", "-jar", gp]
    if gp:
        command = shlex.split(gp)
        if shutil.which(command[0]) is None:
            raise InstallError(f"GP={gp} is not a command: set GP to gp or to gp.jar ({GP_RELEASES})")
        return command
    if shutil.which("gp") is None:
        raise InstallError(f"GlobalPlatformPro not found: put gp on PATH or set GP=/path/to/gp.jar ({GP_RELEASES})")
    return ["gp"]


def command_line(gp: list[str], cap: Path, reader: str | None, upgrade: bool, params: str = "") -> list[str]:
    """gp's arguments: the reader, --force to replace an installed applet, --install the CAP,
    --params the install parameters when there are any."""
    return [*gp, *(["--reader", reader] if reader else []), *(["--force"] if upgrade else []), "--install", str(cap),
            *(["--params", params] if params else [])]


def explain(returncode: int, output: str) -> str:
    lower = output.lower()
    for needles, sentence in FAILURES:
        if any(needle in lower for needle in needles):
            return sentence
    last = next((line.strip() for line in reversed(output.splitlines()) if line.strip()), "no output")
    return f"gp failed (exit {returncode}): {last}"


def install(env: dict[str, str]) -> str:
    cap = Path(env.get("CAP") or DEFAULT_CAP)
    if not cap.is_file():
        raise InstallError(f"{cap} is missing: build it with `make applet` (needs a Java Card SDK in JC_HOME)")
    params = install_parameters(env.get("ECDSA_HASHES", ""))
    command = command_line(gp_command(env), cap, env.get("READER") or None, env.get("UPGRADE", "") in ("1", "yes"),
                           params)
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    except FileNotFoundError:
        raise InstallError(f"cannot run {command[0]}: put gp on PATH or set GP=/path/to/gp.jar ({GP_RELEASES})") \
            from None
    except subprocess.TimeoutExpired:
        raise InstallError("gp did not finish within 5 minutes: check the reader and the card") from None
    if result.returncode != 0:
        raise InstallError(explain(result.returncode, result.stdout + result.stderr))
    reader = env.get("READER") or "<reader>"
    return (f"installed {cap.name}; the applet is in its transport state: initialise it with "
            f"python -m host.provision init --reader '{reader}' --operator-public operator.pub")


def main() -> int:
    try:
        print(f"install-card: {install(dict(os.environ))}")
    except InstallError as exc:
        print(f"install-card: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
