"""TLS protocol numbers the host uses, in one place (RFC 5246, RFC 8422, RFC 5289, RFC 7251).

The applet's copy is `applet/src/org/setls/applet/Tls.java`; `tests/test_protocol_numbers.py`
fails when the two differ.
"""

from __future__ import annotations

import enum

TLS12 = 0x0303
RECORD_HEADER_SIZE = 5
DTLS12 = 0xFEFD                # RFC 6347 4.1: DTLS 1.2's version
DTLS10 = 0xFEFF                # HelloVerifyRequest.server_version (RFC 6347 4.2.1)
DTLS_RECORD_HEADER_SIZE = 13   # type, version, epoch, sequence_number<6>, length (RFC 6347 4.1)
DTLS_HS_HEADER_SIZE = 12       # + message_seq, fragment_offset<3>, fragment_length<3> (RFC 6347 4.2.2)
MAX_PLAINTEXT = 16384  # RFC 5246 6.2.1: TLSPlaintext.length <= 2^14
MAX_CIPHERTEXT = MAX_PLAINTEXT + 2048  # RFC 5246 6.2.3
HANDSHAKE_HEADER_SIZE = 4  # msg_type(1) length(3)
# The longest ClientHello body that can parse (RFC 5246 7.4.1.2): version, random, a 32-byte
# session_id, 2^16-2 bytes of suites, 255 compression methods, 2^16-1 bytes of extensions and
# their lengths. The applet's Tls.CLIENT_HELLO_MAX_HIGH/LOW.
CLIENT_HELLO_MAX = 2 + 32 + 1 + 32 + 2 + 0xFFFE + 1 + 255 + 2 + 0xFFFF
# The ClientKeyExchange of ECDHE (RFC 8422 5.7): ClientECDiffieHellmanPublic, point<1..2^8-1>.
CLIENT_KEY_EXCHANGE_MAX = 256


class ContentType(enum.IntEnum):
    """RFC 5246 6.2.1."""

    CHANGE_CIPHER_SPEC = 20
    ALERT = 21
    HANDSHAKE = 22
    APPLICATION_DATA = 23


class HandshakeType(enum.IntEnum):
    """RFC 5246 7.4."""

    CLIENT_HELLO = 1
    SERVER_HELLO = 2
    NEW_SESSION_TICKET = 4   # RFC 5077 3.3
    CERTIFICATE = 11
    SERVER_KEY_EXCHANGE = 12
    CERTIFICATE_REQUEST = 13
    SERVER_HELLO_DONE = 14
    CERTIFICATE_VERIFY = 15
    CLIENT_KEY_EXCHANGE = 16
    FINISHED = 20


class AlertLevel(enum.IntEnum):
    """RFC 5246 7.2."""

    WARNING = 1
    FATAL = 2


class AlertDescription(enum.IntEnum):
    """RFC 5246 7.2."""

    CLOSE_NOTIFY = 0
    UNEXPECTED_MESSAGE = 10
    BAD_RECORD_MAC = 20
    RECORD_OVERFLOW = 22
    HANDSHAKE_FAILURE = 40
    BAD_CERTIFICATE = 42
    UNSUPPORTED_CERTIFICATE = 43
    CERTIFICATE_REVOKED = 44
    CERTIFICATE_EXPIRED = 45
    CERTIFICATE_UNKNOWN = 46
    ILLEGAL_PARAMETER = 47
    UNKNOWN_CA = 48
    DECODE_ERROR = 50
    DECRYPT_ERROR = 51
    PROTOCOL_VERSION = 70
    INTERNAL_ERROR = 80
    USER_CANCELED = 90
    NO_RENEGOTIATION = 100


# Every alert a client may send (RFC 5246 7.2, RFC 8446 6 and the IANA TLS Alerts registry), by
# number: the names metrics and logs give alerts the card itself never sends.
ALERT_NAMES: dict[int, str] = {
    0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac", 21: "decryption_failed",
    22: "record_overflow", 30: "decompression_failure", 40: "handshake_failure", 41: "no_certificate",
    42: "bad_certificate", 43: "unsupported_certificate", 44: "certificate_revoked", 45: "certificate_expired",
    46: "certificate_unknown", 47: "illegal_parameter", 48: "unknown_ca", 49: "access_denied", 50: "decode_error",
    51: "decrypt_error", 60: "export_restriction", 70: "protocol_version", 71: "insufficient_security",
    80: "internal_error", 86: "inappropriate_fallback", 90: "user_canceled", 100: "no_renegotiation",
    109: "missing_extension", 110: "unsupported_extension", 112: "unrecognized_name",
    113: "bad_certificate_status_response", 115: "unknown_psk_identity", 116: "certificate_required",
    120: "no_application_protocol",
}


class ExtensionType(enum.IntEnum):
    """The ClientHello extensions the card acts on (RFC 6066, RFC 8422, RFC 5246, RFC 7627, RFC 5746),
    and padding."""

    SERVER_NAME = 0  # RFC 6066 3: its first host_name selects the identity that lists it (SNI names)
    SUPPORTED_GROUPS = 10
    EC_POINT_FORMATS = 11
    SIGNATURE_ALGORITHMS = 13
    PADDING = 21  # RFC 7685: the card skips it like any extension it does not know
    EXTENDED_MASTER_SECRET = 23
    RENEGOTIATION_INFO = 0xFF01
    SESSION_TICKET = 35  # RFC 5077 3.2: the card resumes its own tickets and issues new ones


class SignatureScheme(enum.IntEnum):
    """SignatureAndHashAlgorithm {hash, signature} (RFC 5246 7.4.1.4.1) with ECDSA: the card signs
    with P-256 and SHA-256, and SHA-384 or SHA-512 where it has them (the SELECT capabilities);
    never SHA-1 or SHA-224 (RFC 9155)."""

    ECDSA_SHA1 = 0x0203
    ECDSA_SHA224 = 0x0303
    ECDSA_SHA256 = 0x0403
    ECDSA_SHA384 = 0x0503
    ECDSA_SHA512 = 0x0603


class CipherSuite(enum.IntEnum):
    """The suites the card offers (RFC 5289, RFC 7251), under their IANA names."""

    TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 = 0xC02B
    TLS_ECDHE_ECDSA_WITH_AES_128_CCM = 0xC0AC
    TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 = 0xC0AE
    TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256 = 0xC023
    TLS_PSK_WITH_AES_128_CCM_8 = 0xC0A8               # RFC 6655, RFC 7925: with a PSK stored in the card
    TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256 = 0xC037    # RFC 5489

    @property
    def openssl_name(self) -> str:
        """The name OpenSSL's `-cipher` option and its logs use."""
        return _OPENSSL_NAMES[self]

    @classmethod
    def by_openssl_name(cls, name: str) -> CipherSuite:
        """The suite OpenSSL calls `name`; ValueError for any other name."""
        for suite, known in _OPENSSL_NAMES.items():
            if known == name:
                return suite
        raise ValueError(f"unknown cipher suite {name!r}; known: {', '.join(_OPENSSL_NAMES.values())}")


_OPENSSL_NAMES = {
    CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256: "ECDHE-ECDSA-AES128-GCM-SHA256",
    CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CCM: "ECDHE-ECDSA-AES128-CCM",
    CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8: "ECDHE-ECDSA-AES128-CCM8",
    CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256: "ECDHE-ECDSA-AES128-SHA256",
    CipherSuite.TLS_PSK_WITH_AES_128_CCM_8: "PSK-AES128-CCM8",
    CipherSuite.TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256: "ECDHE-PSK-AES128-CBC-SHA256",
}


def suite_name(value: int) -> str:
    """OpenSSL's name of a suite the card offers, else the number in hex (for logs)."""
    try:
        return CipherSuite(value).openssl_name
    except ValueError:
        return f"{value:#06x}"
