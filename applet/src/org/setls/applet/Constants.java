package org.setls.applet;

/**
 * The card's protocol numbers (docs/apdu.md), defined once: instruction and class bytes, the
 * SELECT response's tags and capability bits, the PUT DATA / GET DATA tags, the policy bits.
 * Status words are in {@link Sw}, operation counters in {@link OpCounters}, TLS numbers in
 * {@link Tls}. A host test reads these four files with a regular expression: keep every number a
 * plain literal (decimal or hexadecimal, with at most a cast), one declaration per line.
 */
interface Constants {
    // Instruction bytes.
    byte INS_VERIFY = 0x20;
    byte INS_CHANGE_PIN = 0x24;
    byte INS_SIGN_CSR = 0x2A;
    byte INS_UNBLOCK_PIN = 0x2C;
    byte INS_GENERATE_KEY = 0x46;
    byte INS_INITIALIZE = 0x50;
    byte INS_PROCESS_EAP = (byte) 0x80;
    byte INS_OPERATOR_AUTHENTICATE = (byte) 0x82;
    byte INS_UNPROTECT_RECORD = (byte) 0x84;
    byte INS_PROTECT_RECORD = (byte) 0x86;
    byte INS_EXPORT_KEYS = (byte) 0x88;
    byte INS_OPERATOR_CHALLENGE = (byte) 0x8A;
    byte INS_CLOSE_SESSION = (byte) 0x8C;
    byte INS_GET_RESPONSE = (byte) 0xC0;
    byte INS_GET_DATA = (byte) 0xCA;
    byte INS_PUT_DATA = (byte) 0xDA;
    byte INS_GET_COUNTERS = (byte) 0xE2;
    byte INS_WIPE = (byte) 0xE4;
    /** The host's clock (issue 12): the time client certificates' validity is checked against. */
    byte INS_SET_TIME = (byte) 0x8E;

    // Class bytes; CLA_CHAINING is ISO 7816-4 command chaining, a bit of either class.
    byte CLA_ISO = 0x00;
    byte CLA_OPEN_EAP = (byte) 0xA0;
    byte CLA_CHAINING = 0x10;

    // The applet's version, in the SELECT response.
    byte VERSION_MAJOR = 2;
    byte VERSION_MINOR = 0;

    // SELECT response tags.
    byte TAG_VERSION = (byte) 0x80;
    byte TAG_CAPABILITIES = (byte) 0x81;
    byte TAG_MESSAGE_CAPACITY = (byte) 0x82;
    byte TAG_DEFAULT_PACKET = (byte) 0x83;
    byte TAG_IDENTITY_SLOTS = (byte) 0x84;
    /** Session slots: handles 0 to n - 1 (Sessions.SESSIONS). */
    byte TAG_SESSION_SLOTS = (byte) 0x85;
    /** Handshake slots: handshakes in progress at once (Sessions.HANDSHAKES). */
    byte TAG_HANDSHAKE_SLOTS = (byte) 0x86;
    /** The ticket key's id (SessionCache.KEY_ID_SIZE bytes): names the card in its RFC 5077 tickets. */
    byte TAG_TICKET_KEY_ID = (byte) 0x87;
    /** More capability bits (CAP2_*): the first byte is full. */
    byte TAG_CAPABILITIES_2 = (byte) 0x88;
    /** Session ID cache entries (SessionCache.ENTRIES). */
    byte TAG_SESSION_CACHE = (byte) 0x89;
    // Capability bits (TAG_CAPABILITIES).
    byte CAP_EXTENDED_LENGTH = 0x01;
    byte CAP_COMMAND_CHAINING = 0x02;
    byte CAP_GET_RESPONSE = 0x04;
    /** ServerKeyExchange can be signed with ECDSA over SHA-384 / SHA-512 (probed at install). */
    byte CAP_ECDSA_SHA384 = 0x08;
    byte CAP_ECDSA_SHA512 = 0x10;
    /** The card lifecycle: operator session, staged keys, PSK store. */
    byte CAP_OPERATOR = 0x20;
    byte CAP_STAGED_KEYS = 0x40;
    byte CAP_PSK_STORE = (byte) 0x80;
    /**
     * TAG_CAPABILITIES_2: the card verifies ECDSA over a hash it holds (Signature ALG_NULL with
     * SIG_CIPHER_ECDSA, probed at install): CertificateVerify needs no transcript copy.
     */
    byte CAP2_ECDSA_PRECOMPUTED_HASH = 0x01;

    // Install options: the one byte of the install parameters (GlobalPlatform INSTALL [for install],
    // tag C9; docs/apdu.md "Install parameters"). Absent or 00: ECDSA-SHA256 only, the default that
    // fits the J3R180's RAM (docs/resources.md).
    /** Allocate the ECDSA-SHA384 signer (224 bytes of RAM on a J3R180) where the card has it. */
    byte INSTALL_ECDSA_SHA384 = 0x01;
    /** Allocate the ECDSA-SHA512 signer (224 bytes of RAM on a J3R180) where the card has it. */
    byte INSTALL_ECDSA_SHA512 = 0x02;

    // PUT DATA / GET DATA tags (P1).
    byte DATA_NAME = 0x01;
    byte DATA_CHAIN_FIRST = 0x02;
    byte DATA_CHAIN_NEXT = 0x03;
    byte DATA_PIN = 0x04;
    byte DATA_POLICY = 0x05;
    byte DATA_SUITES = 0x06;
    byte DATA_PUBLIC_KEY = 0x07;
    byte DATA_STATUS = 0x08;
    byte DATA_CHAIN = 0x09;
    byte DATA_CA_FIRST = 0x0A;
    byte DATA_CA_NEXT = 0x0B;
    byte DATA_SNI = 0x0C;
    byte DATA_COMMIT = 0x0D;
    byte DATA_PSK = 0x0E;
    byte DATA_PSK_DELETE = 0x0F;
    byte DATA_PUK = 0x10;
    byte DATA_CARD_STATUS = 0x11;
    byte DATA_PSK_IDS = 0x12;
    byte DATA_CAS = 0x13;
    byte DATA_STAGED_PUBLIC_KEY = 0x14;
    byte DATA_OPERATOR_KEY = 0x15;
    /** The revoked serial numbers (card-wide, P2 00): length || serial, repeated. */
    byte DATA_REVOKED = 0x16;
    /** GET DATA, P2 = a session handle: the commonName of the client that session authenticated. */
    byte DATA_CLIENT_SUBJECT = 0x17;

    /** Policy bits (DATA_POLICY): the session keys may be exported to the host after the handshake. */
    byte POLICY_EXPORT_KEYS = 0x01;
    /** Client authentication: a certificate is asked for, and may be absent (with REQUIRED: must be there). */
    byte POLICY_CLIENT_AUTH_OPTIONAL = 0x02;
    byte POLICY_CLIENT_AUTH_REQUIRED = 0x04;
    /** Client certificates' dates must be checked: without the host's time (SET TIME), refuse. */
    byte POLICY_CLIENT_DATES_REQUIRED = 0x08;

    /** DATA_COMMIT data: what the shadow area holds. */
    byte COMMIT_CHAIN = 0x01;
    byte COMMIT_CAS = 0x02;

    /** GENERATE KEY and SIGN CSR P1: the serving key, or the staged one beside it. */
    byte KEY_SERVING = 0x00;
    byte KEY_STAGED = 0x01;

    /** Identity slots of the card (P2 of the personalisation commands). */
    byte MAX_IDENTITIES = 2;

    /** GET COUNTERS P1: reset the counters after reading them. */
    byte COUNTERS_RESET = 0x01;

    // UNPROTECT RECORD and PROTECT RECORD, P1's two high bits: a record whole or in pieces.
    byte PIECE_MASK = (byte) 0xC0;
    byte PIECE_WHOLE = 0x00;
    byte PIECE_FIRST = 0x40;
    byte PIECE_NEXT = (byte) 0x80;
    byte PIECE_LAST = (byte) 0xC0;

    /** UNPROTECT RECORD answer's first byte when the record was rejected (no TLS content type is 0). */
    byte REJECTED = 0x00;
    /** UNPROTECT RECORD's whole answer for a DTLS record dropped (RFC 6347 4.1.2.6-7: a replay, another epoch, a bad MAC). */
    byte DROPPED = (byte) 0xFF;

    /**
     * PROCESS EAP, flight 3: the content type of the transcript copy the host puts before the
     * client's CertificateVerify (ClientHello .. ClientKeyExchange, as sent and received), for a
     * card that lacks CAP2_ECDSA_PRECOMPUTED_HASH or when the host chooses to (no TLS type is F0).
     */
    byte CONTENT_TRANSCRIPT_COPY = (byte) 0xF0;
}
