"""The one error boundary of the card layer: a status word becomes a named exception here.

Every card command goes through `host.card.session.CardSession.send`, which raises
`refusal(error, command)` for any answer but 9000; nothing above this layer sees an `ApduError`
or compares raw status words. Errors before the card answered (no reader, a dropped response)
are `host.iso7816.channel.ChannelError`s.
"""

from __future__ import annotations

from host.card.numbers import AppletStatus
from host.iso7816.apdu import ApduError, StatusWord, sw_name


class TransportError(Exception):
    """The conversation with the card could not go on."""


class CardRefusedError(TransportError):
    """The card answered a status word other than 9000; `sw` is it (None: refused by the host
    before sending, e.g. a message larger than the card's capacity)."""

    def __init__(self, message: str, sw: int | None = None) -> None:
        super().__init__(message)
        self.sw = sw

    @property
    def status(self) -> StatusWord | AppletStatus | None:
        """The named status word, or None."""
        for enum_type in (StatusWord, AppletStatus):
            try:
                return None if self.sw is None else enum_type(self.sw)
            except ValueError:
                continue
        return None


class UnknownIdentityError(CardRefusedError):
    """No identity of that name (or in that slot) in the card (6A88)."""


class MessageTooLargeError(CardRefusedError):
    """The message exceeds the card's message capacity (6A84, or refused before sending)."""


class EapRejectedError(CardRefusedError):
    """The card found the EAP packet unexpected for its state (6F01) or malformed (6700, 6A80)."""


class AccessDeniedError(CardRefusedError):
    """PIN not verified or blocked, or the identity is not ready (6982, 6983, 63Cx, 6985)."""


class WrongPinError(AccessDeniedError):
    """VERIFY with a wrong PIN (63Cx); `tries_left` is x."""

    @property
    def tries_left(self) -> int:
        return (self.sw or 0) & 0x0F


class PinBlockedError(AccessDeniedError):
    """The PIN is blocked (6983)."""


class WrongDataError(EapRejectedError):
    """The card refused the command's data (6A80): for instance a CSR that is not its own key's."""


class OperatorRequiredError(AccessDeniedError):
    """An operator command without an operator session (6F04)."""


class NotInitialisedError(AccessDeniedError):
    """The card is in its transport state: `init` first (6F05)."""


class AlreadyInitialisedError(AccessDeniedError):
    """INITIALIZE on a card that was initialised (6F06)."""


class CardFailureError(CardRefusedError):
    """The card failed: a crypto failure or an internal error (6F02, 6F03)."""


class CardBusyError(CardRefusedError):
    """Every handshake slot of the card is taken (6F07): one must finish or be closed first."""


class ConversationFailedError(TransportError):
    """The card ended the EAP conversation with EAP-Failure."""


_REFUSALS: dict[int, type[CardRefusedError]] = {
    StatusWord.REFERENCED_DATA_NOT_FOUND: UnknownIdentityError,
    StatusWord.FILE_FULL: MessageTooLargeError,
    AppletStatus.EAP_UNEXPECTED: EapRejectedError,
    StatusWord.WRONG_LENGTH: EapRejectedError,
    StatusWord.WRONG_DATA: WrongDataError,
    StatusWord.SECURITY_NOT_SATISFIED: AccessDeniedError,
    StatusWord.PIN_BLOCKED: PinBlockedError,
    StatusWord.CONDITIONS_NOT_SATISFIED: AccessDeniedError,
    AppletStatus.CRYPTO_FAILURE: CardFailureError,
    AppletStatus.INTERNAL_ERROR: CardFailureError,
    AppletStatus.OPERATOR_REQUIRED: OperatorRequiredError,
    AppletStatus.NOT_INITIALISED: NotInitialisedError,
    AppletStatus.ALREADY_INITIALISED: AlreadyInitialisedError,
    AppletStatus.NO_HANDSHAKE_SLOT: CardBusyError,
}


def describe(sw: int) -> str:
    """A status word for a person: `6F01 EAP_UNEXPECTED: EAP packet unexpected ...`."""
    try:
        own = AppletStatus(sw)
    except ValueError:
        return sw_name(sw)
    return f"{sw:04X} {own.name}: {own.description}"


def refusal(error: ApduError, command: str) -> CardRefusedError:
    """The named exception for the status word the card answered to `command`."""
    cls = _REFUSALS.get(error.sw, CardRefusedError)
    if error.sw & 0xFFF0 == StatusWord.PIN_TRIES_LEFT_00:
        cls = WrongPinError
    return cls(f"{command}: card answered {describe(error.sw)}", error.sw)
