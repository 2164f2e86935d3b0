package org.setls.applet;

/** TLS 1.2 protocol numbers (RFC 5246, RFC 8422, RFC 7627, RFC 5746, RFC 6655, RFC 7251). */
interface Tls {
    // RFC 5246 6.2.1: ContentType.
    byte CONTENT_CHANGE_CIPHER_SPEC = 20;
    byte CONTENT_ALERT = 21;
    byte CONTENT_HANDSHAKE = 22;
    byte CONTENT_APPLICATION_DATA = 23;

    short VERSION_TLS12 = 0x0303;
    byte VERSION_MAJOR = 3;
    byte VERSION_MINOR_TLS12 = 3;
    short RECORD_HEADER_SIZE = 5;
    // RFC 6347 4.1 and 4.2.2: DTLS 1.2's version (the one's complement of 1.2), record header
    // (type, version, epoch, 48-bit sequence_number, length) and handshake header (msg_type,
    // length, message_seq, fragment_offset, fragment_length).
    short VERSION_DTLS12 = (short) 0xFEFD;
    byte VERSION_MAJOR_DTLS = (byte) 0xFE;
    short DTLS_RECORD_HEADER_SIZE = 13;
    short DTLS_HS_HEADER_SIZE = 12;
    short MAX_PLAINTEXT = 16384;
    /** RFC 5246 6.2.3: TLSCiphertext.length may exceed the plaintext limit by at most 2048. */
    short MAX_CIPHERTEXT = MAX_PLAINTEXT + 2048;
    /**
     * The longest ClientHello body that can parse: version, random, a 32-byte session_id, 2^16-2
     * bytes of suites, 255 compression methods and 2^16-1 bytes of extensions, with their lengths:
     * 131396 = 0x020144, beyond a short; high byte and low 16 bits (unsigned).
     */
    byte CLIENT_HELLO_MAX_HIGH = 2;
    short CLIENT_HELLO_MAX_LOW = 0x0144;

    // RFC 5246 7.4: HandshakeType.
    byte HS_CLIENT_HELLO = 1;
    byte HS_SERVER_HELLO = 2;
    byte HS_NEW_SESSION_TICKET = 4;           // RFC 5077 3.3
    byte HS_CERTIFICATE = 11;
    byte HS_SERVER_KEY_EXCHANGE = 12;
    byte HS_SERVER_HELLO_DONE = 14;
    byte HS_CLIENT_KEY_EXCHANGE = 16;
    byte HS_FINISHED = 20;
    byte HS_CERTIFICATE_REQUEST = 13;
    byte HS_CERTIFICATE_VERIFY = 15;
    /** ClientCertificateType ecdsa_sign (RFC 8422 5.5). */
    byte CERT_TYPE_ECDSA_SIGN = 64;
    short HS_HEADER_SIZE = 4;

    // RFC 5246 7.2: AlertLevel and AlertDescription.
    byte ALERT_WARNING = 1;
    byte ALERT_FATAL = 2;
    byte ALERT_CLOSE_NOTIFY = 0;
    byte ALERT_UNEXPECTED_MESSAGE = 10;
    byte ALERT_BAD_RECORD_MAC = 20;
    byte ALERT_RECORD_OVERFLOW = 22;
    byte ALERT_HANDSHAKE_FAILURE = 40;
    byte ALERT_ILLEGAL_PARAMETER = 47;
    byte ALERT_DECODE_ERROR = 50;
    byte ALERT_DECRYPT_ERROR = 51;
    byte ALERT_PROTOCOL_VERSION = 70;
    byte ALERT_INTERNAL_ERROR = 80;
    byte ALERT_NO_RENEGOTIATION = 100;
    byte ALERT_BAD_CERTIFICATE = 42;
    byte ALERT_UNSUPPORTED_CERTIFICATE = 43;
    byte ALERT_CERTIFICATE_REVOKED = 44;
    byte ALERT_CERTIFICATE_EXPIRED = 45;
    byte ALERT_CERTIFICATE_UNKNOWN = 46;
    byte ALERT_UNKNOWN_CA = 48;

    // Cipher suites (RFC 5289, RFC 7251).
    short TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 = (short) 0xC02B;
    short TLS_ECDHE_ECDSA_WITH_AES_128_CCM = (short) 0xC0AC;
    short TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 = (short) 0xC0AE;
    short TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256 = (short) 0xC023;
    short TLS_PSK_WITH_AES_128_CCM_8 = (short) 0xC0A8;              // RFC 6655, RFC 7925
    short TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256 = (short) 0xC037;   // RFC 5489
    /** RFC 5746 3.3: the signalling cipher suite value for secure renegotiation. */
    short TLS_EMPTY_RENEGOTIATION_INFO_SCSV = 0x00FF;

    // Extensions.
    short EXT_SERVER_NAME = 0;                // RFC 6066 3
    short EXT_SUPPORTED_GROUPS = 10;          // RFC 8422 5.1.1
    short EXT_EC_POINT_FORMATS = 11;          // RFC 8422 5.1.2
    short EXT_SIGNATURE_ALGORITHMS = 13;      // RFC 5246 7.4.1.4.1
    short EXT_EXTENDED_MASTER_SECRET = 23;    // RFC 7627
    short EXT_RENEGOTIATION_INFO = (short) 0xFF01; // RFC 5746
    short EXT_SESSION_TICKET = 35;            // RFC 5077 3.2
    /** server_name's NameType host_name (RFC 6066 3). */
    byte SERVER_NAME_HOST = 0;

    short GROUP_SECP256R1 = 23;
    byte POINT_FORMAT_UNCOMPRESSED = 0;
    byte CURVE_TYPE_NAMED = 3;
    // SignatureAndHashAlgorithm {hash, ecdsa(3)} (RFC 5246 7.4.1.4.1; RFC 8422 5.1.3). The card's key is
    // on P-256: with SHA-384 or SHA-512 the digest is truncated to 256 bits (FIPS 186-4 6.4), as TLS 1.2
    // allows. SHA-1 (0x0203) and SHA-224 (0x0303) are never used to sign (RFC 9155).
    short SIG_ECDSA_SHA256 = 0x0403;
    short SIG_ECDSA_SHA384 = 0x0503;
    short SIG_ECDSA_SHA512 = 0x0603;
    byte COMPRESSION_NULL = 0;

    short RANDOM_SIZE = 32;
    short MASTER_SECRET_SIZE = 48;
    short VERIFY_DATA_SIZE = 12;
}
