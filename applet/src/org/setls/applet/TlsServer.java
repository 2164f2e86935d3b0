package org.setls.applet;

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
 * Flights arrive whole from the EAP-TLS transport: flight 1 (ClientHello) is answered with
 * ServerHello, Certificate, ServerKeyExchange, ServerHelloDone in one record; flight 3
 * (ClientKeyExchange, ChangeCipherSpec, Finished) with ChangeCipherSpec and Finished. Any failure
 * ends the handshake with the fatal alert RFC 5246 7.2.2 names for it.
 *
 * Two transcript digests run side by side because a card cannot copy a digest's state: SESSION
 * stops after ClientKeyExchange (RFC 7627 session_hash, also the client Finished's hash), TRANSCRIPT
 * goes on through the client's Finished (the server Finished's hash).
 *
 * RAM, from the arena (a deselect forgets the session): session state Transients.TLS_RANDOMS
 * (RANDOMS_SIZE bytes), TLS_STATE (STATE_SIZE shorts) and TLS_IDENTITY; one-APDU scratch
 * Transients.HANDSHAKE_KEYS (KEYS_SIZE bytes), whose secrets are all derived, used and wiped while
 * flight 3 is processed.
 */
final class TlsServer implements MessageHandler {
    // Randoms, session state: bytes of the arena from Transients.TLS_RANDOMS. Adjacent because the
    // ServerKeyExchange signature and the master secret (without EMS) both take
    // client_random + server_random.
    private static final short CLIENT_RANDOM = Transients.TLS_RANDOMS;
    private static final short SERVER_RANDOM = (short) (CLIENT_RANDOM + Tls.RANDOM_SIZE);
    static final short RANDOMS_SIZE = 2 * Tls.RANDOM_SIZE;
    // Flight 3's secrets, scratch: bytes of the arena from Transients.HANDSHAKE_KEYS.
    private static final short HASH_SIZE = 32;
    private static final short KEY_BLOCK_MAX = 96;
    private static final short MASTER_SECRET = Transients.HANDSHAKE_KEYS;
    private static final short HASH = (short) (MASTER_SECRET + Tls.MASTER_SECRET_SIZE);
    private static final short VERIFY_DATA = (short) (HASH + HASH_SIZE);
    private static final short KEY_BLOCK = (short) (VERIFY_DATA + Tls.VERIFY_DATA_SIZE); // also the premaster secret briefly
    static final short KEYS_SIZE = Tls.MASTER_SECRET_SIZE + HASH_SIZE + Tls.VERIFY_DATA_SIZE + KEY_BLOCK_MAX;

    // State, session state: shorts of the arena from Transients.TLS_STATE.
    private static final short ST_PHASE = Transients.TLS_STATE;
    private static final short ST_SUITE = (short) (ST_PHASE + 1);
    private static final short ST_FLAGS = (short) (ST_PHASE + 2);
    private static final short ST_HASHED = (short) (ST_PHASE + 3); // bytes in each transcript digest so far
    static final short STATE_SIZE = 4;
    private static final short IDENTITY = Transients.TLS_IDENTITY;

    static final short PHASE_EXPECT_CLIENT_HELLO = 0;
    static final short PHASE_EXPECT_CLIENT_KEY_EXCHANGE = 1;
    static final short PHASE_ESTABLISHED = 2;
    static final short PHASE_FAILED = 3;
    static final short PHASE_EXPORTED = 4;

    // ST_FLAGS bits: what the ClientHello asked for.
    private static final short F_EXTENDED_MASTER_SECRET = 0x01;
    private static final short F_RENEGOTIATION_INFO = 0x02;
    private static final short F_POINT_FORMATS = 0x04;

    private static final short ALERT_RECORD_SIZE = 7;
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
    private final MessageDigest transcript;
    private final MessageDigest session;
    private final KeyPair ephemeral;
    private final KeyAgreement ecdh;
    private final Signature signer;
    private final RandomData random;
    private final TlsPrf prf;
    private final EcKeyGenerator keys;
    private final PointCheck curve;
    private final RecordCipher cipher;
    private final TlsAlert alert;
    private final OpCounters counters;
    private final Persistent persistent;

    /** Allocated once, at install; the state is the arena's. */
    TlsServer(TlsPrf prf, RecordCipher cipher, RandomData random, EcKeyGenerator keys, OpCounters counters,
              Persistent persistent, Transients ram) {
        this.persistent = persistent;
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
        transcript = MessageDigest.getInstance(MessageDigest.ALG_SHA_256, false);
        session = MessageDigest.getInstance(MessageDigest.ALG_SHA_256, false);
        ephemeral = P256.newKeyPair();
        ecdh = KeyAgreement.getInstance(KeyAgreement.ALG_EC_SVDP_DH_PLAIN, false);
        signer = Signature.getInstance(Signature.ALG_ECDSA_SHA_256, false);
        alert = new TlsAlert();
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

    public void reset() {
        st[ST_PHASE] = PHASE_EXPECT_CLIENT_HELLO;
        st[ST_SUITE] = 0;
        st[ST_FLAGS] = 0;
        st[ST_HASHED] = 0;
        transcript.reset();
        session.reset();
        cipher.clear();
        ram.clearBytes(CLIENT_RANDOM, RANDOMS_SIZE);
        ram.clearBytes(MASTER_SECRET, KEYS_SIZE);
    }

    public boolean finished() {
        return st[ST_PHASE] == PHASE_ESTABLISHED;
    }

    public boolean failed() {
        return st[ST_PHASE] == PHASE_FAILED;
    }

    public short onMessage(byte[] buf, short off, short len, short cap) {
        try {
            short phase = st[ST_PHASE];
            if (phase == PHASE_EXPECT_CLIENT_HELLO) {
                return onClientHelloFlight(buf, off, len);
            }
            if (phase == PHASE_EXPECT_CLIENT_KEY_EXCHANGE) {
                return onClientKeyExchangeFlight(buf, off, len);
            }
            alert.raise(Tls.ALERT_UNEXPECTED_MESSAGE);
        } catch (TlsAlert a) {
            return fail(buf, off, (byte) a.getReason());
        } catch (CryptoException e) {
            return fail(buf, off, Tls.ALERT_INTERNAL_ERROR);
        } catch (ArrayIndexOutOfBoundsException e) {
            // Every length is checked; this is the last net under a malformed message.
            return fail(buf, off, Tls.ALERT_DECODE_ERROR);
        }
        return 0;
    }

    /** Ends the handshake: forgets the keys and answers with the fatal alert (0 for a peer's alert). */
    private short fail(byte[] buf, short off, byte description) {
        reset();
        st[ST_PHASE] = PHASE_FAILED;
        if (description == Tls.ALERT_CLOSE_NOTIFY) {
            return 0;
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

    // ---- flight 1 -------------------------------------------------------------------------

    private short onClientHelloFlight(byte[] buf, short off, short len) {
        short end = (short) (off + len);
        short hsEnd = off;
        for (short p = off; p < end; ) {
            short fragment = checkRecordHeader(buf, p, end, false);
            byte type = buf[p];
            if (type == Tls.CONTENT_ALERT) {
                alert.raise(Tls.ALERT_CLOSE_NOTIFY); // the client gave up: nothing to answer
            }
            if (type != Tls.CONTENT_HANDSHAKE) {
                alert.raise(Tls.ALERT_UNEXPECTED_MESSAGE);
            }
            // Gather the handshake bytes of all records (a message may span records).
            Util.arrayCopyNonAtomic(buf, (short) (p + Tls.RECORD_HEADER_SIZE), buf, hsEnd, fragment);
            hsEnd += fragment;
            p += (short) (Tls.RECORD_HEADER_SIZE + fragment);
        }
        short body = handshakeBody(buf, off, hsEnd, Tls.HS_CLIENT_HELLO);
        if ((short) (body + Tls.HS_HEADER_SIZE) != (short) (hsEnd - off)) {
            alert.raise(Tls.ALERT_UNEXPECTED_MESSAGE); // something follows the ClientHello
        }
        parseClientHello(buf, (short) (off + Tls.HS_HEADER_SIZE), hsEnd);
        hashHandshake(buf, off, (short) (hsEnd - off));
        return writeServerFlight(buf, off);
    }

    /** Validates a record header; returns its fragment length. */
    private short checkRecordHeader(byte[] buf, short p, short end, boolean strictVersion) {
        if ((short) (end - p) < Tls.RECORD_HEADER_SIZE) {
            alert.raise(Tls.ALERT_DECODE_ERROR);
        }
        short fragment = Util.getShort(buf, (short) (p + 3));
        // The ClientHello's record may carry any TLS 1.x version (RFC 5246 appendix E.1).
        if (buf[(short) (p + 1)] != Tls.VERSION_MAJOR
                || (strictVersion && buf[(short) (p + 2)] != Tls.VERSION_MINOR_TLS12)) {
            alert.raise(Tls.ALERT_PROTOCOL_VERSION);
        }
        if (fragment < 0 || fragment > Tls.MAX_CIPHERTEXT) {
            alert.raise(Tls.ALERT_RECORD_OVERFLOW);
        }
        if (fragment > (short) (end - p - Tls.RECORD_HEADER_SIZE)) {
            alert.raise(Tls.ALERT_DECODE_ERROR);
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

    private void need(short p, short n, short end) {
        if (n < 0 || n > (short) (end - p)) {
            alert.raise(Tls.ALERT_DECODE_ERROR);
        }
    }

    private void parseClientHello(byte[] buf, short p, short end) {
        need(p, (short) (2 + Tls.RANDOM_SIZE + 1), end);
        // client_version: TLS 1.2 or a later version (we answer 1.2).
        if (buf[p] != Tls.VERSION_MAJOR || buf[(short) (p + 1)] < Tls.VERSION_MINOR_TLS12) {
            alert.raise(Tls.ALERT_PROTOCOL_VERSION);
        }
        p += 2;
        Util.arrayCopyNonAtomic(buf, p, secrets, CLIENT_RANDOM, Tls.RANDOM_SIZE);
        p += Tls.RANDOM_SIZE;
        short sessionIdLength = (short) (buf[p] & 0xFF);
        if (sessionIdLength > 32) {
            alert.raise(Tls.ALERT_ILLEGAL_PARAMETER);
        }
        p += (short) (1 + sessionIdLength);
        need(p, (short) 2, end);
        short suitesLength = Util.getShort(buf, p);
        p += 2;
        need(p, suitesLength, end);
        if (suitesLength < 2 || (suitesLength & 1) != 0) {
            alert.raise(Tls.ALERT_DECODE_ERROR);
        }
        short suites = p;
        p += suitesLength;
        need(p, (short) 1, end);
        short compressionLength = (short) (buf[p] & 0xFF);
        p++;
        need(p, compressionLength, end);
        if (!containsByte(buf, p, compressionLength, Tls.COMPRESSION_NULL)) {
            alert.raise(Tls.ALERT_ILLEGAL_PARAMETER);
        }
        p += compressionLength;
        if (p != end) {
            need(p, (short) 2, end);
            short extensionsLength = Util.getShort(buf, p);
            p += 2;
            if (extensionsLength != (short) (end - p)) {
                alert.raise(Tls.ALERT_DECODE_ERROR);
            }
            parseExtensions(buf, p, end);
        }
        // After the extensions: server_name may have chosen another identity, with its own suites.
        chooseSuite(buf, suites, suitesLength);
    }

    /**
     * server_name (RFC 6066 section 3): the first host_name selects the identity that lists it in
     * its SNI names, if that identity is personalised and unlocked; otherwise the identity the
     * conversation named (the default) answers.
     */
    private void selectByServerName(byte[] buf, short p, short length) {
        short end = (short) (p + length);
        need(p, (short) 2, end);
        if (Util.getShort(buf, p) != (short) (length - 2)) {
            alert.raise(Tls.ALERT_DECODE_ERROR);
        }
        p += 2;
        while (p < end) {
            need(p, (short) 3, end);
            byte type = buf[p];
            short n = Util.getShort(buf, (short) (p + 1));
            p += 3;
            need(p, n, end);
            if (type == Tls.SERVER_NAME_HOST) {
                Identity id = persistent.findBySni(buf, p, n);
                if (id != null) {
                    bind(id);
                }
                return;
            }
            p += n;
        }
    }

    /** Server's preference order (the identity's list) over what the client offers. */
    private void chooseSuite(byte[] buf, short p, short length) {
        short end = (short) (p + length);
        for (short i = p; i < end; i += 2) {
            if (Util.getShort(buf, i) == Tls.TLS_EMPTY_RENEGOTIATION_INFO_SCSV) {
                st[ST_FLAGS] |= F_RENEGOTIATION_INFO;
            }
        }
        short suite = boundIdentity().preferredSuite(buf, p, length);
        if (suite == 0) {
            alert.raise(Tls.ALERT_HANDSHAKE_FAILURE);
        }
        st[ST_SUITE] = suite;
    }

    private void parseExtensions(byte[] buf, short p, short end) {
        boolean groupOk = true;
        boolean signatureOk = true;
        while (p < end) {
            need(p, (short) 4, end);
            short type = Util.getShort(buf, p);
            short length = Util.getShort(buf, (short) (p + 2));
            p += 4;
            need(p, length, end);
            if (type == Tls.EXT_SERVER_NAME) {
                selectByServerName(buf, p, length);
            } else if (type == Tls.EXT_SUPPORTED_GROUPS) {
                groupOk = containsShort(buf, p, length, Tls.GROUP_SECP256R1);
            } else if (type == Tls.EXT_SIGNATURE_ALGORITHMS) {
                signatureOk = containsShort(buf, p, length, Tls.SIG_ECDSA_SHA256);
            } else if (type == Tls.EXT_EC_POINT_FORMATS) {
                if (length < 1 || (short) (buf[p] & 0xFF) != (short) (length - 1)) {
                    alert.raise(Tls.ALERT_DECODE_ERROR);
                }
                if (!containsByte(buf, (short) (p + 1), (short) (length - 1), Tls.POINT_FORMAT_UNCOMPRESSED)) {
                    alert.raise(Tls.ALERT_ILLEGAL_PARAMETER); // RFC 8422 5.1.2
                }
                st[ST_FLAGS] |= F_POINT_FORMATS;
            } else if (type == Tls.EXT_EXTENDED_MASTER_SECRET) {
                if (length != 0) {
                    alert.raise(Tls.ALERT_DECODE_ERROR);
                }
                st[ST_FLAGS] |= F_EXTENDED_MASTER_SECRET;
            } else if (type == Tls.EXT_RENEGOTIATION_INFO) {
                // RFC 5746 3.6: on an initial handshake renegotiated_connection must be empty.
                if (length != 1 || buf[p] != 0) {
                    alert.raise(Tls.ALERT_HANDSHAKE_FAILURE);
                }
                st[ST_FLAGS] |= F_RENEGOTIATION_INFO;
            }
            // RFC 5246 7.4.1.4: extensions the server does not know are ignored.
            p += length;
        }
        if (!groupOk || !signatureOk) {
            alert.raise(Tls.ALERT_HANDSHAKE_FAILURE);
        }
    }

    /** Looks for a 2-byte value in a vector<2..2^16-2> with its 2-byte length prefix. */
    private boolean containsShort(byte[] buf, short p, short length, short value) {
        if (length < 2 || Util.getShort(buf, p) != (short) (length - 2) || (length & 1) != 0) {
            alert.raise(Tls.ALERT_DECODE_ERROR);
        }
        short end = (short) (p + length);
        for (short i = (short) (p + 2); i < end; i += 2) {
            if (Util.getShort(buf, i) == value) {
                return true;
            }
        }
        return false;
    }

    private static boolean containsByte(byte[] buf, short p, short length, byte value) {
        for (short i = 0; i < length; i++) {
            if (buf[(short) (p + i)] == value) {
                return true;
            }
        }
        return false;
    }

    // ---- flight 2 -------------------------------------------------------------------------

    private short writeServerFlight(byte[] buf, short off) {
        short w = (short) (off + Tls.RECORD_HEADER_SIZE);
        w = writeServerHello(buf, w);
        w = writeCertificate(buf, w);
        w = writeServerKeyExchange(buf, w);
        short start = w;
        buf[w] = Tls.HS_SERVER_HELLO_DONE;
        w += Tls.HS_HEADER_SIZE;
        w = closeHandshake(buf, start, w);
        buf[off] = Tls.CONTENT_HANDSHAKE;
        Util.setShort(buf, (short) (off + 1), Tls.VERSION_TLS12);
        Util.setShort(buf, (short) (off + 3), (short) (w - off - Tls.RECORD_HEADER_SIZE));
        st[ST_PHASE] = PHASE_EXPECT_CLIENT_KEY_EXCHANGE;
        return (short) (w - off);
    }

    private short writeServerHello(byte[] buf, short w) {
        short start = w;
        buf[w] = Tls.HS_SERVER_HELLO;
        w += Tls.HS_HEADER_SIZE;
        w = Util.setShort(buf, w, Tls.VERSION_TLS12);
        random.generateData(secrets, SERVER_RANDOM, Tls.RANDOM_SIZE);
        counters.count(OpCounters.RANDOM_BYTES, Tls.RANDOM_SIZE);
        w = Util.arrayCopyNonAtomic(secrets, SERVER_RANDOM, buf, w, Tls.RANDOM_SIZE);
        buf[w++] = 0; // empty session_id: this server does not resume sessions yet
        w = Util.setShort(buf, w, st[ST_SUITE]);
        buf[w++] = Tls.COMPRESSION_NULL;
        short extensions = w;
        w += 2;
        short flags = st[ST_FLAGS];
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
        w += Tls.HS_HEADER_SIZE;
        w = boundIdentity().writeChain(buf, w);
        return closeHandshake(buf, start, w);
    }

    /** ECParameters + ECPoint (RFC 8422 5.4), signed over client_random + server_random + params. */
    private short writeServerKeyExchange(byte[] buf, short w) {
        short start = w;
        buf[w] = Tls.HS_SERVER_KEY_EXCHANGE;
        w += Tls.HS_HEADER_SIZE;
        short params = w;
        buf[w++] = Tls.CURVE_TYPE_NAMED;
        w = Util.setShort(buf, w, Tls.GROUP_SECP256R1);
        buf[w++] = (byte) P256.POINT_SIZE;
        keys.generate(ephemeral, secrets, KEY_BLOCK);
        counters.count(OpCounters.EC_KEYGEN, (short) 1);
        w += ((ECPublicKey) ephemeral.getPublic()).getW(buf, w);
        short paramsLength = (short) (w - params);
        w = Util.setShort(buf, w, Tls.SIG_ECDSA_SHA256);
        signer.init(boundIdentity().privateKey(), Signature.MODE_SIGN);
        signer.update(secrets, CLIENT_RANDOM, (short) (2 * Tls.RANDOM_SIZE));
        short signature = signer.sign(buf, params, paramsLength, buf, (short) (w + 2));
        counters.count(OpCounters.ECDSA_SIGN, (short) 1);
        w = Util.setShort(buf, w, signature);
        w += signature;
        return closeHandshake(buf, start, w);
    }

    /** Fills in a handshake message's length and adds it to the transcript. */
    private short closeHandshake(byte[] buf, short start, short end) {
        buf[(short) (start + 1)] = 0;
        Util.setShort(buf, (short) (start + 2), (short) (end - start - Tls.HS_HEADER_SIZE));
        hashHandshake(buf, start, (short) (end - start));
        return end;
    }

    private void hashHandshake(byte[] buf, short off, short len) {
        transcript.update(buf, off, len);
        session.update(buf, off, len);
        st[ST_HASHED] += len;
    }

    // ---- flight 3 -------------------------------------------------------------------------

    private short onClientKeyExchangeFlight(byte[] buf, short off, short len) {
        short end = (short) (off + len);
        short hsEnd = off;
        boolean changeCipherSpec = false;
        boolean finished = false;
        for (short p = off; p < end; ) {
            short fragment = checkRecordHeader(buf, p, end, true);
            byte type = buf[p];
            if (type == Tls.CONTENT_ALERT && !changeCipherSpec) {
                alert.raise(Tls.ALERT_CLOSE_NOTIFY);
            }
            if (finished) {
                alert.raise(Tls.ALERT_UNEXPECTED_MESSAGE); // nothing may follow Finished
            }
            if (!changeCipherSpec && type == Tls.CONTENT_HANDSHAKE) {
                Util.arrayCopyNonAtomic(buf, (short) (p + Tls.RECORD_HEADER_SIZE), buf, hsEnd, fragment);
                hsEnd += fragment;
            } else if (!changeCipherSpec && type == Tls.CONTENT_CHANGE_CIPHER_SPEC) {
                if (fragment != 1 || buf[(short) (p + Tls.RECORD_HEADER_SIZE)] != 1) {
                    alert.raise(Tls.ALERT_DECODE_ERROR);
                }
                onClientKeyExchange(buf, off, hsEnd);
                changeCipherSpec = true;
            } else if (changeCipherSpec && type == Tls.CONTENT_HANDSHAKE) {
                short plain = cipher.unprotect(buf, p);
                if (plain < 0) {
                    alert.raise(Tls.ALERT_BAD_RECORD_MAC);
                }
                onClientFinished(buf, (short) (p + cipher.prefixLength()), plain);
                finished = true;
            } else {
                alert.raise(Tls.ALERT_UNEXPECTED_MESSAGE);
            }
            p += (short) (Tls.RECORD_HEADER_SIZE + fragment);
        }
        if (!finished) {
            alert.raise(Tls.ALERT_UNEXPECTED_MESSAGE); // the flight ended before Finished
        }
        return writeServerFinishedFlight(buf, off);
    }

    private void onClientKeyExchange(byte[] buf, short off, short end) {
        short body = handshakeBody(buf, off, end, Tls.HS_CLIENT_KEY_EXCHANGE);
        if ((short) (body + Tls.HS_HEADER_SIZE) != (short) (end - off)) {
            alert.raise(Tls.ALERT_UNEXPECTED_MESSAGE);
        }
        short point = (short) (off + Tls.HS_HEADER_SIZE + 1);
        short pointLength = (short) (buf[(short) (off + Tls.HS_HEADER_SIZE)] & 0xFF);
        if ((short) (pointLength + 1) != body) {
            alert.raise(Tls.ALERT_DECODE_ERROR);
        }
        if (!P256.isPlausiblePoint(buf, point, pointLength) || !curve.isOnCurve(buf, point)) {
            alert.raise(Tls.ALERT_ILLEGAL_PARAMETER);
        }
        transcript.update(buf, off, (short) (end - off));
        session.doFinal(buf, off, (short) (end - off), secrets, HASH);
        st[ST_HASHED] += (short) (end - off);
        counters.countDigest(st[ST_HASHED]);
        short premaster = agree(buf, point, pointLength);
        deriveMasterSecret(premaster);
        deriveKeys();
    }

    /** ECDH with the client's point; any refusal of the point is an illegal_parameter. */
    private short agree(byte[] buf, short point, short pointLength) {
        short length = 0;
        try {
            ecdh.init(ephemeral.getPrivate());
            length = ecdh.generateSecret(buf, point, pointLength, secrets, KEY_BLOCK);
            counters.count(OpCounters.ECDH, (short) 1);
        } catch (CryptoException e) {
            alert.raise(Tls.ALERT_ILLEGAL_PARAMETER);
        } catch (RuntimeException e) {
            // jcardsim rejects an off-curve point with an exception of the host JVM (Quirks: INVALID_POINT).
            alert.raise(Tls.ALERT_ILLEGAL_PARAMETER);
        } finally {
            ephemeral.getPrivate().clearKey();
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

    private void onClientFinished(byte[] buf, short p, short len) {
        if (len != (short) (Tls.HS_HEADER_SIZE + Tls.VERIFY_DATA_SIZE)) {
            alert.raise(Tls.ALERT_DECODE_ERROR);
        }
        handshakeBody(buf, p, (short) (p + len), Tls.HS_FINISHED);
        finishedVerifyData(LABEL_CLIENT_FINISHED, (short) LABEL_CLIENT_FINISHED.length);
        byte diff = 0;
        for (short i = 0; i < Tls.VERIFY_DATA_SIZE; i++) {
            diff |= (byte) (secrets[(short) (VERIFY_DATA + i)] ^ buf[(short) (p + Tls.HS_HEADER_SIZE + i)]);
        }
        if (diff != 0) {
            alert.raise(Tls.ALERT_DECRYPT_ERROR);
        }
        transcript.doFinal(buf, p, len, secrets, HASH);
        counters.countDigest((short) (st[ST_HASHED] + len));
    }

    /** verify_data = PRF(master_secret, label, Hash(handshake_messages))[0..11] (RFC 5246 7.4.9). */
    private void finishedVerifyData(byte[] label, short labelLength) {
        prf.derive(secrets, MASTER_SECRET, Tls.MASTER_SECRET_SIZE, label, (short) 0, labelLength,
                secrets, HASH, HASH_SIZE, null, (short) 0, (short) 0,
                secrets, VERIFY_DATA, Tls.VERIFY_DATA_SIZE);
    }

    // ---- flight 4 -------------------------------------------------------------------------

    private short writeServerFinishedFlight(byte[] buf, short off) {
        short w = off;
        buf[w++] = Tls.CONTENT_CHANGE_CIPHER_SPEC;
        w = Util.setShort(buf, w, Tls.VERSION_TLS12);
        w = Util.setShort(buf, w, (short) 1);
        buf[w++] = 1;
        finishedVerifyData(LABEL_SERVER_FINISHED, (short) LABEL_SERVER_FINISHED.length);
        short p = (short) (w + cipher.prefixLength());
        buf[p] = Tls.HS_FINISHED;
        buf[(short) (p + 1)] = 0;
        Util.setShort(buf, (short) (p + 2), Tls.VERIFY_DATA_SIZE);
        Util.arrayCopyNonAtomic(secrets, VERIFY_DATA, buf, (short) (p + Tls.HS_HEADER_SIZE), Tls.VERIFY_DATA_SIZE);
        short plain = (short) (Tls.HS_HEADER_SIZE + Tls.VERIFY_DATA_SIZE);
        w += cipher.protect(Tls.CONTENT_HANDSHAKE, buf, w, plain);
        st[ST_PHASE] = PHASE_ESTABLISHED;
        Util.arrayFillNonAtomic(secrets, MASTER_SECRET, Tls.MASTER_SECRET_SIZE, (byte) 0);
        return (short) (w - off);
    }

    // ---- after the handshake: the record layer in the card ------------------------------------

    /**
     * Decrypts the TLS record in buf[off, off+len); returns the plaintext length (plaintext at
     * off + prefixLength()) or -1 when the record must be rejected (closeWithAlert() then writes
     * the alert to send).
     */
    short unprotectRecord(byte[] buf, short off, short len) {
        short end = (short) (off + len);
        short fragment = checkRecordHeaderQuietly(buf, off, end);
        if (fragment < 0 || (short) (fragment + Tls.RECORD_HEADER_SIZE) != len) {
            return -1;
        }
        short plain = cipher.unprotect(buf, off);
        if (plain > Tls.MAX_PLAINTEXT) {
            return -1;
        }
        return plain;
    }

    private short checkRecordHeaderQuietly(byte[] buf, short off, short end) {
        if ((short) (end - off) < Tls.RECORD_HEADER_SIZE) {
            return -1;
        }
        byte type = buf[off];
        if (type != Tls.CONTENT_APPLICATION_DATA && type != Tls.CONTENT_ALERT
                && type != Tls.CONTENT_HANDSHAKE) {
            return -1;
        }
        if (Util.getShort(buf, (short) (off + 1)) != Tls.VERSION_TLS12) {
            return -1;
        }
        short fragment = Util.getShort(buf, (short) (off + 3));
        return fragment < 0 || fragment > Tls.MAX_CIPHERTEXT ? -1 : fragment;
    }

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
