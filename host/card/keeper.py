"""Keeping a serving card: probing it, reading what the operator sees of it, and opening it again
after it was removed or reset, without ever risking its PIN.

`safe_unlock()` is the PIN-safety rule for a card that comes back: VERIFY is sent only to the card
whose identity key is the one unlocked before, only while more than one try is left, and never
again after a refusal (a `63Cx` answer or any other): the keeper then refuses for good, naming
the fix. `ReaderKeeper` reopens the card of a PC/SC reader (a new connection: the reader may have
been unplugged or pcscd restarted); `ChannelKeeper` selects the applet again on the card's own
channel (a simulated card: if its process is gone, it cannot come back).

The keepers implement host.se_tls's `CardKeeper` (`probe`, `reopen`, `facts`); they run in worker
threads, never on the event loop.
"""
from __future__ import annotations

import contextlib
import logging
from datetime import UTC
from typing import Any

from host.card.commands import CardOpenError, SeTlsCard
from host.card.session import CardSession
from host.iso7816.channel import ChannelError
from host.iso7816.pcsc import PcscChannel

log = logging.getLogger(__name__)


class PinSafetyError(CardOpenError):
    """VERIFY was not sent, because it could lock the PIN or give it to another card."""


class CardResetError(CardOpenError):
    """The card answers, but its PIN is no longer verified: it was reset."""


def safe_unlock(card: SeTlsCard, identity: str, pin: str, public_key: bytes | None = None) -> bytes:
    """Finds `identity` on the card and verifies its PIN, unless that is unsafe; returns the
    identity's public key (uncompressed P-256 point). Raises PinSafetyError, without VERIFY, when
    the key is not `public_key` (another card) or at most one try is left; a refused VERIFY raises
    PinSafetyError too (the caller must not try again); CardOpenError for a card that cannot serve."""
    slot = card.find_identity(identity)
    status = card.status(slot)
    if not status.key_ready or not status.chain_length:
        raise CardOpenError(f"identity {identity!r} on card {card.name} has no key or no certificate chain")
    key = card.public_key(slot)
    if public_key is not None and key != public_key:
        raise PinSafetyError(f"card {card.name} holds another key for identity {identity!r} than the one "
                             f"unlocked before: PIN not sent; restart the service to serve with this card")
    if not status.pin_verified:
        if status.pin_tries_left <= 1:
            left = status.pin_tries_left
            raise PinSafetyError(f"identity {identity!r} on card {card.name} has {left} PIN "
                                 f"{'try' if left == 1 else 'tries'} left: PIN not sent; unblock or reset it "
                                 f"(python -m host.provision) and restart the service")
        try:
            card.verify(slot, pin)
        except CardOpenError as exc:
            raise PinSafetyError(f"{exc}: the PIN will not be sent again; fix it and restart the service") from None
    card.slot = slot
    return key


class ChannelKeeper:
    """Keeps a card on its own channel (a simulated card): a reset card is selected and unlocked
    again on the same channel; a broken channel cannot be reopened."""

    def __init__(self, identity: str, pin: str, public_key: bytes) -> None:
        self.identity = identity
        self.pin = pin
        self.public_key = public_key
        self.refused = ""   # why VERIFY will never be sent again ("" while it may)

    def probe(self, card: SeTlsCard) -> int:
        """Raises unless the card answers and its PIN is still verified; returns the tries left."""
        status = card.status(card.slot or 0)
        if not status.pin_verified:
            raise CardResetError(f"card {card.name} was reset: its PIN is no longer verified")
        return status.pin_tries_left

    def reopen(self, old: SeTlsCard) -> SeTlsCard:
        if self.refused:
            raise PinSafetyError(self.refused)
        try:
            old.session.select()
        except ChannelError as exc:
            raise CardOpenError(f"card {old.name} cannot come back on its channel ({exc}): restart the service") \
                from None
        return self._unlock(old)

    def _unlock(self, card: SeTlsCard) -> SeTlsCard:
        try:
            safe_unlock(card, self.identity, self.pin, self.public_key)
        except PinSafetyError as exc:
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

    def __init__(self, reader: str, identity: str, pin: str, public_key: bytes,
                 extended: bool | None = None) -> None:
        super().__init__(identity, pin, public_key)
        self.reader = reader
        self.extended = extended

    def reopen(self, old: SeTlsCard) -> SeTlsCard:
        if self.refused:
            raise PinSafetyError(self.refused)
        with contextlib.suppress(Exception):   # the old connection is gone with its card or its pcscd
            old.session.close()
        channel = PcscChannel(self.reader, extended=self.extended)   # ChannelError: not back yet
        try:
            card = SeTlsCard(CardSession(channel, extended=self.extended), name=old.name)
            return self._unlock(card)
        except BaseException:
            channel.close()
            raise
