"""Keeping a serving card: probing it, reading what the operator sees of it, and opening it again
after it was removed or reset, without ever risking its PIN.

The keepers unlock a card that comes back with the `Unlock` they are given (the service's PIN
guard, host.service.pin.unlock: VERIFY only for the identity key unlocked before, never with one
try left, never a PIN the card refused); after a refusal of the PIN (the `final` exceptions) they
never try that card again and answer with that refusal, which names the fix. Another card in the
reader, or one not personalised yet, gets no VERIFY and is looked at again when it changes (a
reader's card: once per insertion or reset, so that provisioning it meanwhile is not disturbed).
`ReaderKeeper` reopens the card of a PC/SC reader (a new connection: the card may have been
pulled out and put back, reset, or pcscd restarted); `ChannelKeeper` selects the applet again on
the card's own channel (a simulated card: if its process is gone, it cannot come back).

The keepers implement host.se_tls's `CardKeeper` (`probe`, `reopen`, `facts`); they run in worker
threads, never on the event loop.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import UTC
from typing import Any

from host.card.commands import CardOpenError, SeTlsCard
from host.card.session import CardSession
from host.iso7816.channel import ChannelError
from host.iso7816.pcsc import PcscChannel, pcsc_errors

log = logging.getLogger(__name__)


Unlock = Callable[[SeTlsCard, "bytes | None"], bytes]
"""Unlocks a card without risking its PIN (host.service.pin.unlock, bound to the identity, the PIN
and the refused PINs): the card and the identity key it must hold (None: any, the first time);
returns the key; CardOpenError (one sentence) when it does not send or the card refuses the PIN."""


class CardResetError(CardOpenError):
    """The card answers, but its PIN is no longer verified: it was reset."""


class ChannelKeeper:
    """Keeps a card on its own channel (a simulated card): a reset card is selected and unlocked
    again on the same channel; a broken channel cannot be reopened."""

    def __init__(self, unlock: Unlock, public_key: bytes | None,
                 final: tuple[type[Exception], ...] = (CardOpenError,)) -> None:
        self.unlock = unlock
        self.public_key = public_key   # the identity key unlocked before (None: not yet)
        self.final = final             # what `unlock` raises when the card must not be tried again
        self.refused = ""   # why this card will never be unlocked again ("" while it may)

    def probe(self, card: SeTlsCard) -> int:
        """Raises unless the card answers and its PIN is still verified; returns the tries left."""
        status = card.status(card.slot or 0)
        if not status.pin_verified:
            raise CardResetError(f"card {card.name} was reset: its PIN is no longer verified")
        return status.pin_tries_left

    def reopen(self, old: SeTlsCard) -> SeTlsCard:
        if self.refused:
            raise CardOpenError(self.refused)
        try:
            old.session.select()
        except ChannelError as exc:
            raise CardOpenError(f"card {old.name} cannot come back on its channel ({exc}): restart the service") \
                from None
        return self._unlock(old)

    def _unlock(self, card: SeTlsCard) -> SeTlsCard:
        """Unlocked by the PIN guard; a refusal of the `final` kinds is final, others (a card still
        blank, another card for now) are tried again at the next reopening."""
        try:
            self.public_key = self.unlock(card, self.public_key)
        except self.final as exc:
            self.refused = str(exc)
            raise
        return card

    def facts(self, card: SeTlsCard) -> dict[str, Any]:
        """Reader, ATR, certificate subject and expiry, PIN tries left (host.se_tls.CardFacts's fields)."""
        from cryptography import x509

        slot = card.slot or 0
        chain = card.certificate_list(slot)
        length = int.from_bytes(chain[:3], "big")
        certificate = x509.load_der_x509_certificate(chain[3:3 + length])
        channel = card.session.channel
        return {"reader": channel.reader, "atr": channel.atr.hex().upper(),
                "subject": certificate.subject.rfc4514_string(),
                "not_after": certificate.not_valid_after_utc.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "pin_tries_left": card.status(slot).pin_tries_left}


class ReaderKeeper(ChannelKeeper):
    """Keeps the card of a PC/SC reader: reopened with a new connection (the card may have been
    pulled out and put back, reset, or pcscd restarted)."""

    def __init__(self, reader: str, unlock: Unlock, public_key: bytes | None,
                 final: tuple[type[Exception], ...] = (CardOpenError,), extended: bool | None = None) -> None:
        super().__init__(unlock, public_key, final)
        self.reader = reader
        self.extended = extended
        self._held: PcscChannel | None = None   # a card looked at and not taken, until it changes
        self._held_because = ""

    def reopen(self, old: SeTlsCard | None) -> SeTlsCard:
        if self.refused:
            raise CardOpenError(self.refused)
        if self._held is not None:
            if _unchanged(self._held):   # the same card, as it was: not selected again
                raise CardOpenError(self._held_because)
            self._held.close()
            self._held = None
        if old is not None:
            with contextlib.suppress(Exception):   # the old connection is gone with its card or its pcscd
                old.session.close()
        channel = PcscChannel(self.reader, extended=self.extended)   # ChannelError: not back yet
        try:
            card = SeTlsCard(CardSession(channel, extended=self.extended), name=channel.reader)
            return self._unlock(card)
        except CardOpenError as exc:
            if isinstance(exc, self.final):
                channel.close()
            else:   # held: looked at again once it is pulled out, put back or reset
                self._held, self._held_because = channel, str(exc)
            raise
        except BaseException:
            channel.close()
            raise


def _unchanged(channel: PcscChannel) -> bool:
    """The card of this connection is still there and was not reset (SCardStatus: no APDU)."""
    try:
        _ = channel.atr
    except pcsc_errors():
        return False
    return True
