"""ISO 7816-4 APDUs: commands in short or extended form, responses, status words.

Pure data and functions: nothing here talks to a card.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, replace

MAX_SHORT_LC = 255
MAX_SHORT_NE = 256
MAX_EXTENDED_LC = 65535
MAX_EXTENDED_NE = 65536
HEADER_SIZE = 4

CLA_ISO = 0x00
CLA_CHAINING = 0x10  # ISO 7816-4 5.3.3: more links of this command follow
INS_SELECT = 0xA4
INS_GET_RESPONSE = 0xC0


class StatusWord(enum.IntEnum):
    """ISO 7816-4 status words (5.6) and the GSM 11.11 9Fxx family; the applet's own are
    `host.card.numbers.AppletStatus`."""

    OK = 0x9000
    BYTES_REMAINING_00 = 0x6100  # 61xx, fetch xx bytes with GET RESPONSE
    PIN_TRIES_LEFT_00 = 0x63C0  # 63Cx, x tries left
    WRONG_LENGTH = 0x6700
    LOGICAL_CHANNEL_NOT_SUPPORTED = 0x6881
    SECURE_MESSAGING_NOT_SUPPORTED = 0x6882
    LAST_COMMAND_EXPECTED = 0x6883
    COMMAND_CHAINING_NOT_SUPPORTED = 0x6884
    SECURITY_NOT_SATISFIED = 0x6982
    PIN_BLOCKED = 0x6983
    CONDITIONS_NOT_SATISFIED = 0x6985
    APPLET_SELECT_FAILED = 0x6999
    WRONG_DATA = 0x6A80
    FUNC_NOT_SUPPORTED = 0x6A81
    FILE_NOT_FOUND = 0x6A82
    FILE_FULL = 0x6A84  # the message is too large for the card
    INCORRECT_P1P2 = 0x6A86
    REFERENCED_DATA_NOT_FOUND = 0x6A88  # unknown identity
    CORRECT_LENGTH_00 = 0x6C00  # 6Cxx, resend with Le = xx
    INS_NOT_SUPPORTED = 0x6D00
    CLA_NOT_SUPPORTED = 0x6E00
    UNKNOWN = 0x6F00
    RESPONSE_AVAILABLE_00 = 0x9F00  # 9Fxx (GSM 11.11), like 61xx


_DESCRIPTIONS: dict[int, str] = {
    StatusWord.OK: "success",
    StatusWord.WRONG_LENGTH: "wrong length",
    StatusWord.LOGICAL_CHANNEL_NOT_SUPPORTED: "logical channel not supported",
    StatusWord.SECURE_MESSAGING_NOT_SUPPORTED: "secure messaging not supported",
    StatusWord.LAST_COMMAND_EXPECTED: "last command of the chain expected",
    StatusWord.COMMAND_CHAINING_NOT_SUPPORTED: "command chaining not supported",
    StatusWord.SECURITY_NOT_SATISFIED: "security status not satisfied, PIN not verified",
    StatusWord.PIN_BLOCKED: "PIN blocked",
    StatusWord.CONDITIONS_NOT_SATISFIED: "conditions of use not satisfied",
    StatusWord.APPLET_SELECT_FAILED: "applet selection failed, applet not installed?",
    StatusWord.WRONG_DATA: "wrong data",
    StatusWord.FUNC_NOT_SUPPORTED: "function not supported",
    StatusWord.FILE_NOT_FOUND: "file or application not found",
    StatusWord.FILE_FULL: "message too large for the card",
    StatusWord.INCORRECT_P1P2: "incorrect P1 P2",
    StatusWord.REFERENCED_DATA_NOT_FOUND: "unknown identity",
    StatusWord.INS_NOT_SUPPORTED: "INS not supported",
    StatusWord.CLA_NOT_SUPPORTED: "CLA not supported",
    StatusWord.UNKNOWN: "no precise diagnosis",
}

# Status word families whose low byte is a count: high byte -> (name, meaning).
_FAMILIES: dict[int, tuple[str, str]] = {
    0x61: ("BYTES_REMAINING", "{} response bytes remain"),
    0x6C: ("CORRECT_LENGTH", "wrong Le, {} expected"),
    0x9F: ("RESPONSE_AVAILABLE", "{} response bytes available"),
}


def sw_name(sw: int) -> str:
    """A status word as `6A88 REFERENCED_DATA_NOT_FOUND: unknown identity`."""
    family = _FAMILIES.get(sw >> 8)
    if family is not None:
        name, meaning = family
        count = str(sw & 0xFF) if sw & 0xFF else "256 or more"
        return f"{sw:04X} {name}: {meaning.format(count)}"
    if sw & 0xFFF0 == StatusWord.PIN_TRIES_LEFT_00:
        return f"{sw:04X} PIN_TRIES_LEFT: wrong PIN, {sw & 0x0F} tries left"
    try:
        status = StatusWord(sw)
    except ValueError:
        return f"{sw:04X}: unknown status word"
    description = _DESCRIPTIONS.get(status)
    return f"{sw:04X} {status.name}: {description}" if description else f"{sw:04X} {status.name}"


class ApduFormatError(ValueError):
    """Bytes that are not a well-formed command or response APDU."""


class ApduError(Exception):
    """The card answered a status word other than 9000."""

    def __init__(self, sw: int, data: bytes = b"", command: str = "") -> None:
        self.sw = sw
        self.data = data
        self.command = command
        what = f"{command}: " if command else ""
        super().__init__(f"{what}card answered {sw_name(sw)}")

    @property
    def status(self) -> StatusWord | None:
        """The named status word, or None for one the applet does not define."""
        try:
            return StatusWord(self.sw)
        except ValueError:
            return None


@dataclass(frozen=True)
class CommandApdu:
    """A command APDU; `ne` is the maximum number of response bytes expected (0: none)."""

    cla: int
    ins: int
    p1: int = 0
    p2: int = 0
    data: bytes = b""
    ne: int = 0

    def __post_init__(self) -> None:
        for name in ("cla", "ins", "p1", "p2"):
            value = getattr(self, name)
            if not 0 <= value <= 0xFF:
                raise ValueError(f"{name} must be a byte, got {value:#x}")
        if len(self.data) > MAX_EXTENDED_LC:
            raise ValueError(f"command data of {len(self.data)} bytes exceeds {MAX_EXTENDED_LC}")
        if not 0 <= self.ne <= MAX_EXTENDED_NE:
            raise ValueError(f"ne must be in 0..{MAX_EXTENDED_NE}, got {self.ne}")

    def fits_short(self, max_lc_with_le: int = MAX_SHORT_LC) -> bool:
        """True if the short form can carry this command; `max_lc_with_le` is the most data a
        short command with Le may carry on this card (host.iso7816.quirks: 254 on jcardsim)."""
        max_lc = max_lc_with_le if self.ne else MAX_SHORT_LC
        return len(self.data) <= max_lc and self.ne <= MAX_SHORT_NE

    def with_ne(self, ne: int) -> CommandApdu:
        return replace(self, ne=ne)

    def encode(self, extended: bool | None = None, max_lc_with_le: int = MAX_SHORT_LC) -> bytes:
        """Short form if it fits (or if extended is False), else the extended form."""
        if extended is None:
            extended = not self.fits_short(max_lc_with_le)
        header = bytes((self.cla, self.ins, self.p1, self.p2))
        if extended:
            return header + self._extended_body()
        if len(self.data) > MAX_SHORT_LC or self.ne > MAX_SHORT_NE:
            raise ApduFormatError(
                f"{len(self.data)} data bytes / Ne {self.ne} do not fit a short APDU"
            )
        return header + self._short_body()

    def _short_body(self) -> bytes:
        body = b""
        if self.data:
            body += bytes((len(self.data),)) + self.data
        if self.ne:
            body += bytes((self.ne % MAX_SHORT_NE,))
        return body

    def _extended_body(self) -> bytes:
        if not self.data and not self.ne:
            return b""
        body = b"\x00"
        if self.data:
            body += struct.pack(">H", len(self.data)) + self.data
        if self.ne:
            body += struct.pack(">H", self.ne % MAX_EXTENDED_NE)
        return body

    @classmethod
    def parse(cls, raw: bytes) -> CommandApdu:
        """Parses any of the four ISO 7816-4 cases, short or extended."""
        if len(raw) < HEADER_SIZE:
            raise ApduFormatError(f"command APDU of {len(raw)} bytes is shorter than its header")
        cla, ins, p1, p2 = raw[:HEADER_SIZE]
        body = raw[HEADER_SIZE:]
        data, ne = _parse_extended_body(body) if is_extended(raw) else _parse_short_body(body)
        return cls(cla, ins, p1, p2, data, ne)


def is_extended(raw: bytes) -> bool:
    """True if the encoded command uses the extended form (a 00 byte then 2-byte Lc or Le)."""
    return len(raw) > HEADER_SIZE + 1 and raw[HEADER_SIZE] == 0


def _parse_short_body(body: bytes) -> tuple[bytes, int]:
    if not body:
        return b"", 0
    if len(body) == 1:
        return b"", body[0] or MAX_SHORT_NE
    lc = body[0]
    if len(body) == 1 + lc:
        return body[1:], 0
    if len(body) == 2 + lc:
        return body[1:-1], body[-1] or MAX_SHORT_NE
    raise ApduFormatError(f"short APDU: Lc {lc} does not match a body of {len(body)} bytes")


def _parse_extended_body(body: bytes) -> tuple[bytes, int]:
    if len(body) < 3:
        raise ApduFormatError(f"extended APDU body of {len(body)} bytes: {body.hex()}")
    if len(body) == 3:
        return b"", struct.unpack(">H", body[1:])[0] or MAX_EXTENDED_NE
    lc = struct.unpack(">H", body[1:3])[0]
    if lc == 0:
        raise ApduFormatError(f"extended APDU with Lc 0 and a body of {len(body)} bytes")
    if len(body) == 3 + lc:
        return body[3:], 0
    if len(body) == 5 + lc:
        return body[3:-2], struct.unpack(">H", body[-2:])[0] or MAX_EXTENDED_NE
    raise ApduFormatError(f"extended APDU: Lc {lc} does not match a body of {len(body)} bytes")


@dataclass(frozen=True)
class ResponseApdu:
    data: bytes
    sw: int

    @property
    def sw1(self) -> int:
        return self.sw >> 8

    @property
    def sw2(self) -> int:
        return self.sw & 0xFF

    @property
    def ok(self) -> bool:
        return self.sw == StatusWord.OK

    def encode(self) -> bytes:
        return self.data + struct.pack(">H", self.sw)

    def check(self, command: str = "") -> bytes:
        """The data if the status word is 9000; raises ApduError otherwise."""
        if not self.ok:
            raise ApduError(self.sw, self.data, command)
        return self.data

    @classmethod
    def parse(cls, raw: bytes) -> ResponseApdu:
        if len(raw) < 2:
            raise ApduFormatError(
                f"response APDU of {len(raw)} bytes has no status word: {raw.hex() or 'empty'}"
            )
        return cls(bytes(raw[:-2]), struct.unpack(">H", raw[-2:])[0])
