"""The selected applet: SELECT, its capabilities (the SELECT response's TLVs), and the stack
chosen for them (extended length or short APDUs with chaining).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Self

from host.card.errors import refusal
from host.card.numbers import Capability, Capability2, Cla, Ins, SelectTag
from host.iso7816.apdu import MAX_EXTENDED_NE, MAX_SHORT_NE, ApduError, ApduFormatError, CommandApdu, ResponseApdu
from host.iso7816.channel import Channel, ChannelError, exchange
from host.iso7816.layers import TraceStats, build_stack
from host.paths import applet_info

log = logging.getLogger(__name__)

# ---- the selected applet ----------------------------------------------------------------------



def parse_tlv(data: bytes) -> dict[int, bytes]:
    """Simple TLV: 1-byte tag, 1-byte length (the SELECT response)."""
    items: dict[int, bytes] = {}
    at = 0
    while at < len(data):
        if at + 2 > len(data) or at + 2 + data[at + 1] > len(data):
            raise ApduFormatError(f"truncated TLV at offset {at}: {data.hex()}")
        tag, length = data[at], data[at + 1]
        items[tag] = data[at + 2 : at + 2 + length]
        at += 2 + length
    return items


@dataclass(frozen=True)
class CardCapabilities:
    """What the applet's SELECT response says about it."""

    version: tuple[int, int]
    extended_length: bool
    command_chaining: bool
    get_response: bool
    message_capacity: int
    default_packet_size: int
    extra: dict[int, bytes] = field(default_factory=dict)
    ecdsa_sha384: bool = False  # the card signs with ECDSA over SHA-384 too (TLS 1.2 signature_algorithms)
    ecdsa_sha512: bool = False
    flags: Capability = Capability(0)

    @classmethod
    def parse(cls, data: bytes) -> CardCapabilities:
        tlv = parse_tlv(data)
        try:
            major, minor = tlv.pop(SelectTag.VERSION)[:2]
            caps = tlv.pop(SelectTag.CAPABILITIES)[0]
            capacity, packet = tlv.pop(SelectTag.MESSAGE_CAPACITY), tlv.pop(SelectTag.DEFAULT_PACKET)
        except (KeyError, IndexError, ValueError):
            raise ApduFormatError(f"SELECT response lacks a capability: {data.hex()}") from None
        return cls(
            version=(major, minor),
            extended_length=bool(caps & Capability.EXTENDED_LENGTH),
            command_chaining=bool(caps & Capability.COMMAND_CHAINING),
            get_response=bool(caps & Capability.GET_RESPONSE),
            message_capacity=int.from_bytes(capacity, "big"),
            default_packet_size=int.from_bytes(packet, "big"),
            extra=tlv,
            ecdsa_sha384=bool(caps & Capability.ECDSA_SHA384),
            ecdsa_sha512=bool(caps & Capability.ECDSA_SHA512),
            flags=Capability(caps),
        )

    @property
    def identity_slots(self) -> int | None:
        """How many identities the card holds (tag 84), if it says."""
        slots = self.extra.get(SelectTag.IDENTITY_SLOTS)
        return slots[0] if slots else None

    @property
    def session_slots(self) -> int:
        """How many TLS sessions the card holds at once (tag 85; 1 for a card that does not say)."""
        slots = self.extra.get(SelectTag.SESSION_SLOTS)
        return slots[0] if slots else 1

    @property
    def handshake_slots(self) -> int:
        """How many handshakes may be in progress at once (tag 86; 1 for a card that does not say)."""
        slots = self.extra.get(SelectTag.HANDSHAKE_SLOTS)
        return slots[0] if slots else 1

    @property
    def flags2(self) -> Capability2:
        """The second capability byte (tag 88; none for a card that does not say)."""
        value = self.extra.get(SelectTag.CAPABILITIES_2)
        return Capability2(value[0]) if value else Capability2(0)

    @property
    def ecdsa_precomputed_hash(self) -> bool:
        """The card verifies a client's CertificateVerify over its own session hash (ECDSA with
        ALG_NULL); without it the host sends the transcript copy (docs/apdu.md)."""
        return bool(self.flags2 & Capability2.ECDSA_PRECOMPUTED_HASH)

    @property
    def ticket_key_id(self) -> bytes:
        """The id in clear at the start of the card's session tickets (tag 87; b"" if it resumes none)."""
        return self.extra.get(SelectTag.TICKET_KEY_ID, b"")

    @property
    def session_cache(self) -> int:
        """Session ID cache entries (tag 89; 0 for a card that resumes none)."""
        entries = self.extra.get(SelectTag.SESSION_CACHE)
        return entries[0] if entries else 0

    @property
    def has_handles(self) -> bool:
        """Version 2 and later: commands name their session (docs/apdu.md, the session handle)."""
        return self.version >= (2, 0)


class CardSession:
    """The applet, selected on a channel through the standard stack.

    `extended`: None uses extended-length APDUs when both card and channel support them; False
    forces short APDUs (chaining and GET RESPONSE); True requires extended ones.
    """

    def __init__(
        self,
        channel: Channel,
        aid: bytes | None = None,
        *,
        extended: bool | None = None,
        stats: TraceStats | None = None,
    ) -> None:
        self.channel = channel
        self.aid = aid if aid is not None else applet_info().aid
        self.stats = stats if stats is not None else TraceStats()
        self._want_extended = extended
        self.extended = False
        self.selections = 0  # SELECTs so far: each one makes the card forget its RAM state (the clock)
        self.caps = self.select()

    def select(self) -> CardCapabilities:
        """(Re)selects the applet, which drops any conversation in progress (and the card's copy of
        the host's clock, SET TIME); counted in `selections`."""
        self.selections += 1
        command = CommandApdu(Cla.ISO, Ins.SELECT, 0x04, 0x00, self.aid, ne=MAX_SHORT_NE)
        basic = build_stack(self.channel, extended=False, chaining=False, stats=self.stats)
        with self.stats.phase("select"):
            try:
                data = exchange(basic, command.encode()).check()
            except ApduError as error:
                raise refusal(error, "SELECT") from None
        self.caps = CardCapabilities.parse(data)
        self.extended = self._choose_extended(self.caps)
        self._stack: Channel = build_stack(
            self.channel,
            extended=self.extended,
            chaining=self.caps.command_chaining,
            stats=self.stats,
        )
        log.debug(
            "selected %s: %s, extended length %s", self.aid.hex().upper(), self.caps, self.extended
        )
        return self.caps

    def _choose_extended(self, caps: CardCapabilities) -> bool:
        possible = caps.extended_length and self.channel.extended_length
        if self._want_extended and not possible:
            raise ChannelError(
                f"extended length requested, but card supports it: {caps.extended_length}, "
                f"channel: {self.channel.extended_length}"
            )
        return possible if self._want_extended is None else self._want_extended

    def reset(self) -> CardCapabilities:
        """Resets the card and selects the applet again."""
        self.channel.reset()
        return self.select()

    @property
    def max_ne(self) -> int:
        """The largest Ne worth asking for: 65536 with extended APDUs, else 256."""
        return MAX_EXTENDED_NE if self.extended else MAX_SHORT_NE

    def transmit(self, command: CommandApdu) -> ResponseApdu:
        """Sends a command through the stack; any status word comes back."""
        encoded = command.encode(max_lc_with_le=self.channel.quirks.max_short_lc_with_le)
        return exchange(self._stack, encoded)

    def send(self, command: CommandApdu, what: str = "") -> bytes:
        """Sends a command; returns the data of a 9000 answer. Any other status word raises the
        named `host.card.errors` exception (the one place where status words become errors);
        `what` names the command in its message (default: the INS's name)."""
        try:
            return self.transmit(command).check()
        except ApduError as error:
            raise refusal(error, what or _command_name(command)) from None

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _command_name(command: CommandApdu) -> str:
    try:
        return Ins(command.ins).title
    except ValueError:
        return f"INS {command.ins:02X}"


def select(
    channel: Channel, aid: bytes | None = None, *, extended: bool | None = None
) -> CardSession:
    """Selects the applet (AID from applet/applet.properties by default) on the channel."""
    return CardSession(channel, aid, extended=extended)


__all__ = ["CardCapabilities", "CardSession", "parse_tlv", "select"]
