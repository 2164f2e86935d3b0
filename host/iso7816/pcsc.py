"""PC/SC readers through pyscard: real readers and the pcscd + vpcd virtual reader."""

from __future__ import annotations

import contextlib
import logging

from host.iso7816.channel import Channel, ChannelError, NoCardError, NoReaderError

log = logging.getLogger(__name__)

# ---- PC/SC (pyscard) --------------------------------------------------------------------------

_T1_PROTOCOL = 2  # smartcard.CardConnection.CardConnection.T1_protocol


def pcsc_errors() -> tuple[type[Exception], ...]:
    """What pyscard raises: two unrelated exception families."""
    from smartcard.Exceptions import SmartcardException
    from smartcard.pcsc.PCSCExceptions import BaseSCardException

    return (SmartcardException, BaseSCardException)


def list_readers() -> list[str]:
    """The PC/SC reader names; raises NoReaderError if pcscd cannot be reached."""
    from smartcard.System import readers

    try:
        return [str(r) for r in readers()]
    except pcsc_errors() as e:
        raise NoReaderError(f"cannot list PC/SC readers (is pcscd running?): {e}") from None


def find_reader(wanted: str | int) -> str:
    """A reader by index, exact name or unique name prefix."""
    names = list_readers()
    if not names:
        raise NoReaderError("no PC/SC reader is connected")
    if isinstance(wanted, int):
        if not 0 <= wanted < len(names):
            raise NoReaderError(f"no reader #{wanted}; readers: {names}")
        return names[wanted]
    if wanted in names:
        return wanted
    matches = [n for n in names if n.startswith(wanted)]
    if len(matches) != 1:
        why = "no reader" if not matches else "several readers"
        raise NoReaderError(f"{why} named {wanted!r}*; readers: {names}")
    return matches[0]


class PcscChannel(Channel):
    """A card in a PC/SC reader, through pyscard.

    `extended=None` guesses: extended-length APDUs under T=1 or in a known reader, short under
    T=0; pass True or False to decide for a reader that the guess gets wrong.
    """

    def __init__(self, reader: str | int = 0, *, extended: bool | None = None) -> None:
        from smartcard.Exceptions import NoCardException
        from smartcard.scard import SCARD_LEAVE_CARD
        from smartcard.System import readers

        self._reader = find_reader(reader)
        try:
            target = next(r for r in readers() if str(r) == self._reader)
            self._connection = target.createConnection()
            # Leave the card powered when this connection ends: pyscard's default (unpower it)
            # would reset the card under every other process that shares it (the server while
            # `python -m host.provision` renews its certificate), losing their PIN and sessions.
            self._connection.connect(disposition=SCARD_LEAVE_CARD)
        except NoCardException:
            raise NoCardError(f"no card in reader {self._reader!r}") from None
        except pcsc_errors() as e:
            raise ChannelError(f"cannot connect to the card in {self._reader!r}: {e}") from None
        except StopIteration:
            raise NoReaderError(f"reader {self._reader!r} vanished") from None
        self._closed = False
        self._extended = self._guess_extended() if extended is None else extended
        log.info("connected to %r, ATR %s", self._reader, self.atr.hex().upper())

    def _guess_extended(self) -> bool:
        if self.quirks.extended_length_unannounced:
            return True
        return bool(self._connection.getProtocol() == _T1_PROTOCOL)

    @property
    def extended_length(self) -> bool:
        return self._extended

    @property
    def reader(self) -> str:
        return self._reader

    @property
    def atr(self) -> bytes:
        return bytes(self._connection.getATR())

    def transmit(self, command: bytes) -> bytes:
        try:
            data, sw1, sw2 = self._connection.transmit(list(command))
        except pcsc_errors() as e:
            raise ChannelError(f"transmit to {self._reader!r} failed: {e}") from None
        return bytes(data) + bytes((sw1, sw2))

    def reset(self) -> bytes:
        from smartcard.scard import SCARD_RESET_CARD

        try:
            self._connection.reconnect(disposition=SCARD_RESET_CARD)
        except pcsc_errors() as e:
            raise ChannelError(f"cannot reset the card in {self._reader!r}: {e}") from None
        return self.atr

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(*pcsc_errors()):
            self._connection.disconnect()
        with contextlib.suppress(*pcsc_errors()):
            self._connection.release()
