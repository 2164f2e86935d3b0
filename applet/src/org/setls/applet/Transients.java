package org.setls.applet;

import javacard.framework.JCSystem;
import javacard.framework.Util;

/**
 * The applet's RAM: one arena of four transient arrays, allocated once at install, with a named
 * region for every use. The only {@code makeTransient*} calls of the applet are here; a class gets
 * its working memory as one of these arrays and the offset of its region (docs/resources.md has
 * the budget and the map, {@code scripts/card_resources.py} reads it from this file).
 *
 * Each array is declared as a chain of regions: a region {@code X} starts where the one before it
 * ends and is {@code X_SIZE} elements long; the chain ends with the array's size. Two kinds:
 * <ul>
 * <li><b>Session state</b> lives across APDUs (an EAP conversation, a TLS handshake between its
 *     flights or inside a flight the host hands over in parts, the record keys after it, a chained
 *     command, a pending response, the operator's session keys and counter): each use has
 *     its own region, shared with nothing. The TLS session's regions and its handshake's are
 *     copied to and from per-session and per-handshake slots by Sessions (SESSION_* and
 *     HANDSHAKE_*); the rest is card-wide (the EAP packet being received, a chained command, a
 *     pending response, the one operator session).</li>
 * <li><b>Scratch</b> lives within the processing of one APDU and is dead when the APDU's answer
 *     is sent: nobody may read what a previous APDU left there. Uses that never run at the same
 *     time share bytes (an overlay: several regions at the same offset). The overlays, and why
 *     their uses never overlap in time:
 *     <ul>
 *     <li>{@link #OVERLAY} holds either the key derivation's HMAC and PRF state or the record's
 *         AEAD state. The PRF finishes before a record is protected or unprotected, the AEAD suites
 *         use no HMAC for records, and the CBC suite (HMAC records) uses no AEAD state.</li>
 *     <li>{@link #HANDSHAKE_KEYS} holds the ClientKeyExchange's secrets (or flight 1's key
 *         generation scratch) or an operator command's work
 *         ({@link #OPERATOR_WORK}): an APDU is either a PROCESS EAP PACKET or an operator command.</li>
 *     <li>{@link #SHORT_SCRATCH} holds either the curve check of the client's ECDH point or the
 *         GHASH table: the point is checked in flight 3 before any record key exists.</li>
 *     </ul>
 *     The record layer processes a whole record in one APDU (CommandInput collects a chained
 *     record first), so the AEAD state is scratch too.</li>
 * </ul>
 * TransientsTest fills everything a phase must not touch with a pattern and checks it is intact.
 *
 * Clearing: {@code CLEAR_ON_DESELECT} for all but the counters. Everything here is either a
 * secret of the session or state of a conversation that a deselect ends (SELECT resets the EAP
 * conversation and the TLS session): a deselect, a reset or a power loss forgets it, and no other
 * applet selected in between can find it. The operation counters are {@code CLEAR_ON_RESET}: they
 * hold no secret and must survive the reselection between a handshake and the benchmark's read
 * (GET COUNTERS). The record keys themselves are transient AES key objects
 * ({@code TYPE_AES_TRANSIENT_DESELECT}, RecordCipher): the platform's RAM, not this arena's.
 */
final class Transients {
    // ---- bytes: CLEAR_ON_DESELECT ------------------------------------------------------------
    // Session state.
    /** EapTls: the EAP identity being received (card-wide: one EAP packet is received at a time). */
    static final short EAP_NAME = 0;
    static final short EAP_NAME_SIZE = EapTls.IDENTITY_MAX;                      // 32
    /**
     * OperatorSession: the challenge's nonce and the session's MAC key (card-wide: the card has one
     * operator session, apart from the TLS sessions; Sessions never swaps it).
     */
    static final short OPERATOR_SECRETS = (short) (EAP_NAME + EAP_NAME_SIZE);
    static final short OPERATOR_SECRETS_SIZE = OperatorSession.SECRETS_SIZE;    // 48
    /**
     * The active session's bytes: Sessions copies them to the session's slot (SESSION_SLOTS) and
     * back when a command names another session, so the code reads them at fixed offsets.
     */
    static final short SESSION_BYTES = (short) (OPERATOR_SECRETS + OPERATOR_SECRETS_SIZE);
    /** RecordCipher: the AES keys, and the MAC keys (CBC) or implicit IVs (AEAD) of the session. */
    static final short RECORD_KEYS = SESSION_BYTES;
    static final short RECORD_KEYS_SIZE = RecordCipher.SECRETS_SIZE;             // 96
    /** RecordCipher: the read and write sequence numbers. */
    static final short RECORD_SEQ = (short) (RECORD_KEYS + RECORD_KEYS_SIZE);
    static final short RECORD_SEQ_SIZE = RecordCipher.SEQ_SIZE;                  // 16
    /** DtlsFraming: the anti-replay window of received records (RFC 6347 4.1.2.6), card mode. */
    static final short DTLS_WINDOW = (short) (RECORD_SEQ + RECORD_SEQ_SIZE);
    static final short DTLS_WINDOW_SIZE = DtlsFraming.WINDOW_SIZE;              // 8
    static final short SESSION_BYTES_SIZE = (short) (RECORD_KEYS_SIZE + RECORD_SEQ_SIZE
            + DTLS_WINDOW_SIZE);                                                // 120
    /**
     * The active handshake's bytes: Sessions copies them to the handshake's slot (HANDSHAKE_SLOTS)
     * and back when a command names a session whose handshake is in another slot.
     */
    static final short HANDSHAKE_BYTES = (short) (SESSION_BYTES + SESSION_BYTES_SIZE);
    /** TlsServer: client_random || server_random, from flight 1 to flight 3. */
    static final short TLS_RANDOMS = HANDSHAKE_BYTES;
    static final short TLS_RANDOMS_SIZE = TlsServer.RANDOMS_SIZE;                // 64
    /** ClientHelloParser: a field of the ClientHello split between records (or APDUs). */
    static final short HELLO_FIELD = (short) (TLS_RANDOMS + TLS_RANDOMS_SIZE);
    static final short HELLO_FIELD_SIZE = ClientHelloParser.FIELD_SIZE;          // 4
    /**
     * TlsServer, from the ClientKeyExchange to the client's Finished (which may come in several
     * records, over several APDUs): both verify_data, computed when the keys are, and the
     * client's Finished as it arrives.
     */
    static final short TLS_FINISHED = (short) (HELLO_FIELD + HELLO_FIELD_SIZE);
    static final short TLS_FINISHED_SIZE = TlsServer.FINISHED_SIZE;              // 40
    /** TlsServer: the ephemeral ECDH private scalar, from flight 1 to flight 3 (never in EEPROM). */
    static final short EPHEMERAL = (short) (TLS_FINISHED + TLS_FINISHED_SIZE);
    static final short EPHEMERAL_SIZE = P256.COORDINATE_SIZE;                    // 32
    static final short HANDSHAKE_BYTES_SIZE = (short) (TLS_RANDOMS_SIZE + HELLO_FIELD_SIZE + TLS_FINISHED_SIZE
            + EPHEMERAL_SIZE);                                                   // 140
    /** Sessions: the bytes of every session slot, SESSION_BYTES_SIZE each. */
    static final short SESSION_SLOTS = (short) (HANDSHAKE_BYTES + HANDSHAKE_BYTES_SIZE);
    static final short SESSION_SLOTS_SIZE = (short) (Sessions.SESSIONS * SESSION_BYTES_SIZE);
    /** Sessions: the bytes of every handshake slot, HANDSHAKE_BYTES_SIZE each. */
    static final short HANDSHAKE_SLOTS = (short) (SESSION_SLOTS + SESSION_SLOTS_SIZE);
    static final short HANDSHAKE_SLOTS_SIZE = (short) (Sessions.HANDSHAKES * HANDSHAKE_BYTES_SIZE);
    /**
     * ClientAuth: the host's clock (SET TIME), card-wide: client certificates' validity is checked
     * against it; a deselect forgets it.
     */
    static final short CLOCK = (short) (HANDSHAKE_SLOTS + HANDSHAKE_SLOTS_SIZE);
    static final short CLOCK_SIZE = ClientAuth.CLOCK_SIZE;                       // 8
    // Scratch.
    /**
     * TlsServer, the ClientKeyExchange: master secret, session hash, key block (premaster secret
     * first, the expected Finished last). Flight 1 uses the key block as the ephemeral key
     * generation's scratch. All of it is wiped before the answer leaves: the Finished need only
     * TLS_FINISHED.
     */
    static final short HANDSHAKE_KEYS = (short) (CLOCK + CLOCK_SIZE);
    static final short HANDSHAKE_KEYS_SIZE = TlsServer.KEYS_SIZE;                // 210
    //   operator commands, at the same offset (they never run inside a handshake's APDU, and the
    //   ephemeral scalar that outlives flight 1 is in the handshake's EPHEMERAL, not here); the
    //   larger use sets the size (TransientsTest: OPERATOR_WORK_SIZE <= HANDSHAKE_KEYS_SIZE)
    /** OperatorSession: a point, a decrypted secret, Z, HKDF's PRK, a MAC being checked. */
    static final short OPERATOR_WORK = HANDSHAKE_KEYS;
    static final short OPERATOR_WORK_SIZE = OperatorSession.WORK_SIZE;          // 160
    //   ClientAuth, the client's Certificate and CertificateVerify: at the end of HANDSHAKE_KEYS,
    //   in the key block, which is free before the keys are derived and after they are installed
    //   (the master secret and the session hash before it stay intact until the Finished values)
    /** ClientAuth: a certificate's time, a SHA-256 (an issuer name's, the transcript copy's). */
    static final short CERT_WORK_SIZE = ClientAuth.WORK_SIZE;                   // 48
    /**
     * ClientAuth: the session hash (ClientHello .. ClientKeyExchange) the client's CertificateVerify
     * signs: TlsServer's own, where the ClientKeyExchange left it in HANDSHAKE_KEYS. Scratch, not
     * handshake state: the CertificateVerify comes in the ClientKeyExchange's message (one APDU).
     */
    static final short CLIENT_AUTH_HASH = (short) (HANDSHAKE_KEYS + Tls.MASTER_SECRET_SIZE);
    static final short CLIENT_AUTH_HASH_SIZE = ClientAuth.HASH_SIZE;             // 32
    static final short CERT_WORK = (short) (HANDSHAKE_KEYS + HANDSHAKE_KEYS_SIZE - CERT_WORK_SIZE);
    /**
     * RecordCipher: the AAD or MAC header, the nonce, the MAC of a received record or its tag,
     * the last CBC block. With OVERLAY's AEAD or HMAC state and SHORT_SCRATCH's GHASH it lives
     * across the APDUs of one record in pieces: nothing else runs between them (any other
     * command abandons the record first).
     */
    static final short RECORD_SCRATCH = (short) (HANDSHAKE_KEYS + HANDSHAKE_KEYS_SIZE);
    static final short RECORD_SCRATCH_SIZE = RecordCipher.SCRATCH_SIZE;          // 76
    /** Key derivation (HMAC_PAD, PRF_A) or record AEAD (GCM_STATE, CCM_STATE): never at once. */
    static final short OVERLAY = (short) (RECORD_SCRATCH + RECORD_SCRATCH_SIZE);
    //   key derivation, and the CBC suite's record MAC
    /** HmacSha256: K0 and the inner hash. */
    static final short HMAC_PAD = OVERLAY;
    static final short HMAC_PAD_SIZE = HmacSha256.PAD_SIZE;                      // 96
    /** TlsPrf: A(i). */
    static final short PRF_A = (short) (HMAC_PAD + HMAC_PAD_SIZE);
    static final short PRF_A_SIZE = TlsPrf.A_SIZE;                               // 32
    //   record AEAD, at the same offset
    /** AesGcm: J0, the counter block, the GHASH accumulator, a keystream block. */
    static final short GCM_STATE = OVERLAY;
    static final short GCM_STATE_SIZE = AesGcm.STATE_SIZE;                       // 64
    /** AesCcm: the CBC-MAC value, the counter block, S0, a keystream block. */
    static final short CCM_STATE = (short) (GCM_STATE + GCM_STATE_SIZE);
    static final short CCM_STATE_SIZE = AesCcm.STATE_SIZE;                       // 64
    /** The larger overlay (HMAC_PAD + PRF_A = GCM_STATE + CCM_STATE = 128 bytes). */
    static final short OVERLAY_SIZE = (short) (HMAC_PAD_SIZE + PRF_A_SIZE);
    static final short BYTES_SIZE = (short) (OVERLAY + OVERLAY_SIZE);

    // ---- shorts: CLEAR_ON_DESELECT -----------------------------------------------------------
    // Session state.
    /** CommandInput: the command being chained and the bytes collected so far (card-wide). */
    static final short INPUT_STATE = 0;
    static final short INPUT_STATE_SIZE = CommandInput.STATE_SIZE;               // 2
    /** ResponseStream: the offset and length left of the response GET RESPONSE fetches (card-wide). */
    static final short RESPONSE_STATE = (short) (INPUT_STATE + INPUT_STATE_SIZE);
    static final short RESPONSE_STATE_SIZE = ResponseStream.STATE_SIZE;          // 2
    /** EapTls: the EAP packet being received, which may span chained APDUs (card-wide). */
    static final short EAP_PACKET = (short) (RESPONSE_STATE + RESPONSE_STATE_SIZE);
    static final short EAP_PACKET_SIZE = EapTls.PACKET_STATE_SIZE;               // 5
    /** Sessions: the active session and handshake, the I/O buffer's owner, the handshake slots' owners. */
    static final short SESSIONS_STATE = (short) (EAP_PACKET + EAP_PACKET_SIZE);
    static final short SESSIONS_STATE_SIZE = Sessions.STATE_SIZE;                // 6
    /**
     * OperatorSession: phase, MAC counter, the shadow-area upload in progress (what, slot, length);
     * card-wide, like OPERATOR_SECRETS.
     */
    static final short OPERATOR_STATE = (short) (SESSIONS_STATE + SESSIONS_STATE_SIZE);
    static final short OPERATOR_STATE_SIZE = OperatorSession.STATE_SIZE;         // 5
    /**
     * RecordCommands: the command and session of the record in pieces, if any (card-wide: the
     * pieces of one record come in a row, like a chain).
     */
    static final short PIECE_OWNER = (short) (OPERATOR_STATE + OPERATOR_STATE_SIZE);
    static final short PIECE_OWNER_SIZE = RecordCommands.OWNER_SIZE;              // 1
    /**
     * RecordCipher: how far the record in pieces is, its lengths, type and (CBC) padding and MAC
     * check (card-wide, with PIECE_OWNER; its AEAD or HMAC state is in the record scratch).
     */
    static final short RECORD_PIECE = (short) (PIECE_OWNER + PIECE_OWNER_SIZE);
    static final short RECORD_PIECE_SIZE = RecordCipher.PIECE_SIZE;              // 7
    /** The active session's shorts (Sessions swaps them with SESSION_SHORT_SLOTS). */
    static final short SESSION_SHORTS = (short) (RECORD_PIECE + RECORD_PIECE_SIZE);
    /** EapTls: the conversation's state, identifiers, lengths of the message in and out. */
    static final short EAP_STATE = SESSION_SHORTS;
    static final short EAP_STATE_SIZE = EapTls.STATE_SIZE;                       // 7
    /** TlsServer: phase, suite. */
    static final short TLS_STATE = (short) (EAP_STATE + EAP_STATE_SIZE);
    static final short TLS_STATE_SIZE = TlsServer.STATE_SIZE;                    // 2
    /** RecordCipher: the kind of record protection (none, GCM, CCM, CCM_8, CBC). */
    static final short RECORD_KIND = (short) (TLS_STATE + TLS_STATE_SIZE);
    static final short RECORD_KIND_SIZE = RecordCipher.KIND_SIZE;                // 1
    /** Sessions: the session's handshake slot (+ 1; 0: none). */
    static final short SESSION_LINK = (short) (RECORD_KIND + RECORD_KIND_SIZE);
    static final short SESSION_LINK_SIZE = Sessions.LINK_SIZE;                   // 1
    /** DtlsFraming: TLS or DTLS (RFC 6347), chosen by the conversation's EAP identity. */
    static final short DTLS_MODE = (short) (SESSION_LINK + SESSION_LINK_SIZE);
    static final short DTLS_MODE_SIZE = DtlsFraming.MODE_SIZE;                   // 1
    static final short SESSION_SHORTS_SIZE = (short) (EAP_STATE_SIZE + TLS_STATE_SIZE + RECORD_KIND_SIZE
            + SESSION_LINK_SIZE + DTLS_MODE_SIZE);                               // 12
    /** The active handshake's shorts (Sessions swaps them with HANDSHAKE_SHORT_SLOTS). */
    static final short HANDSHAKE_SHORTS = (short) (SESSION_SHORTS + SESSION_SHORTS_SIZE);
    /**
     * TlsServer: what the ServerHello answers, the transcript's bytes modulo a block, the
     * signature scheme, the client Finished's bytes received.
     */
    static final short TLS_HANDSHAKE = HANDSHAKE_SHORTS;
    static final short TLS_HANDSHAKE_SIZE = TlsServer.HANDSHAKE_STATE_SIZE;      // 4
    /** ClientHelloParser: the step, what is left of each open structure, what the hello said. */
    static final short HELLO_STATE = (short) (TLS_HANDSHAKE + TLS_HANDSHAKE_SIZE);
    static final short HELLO_STATE_SIZE = ClientHelloParser.STATE_SIZE;          // 15
    /** ClientAuth: the client authentication's step, the commonName bytes staged, the third digest's rest. */
    static final short CLIENT_AUTH_STATE = (short) (HELLO_STATE + HELLO_STATE_SIZE);
    static final short CLIENT_AUTH_STATE_SIZE = ClientAuth.STATE_SIZE;           // 3
    /** DtlsFraming: the next message_seq of the client's and of the server's handshake messages. */
    static final short DTLS_HANDSHAKE = (short) (CLIENT_AUTH_STATE + CLIENT_AUTH_STATE_SIZE);
    static final short DTLS_HANDSHAKE_SIZE = DtlsFraming.HANDSHAKE_STATE_SIZE;   // 2
    static final short HANDSHAKE_SHORTS_SIZE = (short) (TLS_HANDSHAKE_SIZE + HELLO_STATE_SIZE
            + CLIENT_AUTH_STATE_SIZE + DTLS_HANDSHAKE_SIZE);                     // 24
    /** Sessions: the shorts of every session slot. */
    static final short SESSION_SHORT_SLOTS = (short) (HANDSHAKE_SHORTS + HANDSHAKE_SHORTS_SIZE);
    static final short SESSION_SHORT_SLOTS_SIZE = (short) (Sessions.SESSIONS * SESSION_SHORTS_SIZE);
    /** Sessions: the shorts of every handshake slot. */
    static final short HANDSHAKE_SHORT_SLOTS = (short) (SESSION_SHORT_SLOTS + SESSION_SHORT_SLOTS_SIZE);
    static final short HANDSHAKE_SHORT_SLOTS_SIZE = (short) (Sessions.HANDSHAKES * HANDSHAKE_SHORTS_SIZE);
    // Scratch.
    /** The curve check (CURVE) or GHASH (GHASH, GCM_LENGTHS, CCM_PARAMS): never at once. */
    static final short SHORT_SCRATCH = (short) (HANDSHAKE_SHORT_SLOTS + HANDSHAKE_SHORT_SLOTS_SIZE);
    //   flight 3: the client's ECDH point against the curve equation
    /** PointCheck: the accumulator and three 256-bit numbers in byte limbs. */
    static final short CURVE = SHORT_SCRATCH;
    static final short CURVE_SIZE = PointCheck.WORK_SIZE;                        // 162
    //   flight 3, before the curve check: the client's certificates, parsed
    /** ClientAuth: the fields X509 found in each of the client's certificates (two at most). */
    static final short CERT_FIELDS = SHORT_SCRATCH;
    static final short CERT_FIELDS_SIZE = ClientAuth.FIELDS_SIZE;                // 32
    //   records, at the same offset
    /** AesGcm: the table M of the key's multiples and the product Z. */
    static final short GHASH = SHORT_SCRATCH;
    static final short GHASH_SIZE = AesGcm.GHASH_SIZE;                           // 136
    /** AesGcm: AAD and text lengths, the direction. */
    static final short GCM_LENGTHS = (short) (GHASH + GHASH_SIZE);
    static final short GCM_LENGTHS_SIZE = AesGcm.LENGTHS_SIZE;                   // 3
    /** AesCcm: tag length, direction, q, bytes still due. */
    static final short CCM_PARAMS = (short) (GCM_LENGTHS + GCM_LENGTHS_SIZE);
    static final short CCM_PARAMS_SIZE = AesCcm.PARAMS_SIZE;                     // 5
    /** The larger overlay: the curve check's 162 shorts (GHASH's three regions: 144). */
    static final short SHORT_SCRATCH_SIZE = CURVE_SIZE;
    static final short SHORTS_SIZE = (short) (SHORT_SCRATCH + SHORT_SCRATCH_SIZE);

    // ---- refs: CLEAR_ON_DESELECT (session state) ----------------------------------------------
    /** ResponseStream: the array the pending response comes from (card-wide). */
    static final short RESPONSE_SOURCE = 0;
    static final short RESPONSE_SOURCE_SIZE = 1;
    /** The active session's references (Sessions swaps them with SESSION_REF_SLOTS). */
    static final short SESSION_REFS = (short) (RESPONSE_SOURCE + RESPONSE_SOURCE_SIZE);
    /** EapTls: the MessageHandler of the conversation. */
    static final short EAP_HANDLER = SESSION_REFS;
    static final short EAP_HANDLER_SIZE = 1;
    /** TlsServer: the Identity the handshake serves. */
    static final short TLS_IDENTITY = (short) (EAP_HANDLER + EAP_HANDLER_SIZE);
    static final short TLS_IDENTITY_SIZE = 1;
    static final short SESSION_REFS_SIZE = (short) (EAP_HANDLER_SIZE + TLS_IDENTITY_SIZE);  // 2
    /** Sessions: the references of every session slot. */
    static final short SESSION_REF_SLOTS = (short) (SESSION_REFS + SESSION_REFS_SIZE);
    static final short SESSION_REF_SLOTS_SIZE = (short) (Sessions.SESSIONS * SESSION_REFS_SIZE);
    static final short REFS_SIZE = (short) (SESSION_REF_SLOTS + SESSION_REF_SLOTS_SIZE);

    // ---- counters: CLEAR_ON_RESET ------------------------------------------------------------
    /** OpCounters: the diagnostic operation counters, one short each. */
    static final short OP_COUNTERS = 0;
    static final short OP_COUNTERS_SIZE = OpCounters.COUNT;                      // 11
    /**
     * SessionCache: which cached sessions are valid, the entry claimed next. CLEAR_ON_RESET like
     * the counters: a reselection keeps the cache, a reset or a power loss forgets it.
     */
    static final short CACHE_STATE = (short) (OP_COUNTERS + OP_COUNTERS_SIZE);
    static final short CACHE_STATE_SIZE = SessionCache.STATE_SHORTS;             // 7
    static final short COUNTERS_SIZE = (short) (CACHE_STATE + CACHE_STATE_SIZE);

    final byte[] bytes;
    final short[] shorts;
    final Object[] refs;
    final short[] counters;

    /** Allocated once, at install: the applet's only transient arrays. */
    Transients() {
        bytes = JCSystem.makeTransientByteArray(BYTES_SIZE, JCSystem.CLEAR_ON_DESELECT);
        shorts = JCSystem.makeTransientShortArray(SHORTS_SIZE, JCSystem.CLEAR_ON_DESELECT);
        refs = JCSystem.makeTransientObjectArray(REFS_SIZE, JCSystem.CLEAR_ON_DESELECT);
        counters = JCSystem.makeTransientShortArray(COUNTERS_SIZE, JCSystem.CLEAR_ON_RESET);
    }

    /** Zeroes {@code len} bytes of a region of {@link #bytes}. */
    void clearBytes(short off, short len) {
        Util.arrayFillNonAtomic(bytes, off, len, (byte) 0);
    }

    /** Zeroes {@code len} shorts of a region of {@link #shorts}. */
    void clearShorts(short off, short len) {
        short end = (short) (off + len);
        for (short i = off; i < end; i++) {
            shorts[i] = 0;
        }
    }

    /** Copies {@code len} shorts of {@link #shorts} (regions that do not overlap). */
    void copyShorts(short from, short to, short len) {
        for (short i = 0; i < len; i++) {
            shorts[(short) (to + i)] = shorts[(short) (from + i)];
        }
    }

    /** Copies {@code len} references of {@link #refs} (regions that do not overlap). */
    void copyRefs(short from, short to, short len) {
        for (short i = 0; i < len; i++) {
            refs[(short) (to + i)] = refs[(short) (from + i)];
        }
    }

    /**
     * Wipes the scratch of both arrays: what an APDU that failed half-way (an exception the
     * dispatcher caught) may have left there, a master secret for instance. Always safe, since
     * scratch is dead between APDUs.
     */
    void clearScratch() {
        clearBytes(HANDSHAKE_KEYS, (short) (BYTES_SIZE - HANDSHAKE_KEYS));
        clearShorts(SHORT_SCRATCH, (short) (SHORTS_SIZE - SHORT_SCRATCH));
    }
}
