"""The software agent: TLS messages <-> EAP-TLS packets (host.card.eap) <-> PROCESS EAP PACKET
APDUs (RFC 5216 carried as docs/apdu.md says).

`EapTlsTransport` carries whole TLS messages (flights) to the card and back:

    session = select(channel)                       # host.card.session
    transport = EapTlsTransport(session, b"server")
    transport.start()                               # EAP-Response/Identity -> EAP-TLS Start
    answer = transport.exchange(client_flight)      # fragments, acknowledgements, reassembly
    outcome = transport.finish()                    # Success, Failure, or the card waits on

The card's refusals arrive as `host.card.errors` exceptions (raised by `CardSession.send`).
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from host.card.eap import (
    EAP_TLS_HEADER_SIZE,
    MIN_PACKET_SIZE,
    TLS_LENGTH_SIZE,
    AwaitingMessage,
    EapProtocolError,
    EapTlsPeer,
    EapUsageError,
    Event,
    Failure,
    MessageReceived,
    NeedAck,
    SendFragment,
    Started,
    Success,
)
from host.card.errors import (
    ConversationFailedError,
    MessageTooLargeError,
    TransportError,
)
from host.card.numbers import Cla, Ins
from host.card.session import CardCapabilities, CardSession
from host.iso7816.apdu import MAX_SHORT_LC, MAX_SHORT_NE, CommandApdu

log = logging.getLogger(__name__)

MAX_CARD_PACKET = 0x7FFF  # P1P2 is read as a signed short by the card


class Outcome(enum.Enum):
    """What the card answers to the final acknowledgement."""

    SUCCESS = "success"
    FAILURE = "failure"
    CONTINUE = "continue"  # neither: the card waits for another message


# ---- packet sizes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PacketSizes:
    """send: largest EAP packet to the card; receive: largest from it (P1P2)."""

    send: int
    receive: int


def choose_packet_sizes(
    caps: CardCapabilities, extended: bool, max_packet: int | None = None,
    max_short_lc_with_le: int = MAX_SHORT_LC,
) -> PacketSizes:
    """EAP packet sizes from the card's capabilities and the APDU format in use.

    With extended length or chaining one EAP packet may carry a whole message (the card reads
    it into its message buffer anyway); with neither a packet must fit one short APDU with Le
    (254 bytes on jcardsim, see host.iso7816.quirks).
    The card's answers may be as large as it likes when GET RESPONSE fetches what exceeds Le;
    without GET RESPONSE and extended length they must fit Le = 256. `max_packet` caps both.
    """
    whole = min(MAX_CARD_PACKET, caps.message_capacity + EAP_TLS_HEADER_SIZE + TLS_LENGTH_SIZE)
    send = whole if extended or caps.command_chaining else max_short_lc_with_le
    receive = whole if extended or caps.get_response else MAX_SHORT_NE
    if max_packet is not None:
        if max_packet < MIN_PACKET_SIZE:
            raise ValueError(f"max_packet must be at least {MIN_PACKET_SIZE}, got {max_packet}")
        send, receive = min(send, max_packet), min(receive, max_packet)
    return PacketSizes(send, receive)


# ---- the transport ----------------------------------------------------------------------------


class EapTlsTransport:
    """One EAP-TLS conversation with an identity of the card, in the card's session `handle`
    (each EAP packet goes with it: docs/apdu.md, PROCESS EAP PACKET)."""

    def __init__(
        self, session: CardSession, identity: bytes, *, max_packet: int | None = None, handle: int = 0
    ) -> None:
        self.session = session
        self.identity = identity
        self.handle = handle
        self._prefix = bytes([handle]) if session.caps.has_handles else b""
        limit = session.channel.quirks.max_short_lc_with_le - len(self._prefix)
        self.sizes = choose_packet_sizes(session.caps, session.extended, max_packet, limit)
        self._peer: EapTlsPeer | None = None
        self.succeeded = False   # the card answered a message with EAP-Success (a resumed session)

    @property
    def capacity(self) -> int:
        """The largest message the card takes or gives (SELECT tag 82)."""
        return self.session.caps.message_capacity

    def start(self) -> None:
        """EAP-Response/Identity -> EAP-TLS Start; abandons any conversation in progress."""
        peer = EapTlsPeer(
            max_packet=self.sizes.send,
            max_receive_packet=self.sizes.receive,
            max_message=self.capacity,
        )
        self._peer = peer
        event = self._round_trip(peer.identity(self.identity), "identity")
        if not isinstance(event, Started):
            raise TransportError(f"expected EAP-TLS Start, got {event}")
        log.debug("conversation with %r started (sizes %s)", self.identity, self.sizes)

    def exchange(self, message: bytes) -> bytes:
        """Sends a whole TLS message, returns the card's whole answer (possibly empty)."""
        if len(message) > self.capacity:
            raise MessageTooLargeError(
                f"a message of {len(message)} bytes exceeds the card's capacity {self.capacity}"
            )
        packet = self._require_peer().send_message(message)
        while True:
            event = self._round_trip(packet, "message")
            if isinstance(event, MessageReceived):
                return event.data
            if isinstance(event, Success):   # RFC 5216 2.1.3: the abbreviated handshake is over
                self.succeeded = True
                return b""
            if isinstance(event, (SendFragment, NeedAck)):
                packet = event.packet
                continue
            raise TransportError(f"unexpected {event} during a message exchange")

    def finish(self) -> Outcome:
        """The final acknowledgement: the card answers Success, Failure, or waits for more."""
        event = self._round_trip(self._require_peer().finish(), "finish")
        if isinstance(event, Success):
            return Outcome.SUCCESS
        if isinstance(event, Failure):
            return Outcome.FAILURE
        if isinstance(event, AwaitingMessage):
            return Outcome.CONTINUE
        raise TransportError(f"unexpected {event} after the final acknowledgement")

    def _require_peer(self) -> EapTlsPeer:
        if self._peer is None:
            raise EapUsageError("no conversation: call start() first (again after an error)")
        return self._peer

    def _round_trip(self, packet: bytes, during: str) -> Event:
        """One PROCESS EAP PACKET: the packet out, the card's packet back, as a peer event."""
        peer = self._require_peer()
        try:
            event = peer.receive(self._process(packet, during))
        except (TransportError, EapProtocolError):
            self._peer = None
            raise
        if isinstance(event, Failure) and during != "finish":
            self._peer = None
            raise ConversationFailedError(f"the card answered EAP-Failure during {during}")
        return event

    def _process(self, packet: bytes, during: str) -> bytes:
        receive = self.sizes.receive
        command = CommandApdu(
            Cla.OPEN_EAP, Ins.PROCESS_EAP, receive >> 8, receive & 0xFF, self._prefix + packet, self.session.max_ne
        )
        return self.session.send(command, f"PROCESS EAP ({self.identity.decode(errors='replace')} {during})")
