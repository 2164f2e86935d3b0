"""The one ISO 7816 channel interface and its errors.

A `Channel` moves raw APDUs: `transmit(command) -> response` (response data + SW1 SW2), `reset()`
(returns the ATR), `atr`, `close()`. Implementations: `host.iso7816.pcsc.PcscChannel` (pyscard),
`host.iso7816.vpcd.VpcdChannel` (the vsmartcard protocol, reader side), and the layers of
`host.iso7816.layers`, which wrap a channel and are channels themselves.
A channel and its stack serve one thread at a time.
"""

from __future__ import annotations

import abc
from types import TracebackType
from typing import Self

from host.iso7816.apdu import ApduFormatError, ResponseApdu
from host.iso7816.quirks import Quirks, quirks_for

# ---- errors -----------------------------------------------------------------------------------


class ChannelError(Exception):
    """The channel failed: no reader, no card, I/O error, or a malformed answer."""


class NoReaderError(ChannelError):
    """No PC/SC reader, or none with the requested name."""


class NoCardError(ChannelError):
    """The reader has no card."""


class IncompleteResponseError(ChannelError):
    """The card dropped or truncated a response, or GET RESPONSE failed midway."""


class CommandTooLongError(ChannelError):
    """A command's data exceed what the card and channel can carry (no chaining, no extended)."""


def exchange(channel: Channel, command: bytes) -> ResponseApdu:
    """Transmits and parses the response; a dropped or truncated one raises
    IncompleteResponseError."""
    raw = channel.transmit(command)
    try:
        return ResponseApdu.parse(raw)
    except ApduFormatError as e:
        what = "dropped the response" if not raw else "truncated the response"
        raise IncompleteResponseError(
            f"the card {what} to {command[:5].hex().upper()}...: {e}"
        ) from None


# ---- the interface ----------------------------------------------------------------------------


class Channel(abc.ABC):
    """One ISO 7816 channel to one card."""

    @abc.abstractmethod
    def transmit(self, command: bytes) -> bytes:
        """Sends a command APDU, returns the response APDU (data + SW1 SW2)."""

    @abc.abstractmethod
    def reset(self) -> bytes:
        """Resets the card (transient state and selection are lost); returns the ATR."""

    @property
    @abc.abstractmethod
    def atr(self) -> bytes:
        """The card's answer to reset."""

    @property
    def extended_length(self) -> bool:
        """True if this channel carries extended-length APDUs (the card may still refuse them)."""
        return False

    @property
    def reader(self) -> str:
        """The PC/SC reader's name; "" for a channel without one."""
        return ""

    @property
    def quirks(self) -> Quirks:
        """How this card in this reader departs from ISO 7816-4 (host.iso7816.quirks)."""
        return quirks_for(self.atr, self.reader)

    @abc.abstractmethod
    def close(self) -> None:
        """Releases the channel; idempotent."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
