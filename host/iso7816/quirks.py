"""What a card or reader does differently from ISO 7816-4, chosen by its ATR or reader name.

Each entry says what it works around and how it was found. The stack asks `quirks_for()` once
per channel; nothing else in the host knows which card or reader it talks to. The card's own
platform differences are written down in docs/quirks.md and `Quirks.java`.

The project's simulator answers with its own ATR (`SIMULATOR_ATR`, historical bytes "SETLSsim"),
never jcardsim's default one, whose historical bytes name a real JCOP card ("JCOPv241"): keying
the simulator's quirks on that would apply them to real JCOP cards too.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import reduce
from typing import Any

from host.iso7816.apdu import MAX_SHORT_LC


def _atr(historical: bytes) -> bytes:
    """A T=1 ATR with these historical bytes (ISO 7816-3 8.2; TCK = XOR of T0..the last byte)."""
    body = bytes([0xF0 | len(historical), 0x13, 0x00, 0x00, 0x81, 0x31, 0xFE, 0x45]) + historical
    return b"\x3b" + body + bytes([reduce(lambda a, b: a ^ b, body)])


SIMULATOR_ATR = _atr(b"SETLSsim")

# INSTALL_PARAMETERS: the application parameters the simulator installs the applet with (the third
# LV of GlobalPlatform's install data; host.card.numbers.InstallOption): 03 allocates the ECDSA-SHA384
# and -SHA512 signers, off by default on a card (they cost 448 bytes of RAM a J3R180 lacks,
# docs/resources.md), so that every signature path stays tested; jcardsim has the RAM.
SIMULATOR_INSTALL_PARAMETERS = b"\x03"


@dataclass(frozen=True)
class Quirks:
    """How to talk to one card in one reader. The defaults are ISO 7816-4's."""

    names: tuple[str, ...] = ()
    # The most data bytes a short command that also carries Le may have (ISO: 255).
    max_short_lc_with_le: int = MAX_SHORT_LC
    # The reader passes extended-length APDUs although neither T=1 nor anything else says so.
    extended_length_unannounced: bool = False

    @property
    def summary(self) -> str:
        return ", ".join(self.names) or "none"


@dataclass(frozen=True)
class _Entry:
    name: str
    atr: bytes | None = None  # an exact ATR
    reader_prefix: str | None = None  # a PC/SC reader name prefix
    changes: dict[str, Any] | None = None

    def matches(self, atr: bytes, reader: str) -> bool:
        if self.atr is not None and atr == self.atr:
            return True
        return self.reader_prefix is not None and reader.startswith(self.reader_prefix)


QUIRKS: tuple[_Entry, ...] = (
    # jcardsim 3.0.6 keeps a short command in a 260-byte buffer: a 261-byte one (Lc = 255 and
    # Le) fails with 6F00 before the applet sees it. Found by the echo transport tests.
    _Entry("jcardsim short APDU buffer", atr=SIMULATOR_ATR, changes={"max_short_lc_with_le": 254}),
    # vsmartcard's vpcd reader forwards extended APDUs under T=0 ATRs as well (verified with
    # jcardsim: 16 KB commands and answers).
    _Entry("vpcd passes extended APDUs", reader_prefix="Virtual PCD",
           changes={"extended_length_unannounced": True}),
)


def quirks_for(atr: bytes, reader: str = "") -> Quirks:
    """The quirks of the card with `atr` in the reader named `reader` ("" for no PC/SC reader)."""
    quirks = Quirks()
    for entry in QUIRKS:
        if entry.matches(atr, reader):
            quirks = replace(quirks, names=(*quirks.names, entry.name), **(entry.changes or {}))
    return quirks
