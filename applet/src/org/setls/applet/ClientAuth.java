package org.setls.applet;

import javacard.framework.APDU;
import javacard.framework.ISO7816;
import javacard.framework.ISOException;
import javacard.framework.Util;
import javacard.security.CryptoException;
import javacard.security.ECPublicKey;
import javacard.security.KeyBuilder;
import javacard.security.MessageDigest;
import javacard.security.Signature;
import javacardx.crypto.Cipher;

/**
 * Client authentication in the TLS 1.2 handshake (RFC 5246 7.4.4, 7.4.6, 7.4.8; RFC 8422 5.5),
 * decided in the card: the CertificateRequest (ecdsa_sign, ecdsa_secp256r1_sha256, the DER names
 * of the identity's CAs), the client's Certificate (at most two certificates of at most 1 KB,
 * P-256 keys, ecdsa-with-SHA256; each signature verified in the card with ALG_ECDSA_SHA_256; the
 * top one issued by a CA of the identity; revoked serials; validity against the host's clock) and
 * the CertificateVerify, verified with the leaf's key over the handshake messages ClientHello ..
 * ClientKeyExchange, whose SHA-256 is the RFC 7627 session_hash the card computed:
 * <ul>
 * <li>with ECDSA over a precomputed hash ({@code Signature.getInstance(ALG_NULL,
 *     SIG_CIPHER_ECDSA, PAD_NULL)}, Java Card 3.0.4 API, probed at install: SELECT capability
 *     CAP2_ECDSA_PRECOMPUTED_HASH) over the session hash;</li>
 * <li>or, on any card, over a transcript copy the host puts before the CertificateVerify
 *     (content type Constants.CONTENT_TRANSCRIPT_COPY): its bytes go to ALG_ECDSA_SHA_256 and to
 *     a SHA-256 that must equal the session hash. The host chooses (docs/apdu.md).</li>
 * </ul>
 * Never {@code Signature.verifyPreComputedHash} (Java Card 3.1). Flight 3 comes in one message
 * (the Certificate's key object and the master secret live within that APDU).
 *
 * The client Finished covers the CertificateVerify, which the session hash does not: a third
 * digest per handshake slot runs from the ClientHello and, when a certificate is asked for, through
 * the CertificateVerify (TlsServer's two digests cannot be copied).
 *
 * RAM: the session hash for the CertificateVerify, Transients.CLIENT_AUTH_HASH (TlsServer's, in
 * its one-APDU scratch); the state, Transients.CLIENT_AUTH_STATE (handshake shorts); the host's clock,
 * Transients.CLOCK (card-wide); scratch Transients.CERT_FIELDS (shorts) and CERT_WORK (bytes).
 */
final class ClientAuth {
    static final short HASH_SIZE = 32;
    /** The clock: set (1), then year (2), month, day, hour, minute, second. */
    static final short CLOCK_SIZE = 8;
    static final short STATE_SIZE = 3;
    /** Scratch: a certificate's time, the clock's, a SHA-256. */
    static final short WORK_SIZE = 48;
    static final short FIELDS_SIZE = (short) (2 * X509.FIELDS);
    /** The largest Certificate message body taken: two certificates of CERTIFICATE_MAX. */
    static final short CERTIFICATE_MESSAGE_MAX = (short) (3 + 2 * (3 + X509.CERTIFICATE_MAX));
    static final short CERTIFICATE_VERIFY_MAX = 128;

    private static final short ST_STATE = Transients.CLIENT_AUTH_STATE;
    private static final short ST_SUBJECT = (short) (ST_STATE + 1); // commonName bytes staged
    private static final short ST_REST = (short) (ST_STATE + 2);    // the third digest's bytes mod 64

    static final short S_NONE = 0;        // no certificate asked for: the third digest is idle
    static final short S_HELLO = 1;       // flight 1: the third digest runs
    static final short S_ASKED = 2;       // CertificateRequest sent
    static final short S_NO_CERTIFICATE = 3;
    static final short S_KEY = 4;         // the chain is accepted; CertificateVerify expected
    static final short S_COPYING = 5;     // the transcript copy is being verified
    static final short S_VERIFIED = 6;

    private static final short HASH = Transients.CLIENT_AUTH_HASH;
    private static final short CLOCK = Transients.CLOCK;
    private static final short WORK = Transients.CERT_WORK;
    private static final short FIELDS = Transients.CERT_FIELDS;

    private final byte[] bytes;
    private final short[] st;
    private final TlsAlert alert;
    private final Sessions sessions;
    private final OpCounters counters;
    private final Persistent persistent;
    private final MessageDigest[] finishedHashes;
    private final MessageDigest sha;
    private final Signature verifier;
    /** ECDSA over a precomputed hash (ALG_NULL), or null where the card has none. */
    private final Signature precomputed;
    private final ECPublicKey key;

    /** Allocated once, at install. */
    ClientAuth(Transients ram, TlsAlert alert, Sessions sessions, OpCounters counters, Persistent persistent,
               Signature verifier, MessageDigest sha) {
        bytes = ram.bytes;
        st = ram.shorts;
        this.alert = alert;
        this.sessions = sessions;
        this.counters = counters;
        this.persistent = persistent;
        finishedHashes = new MessageDigest[Sessions.HANDSHAKES];
        for (short k = 0; k < Sessions.HANDSHAKES; k++) {
            finishedHashes[k] = MessageDigest.getInstance(MessageDigest.ALG_SHA_256, false);
        }
        // Shared, never in use at once (docs/resources.md): the server's ECDSA-SHA256 signer
        // (flight 2; re-initialised to verify here) and the HMAC's SHA-256 (no HMAC runs between
        // a reset here and its doFinal).
        this.sha = sha;
        this.verifier = verifier;
        precomputed = precomputedHashSignature();
        key = (ECPublicKey) KeyBuilder.buildKey(KeyBuilder.TYPE_EC_FP_PUBLIC, KeyBuilder.LENGTH_EC_FP_256, false);
        P256.setDomainParameters(key);
    }

    /** Quirks: ECDSA_PRECOMPUTED_HASH. ECDSA with no digest (JC 3.0.4 API), or null where absent. */
    private static Signature precomputedHashSignature() {
        try {
            return Signature.getInstance(MessageDigest.ALG_NULL, Signature.SIG_CIPHER_ECDSA, Cipher.PAD_NULL, false);
        } catch (CryptoException e) {
            if (e.getReason() == CryptoException.NO_SUCH_ALGORITHM) {
                return null;
            }
            throw e;
        }
    }

    /** The SELECT response's CAPABILITIES_2 byte. */
    byte capabilities() {
        return precomputed != null ? Constants.CAP2_ECDSA_PRECOMPUTED_HASH : 0;
    }

    // ---- the host's clock -----------------------------------------------------------------------

    /**
     * SET TIME: year (2), month, day, hour, minute, second (UTC), the host's clock, trusted as
     * such; needs an identity whose PIN is verified (6982), checks the ranges (6A80, 6700). Kept in
     * RAM: a SELECT or a reset forgets it.
     */
    void setTime(APDU apdu) {
        byte[] buf = apdu.getBuffer();
        short len = apdu.setIncomingAndReceive();
        boolean user = false;
        for (byte i = 0; i < Constants.MAX_IDENTITIES; i++) {
            user |= persistent.slot(i).isUnlocked();
        }
        if (!user) {
            ISOException.throwIt(Sw.SECURITY_NOT_SATISFIED);
        }
        if (len != 7) {
            ISOException.throwIt(Sw.WRONG_LENGTH);
        }
        short d = ISO7816.OFFSET_CDATA;
        short year = Util.getShort(buf, d);
        if (year < 1950 || year > 9999 || outside(buf[(short) (d + 2)], (byte) 1, (byte) 12) || outside(buf[(short) (d + 3)], (byte) 1, (byte) 31)
                || outside(buf[(short) (d + 4)], (byte) 0, (byte) 23) || outside(buf[(short) (d + 5)], (byte) 0, (byte) 59)
                || outside(buf[(short) (d + 6)], (byte) 0, (byte) 60)) {
            ISOException.throwIt(Sw.WRONG_DATA);
        }
        Util.arrayCopyNonAtomic(buf, d, bytes, (short) (CLOCK + 1), (short) 7);
        bytes[CLOCK] = 1;
    }

    private static boolean outside(byte v, byte lo, byte hi) {
        return v < lo || v > hi;
    }

    // ---- the handshake --------------------------------------------------------------------------

    /**
     * A new handshake in the active session (after its slot was claimed) for identity {@code id}:
     * the third digest runs from the ClientHello only when its policy asks for a certificate (a
     * handshake without client authentication hashes its messages twice, not three times).
     */
    void begin(Identity id) {
        finishedHash().reset();
        st[ST_STATE] = asks(id) ? S_HELLO : S_NONE;
        st[ST_SUBJECT] = 0;
        st[ST_REST] = 0;
        persistent.clientCerts.forget(sessions.current());
    }

    private MessageDigest finishedHash() {
        return finishedHashes[sessions.handshakeSlot()];
    }

    /** Handshake messages: into the third digest while it runs (S_HELLO, then while authenticating). */
    void hash(byte[] buf, short off, short len) {
        short s = st[ST_STATE];
        if (s == S_NONE || s == S_NO_CERTIFICATE) {
            return;
        }
        finishedHash().update(buf, off, len);
        short total = (short) (st[ST_REST] + len);
        counters.count(OpCounters.SHA256_BLOCKS, (short) (total >> 6));
        st[ST_REST] = (short) (total & 63);
    }

    /** Whether the identity's policy asks for a certificate (optional or required). */
    static boolean asks(Identity id) {
        return (id.policy() & (byte) (Constants.POLICY_CLIENT_AUTH_OPTIONAL | Constants.POLICY_CLIENT_AUTH_REQUIRED)) != 0;
    }

    /**
     * Whether this handshake sends a CertificateRequest: the identity's policy asks, and asked
     * already when the handshake began (a policy changed meanwhile takes effect at the next one).
     */
    boolean asking(Identity id) {
        return asks(id) && st[ST_STATE] == S_HELLO;
    }

    /** No CertificateRequest in this handshake: the third digest stops. */
    void notAsking() {
        st[ST_STATE] = S_NONE;
        finishedHash().reset();
    }

    /**
     * The CertificateRequest's body at buf[w] (RFC 5246 7.4.4): certificate_types ecdsa_sign,
     * supported_signature_algorithms ecdsa_secp256r1_sha256, certificate_authorities = the DER
     * names of the identity's CAs; returns the end.
     */
    short writeRequest(Identity id, byte[] buf, short w) {
        buf[w++] = 1;
        buf[w++] = Tls.CERT_TYPE_ECDSA_SIGN;
        w = Util.setShort(buf, w, (short) 2);
        w = Util.setShort(buf, w, Tls.SIG_ECDSA_SHA256);
        short list = w;
        w += 2;
        byte[] cas = id.cas();
        short total = id.casLength();
        for (short p = 0; p < total; p += Identity.CA_ENTRY) {
            short n = (short) (cas[(short) (p + Identity.CA_NAME_LENGTH)] & 0xFF);
            if (n != 0) {
                w = Util.setShort(buf, w, n);
                w = Util.arrayCopyNonAtomic(cas, (short) (p + Identity.CA_NAME), buf, w, n);
            }
        }
        Util.setShort(buf, list, (short) (w - list - 2));
        st[ST_STATE] = S_ASKED;
        return w;
    }

    /** Whether a CertificateVerify must follow the ClientKeyExchange. */
    boolean expectsCertificateVerify() {
        return st[ST_STATE] == S_KEY;
    }

    /**
     * The client's Certificate body at buf[body, body+len): an empty list (handshake_failure under
     * a policy that requires a certificate), or a chain the card accepts; raises decode_error,
     * bad_certificate, unsupported_certificate, unknown_ca, certificate_revoked,
     * certificate_expired, certificate_unknown (dates demanded, no clock).
     */
    void onCertificate(Identity id, byte[] buf, short body, short len) {
        if (len < 3 || buf[body] != 0 || Util.getShort(buf, (short) (body + 1)) != (short) (len - 3)) {
            alert.raise(Tls.ALERT_DECODE_ERROR);
        }
        short end = (short) (body + len);
        short p = (short) (body + 3);
        if (p == end) {
            if ((id.policy() & Constants.POLICY_CLIENT_AUTH_REQUIRED) != 0) {
                alert.raise(Tls.ALERT_HANDSHAKE_FAILURE); // RFC 5246 7.4.6
            }
            st[ST_STATE] = S_NO_CERTIFICATE;
            finishedHash().reset();
            return;
        }
        short[] f = st;
        short count = 0;
        while (p < end) {
            if ((short) (end - p) < 3 || buf[p] != 0) {
                alert.raise(Tls.ALERT_DECODE_ERROR);
            }
            short n = Util.getShort(buf, (short) (p + 1));
            p += 3;
            if (n <= 0 || n > (short) (end - p)) {
                alert.raise(Tls.ALERT_DECODE_ERROR);
            }
            if (count == 2) {
                alert.raise(Tls.ALERT_UNSUPPORTED_CERTIFICATE); // chains of depth 2 at most
            }
            X509.parse(buf, p, n, f, (short) (FIELDS + count * X509.FIELDS), alert);
            count++;
            p += n;
        }
        short leaf = FIELDS;
        short top = (short) (FIELDS + (count - 1) * X509.FIELDS);
        if (count == 2) {
            if (f[(short) (leaf + X509.ISSUER_LENGTH)] != f[(short) (top + X509.SUBJECT_LENGTH)]
                    || Util.arrayCompare(buf, f[(short) (leaf + X509.ISSUER)], buf, f[(short) (top + X509.SUBJECT)],
                    f[(short) (leaf + X509.ISSUER_LENGTH)]) != 0
                    || f[(short) (top + X509.IS_CA)] == 0) {
                alert.raise(Tls.ALERT_BAD_CERTIFICATE); // the intermediate is not the leaf's issuer, or no CA
            }
            if (!verifies(buf, f, leaf, buf, f[(short) (top + X509.POINT)])) {
                alert.raise(Tls.ALERT_BAD_CERTIFICATE);
            }
        }
        short ca = findCa(id, buf, f[(short) (top + X509.ISSUER)], f[(short) (top + X509.ISSUER_LENGTH)]);
        if (ca < 0) {
            alert.raise(Tls.ALERT_UNKNOWN_CA);
        }
        if (!verifies(buf, f, top, id.cas(), (short) (ca + Identity.CA_POINT))) {
            alert.raise(Tls.ALERT_UNKNOWN_CA); // another CA of the same name: no stored CA signed it
        }
        for (short k = leaf; k <= top; k += X509.FIELDS) {
            if (persistent.clientCerts.isRevoked(buf, f[(short) (k + X509.SERIAL)], f[(short) (k + X509.SERIAL_LENGTH)])) {
                alert.raise(Tls.ALERT_CERTIFICATE_REVOKED);
            }
        }
        if (bytes[CLOCK] != 0) {
            for (short k = leaf; k <= top; k += X509.FIELDS) {
                X509.timeBytes(buf, f[(short) (k + X509.NOT_BEFORE)], bytes, WORK);
                if (X509.compareTimes(bytes, (short) (CLOCK + 1), bytes, WORK) < 0) {
                    alert.raise(Tls.ALERT_CERTIFICATE_EXPIRED); // not valid yet (RFC 5246: "not currently valid")
                }
                X509.timeBytes(buf, f[(short) (k + X509.NOT_AFTER)], bytes, WORK);
                if (X509.compareTimes(bytes, (short) (CLOCK + 1), bytes, WORK) > 0) {
                    alert.raise(Tls.ALERT_CERTIFICATE_EXPIRED);
                }
            }
        } else if ((id.policy() & Constants.POLICY_CLIENT_DATES_REQUIRED) != 0) {
            alert.raise(Tls.ALERT_CERTIFICATE_UNKNOWN); // dates demanded, and the host gave no time
        }
        P256.setDomainParameters(key); // Quirks: CURVE_PARAMETERS
        key.setW(buf, f[(short) (leaf + X509.POINT)], P256.POINT_SIZE);
        counters.count(OpCounters.EEPROM_BYTES, P256.POINT_SIZE);
        short cn = persistent.clientCerts.stage(sessions.current(), buf, f[(short) (leaf + X509.COMMON_NAME)],
                f[(short) (leaf + X509.COMMON_NAME_LENGTH)]);
        counters.count(OpCounters.EEPROM_BYTES, cn);
        st[ST_SUBJECT] = cn;
        st[ST_STATE] = S_KEY;
    }

    /** The offset of the CA entry whose subject hash is SHA-256(issuer), or -1. */
    private short findCa(Identity id, byte[] buf, short issuer, short issuerLength) {
        sha.reset();
        sha.doFinal(buf, issuer, issuerLength, bytes, WORK);
        counters.countDigest(issuerLength);
        byte[] cas = id.cas();
        short total = id.casLength();
        for (short p = 0; p < total; p += Identity.CA_ENTRY) {
            if (Util.arrayCompare(cas, (short) (p + Identity.CA_HASH), bytes, WORK, HASH_SIZE) == 0) {
                return p;
            }
        }
        return -1;
    }

    /** The certificate of fields f[k..] is signed by the key at point[off] (ECDSA P-256 SHA-256). */
    private boolean verifies(byte[] c, short[] f, short k, byte[] point, short off) {
        boolean ok;
        try {
            P256.setDomainParameters(key);
            key.setW(point, off, P256.POINT_SIZE);
            counters.count(OpCounters.EEPROM_BYTES, P256.POINT_SIZE);
            verifier.init(key, Signature.MODE_VERIFY);
            ok = verifier.verify(c, f[(short) (k + X509.TBS)], f[(short) (k + X509.TBS_LENGTH)],
                    c, f[(short) (k + X509.SIGNATURE)], f[(short) (k + X509.SIGNATURE_LENGTH)]);
        } catch (CryptoException e) {
            ok = false; // a signature that is not DER, a point the platform refuses
        }
        counters.count(OpCounters.ECDSA_VERIFY, (short) 1);
        counters.countDigest(f[(short) (k + X509.TBS_LENGTH)]);
        return ok;
    }

    /** At the ClientKeyExchange: the session hash (ClientHello .. ClientKeyExchange), for the CertificateVerify. */
    void keepSessionHash(byte[] src, short off) {
        if (src != bytes || off != HASH) {
            Util.arrayCopyNonAtomic(src, off, bytes, HASH, HASH_SIZE);
        }
    }

    /** A record of the transcript copy (before the CertificateVerify, in the same message). */
    void onTranscriptCopy(byte[] buf, short off, short len) {
        short s = st[ST_STATE];
        if (s == S_KEY) {
            verifier.init(key, Signature.MODE_VERIFY);
            sha.reset();
            st[ST_STATE] = S_COPYING;
        } else if (s != S_COPYING) {
            alert.raise(Tls.ALERT_UNEXPECTED_MESSAGE);
        }
        verifier.update(buf, off, len);
        sha.update(buf, off, len);
        counters.count(OpCounters.SHA256_BLOCKS, (short) (2 * (short) ((short) (len + 63) >> 6)));
    }

    /**
     * The CertificateVerify's body at buf[body, body+len) (RFC 5246 7.4.8): ecdsa_secp256r1_sha256
     * (else illegal_parameter) over the session hash; decrypt_error if it does not verify.
     */
    void onCertificateVerify(byte[] buf, short body, short len) {
        short s = st[ST_STATE];
        if (s != S_KEY && s != S_COPYING) {
            alert.raise(Tls.ALERT_UNEXPECTED_MESSAGE);
        }
        if (len < 4 || Util.getShort(buf, (short) (body + 2)) != (short) (len - 4)) {
            alert.raise(Tls.ALERT_DECODE_ERROR);
        }
        if (Util.getShort(buf, body) != Tls.SIG_ECDSA_SHA256) {
            alert.raise(Tls.ALERT_ILLEGAL_PARAMETER); // not a scheme the CertificateRequest offered
        }
        short sig = (short) (body + 4);
        short sigLength = (short) (len - 4);
        boolean ok;
        try {
            if (s == S_COPYING) {
                ok = verifier.verify(buf, sig, (short) 0, buf, sig, sigLength);
                sha.doFinal(buf, sig, (short) 0, bytes, WORK);
                if (Util.arrayCompare(bytes, WORK, bytes, HASH, HASH_SIZE) != 0) {
                    ok = false; // the copy is not the transcript the card hashed
                }
            } else if (precomputed != null) {
                precomputed.init(key, Signature.MODE_VERIFY);
                ok = precomputed.verify(bytes, HASH, HASH_SIZE, buf, sig, sigLength);
            } else {
                alert.raise(Tls.ALERT_INTERNAL_ERROR); // this card needs the transcript copy (docs/apdu.md)
                return;
            }
        } catch (CryptoException e) {
            ok = false;
        }
        counters.count(OpCounters.ECDSA_VERIFY, (short) 1);
        if (!ok) {
            alert.raise(Tls.ALERT_DECRYPT_ERROR);
        }
        persistent.clientCerts.authenticated(sessions.current(), st[ST_SUBJECT]);
        counters.count(OpCounters.EEPROM_BYTES, (short) 1);
        st[ST_STATE] = S_VERIFIED;
    }

    /**
     * After the CertificateVerify was hashed: SHA-256(ClientHello .. CertificateVerify), the hash
     * the client's Finished is computed over, at out[off].
     */
    void finishedHash(byte[] out, short off) {
        finishedHash().doFinal(out, off, (short) 0, out, off);
        counters.countDigest(st[ST_REST]);
    }
}
