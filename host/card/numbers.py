"""The applet's protocol numbers, in one place: CLA and INS codes, SELECT tags and capability
bits, PUT/GET DATA tags, policy bits, the applet's own status words, operation counters, and the
cipher suites it offers (docs/apdu.md).

The applet's copies are `Constants.java`, `Sw.java`, `OpCounters.java` and `Tls.java` in
`applet/src/org/setls/applet/`; `tests/test_protocol_numbers.py` reads them and fails when the
two sides differ. ISO 7816-4 numbers (SELECT, GET RESPONSE, the standard status words) are
`host.iso7816.apdu`'s; TLS numbers are `host.tls.numbers`'s.
"""

from __future__ import annotations

import enum

from host.iso7816.apdu import CLA_CHAINING, CLA_ISO, INS_GET_RESPONSE, INS_SELECT
from host.tls.numbers import CipherSuite

__all__ = [
    "COUNTERS_RESET",
    "PSK_CAPACITY",
    "MAX_IDENTITIES",
    "Piece",
    "UNPROTECT_REJECTED",
    "UNPROTECT_DROPPED",
    "TRANSCRIPT_COPY_CONTENT_TYPE",
    "AppletStatus",
    "Capability",
    "Capability2",
    "InstallOption",
    "Commit",
    "KeyChoice",
    "CipherSuite",
    "Cla",
    "Counter",
    "DataTag",
    "Ins",
    "Policy",
    "SelectTag",
]


MAX_IDENTITIES = 2  # identity slots (P2 of the personalisation commands)
COUNTERS_RESET = 0x01  # GET COUNTERS P1: reset the counters after reading them
UNPROTECT_REJECTED = 0x00  # UNPROTECT RECORD's first answer byte when the record was rejected
UNPROTECT_DROPPED = 0xFF   # UNPROTECT RECORD's whole answer when a DTLS record was dropped (replay, epoch, MAC)
PSK_CAPACITY = 8  # PSK entries of the card (PskStore.COUNT)
# PROCESS EAP, flight 3: the content type of the transcript copy put before the CertificateVerify
# (ClientHello .. ClientKeyExchange) for a card without Capability2.ECDSA_PRECOMPUTED_HASH.
TRANSCRIPT_COPY_CONTENT_TYPE = 0xF0


class Piece(enum.IntEnum):
    """P1's two high bits of UNPROTECT RECORD and PROTECT RECORD: a record whole or in pieces
    (docs/apdu.md); PROTECT RECORD's content type is in the low bits."""

    MASK = 0xC0
    WHOLE = 0x00
    FIRST = 0x40
    NEXT = 0x80
    LAST = 0xC0


class Cla(enum.IntEnum):
    """Class bytes (ISO 7816-4 5.4.1)."""

    ISO = CLA_ISO
    CHAINING = CLA_CHAINING
    OPEN_EAP = 0xA0  # proprietary class of the applet's commands (the IETF TLS-SE drafts' A0)


class Ins(enum.IntEnum):
    """Instruction bytes the applet answers (docs/apdu.md)."""

    SELECT = INS_SELECT
    VERIFY = 0x20
    CHANGE_PIN = 0x24
    SIGN_CSR = 0x2A
    UNBLOCK_PIN = 0x2C
    GENERATE_KEY = 0x46
    INITIALIZE = 0x50
    PROCESS_EAP = 0x80
    OPERATOR_AUTHENTICATE = 0x82
    UNPROTECT_RECORD = 0x84
    PROTECT_RECORD = 0x86
    EXPORT_KEYS = 0x88
    OPERATOR_CHALLENGE = 0x8A
    CLOSE_SESSION = 0x8C
    GET_RESPONSE = INS_GET_RESPONSE
    GET_DATA = 0xCA
    PUT_DATA = 0xDA
    GET_COUNTERS = 0xE2
    WIPE = 0xE4
    SET_TIME = 0x8E  # the host's clock, for client certificates' validity

    @property
    def title(self) -> str:
        """The command's name as docs/apdu.md and the logs write it: "PROTECT RECORD"."""
        return self.name.replace("_", " ")


class SelectTag(enum.IntEnum):
    """Tags of the SELECT response's TLVs (1-byte tag, 1-byte length)."""

    VERSION = 0x80
    CAPABILITIES = 0x81
    MESSAGE_CAPACITY = 0x82
    DEFAULT_PACKET = 0x83
    IDENTITY_SLOTS = 0x84
    SESSION_SLOTS = 0x85     # sessions the card holds at once: handles 0 to n - 1
    HANDSHAKE_SLOTS = 0x86   # handshakes in progress at once
    TICKET_KEY_ID = 0x87     # the id of the key that seals the card's session tickets (names the card)
    CAPABILITIES_2 = 0x88    # more capability bits (Capability2)
    SESSION_CACHE = 0x89     # session ID cache entries


class Capability(enum.IntFlag):
    """Bits of the SELECT response's CAPABILITIES byte."""

    EXTENDED_LENGTH = 0x01
    COMMAND_CHAINING = 0x02
    GET_RESPONSE = 0x04
    ECDSA_SHA384 = 0x08  # the card can sign the ServerKeyExchange with ECDSA over SHA-384
    ECDSA_SHA512 = 0x10  # ... and over SHA-512 (both probed by the applet at install)
    OPERATOR = 0x20  # operator session, MACed operator commands
    STAGED_KEYS = 0x40  # GENERATE KEY beside the serving key, committed with its chain
    PSK_STORE = 0x80  # pre-shared keys stored in the card


class Capability2(enum.IntFlag):
    """Bits of the SELECT response's CAPABILITIES_2 byte."""

    ECDSA_PRECOMPUTED_HASH = 0x01  # ECDSA verify over a hash (ALG_NULL): no transcript copy needed


class InstallOption(enum.IntFlag):
    """Bits of the install parameters' one byte (GlobalPlatform INSTALL [for install], tag C9;
    docs/apdu.md "Install parameters"). None set (or no parameters): the card signs with
    ECDSA-SHA256 only, the default that fits a J3R180's RAM (docs/resources.md)."""

    ECDSA_SHA384 = 0x01  # allocate the ECDSA-SHA384 signer (224 bytes of RAM on a J3R180)
    ECDSA_SHA512 = 0x02  # allocate the ECDSA-SHA512 signer (224 bytes of RAM on a J3R180)


class DataTag(enum.IntEnum):
    """P1 of PUT DATA / GET DATA: which item of an identity (P2 = the identity's slot)."""

    NAME = 0x01
    CHAIN_FIRST = 0x02
    CHAIN_NEXT = 0x03
    PIN = 0x04
    POLICY = 0x05
    SUITES = 0x06
    PUBLIC_KEY = 0x07
    STATUS = 0x08
    CHAIN = 0x09
    CA_FIRST = 0x0A
    CA_NEXT = 0x0B
    SNI = 0x0C
    COMMIT = 0x0D
    PSK = 0x0E
    PSK_DELETE = 0x0F
    PUK = 0x10
    CARD_STATUS = 0x11
    PSK_IDS = 0x12
    CAS = 0x13
    STAGED_PUBLIC_KEY = 0x14
    OPERATOR_KEY = 0x15
    REVOKED = 0x16  # the revoked client certificate serials (card-wide)
    CLIENT_SUBJECT = 0x17  # GET DATA, P2 = a session handle: the authenticated client's commonName


class Policy(enum.IntFlag):
    """Bits of an identity's policy byte."""

    EXPORT_KEYS = 0x01  # the host may read the session keys after the handshake (tandem mode)
    CLIENT_AUTH_OPTIONAL = 0x02  # a client certificate is asked for
    CLIENT_AUTH_REQUIRED = 0x04  # ... and must be there
    CLIENT_DATES_REQUIRED = 0x08  # client certificates' dates checked: no host time, no handshake


class Commit(enum.IntEnum):
    """PUT DATA COMMIT's first byte: which shadow area becomes current."""

    CHAIN = 0x01
    CAS = 0x02


class KeyChoice(enum.IntEnum):
    """P1 of GENERATE KEY and SIGN CSR: the serving key, or the staged one beside it."""

    SERVING = 0x00
    STAGED = 0x01


class AppletStatus(enum.IntEnum):
    """The applet's own status words, in its documented 6F01..6F0F range."""

    EAP_UNEXPECTED = 0x6F01  # EAP packet refused: wrong code, type or identifier for the state
    CRYPTO_FAILURE = 0x6F02  # a CryptoException from the platform (reason not leaked)
    INTERNAL_ERROR = 0x6F03  # an unexpected exception in the applet: the session it named was ended
    OPERATOR_REQUIRED = 0x6F04  # an operator command without an operator session
    NOT_INITIALISED = 0x6F05  # the card is in its transport state: INITIALIZE first
    ALREADY_INITIALISED = 0x6F06  # INITIALIZE a second time
    NO_HANDSHAKE_SLOT = 0x6F07  # every handshake slot is taken by a handshake in progress

    @property
    def description(self) -> str:
        return _APPLET_STATUS_DESCRIPTIONS[self]


_APPLET_STATUS_DESCRIPTIONS = {
    AppletStatus.EAP_UNEXPECTED: "EAP packet unexpected in this state: code, type or identifier",
    AppletStatus.CRYPTO_FAILURE: "crypto failure in the card",
    AppletStatus.INTERNAL_ERROR: "internal error in the card",
    AppletStatus.OPERATOR_REQUIRED: "operator command without an operator session",
    AppletStatus.NOT_INITIALISED: "the card is not initialised",
    AppletStatus.ALREADY_INITIALISED: "the card is initialised already",
    AppletStatus.NO_HANDSHAKE_SLOT: "every handshake slot of the card is taken",
}


class Counter(enum.IntEnum):
    """The applet's operation counters, in the order GET COUNTERS returns them (OpCounters.java)."""

    ECDSA_SIGN = 0
    ECDSA_VERIFY = 1  # the operator's signatures of card challenges
    ECDH = 2
    EC_KEYGEN = 3
    SHA256_BLOCKS = 4
    AES_BLOCKS = 5
    GHASH_BLOCKS = 6
    RANDOM_BYTES = 7
    HMAC = 8
    APDUS = 9
    EEPROM_BYTES = 10  # bytes written to persistent memory (EEPROM / flash)

    @property
    def key(self) -> str:
        """The counter's name in the benchmark's JSON: "sha256_blocks"."""
        return self.name.lower()
