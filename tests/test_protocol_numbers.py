"""The host's protocol numbers are the applet's: every constant of Constants.java, Sw.java,
OpCounters.java and Tls.java is read from the Java source and compared with the host's enums
(host.card.numbers, host.iso7816.apdu, host.tls.numbers). A constant changed on one side only
fails here, naming both values.
"""

from __future__ import annotations

import enum
import re
from pathlib import Path

import pytest

from host.card import numbers
from host.card.numbers import (
    AppletStatus,
    Capability,
    Capability2,
    Cla,
    Commit,
    Counter,
    DataTag,
    Ins,
    InstallOption,
    KeyChoice,
    Piece,
    Policy,
    SelectTag,
)
from host.iso7816.apdu import StatusWord
from host.paths import PROJECT_ROOT
from host.tls.numbers import AlertDescription, AlertLevel, CipherSuite, ContentType, HandshakeType

APPLET = PROJECT_ROOT / "applet" / "src" / "org" / "setls" / "applet"
DECLARATION = re.compile(
    r"^\s*(?:static\s+final\s+)?(?:byte|short)\s+([A-Z][A-Z0-9_]*)\s*=\s*(?:\(\s*(?:byte|short)\s*\)\s*)?"
    r"(0x[0-9A-Fa-f]+|\d+)\s*;",
    re.M,
)


def java_constants(name: str) -> dict[str, int]:
    """NAME -> value of the `byte`/`short` literals declared in applet/.../`name`."""
    source = (APPLET / name).read_text(encoding="utf-8")
    return {match[1]: int(match[2], 0) for match in DECLARATION.finditer(source)}


def with_prefix(constants: dict[str, int], prefix: str, *, but: tuple[str, ...] = ()) -> dict[str, int]:
    return {name[len(prefix):]: value for name, value in constants.items()
            if name.startswith(prefix) and name not in but}


def members(enum_type: type[enum.Enum], *, but: tuple[str, ...] = ()) -> dict[str, int]:
    return {name: int(member.value) for name, member in enum_type.__members__.items() if name not in but}


def differences(java: dict[str, int], host: dict[str, int]) -> list[str]:
    """Each name missing on one side or with another value, as a sentence."""
    lines = []
    for name in sorted(java.keys() | host.keys()):
        if name not in host:
            lines.append(f"{name}: applet {java[name]:#x}, host has none")
        elif name not in java:
            lines.append(f"{name}: host {host[name]:#x}, applet has none")
        elif java[name] != host[name]:
            lines.append(f"{name}: applet {java[name]:#x}, host {host[name]:#x}")
    return lines


CONSTANTS = java_constants("Constants.java")

# (what, the applet's constants, the host's) that must be equal both ways.
CARD_NUMBERS = [
    ("INS", with_prefix(CONSTANTS, "INS_"), members(Ins, but=("SELECT",))),  # SELECT is ISO's
    ("CLA", with_prefix(CONSTANTS, "CLA_"), members(Cla)),
    ("SELECT tags", with_prefix(CONSTANTS, "TAG_"), members(SelectTag)),
    ("capabilities", with_prefix(CONSTANTS, "CAP_"), members(Capability)),
    ("capabilities 2", with_prefix(CONSTANTS, "CAP2_"), members(Capability2)),
    ("install options", with_prefix(CONSTANTS, "INSTALL_"), members(InstallOption)),
    ("data tags", with_prefix(CONSTANTS, "DATA_"), members(DataTag)),
    ("policy bits", with_prefix(CONSTANTS, "POLICY_"), members(Policy)),
    ("commit kinds", with_prefix(CONSTANTS, "COMMIT_"), members(Commit)),
    ("key choices", with_prefix(CONSTANTS, "KEY_"), members(KeyChoice)),
    ("record pieces", with_prefix(CONSTANTS, "PIECE_"), members(Piece)),
    ("plain constants",
     {"MAX_IDENTITIES": CONSTANTS["MAX_IDENTITIES"], "COUNTERS_RESET": CONSTANTS["COUNTERS_RESET"],
      "UNPROTECT_REJECTED": CONSTANTS["REJECTED"], "UNPROTECT_DROPPED": CONSTANTS["DROPPED"] & 0xFF,
      "PSK_CAPACITY": java_constants("PskStore.java")["COUNT"],
      "TRANSCRIPT_COPY_CONTENT_TYPE": CONSTANTS["CONTENT_TRANSCRIPT_COPY"]},
     {name: getattr(numbers, name)
      for name in ("MAX_IDENTITIES", "COUNTERS_RESET", "UNPROTECT_REJECTED", "UNPROTECT_DROPPED", "PSK_CAPACITY",
                   "TRANSCRIPT_COPY_CONTENT_TYPE")}),
    ("counters",
     {name: value for name, value in java_constants("OpCounters.java").items() if name != "COUNT"},
     members(Counter)),
    ("applet status words", with_prefix(java_constants("Sw.java"), "", but=tuple(StatusWord.__members__)),
     members(AppletStatus)),
]


@pytest.mark.parametrize(("what", "java", "host"), CARD_NUMBERS, ids=[row[0] for row in CARD_NUMBERS])
def test_card_numbers_are_the_applets(what: str, java: dict[str, int], host: dict[str, int]) -> None:
    assert java, f"no {what} found in the applet's sources: has the declaration form changed?"
    assert not differences(java, host), f"{what} differ:\n" + "\n".join(differences(java, host))


def test_every_iso_status_word_the_applet_answers_has_the_hosts_name() -> None:
    java = {name: value for name, value in java_constants("Sw.java").items() if name in StatusWord.__members__}
    assert len(java) >= 10
    assert not differences(java, {name: StatusWord[name].value for name in java})


def test_counter_count_is_the_number_of_counters() -> None:
    assert java_constants("OpCounters.java")["COUNT"] == len(Counter)


TLS = java_constants("Tls.java")
TLS_NUMBERS = [
    ("content types", with_prefix(TLS, "CONTENT_"), ContentType),
    ("handshake types", with_prefix(TLS, "HS_", but=("HS_HEADER_SIZE",)), HandshakeType),
    ("alert levels", {"WARNING": TLS["ALERT_WARNING"], "FATAL": TLS["ALERT_FATAL"]}, AlertLevel),
    ("alert descriptions", with_prefix(TLS, "ALERT_", but=("ALERT_WARNING", "ALERT_FATAL")), AlertDescription),
    ("cipher suites", {name: value for name, value in TLS.items()
                       if name.startswith(("TLS_ECDHE_", "TLS_PSK_"))}, CipherSuite),
]


def test_dtls_numbers_the_applet_uses_are_the_hosts() -> None:
    from host.tls import numbers as tls_numbers
    assert TLS["VERSION_DTLS12"] & 0xFFFF == tls_numbers.DTLS12
    assert TLS["DTLS_RECORD_HEADER_SIZE"] == tls_numbers.DTLS_RECORD_HEADER_SIZE
    assert TLS["DTLS_HS_HEADER_SIZE"] == tls_numbers.DTLS_HS_HEADER_SIZE


@pytest.mark.parametrize(("what", "java", "host"), TLS_NUMBERS, ids=[row[0] for row in TLS_NUMBERS])
def test_tls_numbers_the_applet_uses_are_the_hosts(what: str, java: dict[str, int], host: type[enum.Enum]) -> None:
    """The host may name more (alerts a client sends); every number the applet uses it names alike."""
    assert java, f"no {what} found in Tls.java"
    known = members(host)
    assert not differences(java, {name: known[name] for name in java if name in known}), what
    if host is CipherSuite:
        assert java == known, "the host's suites are exactly the card's"


def test_a_constant_changed_on_one_side_is_caught(tmp_path: Path) -> None:
    """The comparison itself: a drifted INS code is reported with both values."""
    java = with_prefix(CONSTANTS, "INS_") | {"PROTECT_RECORD": 0x87}
    assert differences(java, members(Ins, but=("SELECT",))) == ["PROTECT_RECORD: applet 0x87, host 0x86"]
