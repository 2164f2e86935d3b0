"""EAP (RFC 3748) and EAP-TLS (RFC 5216) framing, and the EAP peer's state machine. Sans-IO.

The card is the EAP server, the host the EAP peer. `EapTlsPeer` turns "send this TLS message"
into EAP-Response packets (fragmented to a maximum packet size: L on the first of several
fragments, M on all but the last) and turns the card's EAP-Request packets into events:

    peer = EapTlsPeer(max_packet=255)
    packet = peer.identity(b"@echo")            # EAP-Response/Identity
    peer.receive(card(packet))                  # -> Started (EAP-TLS Start)
    packet = peer.send_message(message)         # first fragment
    while True:
        event = peer.receive(card(packet))
        if isinstance(event, (SendFragment, NeedAck)):
            packet = event.packet               # next fragment, or an acknowledgement
        elif isinstance(event, MessageReceived):
            break                               # event.data: the card's whole answer

Bytes in, events and bytes out: no card, socket or thread here.
"""

from __future__ import annotations

import enum
import struct
from collections import deque
from dataclasses import dataclass

EAP_HEADER_SIZE = 4  # code, identifier, length
EAP_TLS_HEADER_SIZE = 6  # + type, flags
TLS_LENGTH_SIZE = 4  # the TLS Message Length field, present with flag L
MIN_PACKET_SIZE = 16  # the card refuses smaller packet sizes (6A86)
MAX_PACKET_SIZE = 0xFFFF  # the EAP length field
MAX_TLS_LENGTH = 0xFFFFFFFF


class EapCode(enum.IntEnum):
    REQUEST = 1
    RESPONSE = 2
    SUCCESS = 3
    FAILURE = 4


class EapType(enum.IntEnum):
    IDENTITY = 1
    NOTIFICATION = 2
    NAK = 3
    TLS = 13


class TlsFlags(enum.IntFlag):
    """RFC 5216 section 3.1; the five low bits are reserved and must be zero."""

    NONE = 0
    LENGTH_INCLUDED = 0x80
    MORE_FRAGMENTS = 0x40
    START = 0x20


RESERVED_FLAGS = 0x1F


class EapProtocolError(Exception):
    """The card sent an EAP packet that is malformed or wrong for the conversation's state."""


class EapUsageError(RuntimeError):
    """The host used the state machine out of order (a bug on this side)."""


# ---- framing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EapPacket:
    """One EAP packet. Requests and Responses have a type; Success and Failure have none."""

    code: int
    identifier: int
    type: int | None = None
    type_data: bytes = b""

    def __post_init__(self) -> None:
        if self.code not in tuple(EapCode):
            raise ValueError(f"unknown EAP code {self.code}")
        if not 0 <= self.identifier <= 0xFF:
            raise ValueError(f"EAP identifier must be a byte, got {self.identifier}")
        has_type = self.code in (EapCode.REQUEST, EapCode.RESPONSE)
        if has_type and (self.type is None or not 0 <= self.type <= 0xFF):
            raise ValueError(f"an EAP {EapCode(self.code).name} needs a type byte")
        if not has_type and (self.type is not None or self.type_data):
            raise ValueError(f"an EAP {EapCode(self.code).name} has no type and no data")
        if self.length > MAX_PACKET_SIZE:
            raise ValueError(f"EAP packet of {self.length} bytes exceeds {MAX_PACKET_SIZE}")

    @property
    def length(self) -> int:
        return EAP_HEADER_SIZE + (0 if self.type is None else 1 + len(self.type_data))

    def encode(self) -> bytes:
        header = struct.pack(">BBH", self.code, self.identifier, self.length)
        return header if self.type is None else header + bytes((self.type,)) + self.type_data

    @classmethod
    def parse(cls, raw: bytes) -> EapPacket:
        if len(raw) < EAP_HEADER_SIZE:
            raise EapProtocolError(f"EAP packet of {len(raw)} bytes is shorter than its header")
        code, identifier, length = struct.unpack(">BBH", raw[:EAP_HEADER_SIZE])
        if length != len(raw):
            raise EapProtocolError(
                f"EAP length field says {length} bytes, the packet has {len(raw)}"
            )
        has_type = length > EAP_HEADER_SIZE
        try:
            return cls(
                code,
                identifier,
                raw[EAP_HEADER_SIZE] if has_type else None,
                bytes(raw[EAP_HEADER_SIZE + 1 :]),
            )
        except ValueError as e:
            raise EapProtocolError(f"malformed EAP packet {raw[:8].hex()}...: {e}") from None


@dataclass(frozen=True)
class EapTlsData:
    """The type data of an EAP-TLS packet: flags, [TLS Message Length], fragment."""

    flags: int = TlsFlags.NONE
    fragment: bytes = b""
    tls_length: int | None = None

    def __post_init__(self) -> None:
        if self.flags & RESERVED_FLAGS or not 0 <= self.flags <= 0xFF:
            raise ValueError(f"reserved EAP-TLS flag bits set: {self.flags:#04x}")
        if self.has(TlsFlags.LENGTH_INCLUDED) != (self.tls_length is not None):
            raise ValueError("the TLS Message Length is present exactly when flag L is set")
        if self.tls_length is not None and not 0 <= self.tls_length <= MAX_TLS_LENGTH:
            raise ValueError(f"TLS Message Length {self.tls_length} out of range")

    def has(self, flag: TlsFlags) -> bool:
        return bool(self.flags & flag)

    @property
    def more(self) -> bool:
        return self.has(TlsFlags.MORE_FRAGMENTS)

    def encode(self) -> bytes:
        length = b"" if self.tls_length is None else struct.pack(">I", self.tls_length)
        return bytes((self.flags,)) + length + self.fragment

    @classmethod
    def parse(cls, type_data: bytes) -> EapTlsData:
        if not type_data:
            raise EapProtocolError("EAP-TLS packet without its flags byte")
        flags = type_data[0]
        if flags & RESERVED_FLAGS:
            raise EapProtocolError(f"EAP-TLS flags {flags:#04x} set reserved bits")
        if not flags & TlsFlags.LENGTH_INCLUDED:
            return cls(flags, bytes(type_data[1:]))
        if len(type_data) < 1 + TLS_LENGTH_SIZE:
            raise EapProtocolError("EAP-TLS flag L set but the TLS Message Length is cut short")
        (tls_length,) = struct.unpack(">I", type_data[1 : 1 + TLS_LENGTH_SIZE])
        return cls(flags, bytes(type_data[1 + TLS_LENGTH_SIZE :]), tls_length)

    def packet(self, code: EapCode, identifier: int) -> EapPacket:
        return EapPacket(code, identifier, EapType.TLS, self.encode())


def check_packet_size(size: int) -> int:
    if not MIN_PACKET_SIZE <= size <= MAX_PACKET_SIZE:
        raise ValueError(f"EAP packet size must be in {MIN_PACKET_SIZE}..{MAX_PACKET_SIZE}: {size}")
    return size


def fragment_message(
    message: bytes, max_packet: int, *, always_length: bool = False
) -> list[EapTlsData]:
    """Cuts a TLS message into EAP-TLS fragments whose EAP packets fit `max_packet` bytes.

    RFC 5216 section 2.1.5: L (with the total length) on the first of several fragments, M on
    all but the last. A message that fits one packet goes without L unless `always_length`.
    """
    check_packet_size(max_packet)
    if len(message) > MAX_TLS_LENGTH:
        raise ValueError(f"a TLS message of {len(message)} bytes is too long for EAP-TLS")
    single_header = EAP_TLS_HEADER_SIZE + (TLS_LENGTH_SIZE if always_length else 0)
    if len(message) + single_header <= max_packet:
        if always_length:
            return [EapTlsData(TlsFlags.LENGTH_INCLUDED, message, len(message))]
        return [EapTlsData(TlsFlags.NONE, message)]
    first = max_packet - EAP_TLS_HEADER_SIZE - TLS_LENGTH_SIZE
    size = max_packet - EAP_TLS_HEADER_SIZE
    flags = TlsFlags.LENGTH_INCLUDED | TlsFlags.MORE_FRAGMENTS
    fragments = [EapTlsData(flags, message[:first], len(message))]
    for at in range(first, len(message), size):
        last = at + size >= len(message)
        more = TlsFlags.NONE if last else TlsFlags.MORE_FRAGMENTS
        fragments.append(EapTlsData(more, message[at : at + size]))
    return fragments


class Reassembler:
    """Collects the fragments of one TLS message (RFC 5216 section 2.1.5), checking L and M."""

    def __init__(self, max_message: int) -> None:
        self.max_message = max_message
        self._parts = bytearray()
        self._total: int | None = None
        self._started = False

    @property
    def in_progress(self) -> bool:
        return self._started

    def feed(self, data: EapTlsData) -> bytes | None:
        """Adds a fragment; returns the whole message after the last one, else None."""
        if data.has(TlsFlags.START):
            raise EapProtocolError("EAP-TLS Start flag on a data packet")
        if not self._started:
            self._begin(data)
        elif data.tls_length is not None and data.tls_length != self._total:
            raise EapProtocolError(
                f"fragment announces {data.tls_length} bytes, the first said {self._total}"
            )
        elif not data.fragment:
            raise EapProtocolError("empty EAP-TLS fragment in the middle of a message")
        self._append(data.fragment)
        if data.more:
            return None
        return self._complete()

    def _begin(self, data: EapTlsData) -> None:
        if data.more and data.tls_length is None:
            raise EapProtocolError("first of several fragments without flag L (RFC 5216 2.1.5)")
        if data.more and not data.fragment:
            raise EapProtocolError("empty EAP-TLS fragment with flag M")
        if data.tls_length is not None and data.tls_length > self.max_message:
            raise EapProtocolError(
                f"announced TLS message of {data.tls_length} bytes exceeds {self.max_message}"
            )
        self._started = True
        self._total = data.tls_length
        self._parts.clear()

    def _append(self, fragment: bytes) -> None:
        limit = self.max_message if self._total is None else self._total
        if len(self._parts) + len(fragment) > limit:
            what = "announced by flag L" if self._total is not None else "the limit"
            raise EapProtocolError(f"fragments add up to more than {limit} bytes ({what})")
        self._parts += fragment

    def _complete(self) -> bytes:
        if self._total is not None and len(self._parts) != self._total:
            raise EapProtocolError(
                f"fragments add up to {len(self._parts)} bytes, flag L announced {self._total}"
            )
        message = bytes(self._parts)
        self._parts.clear()
        self._started = False
        self._total = None
        return message


# ---- events -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Started:
    """The card answered the identity with EAP-TLS Start: send a message."""

    identifier: int


@dataclass(frozen=True)
class SendFragment:
    """The card acknowledged a fragment: send `packet`, the next one."""

    packet: bytes


@dataclass(frozen=True)
class NeedAck:
    """The card sent a fragment with M: send `packet`, the empty acknowledgement."""

    packet: bytes


@dataclass(frozen=True)
class MessageReceived:
    """The card's whole answer to the message, reassembled."""

    data: bytes


@dataclass(frozen=True)
class AwaitingMessage:
    """After our final acknowledgement the card neither succeeded nor failed: it waits for more."""

    identifier: int


@dataclass(frozen=True)
class Success:
    identifier: int


@dataclass(frozen=True)
class Failure:
    identifier: int


Event = Started | SendFragment | NeedAck | MessageReceived | AwaitingMessage | Success | Failure


# ---- the peer ---------------------------------------------------------------------------------


class PeerState(enum.Enum):
    IDLE = "idle"  # nothing sent yet
    STARTING = "starting"  # identity sent, waiting for Start
    READY = "ready"  # may send a message or finish
    SENDING = "sending"  # a fragment with M sent, waiting for its acknowledgement
    AWAITING_ANSWER = "awaiting answer"  # our last fragment sent, waiting for the answer
    RECEIVING = "receiving"  # acknowledged a fragment of the answer, waiting for the next
    FINISHING = "finishing"  # final acknowledgement sent: Success, Failure or a new request
    CLOSED = "closed"  # Success, Failure or a protocol error


class EapTlsPeer:
    """The EAP-TLS peer's side of one conversation.

    max_packet: largest EAP packet this side sends; max_receive_packet: largest it accepts
    (what the host told the card); max_message: largest TLS message it reassembles.
    """

    def __init__(
        self,
        *,
        max_packet: int = 1024,
        max_receive_packet: int = MAX_PACKET_SIZE,
        max_message: int = 1 << 16,
        always_length: bool = False,
    ) -> None:
        self.max_packet = check_packet_size(max_packet)
        self.max_receive_packet = check_packet_size(max_receive_packet)
        self.always_length = always_length
        self.state = PeerState.IDLE
        self._reassembler = Reassembler(max_message)
        self._outgoing: deque[EapTlsData] = deque()
        self._request_id: int | None = None  # identifier of the card's last request
        self._response_id: int | None = None  # identifier of our last response

    # -- what the host sends --

    def identity(self, name: bytes, identifier: int = 0) -> bytes:
        """EAP-Response/Identity: starts (or restarts) a conversation."""
        self._reassembler = Reassembler(self._reassembler.max_message)
        self._outgoing.clear()
        self._request_id = None
        self.state = PeerState.STARTING
        return self._respond(EapPacket(EapCode.RESPONSE, identifier, EapType.IDENTITY, name))

    def send_message(self, message: bytes) -> bytes:
        """The first EAP-Response/EAP-TLS packet of a message; the others come with SendFragment."""
        self._expect_state(PeerState.READY, "send a message")
        if not message:
            raise ValueError("EAP-TLS cannot carry an empty message (it reads as an ack)")
        fragments = fragment_message(message, self.max_packet, always_length=self.always_length)
        self._outgoing.extend(fragments)
        return self._next_fragment()

    def finish(self) -> bytes:
        """The empty EAP-Response/EAP-TLS after the card's last message: asks for the outcome."""
        self._expect_state(PeerState.READY, "finish")
        self.state = PeerState.FINISHING
        return self._tls_response(EapTlsData())

    # -- what the card sends --

    def receive(self, raw: bytes) -> Event:
        """Consumes the card's answer to the last packet sent (EapProtocolError if bad)."""
        if self.state in (PeerState.IDLE, PeerState.READY, PeerState.CLOSED):
            raise EapUsageError(f"no EAP packet is expected in state {self.state.value}")
        try:
            return self._dispatch(self._parse(raw))
        except EapProtocolError:
            self.state = PeerState.CLOSED
            raise

    def _parse(self, raw: bytes) -> EapPacket:
        if len(raw) > self.max_receive_packet:
            raise EapProtocolError(
                f"EAP packet of {len(raw)} bytes exceeds the {self.max_receive_packet} announced"
            )
        return EapPacket.parse(raw)

    def _dispatch(self, packet: EapPacket) -> Event:
        if packet.code in (EapCode.SUCCESS, EapCode.FAILURE):
            return self._outcome(packet)
        if packet.code != EapCode.REQUEST:
            raise EapProtocolError(
                f"the card sent an EAP {EapCode(packet.code).name}, not a Request"
            )
        if packet.type != EapType.TLS:
            raise EapProtocolError(
                f"the card sent an EAP Request of type {packet.type}, not EAP-TLS"
            )
        self._check_new_identifier(packet.identifier)
        data = EapTlsData.parse(packet.type_data)
        if self.state == PeerState.STARTING:
            return self._on_start(packet.identifier, data)
        if self.state == PeerState.SENDING:
            return self._on_ack(data)
        if self.state == PeerState.FINISHING:
            return self._on_idle_request(packet.identifier, data)
        return self._on_fragment(data)

    def _outcome(self, packet: EapPacket) -> Event:
        # RFC 5216 2.1.3: after the peer's last message of a resumed session, Success comes at once.
        if packet.code == EapCode.SUCCESS and self.state not in (PeerState.FINISHING, PeerState.AWAITING_ANSWER):
            raise EapProtocolError(f"EAP-Success in state {self.state.value}")
        if self._response_id is not None and packet.identifier != self._response_id:
            raise EapProtocolError(
                f"EAP {EapCode(packet.code).name} identifier {packet.identifier} does not match "
                f"the last response's {self._response_id} (RFC 3748 4.2)"
            )
        self.state = PeerState.CLOSED
        if packet.code == EapCode.SUCCESS:
            return Success(packet.identifier)
        return Failure(packet.identifier)

    def _check_new_identifier(self, identifier: int) -> None:
        if identifier == self._request_id:
            raise EapProtocolError(
                f"EAP Request repeats identifier {identifier}: a retransmission, not an answer"
            )
        self._request_id = identifier

    def _on_start(self, identifier: int, data: EapTlsData) -> Event:
        if data.flags != TlsFlags.START or data.fragment:
            raise EapProtocolError(f"expected EAP-TLS Start, got flags {data.flags:#04x}")
        self.state = PeerState.READY
        return Started(identifier)

    def _on_ack(self, data: EapTlsData) -> Event:
        if data.flags != TlsFlags.NONE or data.fragment:
            raise EapProtocolError(
                f"expected an empty acknowledgement, got flags {data.flags:#04x} "
                f"and {len(data.fragment)} bytes"
            )
        return SendFragment(self._next_fragment())

    def _on_fragment(self, data: EapTlsData) -> Event:
        message = self._reassembler.feed(data)
        if message is None:
            self.state = PeerState.RECEIVING
            return NeedAck(self._tls_response(EapTlsData()))
        self.state = PeerState.READY
        return MessageReceived(message)

    def _on_idle_request(self, identifier: int, data: EapTlsData) -> Event:
        if data.flags != TlsFlags.NONE or data.fragment:
            raise EapProtocolError("expected Success, Failure or an empty request after the ack")
        self.state = PeerState.READY
        return AwaitingMessage(identifier)

    # -- helpers --

    def _next_fragment(self) -> bytes:
        fragment = self._outgoing.popleft()
        self.state = PeerState.SENDING if self._outgoing else PeerState.AWAITING_ANSWER
        return self._tls_response(fragment)

    def _tls_response(self, data: EapTlsData) -> bytes:
        if self._request_id is None:
            raise EapUsageError("no request to answer yet")
        return self._respond(data.packet(EapCode.RESPONSE, self._request_id))

    def _respond(self, packet: EapPacket) -> bytes:
        self._response_id = packet.identifier
        return packet.encode()

    def _expect_state(self, state: PeerState, action: str) -> None:
        if self.state != state:
            raise EapUsageError(f"cannot {action} in state {self.state.value}")
