package org.setls.applet;

import javacard.framework.APDU;
import javacard.framework.Util;
import javacard.security.CryptoException;
import javacard.security.ECPrivateKey;
import javacard.security.ECPublicKey;
import javacard.security.KeyAgreement;
import javacard.security.KeyPair;
import javacard.security.MessageDigest;
import javacard.security.RandomData;
import javacard.security.Signature;

/**
 * The TLS 1.2 server handshake (RFC 5246) with ECDHE-ECDSA on P-256 (RFC 8422), extended master
 * secret (RFC 7627) and secure renegotiation signalling (RFC 5746; renegotiation itself is refused).
 *
 * The host hands over the client's records as they come, in one or more PROCESS EAP messages of
 * whole records (docs/apdu.md); the card answers each message with the next server flight, with a
 * fatal alert, or with nothing when it needs more of the client's flight. Flight 1 is the
 * ClientHello, parsed as a stream (ClientHelloParser) over any records and messages, then
 * answered with ServerHello, Certificate, ServerKeyExchange, ServerHelloDone in one record.
 * Flight 3 is the ClientKeyExchange (whole within one message: the host reassembles it), the
 * ChangeCipherSpec and the encrypted Finished, which may be split over several protected records
 * and messages; it is answered with ChangeCipherSpec and Finished. A record the handshake's state
 * does not allow ends it at once with the fatal alert RFC 5246 7.2.2 names, a client's alert
 * without an answer.
 *
 * Two transcript digests run side by side because a card cannot copy a digest's state: SESSION
 * stops after ClientKeyExchange (RFC 7627 session_hash, also the client Finished's hash),
 * TRANSCRIPT goes on through the client's Finished. Both verify_data are computed with the keys,
 * at the ClientKeyExchange, the second over the Finished the client must send: the master secret
 * never outlives that APDU, and the Finished is compared in constant time when it arrives.
 *
 * RAM, from the arena (a deselect forgets the session): session state Transients.TLS_RANDOMS
 * (RANDOMS_SIZE bytes), TLS_FINISHED (FINISHED_SIZE bytes), TLS_STATE (STATE_SIZE shorts),
 * TLS_IDENTITY and the parser's; one-APDU scratch Transients.HANDSHAKE_KEYS (KEYS_SIZE bytes),
 * whose secrets are derived, used and wiped while the ClientKeyExchange is processed.
 */
final class TlsServer implements MessageHandler {
    // Randoms, session state: bytes of the arena from Transients.TLS_RANDOMS. Adjacent because the
    // ServerKeyExchange signature and the master secret (without EMS) both take
    // client_random + server_random.
    private static final short CLIENT_RANDOM = Transients.TLS_RANDOMS;
    private static final short SERVER_RANDOM = (short) (CLIENT_RANDOM + Tls.RANDOM_SIZE);
    static final short RANDOMS_SIZE = 2 * Tls.RANDOM_SIZE;
    // The Finished, session state: bytes of the arena from Transients.TLS_FINISHED.
    private static final short FINISHED_MESSAGE_SIZE = Tls.HS_HEADER_SIZE + Tls.VERIFY_DATA_SIZE; // 16
    /** Bytes of a protected Finished record decrypted at a time in the APDU buffer (a short one has 261). */
    private static final short FINISHED_CHUNK = 128;
    private static final short CLIENT_VERIFY = Transients.TLS_FINISHED;                       // expected
    private static final short SERVER_VERIFY = (short) (CLIENT_VERIFY + Tls.VERIFY_DATA_SIZE);
    private static final short FINISHED_IN = (short) (SERVER_VERIFY + Tls.VERIFY_DATA_SIZE);  // received
    static final short FINISHED_SIZE = 2 * Tls.VERIFY_DATA_SIZE + FINISHED_MESSAGE_SIZE;
    // The ClientKeyExchange's secrets, scratch: bytes of the arena from Transients.HANDSHAKE_KEYS.
    private static final short HASH_SIZE = 32;
    private static final short KEY_BLOCK_MAX = 96;
    /** The key block's room: also the premaster secret's, whose largest is a plain PSK's (130). */
    private static final short KEY_BLOCK_ROOM = PskKeyExchange.PREMASTER_MAX;
    private static final short MASTER_SECRET = Transients.HANDSHAKE_KEYS;
    private static final short HASH = (short) (MASTER_SECRET + Tls.MASTER_SECRET_SIZE);
    // The key block is also the premaster secret briefly, then the Finished the client must send.
    private static final short KEY_BLOCK = (short) (HASH + HASH_SIZE);
    static final short KEYS_SIZE = Tls.MASTER_SECRET_SIZE + HASH_SIZE + KEY_BLOCK_ROOM;

    // State of the session: shorts of the active session from Transients.TLS_STATE.
    private static final short ST_PHASE = Transients.TLS_STATE;
    private static final short ST_SUITE = (short) (ST_PHASE + 1);
    static final short STATE_SIZE = 2;
    // State of the handshake: shorts of the active handshake from Transients.TLS_HANDSHAKE.
    private static final short ST_FLAGS = Transients.TLS_HANDSHAKE;
    private static final short ST_HASH_REST = (short) (ST_FLAGS + 1); // transcript bytes modulo 64 (counters)
    private static final short ST_SIGNATURE = (short) (ST_FLAGS + 2); // the ServerKeyExchange's scheme
    private static final short ST_FINISHED_GOT = (short) (ST_FLAGS + 3); // bytes of the client Finished so far
    // F_CACHED: the SessionCache claim (its entry: SessionCache.entryOf); resumed: the entry or -1.
    private static final short ST_CACHE_ENTRY = (short) (ST_FLAGS + 4);
    static final short HANDSHAKE_STATE_SIZE = 5;
    private static final short IDENTITY = Transients.TLS_IDENTITY;
    /** The ephemeral ECDH scalar, from flight 1 to flight 3: bytes of the active handshake. */
    private static final short EPHEMERAL = Transients.EPHEMERAL;

    static final short PHASE_EXPECT_CLIENT_HELLO = 0;
    static final short PHASE_EXPECT_CLIENT_KEY_EXCHANGE = 1;
    static final short PHASE_ESTABLISHED = 2;
    static final short PHASE_FAILED = 3;
    static final short PHASE_EXPORTED = 4;
    static final short PHASE_EXPECT_CHANGE_CIPHER_SPEC = 5;
    static final short PHASE_EXPECT_FINISHED = 6;
    /** Client authentication (ClientAuth): the client's Certificate, then its CertificateVerify. */
    static final short PHASE_EXPECT_CERTIFICATE = 7;
    static final short PHASE_EXPECT_CERTIFICATE_VERIFY = 8;

    // ST_FLAGS bits: what the ServerHello answers.
    private static final short F_EXTENDED_MASTER_SECRET = 0x01;
    private static final short F_RENEGOTIATION_INFO = 0x02;
    private static final short F_POINT_FORMATS = 0x04;
    /** A full handshake whose session is sealed in ST_CACHE_ENTRY (its ID in the ServerHello). */
    private static final short F_CACHED = 0x08;
    /** A full handshake that answers with a NewSessionTicket (RFC 5077 3.3). */
    private static final short F_TICKET = 0x10;
    /** An abbreviated handshake (RFC 5246 7.3): resumed from the cache or a ticket. */
    private static final short F_ABBREVIATED = 0x20;
    /**
     * F_TICKET, but the claimed entry was claimed again by later handshakes before this one
     * sealed it: an empty ticket (RFC 5077 3.3) and no session ID entry.
     */
    private static final short F_EMPTY_TICKET = 0x40;
    /** NewSessionTicket: type, length<3>, ticket_lifetime_hint<4>, ticket<2>; then the ticket. */
    private static final short TICKET_MESSAGE_HEAD = 10;
    private static final short TICKET_MESSAGE_SIZE = (short) (TICKET_MESSAGE_HEAD + SessionCache.TICKET_SIZE);
    /** RFC 5077 3.3: a hint to the client only; the card has no clock to enforce it. */
    private static final short TICKET_LIFETIME_HINT = 7200;

    /** The largest ClientKeyExchange body: ClientECDiffieHellmanPublic, ECPoint point<1..2^8-1>. */
    private static final short CLIENT_KEY_EXCHANGE_MAX = 256;
    /** The ClientKeyExchange's and the ChangeCipherSpec's records, as the host sends them. */
    static final short FLIGHT3_PREFIX_MAX = (short) (Tls.RECORD_HEADER_SIZE + Tls.HS_HEADER_SIZE
            + CLIENT_KEY_EXCHANGE_MAX + Tls.RECORD_HEADER_SIZE + 1); // 271
    private static final short ALERT_RECORD_SIZE = 7;
    /** Where a DTLS handshake header is built to be hashed: the APDU buffer's last bytes of a short APDU. */
    private static final short DTLS_SCRATCH = 240;
    private static final byte[] LABEL_MASTER_SECRET = {'m', 'a', 's', 't', 'e', 'r', ' ', 's', 'e', 'c', 'r', 'e', 't'};
    private static final byte[] LABEL_EXTENDED_MASTER_SECRET = {'e', 'x', 't', 'e', 'n', 'd', 'e', 'd', ' ',
        'm', 'a', 's', 't', 'e', 'r', ' ', 's', 'e', 'c', 'r', 'e', 't'};
    private static final byte[] LABEL_KEY_EXPANSION = {'k', 'e', 'y', ' ', 'e', 'x', 'p', 'a', 'n', 's', 'i', 'o', 'n'};
    private static final byte[] LABEL_CLIENT_FINISHED = {'c', 'l', 'i', 'e', 'n', 't', ' ',
        'f', 'i', 'n', 'i', 's', 'h', 'e', 'd'};
    private static final byte[] LABEL_SERVER_FINISHED = {'s', 'e', 'r', 'v', 'e', 'r', ' ',
        'f', 'i', 'n', 'i', 's', 'h', 'e', 'd'};

    private final Transients ram;
    private final byte[] secrets;
    private final short[] st;
    private final Object[] refs;
    /** Per handshake slot: the transcript through the client's Finished, and up to the ClientKeyExchange. */
    private final MessageDigest[] transcripts;
    private final MessageDigest[] sessionHashes;
    /** The ephemeral key: its private half is transient and holds a scalar only within one APDU. */
    private final KeyPair ephemeral;
    private final Sessions sessions;
    private final KeyAgreement ecdh;
    private final Signature signer256;
    /**
     * ECDSA with SHA-384 and SHA-512: null unless the install parameters ask for it
     * (Constants.INSTALL_ECDSA_SHA384/512), or where the card has none (Quirks: ECDSA_HASHES).
     */
    private final Signature signer384;
    private final Signature signer512;
    private final RandomData random;
    private final TlsPrf prf;
    private final EcKeyGenerator keys;
    private final PointCheck curve;
    private final RecordCipher cipher;
    private final TlsAlert alert;
    private final ClientHelloParser hello;
    private final OpCounters counters;
    private final Persistent persistent;
    private final ClientAuth clientAuth;
    private final DtlsFraming dtls;
    private final SessionCache cache;
    private final PskKeyExchange psk;

    /** Allocated once, at install; the state is the arena's. */
    TlsServer(TlsPrf prf, RecordCipher cipher, RandomData random, EcKeyGenerator keys, OpCounters counters,
              Persistent persistent, Sessions sessions, Transients ram, SessionCache cache, PskKeyExchange psk,
              MessageDigest sha, byte installOptions) {
        this.persistent = persistent;
        this.psk = psk;
        this.cache = cache;
        this.sessions = sessions;
        this.keys = keys;
        curve = new PointCheck(ram);
        this.prf = prf;
        this.cipher = cipher;
        this.random = random;
        this.counters = counters;
        this.ram = ram;
        secrets = ram.bytes;
        st = ram.shorts;
        refs = ram.refs;
        transcripts = new MessageDigest[Sessions.HANDSHAKES];
        sessionHashes = new MessageDigest[Sessions.HANDSHAKES];
        for (short k = 0; k < Sessions.HANDSHAKES; k++) {
            transcripts[k] = MessageDigest.getInstance(MessageDigest.ALG_SHA_256, false);
            sessionHashes[k] = MessageDigest.getInstance(MessageDigest.ALG_SHA_256, false);
        }
        ephemeral = P256.newEphemeralKeyPair();
        ecdh = KeyAgreement.getInstance(KeyAgreement.ALG_EC_SVDP_DH_PLAIN, false);
        signer256 = Signature.getInstance(Signature.ALG_ECDSA_SHA_256, false);
        // Only when the install parameters ask for them (docs/resources.md: 448 bytes of RAM).
        signer384 = optionalSignature(Signature.ALG_ECDSA_SHA_384, installOptions, Constants.INSTALL_ECDSA_SHA384);
        signer512 = optionalSignature(Signature.ALG_ECDSA_SHA_512, installOptions, Constants.INSTALL_ECDSA_SHA512);
        alert = new TlsAlert();
        hello = new ClientHelloParser(ram, alert, persistent, signer384 != null, signer512 != null, cache);
        clientAuth = new ClientAuth(ram, alert, sessions, counters, persistent, signer256, sha);
        dtls = new DtlsFraming(ram, alert, cipher);
    }

    ClientAuth clientAuth() {
        return clientAuth;
    }

    /**
     * The ECDSA-SHA256 object: it signs the ServerKeyExchange, verifies the client's chain and
     * CertificateVerify, and (SeTlsApplet) the operator's signatures and CSRs; each use
     * initialises it first, and no two run in one APDU (docs/resources.md: one object, not three).
     */
    Signature ecdsaSha256() {
        return signer256;
    }

    /**
     * Quirks: ECDSA_HASHES. The signature, or null if the card has no such algorithm (probed once,
     * at install: JCOP 3 and 4 may lack ECDSA with SHA-384 or SHA-512, jcardsim has both); null
     * also when the install options lack its bit (`wanted`): no RAM spent on it.
     */
    private static Signature optionalSignature(byte algorithm, byte installOptions, byte wanted) {
        if ((byte) (installOptions & wanted) == 0) {
            return null;
        }
        try {
            return Signature.getInstance(algorithm, false);
        } catch (CryptoException e) {
            if (e.getReason() == CryptoException.NO_SUCH_ALGORITHM) {
                return null;
            }
            throw e;
        }
    }

    /** The SELECT response's capability bits for the hashes the card signs with besides SHA-256. */
    byte signatureCapabilities() {
        byte caps = 0;
        if (signer384 != null) {
            caps |= Constants.CAP_ECDSA_SHA384;
        }
        if (signer512 != null) {
            caps |= Constants.CAP_ECDSA_SHA512;
        }
        return caps;
    }

    /** The identity the next conversation serves. */
    void bind(Identity id) {
        refs[IDENTITY] = id;
    }

    Identity boundIdentity() {
        return (Identity) refs[IDENTITY];
    }

    short phase() {
        return st[ST_PHASE];
    }

    /** A new handshake for the active session: a handshake slot (6F07 if none is free), fresh digests. */
    public void reset() {
        end();
        short hs = sessions.claimHandshake();
        transcripts[hs].reset();
        sessionHashes[hs].reset();
        hello.reset();
        clientAuth.begin(boundIdentity());
        dtls.start(dtls.on());
    }

    /** The session is over: its handshake slot is freed and wiped, its keys forgotten. */
    public void end() {
        releaseHandshake();
        ram.clearShorts(ST_PHASE, STATE_SIZE); // PHASE_EXPECT_CLIENT_HELLO
        cipher.clear();
        ram.clearBytes(MASTER_SECRET, KEYS_SIZE);
    }

    /** The handshake is over (established or failed): its slot goes back, its digests reset. */
    private void releaseHandshake() {
        short hs = sessions.handshakeSlot();
        if (hs >= 0) {
            transcripts[hs].reset();
            sessionHashes[hs].reset();
        }
        sessions.releaseHandshake();
    }

    private MessageDigest transcript() {
        return transcripts[sessions.handshakeSlot()];
    }

    private MessageDigest sessionHash() {
        return sessionHashes[sessions.handshakeSlot()];
    }

    public boolean finished() {
        return st[ST_PHASE] == PHASE_ESTABLISHED;
    }

    public boolean failed() {
        return st[ST_PHASE] == PHASE_FAILED;
    }

    public short onMessage(byte[] buf, short off, short len, short cap) {
        try {
            if (dtls.on()) {
                len = dtls.toTls(buf, off, len);
            }
            return onRecords(buf, off, len);
        } catch (TlsAlert a) {
            return fail(buf, off, (byte) a.getReason());
        } catch (CryptoException e) {
            return fail(buf, off, Tls.ALERT_INTERNAL_ERROR);
        } catch (ArrayIndexOutOfBoundsException e) {
            // Every length is checked; this is the last net under a malformed message.
            return fail(buf, off, Tls.ALERT_DECODE_ERROR);
        }
    }

    /** Ends the handshake: forgets the keys and answers with the fatal alert (0 for a peer's alert). */
    private short fail(byte[] buf, short off, byte description) {
        end();
        st[ST_PHASE] = PHASE_FAILED;
        if (description == Tls.ALERT_CLOSE_NOTIFY) {
            return 0;
        }
        if (dtls.on()) {
            short w = DtlsFraming.recordHeader(buf, off, Tls.CONTENT_ALERT, (short) 2);
            buf[w] = Tls.ALERT_FATAL;
            buf[(short) (w + 1)] = description;
            return (short) (Tls.DTLS_RECORD_HEADER_SIZE + 2);
        }
        return writeAlert(buf, off, description);
    }

    static short writeAlert(byte[] buf, short off, byte description) {
        buf[off] = Tls.CONTENT_ALERT;
        Util.setShort(buf, (short) (off + 1), Tls.VERSION_TLS12);
        Util.setShort(buf, (short) (off + 3), (short) 2);
        buf[(short) (off + 5)] = Tls.ALERT_FATAL;
        buf[(short) (off + 6)] = description;
        return ALERT_RECORD_SIZE;
    }

    // ---- the client's records -----------------------------------------------------------------

    /**
     * Takes the records of one message in order, each as the phase allows; answers once the last
     * one is taken: the server's flight when the ClientHello or the Finished ended in this message
     * (nothing may follow either), else nothing.
     */
    private short onRecords(byte[] buf, short off, short len) {
        short end = (short) (off + len);
        short gathered = off; // the ClientKeyExchange's fragments, gathered in place
        boolean helloDone = false;
        boolean finishedDone = false;
        boolean certificateSeen = false;
        if (st[ST_PHASE] == PHASE_EXPECT_CLIENT_HELLO) {
            hello.forgetPositions(); // the buffer holds a new message
        }
        for (short p = off; p < end; ) {
            if (helloDone || finishedDone) {
                alert.raise(Tls.ALERT_UNEXPECTED_MESSAGE); // nothing follows a flight's last message
            }
            short phase = st[ST_PHASE];
            boolean protectedRecord = phase == PHASE_EXPECT_FINISHED;
            byte type = buf[p];
            boolean copy = type == Constants.CONTENT_TRANSCRIPT_COPY && phase == PHASE_EXPECT_CERTIFICATE_VERIFY;
            if (copy) {
                buf[p] = Tls.CONTENT_HANDSHAKE; // checked as one (the type is put back below)
            }
            short fragment = checkRecordHeader(buf, p, end, phase != PHASE_EXPECT_CLIENT_HELLO, protectedRecord);
            short body = (short) (p + Tls.RECORD_HEADER_SIZE);
            if (copy) {
                buf[p] = type;
                clientAuth.onTranscriptCopy(buf, body, fragment);
            } else if (protectedRecord) {
                finishedDone = onProtectedRecord(buf, p);
            } else {
                // RFC 5246 6.2.1: no empty Handshake, Alert or ChangeCipherSpec fragments.
                if (fragment == 0) {
                    alert.raise(Tls.ALERT_UNEXPECTED_MESSAGE);
                }
                if (type == Tls.CONTENT_ALERT) {
                    alert.raise(Tls.ALERT_CLOSE_NOTIFY); // the client gave up: nothing to answer
                }
                if (phase == PHASE_EXPECT_CLIENT_HELLO) {
                    helloDone = onClientHelloRecord(buf, type, body, fragment);
                } else if (phase == PHASE_EXPECT_CLIENT_KEY_EXCHANGE || phase == PHASE_EXPECT_CERTIFICATE
                        || phase == PHASE_EXPECT_CERTIFICATE_VERIFY) {
                    certificateSeen |= phase == PHASE_EXPECT_CERTIFICATE;
                    if (type != Tls.CONTENT_HANDSHAKE) {
                        alert.raise(Tls.ALERT_UNEXPECTED_MESSAGE);
                    }
                    gathered = Util.arrayCopyNonAtomic(buf, body, buf, gathered, fragment);
                    counters.count(OpCounters.EEPROM_BYTES, fragment);
                    gathered = onClientKeyExchangeBytes(buf, off, gathered);
                } else if (phase == PHASE_EXPECT_CHANGE_CIPHER_SPEC) {
                    onChangeCipherSpec(buf, type, body, fragment);
                } else {
                    alert.raise(Tls.ALERT_UNEXPECTED_MESSAGE); // the handshake is over
                }
            }
            p = (short) (body + fragment);
        }
        if (gathered != off) {
            // The host hands the ClientKeyExchange over whole, in one message (docs/apdu.md).
            alert.raise(Tls.ALERT_UNEXPECTED_MESSAGE);
        }
        short phaseNow = st[ST_PHASE];
        if (phaseNow == PHASE_EXPECT_CERTIFICATE_VERIFY
                || (certificateSeen && phaseNow == PHASE_EXPECT_CLIENT_KEY_EXCHANGE)) {
            // Certificate .. CertificateVerify come in one message: the master secret and the
            // client's key do not outlive it (docs/apdu.md).
            alert.raise(Tls.ALERT_UNEXPECTED_MESSAGE);
        }
        if (helloDone) {
            negotiate();
            if (tryResume(buf)) {
                return writeAbbreviatedFlight(buf, off);
            }
            offerResumption();
            return writeServerFlight(buf, off);
        }
        if (finishedDone) {
            if ((st[ST_FLAGS] & F_ABBREVIATED) != 0) {
                // RFC 5246 7.3: the client's Finished ends an abbreviated handshake; nothing to answer.
                st[ST_PHASE] = PHASE_ESTABLISHED;
                releaseHandshake();
                return 0;
            }
            return writeServerFinishedFlight(buf, off);
        }
        return 0; // the card waits for more of the client's flight
    }

    /** Validates a record header; returns its fragment length. */
    private short checkRecordHeader(byte[] buf, short p, short end, boolean strictVersion, boolean protectedRecord) {
        if ((short) (end - p) < Tls.RECORD_HEADER_SIZE) {
            alert.raise(Tls.ALERT_DECODE_ERROR);
        }
        byte type = buf[p];
        if (type != Tls.CONTENT_HANDSHAKE && type != Tls.CONTENT_ALERT && type != Tls.CONTENT_CHANGE_CIPHER_SPEC) {
            alert.raise(Tls.ALERT_UNEXPECTED_MESSAGE); // application data (or no type at all) in a handshake
        }
        short fragment = Util.getShort(buf, (short) (p + 3));
        // The ClientHello's record may carry any TLS 1.x version (RFC 5246 appendix E.1).
        if (buf[(short) (p + 1)] != Tls.VERSION_MAJOR
                || (strictVersion && buf[(short) (p + 2)] != Tls.VERSION_MINOR_TLS12)) {
            alert.raise(Tls.ALERT_PROTOCOL_VERSION);
        }
        // RFC 5246 6.2.1 and 6.2.3: 2^14 bytes of plaintext, 2^14 + 2048 of ciphertext.
        if (fragment < 0 || fragment > (protectedRecord ? Tls.MAX_CIPHERTEXT : Tls.MAX_PLAINTEXT)) {
            alert.raise(Tls.ALERT_RECORD_OVERFLOW);
        }
        if (fragment > (short) (end - p - Tls.RECORD_HEADER_SIZE)) {
            alert.raise(Tls.ALERT_DECODE_ERROR); // the host hands over whole records
        }
        return fragment;
    }

    /** Checks a handshake message's type and 3-byte length within [off, end); returns the body length. */
    private short handshakeBody(byte[] buf, short off, short end, byte type) {
        if ((short) (end - off) < Tls.HS_HEADER_SIZE) {
            alert.raise(Tls.ALERT_DECODE_ERROR);
        }
        if (buf[off] != type) {
            alert.raise(Tls.ALERT_UNEXPECTED_MESSAGE);
        }
        short body = Util.getShort(buf, (short) (off + 2));
        if (buf[(short) (off + 1)] != 0 || body < 0
                || body > (short) (end - off - Tls.HS_HEADER_SIZE)) {
            alert.raise(Tls.ALERT_DECODE_ERROR);
        }
        return body;
    }

    // ---- flight 1 -------------------------------------------------------------------------

    /** A record of the ClientHello: parsed and hashed as it comes; true once the hello ended. */
    private boolean onClientHelloRecord(byte[] buf, byte type, short body, short fragment) {
        if (type != Tls.CONTENT_HANDSHAKE) {
            alert.raise(Tls.ALERT_UNEXPECTED_MESSAGE);
        }
        short taken = hello.feed(buf, body, fragment);
        if (taken != fragment) {
            alert.raise(Tls.ALERT_UNEXPECTED_MESSAGE); // something follows the ClientHello
        }
        hashClientMessage(buf, body, fragment);
        return hello.done();
    }

    /**
     * Once the whole ClientHello parsed (so a malformed one is a decode_error whatever else it
     * lacks): the identity (server_name), the version, the suite in the identity's order, the
     * group, the signature scheme.
     */
    private void negotiate() {
        selectByServerName();
        short version = hello.version();
        if (dtls.on()) {
            // DTLS 1.2 is 0xFEFD; a later DTLS is a smaller minor (RFC 6347 4.1).
            if ((byte) (version >> 8) != Tls.VERSION_MAJOR_DTLS || (short) (version & 0xFF) > (short) 0xFD) {
                alert.raise(Tls.ALERT_PROTOCOL_VERSION);
            }
        } else if ((short) (version >> 8) != Tls.VERSION_MAJOR || (short) (version & 0xFF) < Tls.VERSION_MINOR_TLS12) {
            // client_version: TLS 1.2 or a later version (we answer 1.2).
            alert.raise(Tls.ALERT_PROTOCOL_VERSION);
        }
        short facts = hello.facts();
        if ((facts & ClientHelloParser.F_NULL_COMPRESSION) == 0) {
            alert.raise(Tls.ALERT_ILLEGAL_PARAMETER);
        }
        if ((facts & ClientHelloParser.F_RENEGOTIATION_NOT_EMPTY) != 0) {
            // RFC 5746 3.6: on an initial handshake renegotiated_connection must be empty.
            alert.raise(Tls.ALERT_HANDSHAKE_FAILURE);
        }
        if ((facts & ClientHelloParser.F_POINT_FORMATS) != 0 && (facts & ClientHelloParser.F_UNCOMPRESSED) == 0) {
            alert.raise(Tls.ALERT_ILLEGAL_PARAMETER); // RFC 8422 5.1.2
        }
        short suite = boundIdentity().preferredSuite(hello.suites());
        if (suite == 0) {
            suite = pskSuite(hello.suites());
        }
        if (suite == 0 || (dtls.on() && RecordCipher.isCbc(suite))) {
            // DTLS here is AEAD only (RFC 7925's suites): its seq_num is the AEAD's.
            alert.raise(Tls.ALERT_HANDSHAKE_FAILURE);
        }
        boolean pskOnly = suite == Tls.TLS_PSK_WITH_AES_128_CCM_8;
        if (!pskOnly && (facts & ClientHelloParser.F_GROUPS) != 0 && (facts & ClientHelloParser.F_SECP256R1) == 0) {
            alert.raise(Tls.ALERT_HANDSHAKE_FAILURE); // RFC 8422 5.1.1: no curve in common
        }
        // RFC 9155 5: a TLS 1.2 ClientHello without signature_algorithms is refused, and so is
        // one with no scheme the card can sign with; PSK suites sign nothing and are exempt.
        if (!PskKeyExchange.isPsk(suite)
                && ((facts & ClientHelloParser.F_SIGNATURES) == 0 || hello.signature() == 0)) {
            alert.raise(Tls.ALERT_HANDSHAKE_FAILURE);
        }
        st[ST_SUITE] = suite;
        st[ST_SIGNATURE] = hello.signature();
        short flags = 0;
        if ((facts & ClientHelloParser.F_EXTENDED_MASTER_SECRET) != 0) {
            flags |= F_EXTENDED_MASTER_SECRET;
        }
        if ((facts & (short) (ClientHelloParser.F_SCSV | ClientHelloParser.F_RENEGOTIATION_INFO)) != 0) {
            flags |= F_RENEGOTIATION_INFO;
        }
        if ((facts & ClientHelloParser.F_POINT_FORMATS) != 0) {
            flags |= F_POINT_FORMATS;
        }
        st[ST_FLAGS] = flags;
    }

    /**
     * A PSK suite when no certificate suite of the identity is offered (RFC 4279, RFC 7925): the
     * plain PSK suite first (the cheaper one), if the card holds any PSK; 0 otherwise.
     */
    private short pskSuite(short offered) {
        if (!psk.hasKeys()) {
            return 0;
        }
        if ((offered & ClientHelloParser.suiteBit(Tls.TLS_PSK_WITH_AES_128_CCM_8)) != 0) {
            return Tls.TLS_PSK_WITH_AES_128_CCM_8;
        }
        if ((offered & ClientHelloParser.suiteBit(Tls.TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256)) != 0) {
            return Tls.TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256;
        }
        return 0;
    }

    /**
     * server_name (RFC 6066 section 3): the first host_name selects the first identity that lists
     * it in its SNI names, if that identity is personalised and unlocked; otherwise the identity
     * the conversation named (the default) answers, with its own suites and chain.
     */
    private void selectByServerName() {
        for (byte slot = 0; slot < Constants.MAX_IDENTITIES; slot++) {
            if (hello.serverNameMatches(slot)) {
                Identity id = persistent.slot(slot);
                if (id.isPersonalised() && id.isUnlocked()) {
                    bind(id);
                    return;
                }
            }
        }
    }

    // ---- flight 2 -------------------------------------------------------------------------

    /** Bytes of a handshake message's header: 4, or DTLS's 12 (RFC 6347 4.2.2). */
    private short hsHeader() {
        return dtls.on() ? Tls.DTLS_HS_HEADER_SIZE : Tls.HS_HEADER_SIZE;
    }

    private short writeServerFlight(byte[] buf, short off) {
        short w = (short) (off + (dtls.on() ? Tls.DTLS_RECORD_HEADER_SIZE : Tls.RECORD_HEADER_SIZE));
        w = writeServerHello(buf, w);
        short suite = st[ST_SUITE];
        boolean asks = false;
        if (suite == Tls.TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256) {
            w = writePskServerKeyExchange(buf, w);
        } else if (suite != Tls.TLS_PSK_WITH_AES_128_CCM_8) {
            // RFC 4279 2: a plain PSK server sends neither Certificate nor, without a hint, ServerKeyExchange.
            w = writeCertificate(buf, w);
            w = writeServerKeyExchange(buf, w);
            // RFC 4279 2, RFC 5489: a PSK suite authenticates the client by its key, never by a certificate.
            asks = clientAuth.asking(boundIdentity());
        }
        if (asks) {
            short request = w;
            buf[w] = Tls.HS_CERTIFICATE_REQUEST;
            w += hsHeader();
            w = clientAuth.writeRequest(boundIdentity(), buf, w);
            w = closeHandshake(buf, request, w);
        } else {
            clientAuth.notAsking();
        }
        short start = w;
        buf[w] = Tls.HS_SERVER_HELLO_DONE;
        w += hsHeader();
        w = closeHandshake(buf, start, w);
        if (dtls.on()) {
            // One record of epoch 0 with the whole messages: the host fragments them to the path
            // MTU and numbers the records (docs/apdu.md).
            DtlsFraming.recordHeader(buf, off, Tls.CONTENT_HANDSHAKE, (short) (w - off - Tls.DTLS_RECORD_HEADER_SIZE));
        } else {
            buf[off] = Tls.CONTENT_HANDSHAKE;
            Util.setShort(buf, (short) (off + 1), Tls.VERSION_TLS12);
            Util.setShort(buf, (short) (off + 3), (short) (w - off - Tls.RECORD_HEADER_SIZE));
        }
        st[ST_PHASE] = asks ? PHASE_EXPECT_CERTIFICATE : PHASE_EXPECT_CLIENT_KEY_EXCHANGE;
        return (short) (w - off);
    }

    private short writeServerHello(byte[] buf, short w) {
        short start = w;
        buf[w] = Tls.HS_SERVER_HELLO;
        w += hsHeader();
        w = Util.setShort(buf, w, dtls.on() ? Tls.VERSION_DTLS12 : Tls.VERSION_TLS12);
        random.generateData(secrets, SERVER_RANDOM, Tls.RANDOM_SIZE);
        counters.count(OpCounters.RANDOM_BYTES, Tls.RANDOM_SIZE);
        w = Util.arrayCopyNonAtomic(secrets, SERVER_RANDOM, buf, w, Tls.RANDOM_SIZE);
        short flags = st[ST_FLAGS];
        w = writeSessionId(buf, w, flags);
        w = Util.setShort(buf, w, st[ST_SUITE]);
        buf[w++] = Tls.COMPRESSION_NULL;
        short extensions = w;
        w += 2;
        if ((flags & F_EXTENDED_MASTER_SECRET) != 0) {
            w = Util.setShort(buf, w, Tls.EXT_EXTENDED_MASTER_SECRET);
            w = Util.setShort(buf, w, (short) 0);
        }
        if ((flags & F_RENEGOTIATION_INFO) != 0) {
            w = Util.setShort(buf, w, Tls.EXT_RENEGOTIATION_INFO);
            w = Util.setShort(buf, w, (short) 1);
            buf[w++] = 0;
        }
        if ((flags & F_POINT_FORMATS) != 0) {
            w = Util.setShort(buf, w, Tls.EXT_EC_POINT_FORMATS);
            w = Util.setShort(buf, w, (short) 2);
            buf[w++] = 1;
            buf[w++] = Tls.POINT_FORMAT_UNCOMPRESSED;
        }
        if ((flags & F_TICKET) != 0) {
            w = Util.setShort(buf, w, Tls.EXT_SESSION_TICKET); // RFC 5077 3.2: empty, a ticket follows
            w = Util.setShort(buf, w, (short) 0);
        }
        if (w == (short) (extensions + 2)) {
            w = extensions; // no extensions at all: omit the length too
        } else {
            Util.setShort(buf, extensions, (short) (w - extensions - 2));
        }
        return closeHandshake(buf, start, w);
    }

    private short writeCertificate(byte[] buf, short w) {
        short start = w;
        buf[w] = Tls.HS_CERTIFICATE;
        w += hsHeader();
        w = boundIdentity().writeChain(buf, w);
        return closeHandshake(buf, start, w);
    }

    /** ECParameters + ECPoint (RFC 8422 5.4), signed over client_random + server_random + params. */
    private short writeServerKeyExchange(byte[] buf, short w) {
        short start = w;
        buf[w] = Tls.HS_SERVER_KEY_EXCHANGE;
        w += hsHeader();
        short params = w;
        buf[w++] = Tls.CURVE_TYPE_NAMED;
        w = Util.setShort(buf, w, Tls.GROUP_SECP256R1);
        buf[w++] = (byte) P256.POINT_SIZE;
        w += keys.generateEphemeral(ephemeral, secrets, EPHEMERAL, buf, w);
        counters.count(OpCounters.EC_KEYGEN, (short) 1);
        short paramsLength = (short) (w - params);
        short scheme = st[ST_SIGNATURE];
        w = Util.setShort(buf, w, scheme);
        Signature signer = scheme == Tls.SIG_ECDSA_SHA512 ? signer512
                : scheme == Tls.SIG_ECDSA_SHA384 ? signer384 : signer256;
        signer.init(boundIdentity().privateKey(), Signature.MODE_SIGN);
        signer.update(secrets, CLIENT_RANDOM, (short) (2 * Tls.RANDOM_SIZE));
        short signature = signer.sign(buf, params, paramsLength, buf, (short) (w + 2));
        counters.count(OpCounters.ECDSA_SIGN, (short) 1);
        w = Util.setShort(buf, w, signature);
        w += signature;
        return closeHandshake(buf, start, w);
    }

    /**
     * ECDHE_PSK's ServerKeyExchange (RFC 5489 2): an empty psk_identity_hint, then the
     * ServerECDHParams; no signature (the PSK authenticates the server).
     */
    private short writePskServerKeyExchange(byte[] buf, short w) {
        short start = w;
        buf[w] = Tls.HS_SERVER_KEY_EXCHANGE;
        w += hsHeader();
        w = Util.setShort(buf, w, (short) 0);
        buf[w++] = Tls.CURVE_TYPE_NAMED;
        w = Util.setShort(buf, w, Tls.GROUP_SECP256R1);
        buf[w++] = (byte) P256.POINT_SIZE;
        w += keys.generateEphemeral(ephemeral, secrets, EPHEMERAL, buf, w);
        counters.count(OpCounters.EC_KEYGEN, (short) 1);
        return closeHandshake(buf, start, w);
    }

    /** Fills in a handshake message's length and adds it to the transcript. */
    private short closeHandshake(byte[] buf, short start, short end) {
        short length = (short) (end - start - hsHeader());
        buf[(short) (start + 1)] = 0;
        Util.setShort(buf, (short) (start + 2), length);
        if (dtls.on()) {
            DtlsFraming.dtlsHeaderTail(buf, (short) (start + Tls.HS_HEADER_SIZE), dtls.nextSeq(false), (byte) 0, length);
        }
        hashHandshake(buf, start, (short) (end - start));
        return end;
    }

    /**
     * Adds the client's whole handshake message(s) at buf[off, off + len), in TLS form, to the
     * transcripts; in DTLS as they were sent unfragmented (RFC 6347 4.2.6): the 8 bytes of
     * message_seq, fragment_offset and fragment_length after each 4-byte header.
     */
    private void hashClientMessage(byte[] buf, short off, short len) {
        if (!dtls.on()) {
            hashHandshake(buf, off, len);
            return;
        }
        short end = (short) (off + len);
        for (short q = off; q < end; ) {
            short length = Util.getShort(buf, (short) (q + 2));
            hashDtlsHeader(buf, q);
            hashHandshake(buf, (short) (q + Tls.HS_HEADER_SIZE), length);
            q = (short) (q + Tls.HS_HEADER_SIZE + length);
        }
    }

    /** Hashes the DTLS header of the client's message whose TLS header is at buf[q]. */
    private void hashDtlsHeader(byte[] buf, short q) {
        byte[] scratch = APDU.getCurrentAPDUBuffer(); // free while the message is in the I/O buffer
        Util.arrayCopyNonAtomic(buf, q, scratch, DTLS_SCRATCH, Tls.HS_HEADER_SIZE);
        DtlsFraming.dtlsHeaderTail(scratch, (short) (DTLS_SCRATCH + Tls.HS_HEADER_SIZE), dtls.nextSeq(true),
                buf[(short) (q + 1)], Util.getShort(buf, (short) (q + 2)));
        hashHandshake(scratch, DTLS_SCRATCH, Tls.DTLS_HS_HEADER_SIZE);
    }

    /** Adds handshake bytes to both transcripts; counts the SHA-256 blocks they fill. */
    private void hashHandshake(byte[] buf, short off, short len) {
        transcript().update(buf, off, len);
        sessionHash().update(buf, off, len);
        clientAuth.hash(buf, off, len);
        short bytes = (short) (st[ST_HASH_REST] + len); // at most 63 + a record's 16389
        counters.count(OpCounters.SHA256_BLOCKS, (short) (2 * (short) (bytes >> 6)));
        st[ST_HASH_REST] = (short) (bytes & 63);
    }

    /** Counts the last block(s) of a digest that ends {@code rest} bytes into a block. */
    private void countFinalBlocks(short rest) {
        counters.countDigest(rest);
    }

    // ---- flight 3 -------------------------------------------------------------------------

    /**
     * The ClientKeyExchange's bytes gathered so far at buf[off, end): processed once whole;
     * returns where the next fragments go (off again once it was processed).
     */
    private short onClientKeyExchangeBytes(byte[] buf, short off, short end) {
        short got = (short) (end - off);
        short phase = st[ST_PHASE];
        byte type = phase == PHASE_EXPECT_CERTIFICATE ? Tls.HS_CERTIFICATE
                : phase == PHASE_EXPECT_CERTIFICATE_VERIFY ? Tls.HS_CERTIFICATE_VERIFY : Tls.HS_CLIENT_KEY_EXCHANGE;
        short max = phase == PHASE_EXPECT_CERTIFICATE ? ClientAuth.CERTIFICATE_MESSAGE_MAX
                : phase == PHASE_EXPECT_CERTIFICATE_VERIFY ? ClientAuth.CERTIFICATE_VERIFY_MAX : CLIENT_KEY_EXCHANGE_MAX;
        if (buf[off] != type) {
            alert.raise(Tls.ALERT_UNEXPECTED_MESSAGE); // e.g. a Certificate the server did not ask for
        }
        if (got < Tls.HS_HEADER_SIZE) {
            return end;
        }
        short body = Util.getShort(buf, (short) (off + 2));
        if (buf[(short) (off + 1)] != 0 || body < 0) {
            alert.raise(Tls.ALERT_DECODE_ERROR);
        }
        if (body > max) {
            alert.raise(phase == PHASE_EXPECT_CERTIFICATE ? Tls.ALERT_UNSUPPORTED_CERTIFICATE : Tls.ALERT_DECODE_ERROR);
        }
        short whole = (short) (Tls.HS_HEADER_SIZE + body);
        if (got < whole) {
            return end;
        }
        if (got > whole) {
            alert.raise(Tls.ALERT_UNEXPECTED_MESSAGE); // a message follows: ChangeCipherSpec is due
        }
        if (phase == PHASE_EXPECT_CERTIFICATE) {
            onCertificate(buf, off, end);
        } else if (phase == PHASE_EXPECT_CERTIFICATE_VERIFY) {
            onCertificateVerify(buf, off, end);
        } else {
            onClientKeyExchange(buf, off, end);
        }
        return off;
    }

    /** The client's Certificate (RFC 5246 7.4.6): ClientAuth decides; then the ClientKeyExchange. */
    private void onCertificate(byte[] buf, short off, short end) {
        short body = handshakeBody(buf, off, end, Tls.HS_CERTIFICATE);
        hashClientMessage(buf, off, (short) (end - off));
        clientAuth.onCertificate(boundIdentity(), buf, (short) (off + Tls.HS_HEADER_SIZE), body);
        st[ST_PHASE] = PHASE_EXPECT_CLIENT_KEY_EXCHANGE;
    }

    /**
     * The client's CertificateVerify (RFC 5246 7.4.8), verified by ClientAuth; then, in this APDU,
     * both Finished values (the client's over ClientHello .. CertificateVerify).
     */
    private void onCertificateVerify(byte[] buf, short off, short end) {
        short body = handshakeBody(buf, off, end, Tls.HS_CERTIFICATE_VERIFY);
        clientAuth.onCertificateVerify(buf, (short) (off + Tls.HS_HEADER_SIZE), body);
        hashClientMessage(buf, off, (short) (end - off));
        clientAuth.finishedHash(secrets, HASH);
        finishedValues();
    }

    private void onClientKeyExchange(byte[] buf, short off, short end) {
        short body = handshakeBody(buf, off, end, Tls.HS_CLIENT_KEY_EXCHANGE);
        short suite = st[ST_SUITE];
        short p = (short) (off + Tls.HS_HEADER_SIZE);
        // RFC 4279 2, RFC 5489 2: psk_identity<0..2^16-1> first in the PSK suites.
        short identity = (short) (p + 2);
        short identityLength = 0;
        if (PskKeyExchange.isPsk(suite)) {
            if (body < 2) {
                alert.raise(Tls.ALERT_DECODE_ERROR);
            }
            identityLength = Util.getShort(buf, p);
            if (identityLength < 0 || identityLength > (short) (body - 2)) {
                alert.raise(Tls.ALERT_DECODE_ERROR);
            }
            p = (short) (identity + identityLength);
            body = (short) (body - 2 - identityLength);
        }
        short point = (short) (p + 1);
        short pointLength = 0;
        if (suite == Tls.TLS_PSK_WITH_AES_128_CCM_8) {
            if (body != 0) {
                alert.raise(Tls.ALERT_DECODE_ERROR);
            }
        } else {
            if (body < 1) {
                alert.raise(Tls.ALERT_DECODE_ERROR);
            }
            pointLength = (short) (buf[p] & 0xFF);
            if ((short) (pointLength + 1) != body) {
                alert.raise(Tls.ALERT_DECODE_ERROR);
            }
            if (!P256.isPlausiblePoint(buf, point, pointLength) || !curve.isOnCurve(buf, point)) {
                alert.raise(Tls.ALERT_ILLEGAL_PARAMETER);
            }
        }
        short length = (short) (end - off);
        if (dtls.on()) {
            hashDtlsHeader(buf, off); // then the body, as the last bytes of the session hash
            off += Tls.HS_HEADER_SIZE;
            length -= Tls.HS_HEADER_SIZE;
        }
        transcript().update(buf, off, length);
        clientAuth.hash(buf, off, length);
        sessionHash().doFinal(buf, off, length, secrets, HASH);
        short bytes = (short) (st[ST_HASH_REST] + length);
        counters.count(OpCounters.SHA256_BLOCKS, (short) (2 * (short) (bytes >> 6)));
        st[ST_HASH_REST] = (short) (bytes & 63);
        countFinalBlocks((short) (bytes & 63));
        short premaster;
        if (suite == Tls.TLS_PSK_WITH_AES_128_CCM_8) {
            premaster = psk.premaster(buf, identity, identityLength, secrets, KEY_BLOCK, (short) 0);
        } else if (suite == Tls.TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256) {
            short z = agree(buf, point, pointLength, (short) (KEY_BLOCK + 2));
            premaster = psk.premaster(buf, identity, identityLength, secrets, KEY_BLOCK, z);
        } else {
            premaster = agree(buf, point, pointLength, KEY_BLOCK);
        }
        deriveMasterSecret(premaster);
        deriveKeys();
        if (clientAuth.expectsCertificateVerify()) {
            // The CertificateVerify follows in this message: it signs the session hash, and the
            // client's Finished covers it (finishedValues() then).
            clientAuth.keepSessionHash(secrets, HASH);
            st[ST_PHASE] = PHASE_EXPECT_CERTIFICATE_VERIFY;
            return;
        }
        finishedValues();
    }

    /**
     * verify_data of both Finished messages, the client's over the hash at HASH; wipes the master
     * secret. The server's is over the transcript through the Finished the client must send.
     */
    private void finishedValues() {
        short bytes = st[ST_HASH_REST];
        // Both verify_data now (RFC 5246 7.4.9), the server's over the Finished the client must
        // send: the master secret and the hashes die with this APDU.
        finishedVerifyData(LABEL_CLIENT_FINISHED, (short) LABEL_CLIENT_FINISHED.length, CLIENT_VERIFY);
        short expected = KEY_BLOCK; // the client's Finished message, as it must be
        secrets[expected] = Tls.HS_FINISHED;
        secrets[(short) (expected + 1)] = 0;
        Util.setShort(secrets, (short) (expected + 2), Tls.VERIFY_DATA_SIZE);
        short header = Tls.HS_HEADER_SIZE;
        if (dtls.on()) {
            DtlsFraming.dtlsHeaderTail(secrets, (short) (expected + header), dtls.peekSeq(true), (byte) 0,
                    Tls.VERIFY_DATA_SIZE);
            header = Tls.DTLS_HS_HEADER_SIZE;
        }
        Util.arrayCopyNonAtomic(secrets, CLIENT_VERIFY, secrets, (short) (expected + header),
                Tls.VERIFY_DATA_SIZE);
        short size = (short) (header + Tls.VERIFY_DATA_SIZE);
        transcript().update(secrets, expected, size);
        short hashed = size;
        if ((st[ST_FLAGS] & F_CACHED) != 0 && !cache.holds(st[ST_CACHE_ENTRY])) {
            st[ST_FLAGS] = (short) ((st[ST_FLAGS] & ~F_CACHED) | F_EMPTY_TICKET); // its entry was lost
        }
        if ((st[ST_FLAGS] & F_CACHED) != 0) {
            sealSession(); // the master secret, sealed; the hash and key block are free again
        }
        if ((st[ST_FLAGS] & F_TICKET) != 0) {
            hashed += hashNewSessionTicket(); // RFC 5077 3.3: in the transcript the server's Finished covers
        }
        transcript().doFinal(secrets, HASH, (short) 0, secrets, HASH);
        countFinalBlocks((short) (bytes + hashed));
        finishedVerifyData(LABEL_SERVER_FINISHED, (short) LABEL_SERVER_FINISHED.length, SERVER_VERIFY);
        ram.clearBytes(MASTER_SECRET, KEYS_SIZE);
        st[ST_PHASE] = PHASE_EXPECT_CHANGE_CIPHER_SPEC;
    }

    /** ECDH with the client's point; any refusal of the point is an illegal_parameter. */
    private short agree(byte[] buf, short point, short pointLength, short out) {
        short length = 0;
        ECPrivateKey priv = (ECPrivateKey) ephemeral.getPrivate();
        try {
            P256.setDomainParameters(priv); // clearKey() may have dropped them (Quirks: CURVE_PARAMETERS)
            priv.setS(secrets, EPHEMERAL, P256.COORDINATE_SIZE);
            ecdh.init(priv);
            length = ecdh.generateSecret(buf, point, pointLength, secrets, out);
            counters.count(OpCounters.ECDH, (short) 1);
        } catch (CryptoException e) {
            alert.raise(Tls.ALERT_ILLEGAL_PARAMETER);
        } catch (RuntimeException e) {
            // jcardsim rejects an off-curve point with an exception of the host JVM (Quirks: INVALID_POINT).
            alert.raise(Tls.ALERT_ILLEGAL_PARAMETER);
        } finally {
            priv.clearKey();
            ram.clearBytes(EPHEMERAL, P256.COORDINATE_SIZE);
        }
        if (length != P256.COORDINATE_SIZE) {
            alert.raise(Tls.ALERT_ILLEGAL_PARAMETER);
        }
        return length;
    }

    private void deriveMasterSecret(short premasterLength) {
        if ((st[ST_FLAGS] & F_EXTENDED_MASTER_SECRET) != 0) {
            prf.derive(secrets, KEY_BLOCK, premasterLength,
                    LABEL_EXTENDED_MASTER_SECRET, (short) 0, (short) LABEL_EXTENDED_MASTER_SECRET.length,
                    secrets, HASH, HASH_SIZE, null, (short) 0, (short) 0,
                    secrets, MASTER_SECRET, Tls.MASTER_SECRET_SIZE);
        } else {
            prf.derive(secrets, KEY_BLOCK, premasterLength,
                    LABEL_MASTER_SECRET, (short) 0, (short) LABEL_MASTER_SECRET.length,
                    secrets, CLIENT_RANDOM, (short) (2 * Tls.RANDOM_SIZE), null, (short) 0, (short) 0,
                    secrets, MASTER_SECRET, Tls.MASTER_SECRET_SIZE);
        }
        Util.arrayFillNonAtomic(secrets, KEY_BLOCK, premasterLength, (byte) 0);
    }

    /** key_block = PRF(master_secret, "key expansion", server_random + client_random). */
    private void deriveKeys() {
        short size = RecordCipher.keyBlockSize(st[ST_SUITE]);
        prf.derive(secrets, MASTER_SECRET, Tls.MASTER_SECRET_SIZE,
                LABEL_KEY_EXPANSION, (short) 0, (short) LABEL_KEY_EXPANSION.length,
                secrets, SERVER_RANDOM, Tls.RANDOM_SIZE, secrets, CLIENT_RANDOM, Tls.RANDOM_SIZE,
                secrets, KEY_BLOCK, size);
        cipher.start(st[ST_SUITE], secrets, KEY_BLOCK);
        Util.arrayFillNonAtomic(secrets, KEY_BLOCK, KEY_BLOCK_MAX, (byte) 0);
    }

    /** verify_data = PRF(master_secret, label, HASH)[0..11] (RFC 5246 7.4.9), written at secrets[out]. */
    private void finishedVerifyData(byte[] label, short labelLength, short out) {
        prf.derive(secrets, MASTER_SECRET, Tls.MASTER_SECRET_SIZE, label, (short) 0, labelLength,
                secrets, HASH, HASH_SIZE, null, (short) 0, (short) 0,
                secrets, out, Tls.VERIFY_DATA_SIZE);
    }

    /**
     * ChangeCipherSpec: exactly one byte, 1 (RFC 5246 7.1). A longer record holds a second
     * ChangeCipherSpec, which no state allows.
     */
    private void onChangeCipherSpec(byte[] buf, byte type, short body, short fragment) {
        if (type != Tls.CONTENT_CHANGE_CIPHER_SPEC) {
            alert.raise(Tls.ALERT_UNEXPECTED_MESSAGE); // only ChangeCipherSpec follows ClientKeyExchange
        }
        if (buf[body] != 1) {
            alert.raise(Tls.ALERT_DECODE_ERROR);
        }
        if (fragment != 1) {
            alert.raise(Tls.ALERT_UNEXPECTED_MESSAGE);
        }
        st[ST_FINISHED_GOT] = 0;
        st[ST_PHASE] = PHASE_EXPECT_FINISHED;
    }

    /**
     * After the client's ChangeCipherSpec: a protected record, part (or all) of the Finished, or
     * a client's alert. Returns true once the whole Finished arrived and verified.
     */
    private boolean onProtectedRecord(byte[] buf, short p) {
        byte type = buf[p];
        if (type == Tls.CONTENT_CHANGE_CIPHER_SPEC) {
            alert.raise(Tls.ALERT_UNEXPECTED_MESSAGE);
        }
        // Decrypted in RAM, never in the I/O buffer: the ciphertext goes through the APDU buffer
        // (free once the message is in the I/O buffer) in chunks, and only the Finished's bytes
        // are kept, in TLS_FINISHED (issue 10: no plaintext in EEPROM).
        byte[] ram = APDU.getCurrentAPDUBuffer();
        short fragment = Util.getShort(buf, (short) (p + 3));
        short body = (short) (p + Tls.RECORD_HEADER_SIZE);
        short tail = fragment < 32 ? fragment : 32;
        if (cipher.open(buf, p, buf, (short) (body + fragment - tail)) < 0) {
            alert.raise(Tls.ALERT_BAD_RECORD_MAC);
        }
        short got = st[ST_FINISHED_GOT];
        short room = (short) (FINISHED_MESSAGE_SIZE - got);
        short n = 0;
        for (short i = 0; i < fragment; i += FINISHED_CHUNK) {
            short k = (short) (fragment - i) < FINISHED_CHUNK ? (short) (fragment - i) : FINISHED_CHUNK;
            Util.arrayCopyNonAtomic(buf, (short) (body + i), ram, (short) 0, k);
            short out = cipher.take(ram, (short) 0, k);
            if (dtls.on() && i == 0) {
                out = dtlsFinishedHeader(ram, out, got);
            }
            short keep = (short) (room - n) < out ? (short) (room - n) : out;
            if (keep > 0) {
                Util.arrayCopyNonAtomic(ram, (short) 0, secrets, (short) (FINISHED_IN + got + n), keep);
                n += keep;
            }
        }
        Util.arrayFillNonAtomic(ram, (short) 0, FINISHED_CHUNK, (byte) 0);
        short plain = cipher.finish();
        if (plain < 0) {
            alert.raise(Tls.ALERT_BAD_RECORD_MAC);
        }
        if (dtls.on() && type == Tls.CONTENT_HANDSHAKE) {
            plain -= 8; // the DTLS header's 8 bytes, checked and dropped above
        }
        if (plain > Tls.MAX_PLAINTEXT) {
            alert.raise(Tls.ALERT_RECORD_OVERFLOW);
        }
        if (plain == 0) {
            alert.raise(Tls.ALERT_UNEXPECTED_MESSAGE); // RFC 5246 6.2.1: no empty handshake fragments
        }
        if (type == Tls.CONTENT_ALERT) {
            alert.raise(Tls.ALERT_CLOSE_NOTIFY); // the client gave up: nothing to answer
        }
        got += n;
        st[ST_FINISHED_GOT] = got;
        if (secrets[FINISHED_IN] != Tls.HS_FINISHED) {
            alert.raise(Tls.ALERT_UNEXPECTED_MESSAGE);
        }
        if (got >= Tls.HS_HEADER_SIZE && (secrets[(short) (FINISHED_IN + 1)] != 0
                || Util.getShort(secrets, (short) (FINISHED_IN + 2)) != Tls.VERIFY_DATA_SIZE)) {
            alert.raise(Tls.ALERT_DECODE_ERROR);
        }
        if (plain > n) {
            alert.raise(Tls.ALERT_UNEXPECTED_MESSAGE); // something follows the Finished
        }
        if (got < FINISHED_MESSAGE_SIZE) {
            return false;
        }
        // Constant time: every byte is compared whatever the first difference (no early exit).
        byte diff = 0;
        for (short i = 0; i < Tls.VERIFY_DATA_SIZE; i++) {
            diff |= (byte) (secrets[(short) (CLIENT_VERIFY + i)]
                    ^ secrets[(short) (FINISHED_IN + Tls.HS_HEADER_SIZE + i)]);
        }
        if (diff != 0) {
            alert.raise(Tls.ALERT_DECRYPT_ERROR);
        }
        return true;
    }

    /**
     * DTLS: the client's Finished comes whole in one record (RFC 6347 4.2.2 header: its
     * message_seq, fragment_offset 0, fragment_length 12); checks the 8 bytes DTLS adds to the
     * header at ram[4, 12) and drops them; returns the plaintext bytes left.
     */
    private short dtlsFinishedHeader(byte[] ram, short out, short got) {
        if (got != 0 || out < Tls.DTLS_HS_HEADER_SIZE || ram[0] != Tls.HS_FINISHED) {
            alert.raise(Tls.ALERT_UNEXPECTED_MESSAGE);
        }
        if (Util.getShort(ram, (short) 4) != dtls.peekSeq(true) || ram[6] != 0 || Util.getShort(ram, (short) 7) != 0
                || ram[9] != 0 || Util.getShort(ram, (short) 10) != Tls.VERIFY_DATA_SIZE) {
            alert.raise(Tls.ALERT_UNEXPECTED_MESSAGE);
        }
        Util.arrayCopyNonAtomic(ram, Tls.DTLS_HS_HEADER_SIZE, ram, Tls.HS_HEADER_SIZE,
                (short) (out - Tls.DTLS_HS_HEADER_SIZE));
        return (short) (out - 8);
    }

    // ---- flight 4 -------------------------------------------------------------------------

    private short writeServerFinishedFlight(byte[] buf, short off) {
        short w = off;
        short flags = st[ST_FLAGS];
        if ((flags & F_CACHED) != 0) {
            cache.validate(st[ST_CACHE_ENTRY]); // the client's Finished verified: resumable
        }
        if ((flags & F_TICKET) != 0) {
            w = writeNewSessionTicket(buf, w);
        }
        w = writeChangeCipherSpecAndFinished(buf, w);
        st[ST_PHASE] = PHASE_ESTABLISHED;
        releaseHandshake(); // wipes TLS_FINISHED and the rest of the handshake's state
        return (short) (w - off);
    }

    /** ChangeCipherSpec, then the protected Finished of SERVER_VERIFY; returns the offset after them. */
    private short writeChangeCipherSpecAndFinished(byte[] buf, short w) {
        if (dtls.on()) {
            w = DtlsFraming.recordHeader(buf, w, Tls.CONTENT_CHANGE_CIPHER_SPEC, (short) 1);
        } else {
            buf[w++] = Tls.CONTENT_CHANGE_CIPHER_SPEC;
            w = Util.setShort(buf, w, Tls.VERSION_TLS12);
            w = Util.setShort(buf, w, (short) 1);
        }
        buf[w++] = 1;
        // Built and protected in RAM (the APDU buffer), only the record copied to the I/O buffer.
        byte[] ram = APDU.getCurrentAPDUBuffer();
        short p = cipher.prefixLength();
        ram[p] = Tls.HS_FINISHED;
        ram[(short) (p + 1)] = 0;
        Util.setShort(ram, (short) (p + 2), Tls.VERIFY_DATA_SIZE);
        short header = Tls.HS_HEADER_SIZE;
        if (dtls.on()) {
            DtlsFraming.dtlsHeaderTail(ram, (short) (p + header), dtls.nextSeq(false), (byte) 0, Tls.VERIFY_DATA_SIZE);
            header = Tls.DTLS_HS_HEADER_SIZE;
        }
        Util.arrayCopyNonAtomic(secrets, SERVER_VERIFY, ram, (short) (p + header), Tls.VERIFY_DATA_SIZE);
        short n = cipher.protect(Tls.CONTENT_HANDSHAKE, ram, (short) 0, (short) (header + Tls.VERIFY_DATA_SIZE));
        return Util.arrayCopyNonAtomic(ram, (short) 0, buf, w, n);
    }

    // ---- resumption (SessionCache: session IDs and RFC 5077 tickets) --------------------------

    /**
     * After negotiate(): whether the hello resumes a session of this card, by a ticket (first) or
     * by a cached session ID. The state opens into HANDSHAKE_KEYS (scratch); the session is
     * resumed only if it used the extended master secret and this hello offers it (RFC 7627 5.3:
     * otherwise a full handshake), it belongs to the identity this hello selected, and its suite
     * is offered and still allowed. A ticket that does not open is ignored (RFC 5077 3.4): a full
     * handshake follows. With a ticket, the client's session_id is echoed (RFC 5077 3.4), so it
     * must lie whole in this message's buffer.
     */
    private boolean tryResume(byte[] buf) {
        if ((st[ST_FLAGS] & F_EXTENDED_MASTER_SECRET) == 0 || dtls.on()) { // DTLS: full handshakes only
            return false;
        }
        boolean opened = false;
        short ticket = hello.ticketAt();
        if (ticket >= 0 && (hello.sessionIdLength() == 0 || hello.sessionIdAt() >= 0)) {
            opened = cache.openTicket(buf, ticket, SessionCache.TICKET_SIZE, secrets, MASTER_SECRET);
            st[ST_CACHE_ENTRY] = -1;
        }
        if (!opened) {
            short entry = hello.sessionIdEntry();
            opened = cache.openEntry(entry, secrets, MASTER_SECRET);
            st[ST_CACHE_ENTRY] = entry;
        }
        if (!opened) {
            return false;
        }
        short state = MASTER_SECRET;
        short suite = Util.getShort(secrets, (short) (state + SessionCache.STATE_SUITE));
        byte sealedFlags = secrets[(short) (state + SessionCache.STATE_FLAGS)];
        byte slot = secrets[(short) (state + SessionCache.STATE_SLOT)];
        boolean ok = (sealedFlags & SessionCache.FLAG_EXTENDED_MASTER_SECRET) != 0
                && slot >= 0 && slot < Constants.MAX_IDENTITIES && persistent.slot(slot) == boundIdentity()
                && (hello.suites() & ClientHelloParser.suiteBit(suite)) != 0
                && (boundIdentity().preferredSuite(ClientHelloParser.suiteBit(suite)) == suite
                    || (PskKeyExchange.isPsk(suite) && psk.hasKeys()));
        // A policy that now requires a client certificate resumes no session established without
        // one (a PSK authenticated its client by the key: no certificate is ever asked of it).
        if (ok && (boundIdentity().policy() & Constants.POLICY_CLIENT_AUTH_REQUIRED) != 0
                && !PskKeyExchange.isPsk(suite)
                && !ClientCertStore.hasClient(secrets, (short) (state + SessionCache.STATE_CLIENT))) {
            ok = false;
        }
        if (!ok) {
            ram.clearBytes(MASTER_SECRET, KEYS_SIZE);
            return false;
        }
        st[ST_SUITE] = suite;
        restoreClientIdentity(secrets, (short) (state + SessionCache.STATE_CLIENT));
        clientAuth.notAsking(); // no CertificateRequest in an abbreviated handshake: the third digest stops
        // Only the master secret stays: the hash and key block are needed now.
        ram.clearBytes(HASH, (short) (KEYS_SIZE - Tls.MASTER_SECRET_SIZE));
        st[ST_FLAGS] |= F_ABBREVIATED;
        return true;
    }

    /**
     * A full handshake that can be resumed later: with the extended master secret only (RFC
     * 7627 5.3), it claims a cache entry (its session ID goes in the ServerHello) and, if the
     * client offered session_ticket, answers with a NewSessionTicket.
     */
    private void offerResumption() {
        short flags = st[ST_FLAGS];
        if ((flags & F_EXTENDED_MASTER_SECRET) == 0 || dtls.on()) { // DTLS: not resumable (yet)
            return;
        }
        st[ST_CACHE_ENTRY] = cache.claim();
        flags |= F_CACHED;
        if ((hello.facts() & ClientHelloParser.F_SESSION_TICKET) != 0) {
            flags |= F_TICKET;
        }
        st[ST_FLAGS] = flags;
    }

    /** The ServerHello's session_id: the client's (resumed), the claimed entry's (full, cached), or empty. */
    private short writeSessionId(byte[] buf, short w, short flags) {
        if ((flags & F_ABBREVIATED) != 0) {
            short length = hello.sessionIdLength();
            short at = hello.sessionIdAt();
            buf[w++] = (byte) length;
            if (length == 0) {
                return w;
            }
            if (at >= 0) {
                return Util.arrayCopyNonAtomic(buf, at, buf, w, length); // the ClientHello, not yet overwritten
            }
            return cache.writeId(st[ST_CACHE_ENTRY], buf, w); // resumed by ID: the same ID
        }
        if ((flags & F_CACHED) != 0) {
            buf[w++] = (byte) SessionCache.ID_SIZE;
            return cache.writeId(SessionCache.entryOf(st[ST_CACHE_ENTRY]), buf, w);
        }
        buf[w++] = 0; // not resumable: no extended master secret
        return w;
    }

    /**
     * At the ClientKeyExchange: the state of the session (master secret, suite, flags, identity
     * slot, client identity) at HANDSHAKE_KEYS, sealed into the claimed entry, then wiped but the
     * master secret.
     */
    private void sealSession() {
        short state = MASTER_SECRET;
        Util.setShort(secrets, (short) (state + SessionCache.STATE_SUITE), st[ST_SUITE]);
        secrets[(short) (state + SessionCache.STATE_FLAGS)] = SessionCache.FLAG_EXTENDED_MASTER_SECRET;
        secrets[(short) (state + SessionCache.STATE_SLOT)] = identitySlot();
        writeClientIdentity(secrets, (short) (state + SessionCache.STATE_CLIENT));
        cache.seal(st[ST_CACHE_ENTRY], secrets, state);
        ram.clearBytes(HASH, (short) (KEYS_SIZE - Tls.MASTER_SECRET_SIZE));
    }

    /** The slot of the identity this handshake serves. */
    private byte identitySlot() {
        for (byte slot = 0; slot < Constants.MAX_IDENTITIES; slot++) {
            if (persistent.slot(slot) == boundIdentity()) {
                return slot;
            }
        }
        return -1;
    }

    /**
     * The client identity sealed with the session (SessionCache.CLIENT_SIZE bytes): the commonName
     * of the client whose CertificateVerify this handshake verified (ClientCertStore's entry of the
     * session; a length byte 0 when no client authenticated).
     */
    private void writeClientIdentity(byte[] out, short off) {
        persistent.clientCerts.copyEntry(sessions.current(), out, off);
    }

    /**
     * A resumed session keeps the client identity it was established with: its commonName is the
     * session's again (GET DATA 17). Counted as EEPROM bytes written.
     */
    private void restoreClientIdentity(byte[] in, short off) {
        counters.count(OpCounters.EEPROM_BYTES, persistent.clientCerts.restoreEntry(sessions.current(), in, off));
    }

    /** The ticket's length: TICKET_SIZE, or 0 (F_EMPTY_TICKET). */
    private short ticketLength() {
        return (st[ST_FLAGS] & F_EMPTY_TICKET) != 0 ? 0 : SessionCache.TICKET_SIZE;
    }

    /** The NewSessionTicket's header (KEY_BLOCK scratch for the transcript, or the flight). */
    private short ticketMessageHead(byte[] out, short w) {
        out[w++] = Tls.HS_NEW_SESSION_TICKET;
        out[w++] = 0;
        w = Util.setShort(out, w, (short) (TICKET_MESSAGE_HEAD - Tls.HS_HEADER_SIZE + ticketLength()));
        w = Util.setShort(out, w, (short) 0);
        w = Util.setShort(out, w, TICKET_LIFETIME_HINT);
        return Util.setShort(out, w, ticketLength());
    }

    /** Adds the NewSessionTicket the server will send to the transcript (before its Finished); returns its length. */
    private short hashNewSessionTicket() {
        ticketMessageHead(secrets, KEY_BLOCK);
        transcript().update(secrets, KEY_BLOCK, TICKET_MESSAGE_HEAD);
        ram.clearBytes(KEY_BLOCK, TICKET_MESSAGE_HEAD);
        if (ticketLength() == 0) {
            return TICKET_MESSAGE_HEAD;
        }
        transcript().update(cache.keyIdArray(), (short) 0, SessionCache.KEY_ID_SIZE);
        short e = SessionCache.entryOf(st[ST_CACHE_ENTRY]);
        transcript().update(cache.entryArray(), SessionCache.sealedOffset(e), SessionCache.sealedSize());
        return TICKET_MESSAGE_SIZE;
    }

    /** The NewSessionTicket record (RFC 5077 3.3) at buf[w]; returns the offset after it. */
    private short writeNewSessionTicket(byte[] buf, short w) {
        buf[w] = Tls.CONTENT_HANDSHAKE;
        Util.setShort(buf, (short) (w + 1), Tls.VERSION_TLS12);
        Util.setShort(buf, (short) (w + 3), (short) (TICKET_MESSAGE_HEAD + ticketLength()));
        w = ticketMessageHead(buf, (short) (w + Tls.RECORD_HEADER_SIZE));
        if (ticketLength() == 0) {
            return w;
        }
        return cache.writeTicket(SessionCache.entryOf(st[ST_CACHE_ENTRY]), buf, w);
    }

    /**
     * The abbreviated handshake's server flight (RFC 5246 7.3): ServerHello, ChangeCipherSpec,
     * Finished. The keys come from the resumed master secret; both verify_data are computed now,
     * the client's over the server's Finished it must have seen, so the master secret dies with
     * this APDU as in a full handshake.
     */
    private short writeAbbreviatedFlight(byte[] buf, short off) {
        short w = (short) (off + Tls.RECORD_HEADER_SIZE);
        w = writeServerHello(buf, w);
        buf[off] = Tls.CONTENT_HANDSHAKE;
        Util.setShort(buf, (short) (off + 1), Tls.VERSION_TLS12);
        Util.setShort(buf, (short) (off + 3), (short) (w - off - Tls.RECORD_HEADER_SIZE));
        deriveKeys();
        short rest = st[ST_HASH_REST];
        sessionHash().doFinal(secrets, HASH, (short) 0, secrets, HASH);
        countFinalBlocks(rest);
        finishedVerifyData(LABEL_SERVER_FINISHED, (short) LABEL_SERVER_FINISHED.length, SERVER_VERIFY);
        short message = KEY_BLOCK; // the server's Finished message, for the transcript
        secrets[message] = Tls.HS_FINISHED;
        secrets[(short) (message + 1)] = 0;
        Util.setShort(secrets, (short) (message + 2), Tls.VERIFY_DATA_SIZE);
        Util.arrayCopyNonAtomic(secrets, SERVER_VERIFY, secrets, (short) (message + Tls.HS_HEADER_SIZE),
                Tls.VERIFY_DATA_SIZE);
        transcript().doFinal(secrets, message, FINISHED_MESSAGE_SIZE, secrets, HASH);
        countFinalBlocks((short) (rest + FINISHED_MESSAGE_SIZE));
        finishedVerifyData(LABEL_CLIENT_FINISHED, (short) LABEL_CLIENT_FINISHED.length, CLIENT_VERIFY);
        ram.clearBytes(MASTER_SECRET, KEYS_SIZE);
        w = writeChangeCipherSpecAndFinished(buf, w);
        st[ST_PHASE] = PHASE_EXPECT_CHANGE_CIPHER_SPEC;
        return (short) (w - off);
    }

    // ---- after the handshake: the record layer in the card ------------------------------------

    /** Protects {@code len} bytes at off + prefix as a record of {@code type}; returns its length. */
    short protectRecord(byte type, byte[] buf, short off, short len) {
        return cipher.protect(type, buf, off, len);
    }

    /** Writes a protected fatal alert at buf[off] and ends the session; returns its length. */
    short closeWithAlert(byte[] buf, short off, byte description) {
        short p = (short) (off + cipher.prefixLength());
        buf[p] = Tls.ALERT_FATAL;
        buf[(short) (p + 1)] = description;
        short n = protectRecord(Tls.CONTENT_ALERT, buf, off, (short) 2);
        endSession();
        return n;
    }

    short prefixLength() {
        return cipher.prefixLength();
    }

    /** Hands the record state to the host (tandem mode); the card stops protecting records. */
    short exportKeys(byte[] out, short off) {
        short n = Util.setShort(out, off, st[ST_SUITE]);
        n = (short) (n - off + cipher.export(out, n));
        cipher.clear();
        st[ST_PHASE] = PHASE_EXPORTED;
        return n;
    }

    void endSession() {
        cipher.clear();
        st[ST_PHASE] = PHASE_FAILED;
    }
}
