"""The card's commands as Python methods (docs/apdu.md), and opening cards for the servers.

Refusals come as `host.card.errors` exceptions; `CardOpenError` turns those that stop a card
from serving (wrong or blocked PIN, no such identity) into a sentence for a person.
"""
from __future__ import annotations

import contextlib
import datetime
import logging
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from host.card.errors import (
    AccessDeniedError,
    CardRefusedError,
    MessageTooLargeError,
    PinBlockedError,
    WrongPinError,
)
from host.card.numbers import (
    COUNTERS_RESET,
    MAX_IDENTITIES,
    TRANSCRIPT_COPY_CONTENT_TYPE,
    UNPROTECT_DROPPED,
    UNPROTECT_REJECTED,
    AppletStatus,
    Cla,
    Commit,
    Counter,
    DataTag,
    Ins,
    KeyChoice,
    Piece,
    Policy,
)
from host.card.operator import PIN_BLOCK, PSK_BLOCK, OperatorKey, OperatorSession
from host.card.session import CardSession
from host.card.transport import EapTlsTransport
from host.iso7816.apdu import CommandApdu, StatusWord
from host.iso7816.channel import Channel, ChannelError
from host.iso7816.pcsc import PcscChannel, find_reader
from host.tls.protection import SessionKeys
from host.tls.record_layer import RecordRejected

log = logging.getLogger(__name__)


PUT_DATA_CHUNK = 224  # data bytes per PUT DATA part: with the 16-byte MAC it fits a short APDU


class RecordDropped(Exception):
    """UNPROTECT RECORD of a DTLS record the card dropped (RFC 6347 4.1.2.6-7: a replay, another
    epoch, or one that does not authenticate); the session goes on."""


class CardOpenError(Exception):
    """A card could not be opened or unlocked; the message says why, for a person."""


class OperatorAuthError(Exception):
    """The card's confirmation of the operator session did not match: not the keys we derived."""


@dataclass
class IdentityStatus:
    key_ready: bool
    chain_length: int
    pin_set: bool
    pin_tries_left: int
    pin_verified: bool
    policy: int
    suites: tuple[int, ...]
    staged_key: bool = False
    ca_count: int = 0

    @classmethod
    def parse(cls, data: bytes) -> IdentityStatus:
        key, chain, pin_set, tries, verified, policy, count = struct.unpack(">BHBBBBB", data[:8])
        suites = struct.unpack(f">{count}H", data[8:8 + 2 * count])
        rest = data[8 + 2 * count:]
        staged, cas = (rest[0], rest[1]) if len(rest) >= 2 else (0, 0)
        return cls(bool(key), chain, bool(pin_set), tries, bool(verified), policy, suites, bool(staged), cas)


@dataclass
class CardStatus:
    """GET DATA CARD STATUS: the card's own state."""

    initialised: bool
    puk_tries_left: int
    operator_session: bool
    psk_count: int
    psk_capacity: int
    free_eeprom: int  # saturates at 32767
    free_ram: int

    @classmethod
    def parse(cls, data: bytes) -> CardStatus:
        init, puk, op, count, cap, eeprom, ram = struct.unpack(">BBBBBHH", data[:9])
        return cls(bool(init), puk, bool(op), count, cap, eeprom, ram)


CLOCK_REFRESH_SECONDS = 60.0  # how old the card's copy of the host's clock may get


def serial_bytes(serial: int) -> bytes:
    """A certificate serial number as its DER INTEGER contents (minimal two's complement)."""
    return serial.to_bytes(serial.bit_length() // 8 + 1, "big", signed=True)


def _lv(value: bytes) -> bytes:
    """A length byte, then the value; ValueError for a value over 255 bytes."""
    if len(value) > 0xFF:
        raise ValueError(f"a value of {len(value)} bytes is too long for the card (at most 255)")
    return bytes([len(value)]) + value


# Records in pieces (docs/apdu.md, UNPROTECT RECORD): sizes that fit a short APDU (254 data bytes
# with Le, jcardsim's limit) and its 256-byte answer; multiples of 16 (CBC takes whole blocks).
RECORD_HEADER_SIZE = 5
PIECE_TAIL = 32               # the record's last bytes, in the first piece (CBC reads its padding first)
UNPROTECT_FIRST_PIECE = 208   # header 5 + tail 32 + 208 = 245 bytes
UNPROTECT_PIECE = 240
UNPROTECT_WHOLE_MAX = 254
PROTECT_PIECE = 192           # the last piece's answer: 192 + MAC 32 + padding 16 = 240
PROTECT_WHOLE_MAX = 170       # the record in the card's 261-byte buffer: 21 + 170 + 69 = 260


class SeTlsCard:
    """One card running the SE-TLS applet, already selected.

    The card holds several TLS sessions, each named by a handle (0 to `session_slots` - 1) in the
    commands; the TLS methods take it (`handle`, default `self.handle`: one session at a time for
    callers that need no more). Which handle serves which connection is the caller's choice
    (host.se_tls)."""

    def __init__(self, session: CardSession, name: str = "card") -> None:
        self.session = session
        self._conversations: dict[int, EapTlsTransport] = {}
        self.name = name
        self.slot: int | None = None
        self.operator: OperatorSession | None = None
        self.handle = 0
        # Send the transcript copy before a client's CertificateVerify even where the card verifies
        # ECDSA over a precomputed hash (tests and benchmarks of the universal path, docs/quirks.md).
        self.force_transcript_copy = False
        self.clock_refresh = CLOCK_REFRESH_SECONDS
        self._clock_set_at: float | None = None
        self._clock_selection = -1  # session.selections when SET TIME was last sent

    @property
    def session_slots(self) -> int:
        """TLS sessions the card holds at once (SELECT tag 85)."""
        return self.session.caps.session_slots

    @property
    def ticket_key_id(self) -> bytes:
        """The id that starts this card's RFC 5077 tickets (b"" if it issues none)."""
        return self.session.caps.ticket_key_id

    @property
    def handshake_slots(self) -> int:
        """Handshakes the card runs at once (SELECT tag 86)."""
        return self.session.caps.handshake_slots

    # -- plumbing ---------------------------------------------------------------------------
    def _handle(self, handle: int | None) -> int:
        return self.handle if handle is None else handle

    def _command(self, ins: Ins, p1: int = 0, p2: int = 0, data: bytes = b"", ne: int = 256,
                 what: str = "") -> bytes:
        command = CommandApdu(Cla.OPEN_EAP, ins, p1, p2, data, min(ne, self.session.max_ne))
        return self.session.send(command, what or ins.title)

    def traffic(self) -> tuple[int, int, int]:
        """APDUs, bytes to the card and bytes from it so far (for the session log line)."""
        total = self.session.stats.total
        return total.apdus, total.bytes_sent, total.bytes_received

    # -- identities -------------------------------------------------------------------------
    def verify_pin(self, slot: int, pin: str) -> None:
        """VERIFY, the card's refusal as it is (WrongPinError with the tries left, PinBlockedError)."""
        self._command(Ins.VERIFY, 0, slot, pin.encode(), ne=0)

    def verify(self, slot: int, pin: str) -> None:
        try:
            self.verify_pin(slot, pin)
        except WrongPinError as exc:
            left = exc.tries_left
            raise CardOpenError(f"wrong PIN for identity slot {slot}: {left} "
                                f"{'try' if left == 1 else 'tries'} left") from None
        except PinBlockedError:
            raise CardOpenError(f"the PIN of identity slot {slot} is blocked") from None
        except AccessDeniedError as exc:
            if exc.sw == StatusWord.CONDITIONS_NOT_SATISFIED:
                raise CardOpenError(f"identity slot {slot} has no PIN: personalise it first") from None
            raise

    def change_pin(self, slot: int, old: str, new: str) -> None:
        """CHANGE PIN: the current PIN (a wrong one counts a try), then the new one."""
        self._command(Ins.CHANGE_PIN, 0, slot, _lv(old.encode()) + _lv(new.encode()), ne=0)

    def unblock_pin(self, slot: int, puk: str, new_pin: str) -> None:
        """UNBLOCK PIN with the PUK (a wrong PUK counts a PUK try)."""
        self._command(Ins.UNBLOCK_PIN, 0, slot, _lv(puk.encode()) + _lv(new_pin.encode()), ne=0)

    # -- the card's lifecycle -----------------------------------------------------------------
    def card_status(self) -> CardStatus:
        return CardStatus.parse(self._command(Ins.GET_DATA, DataTag.CARD_STATUS, 0, what="GET DATA CARD_STATUS"))

    def initialize(self, pin: str, puk: str, operator_point: bytes) -> None:
        """INITIALIZE: the PIN of every identity, the PUK, the operator's public key; once."""
        data = _lv(pin.encode()) + _lv(puk.encode()) + operator_point
        self._command(Ins.INITIALIZE, 0, 0, data, ne=0)

    def operator_public_key(self) -> bytes:
        return self.get_data(0, DataTag.OPERATOR_KEY)

    def open_operator_session(self, key: OperatorKey) -> None:
        """Signs a card challenge with the operator key; every operator command then carries a MAC."""
        self.operator = None
        challenge = self._command(Ins.OPERATOR_CHALLENGE)
        data, session = OperatorSession.answer(key, challenge)
        confirmation = self._command(Ins.OPERATOR_AUTHENTICATE, 0, 0, data)
        if confirmation != session.confirmation:
            raise OperatorAuthError("the card's confirmation does not match the session keys")
        self.operator = session

    def _operator_command(self, ins: Ins, p1: int, p2: int, payload: bytes = b"", ne: int = 0,
                          what: str = "") -> bytes:
        """An operator command: payload || MAC under the session (without a session, no MAC: the
        card refuses it with 6F04). A refusal of the MAC or the session ends the host's session too."""
        data = payload if self.operator is None else self.operator.wrap(ins, p1, p2, payload)
        try:
            return self._command(ins, p1, p2, data, ne=ne, what=what)
        except AccessDeniedError as exc:
            if exc.sw in (StatusWord.SECURITY_NOT_SATISFIED, AppletStatus.OPERATOR_REQUIRED):
                self.operator = None
            raise

    def generate_key(self, slot: int, staged: bool = False) -> bytes:
        """GENERATE KEY (operator): the new public point; staged, it waits beside the serving key."""
        choice = KeyChoice.STAGED if staged else KeyChoice.SERVING
        return self._operator_command(Ins.GENERATE_KEY, choice, slot, ne=256)

    def sign_csr(self, slot: int, certification_request_info: bytes, staged: bool = False) -> bytes:
        """SIGN CSR (operator): the card's ECDSA signature (DER) of its own CertificationRequestInfo."""
        choice = KeyChoice.STAGED if staged else KeyChoice.SERVING
        return self._operator_command(Ins.SIGN_CSR, choice, slot, certification_request_info, ne=256)

    def wipe(self, slot: int) -> None:
        self._operator_command(Ins.WIPE, 0, slot)

    def put_data(self, slot: int, tag: DataTag, value: bytes) -> None:
        """PUT DATA (operator)."""
        self._operator_command(Ins.PUT_DATA, tag, slot, value, what=f"PUT DATA {tag.name}")

    def put_name(self, slot: int, name: str) -> None:
        self.put_data(slot, DataTag.NAME, name.encode())

    def _upload(self, slot: int, first: DataTag, following: DataTag, what: Commit, data: bytes) -> None:
        """Parts into the identity's shadow area, then the commit: one byte flips in the card."""
        for i in range(0, max(len(data), 1), PUT_DATA_CHUNK):
            self.put_data(slot, first if i == 0 else following, data[i:i + PUT_DATA_CHUNK])
        self.put_data(slot, DataTag.COMMIT, bytes([what]) + len(data).to_bytes(2, "big"))

    def put_chain(self, slot: int, certificate_list: bytes) -> None:
        """The chain, in parts, then committed with the key its leaf certifies (serving or staged)."""
        self._upload(slot, DataTag.CHAIN_FIRST, DataTag.CHAIN_NEXT, Commit.CHAIN, certificate_list)

    def put_chain_parts(self, slot: int, certificate_list: bytes, parts: int) -> None:
        """The first `parts` parts of a chain update and no commit (what a reset would cut short)."""
        for n, i in enumerate(range(0, len(certificate_list), PUT_DATA_CHUNK)):
            if n == parts:
                return
            self.put_data(slot, DataTag.CHAIN_FIRST if i == 0 else DataTag.CHAIN_NEXT,
                          certificate_list[i:i + PUT_DATA_CHUNK])

    def put_cas(self, slot: int, entries: bytes) -> None:
        """The trusted CAs (SHA-256 of the subject, point, name length, name: 226 bytes each), committed as a whole."""
        self._upload(slot, DataTag.CA_FIRST, DataTag.CA_NEXT, Commit.CAS, entries)

    def reset_pin(self, slot: int, pin: str) -> None:
        """The operator sets a new PIN (encrypted under the session), which also unblocks it."""
        if self.operator is None:
            self.put_data(slot, DataTag.PIN, b"")  # the card refuses: no session
            return
        self.put_data(slot, DataTag.PIN, self.operator.encrypt_secret(pin.encode(), PIN_BLOCK))

    def set_puk(self, puk: str) -> None:
        if self.operator is None:
            self.put_data(0, DataTag.PUK, b"")
            return
        self.put_data(0, DataTag.PUK, self.operator.encrypt_secret(puk.encode(), PIN_BLOCK))

    def put_policy(self, slot: int, export_keys: bool, client_auth: str = "none", client_dates: bool = False) -> None:
        """The identity's policy byte; `client_dates`: a client certificate's dates must be checked
        (no handshake with a certificate while the host has not set the card's clock)."""
        value = Policy.EXPORT_KEYS if export_keys else Policy(0)
        if client_auth == "optional":
            value |= Policy.CLIENT_AUTH_OPTIONAL
        elif client_auth == "required":
            value |= Policy.CLIENT_AUTH_OPTIONAL | Policy.CLIENT_AUTH_REQUIRED
        if client_dates:
            value |= Policy.CLIENT_DATES_REQUIRED
        self.put_data(slot, DataTag.POLICY, bytes([value]))

    def put_revoked(self, serials: list[int]) -> None:
        """The revoked client certificate serial numbers (operator), replacing the card's list."""
        self.put_data(0, DataTag.REVOKED, b"".join(_lv(serial_bytes(s)) for s in serials))

    def revoked(self) -> list[int]:
        """The card's revoked serial numbers."""
        data = self.get_data(0, DataTag.REVOKED)
        out, p = [], 0
        while p < len(data):
            n = data[p]
            out.append(int.from_bytes(data[p + 1:p + 1 + n], "big", signed=True))
            p += 1 + n
        return out

    @property
    def transcript_copy_type(self) -> int | None:
        """The content type of the transcript copy this card needs before a CertificateVerify, or
        None when it verifies over its own session hash (Capability2.ECDSA_PRECOMPUTED_HASH)."""
        if self.force_transcript_copy or not self.session.caps.ecdsa_precomputed_hash:
            return TRANSCRIPT_COPY_CONTENT_TYPE
        return None

    def refresh_clock(self, max_age: float | None = None) -> None:
        """SET TIME when the card has not had the host's time for `max_age` seconds (default
        `clock_refresh`: one APDU a minute at most; the card checks client certificates' dates
        against it), or has been selected again since (a re-SELECT clears the card's clock)."""
        now = time.monotonic()
        age = self.clock_refresh if max_age is None else max_age
        if (self._clock_set_at is None or self._clock_selection != self.session.selections
                or now - self._clock_set_at >= age):
            self.set_time()

    @property
    def has_clock(self) -> bool:
        """Whether the card holds the host's clock: SET TIME since the applet's last SELECT (a
        SELECT, a reset or another process reopening the card makes it forget)."""
        return self._clock_set_at is not None and self._clock_selection == self.session.selections

    def set_time(self, when: datetime.datetime | None = None) -> None:
        """SET TIME: the host's clock (UTC), against which the card checks client certificates'
        validity; needs an unlocked identity. A SELECT or a reset makes the card forget it."""
        now = (when or datetime.datetime.now(datetime.UTC)).astimezone(datetime.UTC)
        data = now.year.to_bytes(2, "big") + bytes((now.month, now.day, now.hour, now.minute, now.second))
        self._command(Ins.SET_TIME, 0, 0, data, ne=0, what="SET TIME")
        self._clock_set_at, self._clock_selection = time.monotonic(), self.session.selections

    def client_subject(self, handle: int | None = None) -> str | None:
        """The commonName of the client the session's handshake authenticated (None: no client
        certificate; "" for one without a commonName)."""
        data = self._command(Ins.GET_DATA, DataTag.CLIENT_SUBJECT, self._handle(handle), what="GET DATA CLIENT SUBJECT")
        if not data or data[0] == 0:
            return None
        return data[1:].decode("utf-8", "replace")

    def put_suites(self, slot: int, suites: tuple[int, ...]) -> None:
        self.put_data(slot, DataTag.SUITES, b"".join(s.to_bytes(2, "big") for s in suites))

    def put_sni(self, slot: int, names: list[str]) -> None:
        self.put_data(slot, DataTag.SNI, b"".join(_lv(name.lower().encode("ascii")) for name in names))

    # -- PSKs ---------------------------------------------------------------------------------
    def set_psk(self, identity: bytes, key: bytes) -> None:
        """Stores a PSK (the key travels encrypted under the operator session)."""
        secret = self.operator.encrypt_secret(key, PSK_BLOCK) if self.operator is not None else b""
        self.put_data(0, DataTag.PSK, _lv(identity) + secret)

    def delete_psk(self, identity: bytes) -> None:
        self.put_data(0, DataTag.PSK_DELETE, identity)

    def psk_identities(self) -> list[bytes]:
        data = self._command(Ins.GET_DATA, DataTag.PSK_IDS, 0, ne=65536, what="GET DATA PSK_IDS")
        out, at = [], 0
        while at < len(data):
            out.append(data[at + 1:at + 1 + data[at]])
            at += 1 + data[at]
        return out

    def get_data(self, slot: int, tag: DataTag) -> bytes:
        return self._command(Ins.GET_DATA, tag, slot, what=f"GET DATA {tag.name}")

    def identity_name(self, slot: int) -> str:
        return self.get_data(slot, DataTag.NAME).decode(errors="replace")

    def status(self, slot: int) -> IdentityStatus:
        return IdentityStatus.parse(self.get_data(slot, DataTag.STATUS))

    def public_key(self, slot: int, staged: bool = False) -> bytes:
        return self.get_data(slot, DataTag.STAGED_PUBLIC_KEY if staged else DataTag.PUBLIC_KEY)

    def sni_names(self, slot: int) -> list[str]:
        data, out, at = self.get_data(slot, DataTag.SNI), [], 0
        while at < len(data):
            out.append(data[at + 1:at + 1 + data[at]].decode("ascii", errors="replace"))
            at += 1 + data[at]
        return out

    def cas(self, slot: int) -> bytes:
        return self._command(Ins.GET_DATA, DataTag.CAS, slot, ne=65536, what="GET DATA CAS")

    def certificate_list(self, slot: int) -> bytes:
        return self._command(Ins.GET_DATA, DataTag.CHAIN, slot, ne=65536, what="GET DATA CHAIN")

    def certificate_subject(self, slot: int) -> str:
        """The subject of the first certificate the identity presents."""
        from cryptography import x509

        chain = self.certificate_list(slot)
        length = int.from_bytes(chain[:3], "big")
        return x509.load_der_x509_certificate(chain[3:3 + length]).subject.rfc4514_string()

    def find_identity(self, name: str, slots: int = MAX_IDENTITIES) -> int:
        for slot in range(slots):
            if self.identity_name(slot) == name:
                return slot
        raise CardOpenError(f"card {self.name} has no identity named {name!r}: personalise it "
                            f"(python -m host.provision)")

    def unlock(self, identity: str, pin: str) -> None:
        """Finds the identity and verifies its PIN, with a sentence for every refusal."""
        slot = self.find_identity(identity)
        status = self.status(slot)
        if not status.key_ready or not status.chain_length:
            raise CardOpenError(f"identity {identity!r} on card {self.name} has no key or no certificate chain")
        self.verify(slot, pin)
        self.slot = slot

    # -- TLS --------------------------------------------------------------------------------
    def begin_conversation(self, identity: str, handle: int | None = None) -> None:
        """EAP-Response/Identity in session `handle` (which ends whatever it held): the card answers
        EAP-TLS Start, ready for a ClientHello."""
        h = self._handle(handle)
        conversation = EapTlsTransport(self.session, identity.encode(), handle=h)
        self._conversations[h] = conversation
        conversation.start()

    def exchange(self, flight: bytes, handle: int | None = None) -> bytes:
        conversation = self._conversations.get(self._handle(handle))
        if conversation is None:
            raise RuntimeError("begin_conversation() first")
        return conversation.exchange(flight)

    def handshake_finished(self, handle: int | None = None) -> bool:
        """After the card answered a message with nothing: True if that answer was EAP-Success (an
        abbreviated handshake ends with the client's Finished, RFC 5216 2.1.3), False if the card
        waits for more of the client's flight. No APDU."""
        conversation = self._conversations.get(self._handle(handle))
        if conversation is None:
            raise RuntimeError("begin_conversation() first")
        return conversation.succeeded

    def unprotect(self, record: bytes, handle: int | None = None) -> tuple[int, bytes]:
        """UNPROTECT RECORD: (content type, plaintext) of one TLS record the client sent.

        A record that one APDU does not carry with its answer goes in pieces (docs/apdu.md):
        release-then-confirm, the pieces' plaintext is kept only when the last piece's answer says
        the record authenticated. Raises RecordRejected (the alert to forward) otherwise."""
        h = self._handle(handle)
        answers: list[bytes] = []
        if len(record) <= self._whole_limit(UNPROTECT_WHOLE_MAX):
            try:
                answers.append(self._command(Ins.UNPROTECT_RECORD, Piece.WHOLE, h, record, ne=65536))
            except MessageTooLargeError:   # more than the card's APDU buffer holds: in pieces
                answers = []
        if not answers:
            answers = self._unprotect_in_pieces(record, h)
        if answers == [bytes([UNPROTECT_DROPPED])]:
            raise RecordDropped("the card dropped the DTLS record (a replay, another epoch, or a bad MAC)")
        for answer in answers:
            if answer[:1] == bytes([UNPROTECT_REJECTED]):  # its description, then the alert to send
                self._conversations.pop(h, None)   # the card ended the session
                raise RecordRejected(answer[2:], answer[1])
        return answers[-1][0], b"".join(answer[1:] for answer in answers)

    def _unprotect_in_pieces(self, record: bytes, handle: int) -> list[bytes]:
        """The record's header, its last 32 bytes and its first bytes, then the rest, each piece's
        answer (content type + the plaintext released so far) until one rejects it."""
        body = record[RECORD_HEADER_SIZE:]
        first = record[:RECORD_HEADER_SIZE] + body[-PIECE_TAIL:] + body[:UNPROTECT_FIRST_PIECE]
        rest = body[UNPROTECT_FIRST_PIECE:]
        pieces = [rest[i:i + UNPROTECT_PIECE] for i in range(0, len(rest), UNPROTECT_PIECE)] or [b""]
        answers = [self._command(Ins.UNPROTECT_RECORD, Piece.FIRST, handle, first, ne=256)]
        for i, piece in enumerate(pieces):
            if answers[-1][:1] == bytes([UNPROTECT_REJECTED]):
                break
            kind = Piece.LAST if i == len(pieces) - 1 else Piece.NEXT
            answers.append(self._command(Ins.UNPROTECT_RECORD, kind, handle, piece, ne=256))
        return answers

    def protect(self, content_type: int, data: bytes, handle: int | None = None) -> bytes:
        """PROTECT RECORD: the protected record of `data` (at most 2^14 bytes); a close_notify or
        fatal alert ends the session in the card. Long data goes in pieces (docs/apdu.md)."""
        h = self._handle(handle)
        if len(data) <= self._whole_limit(PROTECT_WHOLE_MAX):
            try:
                return self._command(Ins.PROTECT_RECORD, content_type, h, data, ne=65536)
            except MessageTooLargeError:   # more than the card's APDU buffer holds: in pieces
                pass
        first, rest = data[:PROTECT_PIECE], data[PROTECT_PIECE:]
        record = self._command(Ins.PROTECT_RECORD, Piece.FIRST | content_type, h,
                               struct.pack(">H", len(data)) + first, ne=256)
        pieces = [rest[i:i + PROTECT_PIECE] for i in range(0, len(rest), PROTECT_PIECE)] or [b""]
        for i, piece in enumerate(pieces):
            kind = Piece.LAST if i == len(pieces) - 1 else Piece.NEXT
            record += self._command(Ins.PROTECT_RECORD, kind | content_type, h, piece, ne=256)
        return record

    def _whole_limit(self, short_max: int) -> int:
        """Most bytes a record command sends whole: any with extended APDUs (the card answers
        6A84 if its APDU buffer is smaller), else what one short APDU carries with its answer."""
        return 1 << 16 if self.session.extended else short_max

    def export_keys(self, handle: int | None = None) -> SessionKeys:
        """The session's record keys (tandem mode); the card forgets them and frees the handle."""
        keys = SessionKeys.parse(self._command(Ins.EXPORT_KEYS, 0, self._handle(handle)))
        self._conversations.pop(self._handle(handle), None)
        return keys

    def close_session(self, handle: int | None = None) -> None:
        """CLOSE SESSION: the card ends the session at once and its handle is free."""
        self._command(Ins.CLOSE_SESSION, 0, self._handle(handle), ne=0)
        self._conversations.pop(self._handle(handle), None)

    def counters(self, reset: bool = False) -> dict[str, int]:
        data = self._command(Ins.GET_COUNTERS, COUNTERS_RESET if reset else 0)
        values = struct.unpack(f">{len(data) // 2}H", data)
        return {counter.key: value for counter, value in zip(Counter, values)}


@contextlib.contextmanager
def open_cards(sim: int = 0, readers: list[str] | None = None, extended: bool | None = None,
               sim_layer: Callable[[Channel], Channel] | None = None) -> Iterator[list[SeTlsCard]]:
    """Opens `sim` simulated cards and the cards in `readers`, applet selected; closes them all.
    `sim_layer` is stacked on each simulated card's channel (host.card.sim_speed's pacing)."""
    channels: list[Channel] = []
    cards: list[SeTlsCard] = []
    try:
        opened = _open(sim, readers, extended, sim_layer, channels, cards)
        yield opened
    finally:
        for channel in channels:
            channel.close()


def _open(sim: int, readers: list[str] | None, extended: bool | None,
          sim_layer: Callable[[Channel], Channel] | None, channels: list[Channel],
          cards: list[SeTlsCard]) -> list[SeTlsCard]:
    """Opens the cards (each channel in `channels` as soon as it exists, for the caller to close);
    a failure to open one is a CardOpenError. What the caller does with the cards afterwards keeps
    its own errors (a refusal is not "cannot open")."""
    from host.iso7816.simulator import SimulatorChannel

    try:
        for i in range(sim):
            channel: Channel = SimulatorChannel()
            channels.append(channel)
            if sim_layer is not None:
                channel = sim_layer(channel)
            cards.append(SeTlsCard(CardSession(channel, extended=extended), name=f"sim{i}"))
        for wanted in readers or []:
            name = find_reader(wanted)
            channel = PcscChannel(name, extended=extended)
            channels.append(channel)
            cards.append(SeTlsCard(CardSession(channel, extended=extended), name=name))
    except (ChannelError, CardRefusedError) as exc:
        raise CardOpenError(str(exc)) from exc
    return cards
