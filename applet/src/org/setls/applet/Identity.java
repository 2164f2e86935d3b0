package org.setls.applet;

import javacard.framework.APDU;
import javacard.framework.ISOException;
import javacard.framework.JCSystem;
import javacard.framework.OwnerPIN;
import javacard.framework.Util;
import javacard.security.ECPrivateKey;
import javacard.security.ECPublicKey;
import javacard.security.KeyPair;

/**
 * One identity of the card (persistent, held by {@link Persistent}): its P-256 key pair, generated
 * in the card, whose private half no command can read; the certificate chain it presents; its
 * PIN; its policy; the cipher suites it offers, in the server's order of preference.
 *
 * Only the methods here change the fields, each after checking its input, so that a refused
 * command changes nothing; an update of more than one field runs in a transaction (a tear leaves
 * the old value or the new one, never half of each; Quirks: TRANSACTIONS).
 */
final class Identity {
    static final short NAME_MAX = 32;
    /** certificate_list of the TLS Certificate message (RFC 5246 7.4.2), 3-byte lengths included. */
    static final short CHAIN_MAX = 3072;
    static final byte PIN_TRIES = 3;
    static final byte PIN_MIN = 4;
    static final byte PIN_MAX = 16;
    static final short SUITES_MAX = 4;
    /** Names starting with this byte are the card's own (the diagnostic "@echo"). */
    static final byte RESERVED_NAME_PREFIX = '@';

    private final byte[] name;
    private byte nameLength;
    private final byte[] chain;
    private short chainLength;
    private final OwnerPIN pin;
    private boolean pinSet;
    private boolean keyReady;
    private byte policy;
    private final short[] suites;
    private byte suiteCount;
    private final KeyPair keyPair;

    /**
     * Allocated once, at install; the key has its domain parameters before any generation. The
     * default suites need no transaction: an applet whose install did not finish is deleted.
     */
    Identity() {
        name = new byte[NAME_MAX];
        chain = new byte[CHAIN_MAX];
        pin = new OwnerPIN(PIN_TRIES, PIN_MAX);
        suites = new short[SUITES_MAX];
        keyPair = P256.newKeyPair();
        suites[0] = Tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256;
        suites[1] = Tls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8;
        suites[2] = Tls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM;
        suites[3] = Tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256;
        suiteCount = 4;
    }

    // ---- reading -----------------------------------------------------------------------------

    ECPrivateKey privateKey() {
        return (ECPrivateKey) keyPair.getPrivate();
    }

    boolean matches(byte[] buf, short off, short len) {
        return nameLength != 0 && len == nameLength
                && Util.arrayCompare(buf, off, name, (short) 0, len) == 0;
    }

    /** Ready to serve: key generated and a certificate chain loaded. */
    boolean isPersonalised() {
        return keyReady && chainLength > 0;
    }

    /** Personalisation is open until a PIN is set, then needs the PIN verified in this session. */
    boolean mayPersonalise() {
        return !pinSet || pin.isValidated();
    }

    /** May serve handshakes: a PIN is set and was verified in this card session. */
    boolean isUnlocked() {
        return pinSet && pin.isValidated();
    }

    boolean isPinVerified() {
        return pin.isValidated();
    }

    boolean mayExportKeys() {
        return (policy & Constants.POLICY_EXPORT_KEYS) != 0;
    }

    /**
     * The first suite of this identity's list that the client offers, or 0; {@code offered} has
     * ClientHelloParser.suiteBit() of each suite the client's list holds.
     */
    short preferredSuite(short offered) {
        for (short k = 0; k < suiteCount; k++) {
            if ((offered & ClientHelloParser.suiteBit(suites[k])) != 0) {
                return suites[k];
            }
        }
        return 0;
    }

    /** Writes the certificate chain's length (3 bytes) and the chain at buf[off]; returns the end. */
    short writeChain(byte[] buf, short off) {
        buf[off++] = 0;
        off = Util.setShort(buf, off, chainLength);
        return Util.arrayCopyNonAtomic(chain, (short) 0, buf, off, chainLength);
    }

    /** GET DATA name; returns the length. */
    short writeName(byte[] buf, short off) {
        Util.arrayCopyNonAtomic(name, (short) 0, buf, off, nameLength);
        return nameLength;
    }

    /** GET DATA public key: the point 04 || X || Y; 6A88 before a key was generated. */
    short writePublicKey(byte[] buf, short off) {
        if (!keyReady) {
            ISOException.throwIt(Sw.REFERENCED_DATA_NOT_FOUND);
        }
        return ((ECPublicKey) keyPair.getPublic()).getW(buf, off);
    }

    /** GET DATA chain: the chain itself, through the response stream (it exceeds one APDU). */
    void sendChain(APDU apdu, ResponseStream out) {
        out.send(apdu, chain, (short) 0, chainLength);
    }

    /**
     * GET DATA status: key ready, chain length, PIN set, tries left, PIN verified, policy, suite
     * count, suites. Returns the length.
     */
    short writeStatus(byte[] buf, short off) {
        short n = off;
        buf[n++] = (byte) (keyReady ? 1 : 0);
        n = Util.setShort(buf, n, chainLength);
        buf[n++] = (byte) (pinSet ? 1 : 0);
        buf[n++] = pin.getTriesRemaining();
        buf[n++] = (byte) (pin.isValidated() ? 1 : 0);
        buf[n++] = policy;
        buf[n++] = suiteCount;
        for (short i = 0; i < suiteCount; i++) {
            n = Util.setShort(buf, n, suites[i]);
        }
        return (short) (n - off);
    }

    // ---- the PIN -----------------------------------------------------------------------------

    /**
     * VERIFY: checks the PIN at buf[off] ({@code len} bytes), or with {@code len} 0 tells whether
     * it is verified. Returns if verified; otherwise throws 63Cx (x tries left), 6983 (blocked)
     * or 6985 (no PIN set). Every failed check, whatever its length, costs a try and clears the
     * verified state (OwnerPIN counts the tries atomically): a candidate longer than PIN_MAX is
     * checked as an empty one, which never matches (a PIN has PIN_MIN bytes at least), so that
     * its first PIN_MAX bytes are never compared.
     */
    void verifyPin(byte[] buf, short off, short len) {
        if (!pinSet) {
            ISOException.throwIt(Sw.CONDITIONS_NOT_SATISFIED);
        }
        if (pin.getTriesRemaining() == 0) {
            ISOException.throwIt(Sw.PIN_BLOCKED);
        }
        if (len == 0) {
            if (!pin.isValidated()) {
                ISOException.throwIt((short) (Sw.PIN_TRIES_LEFT_00 | pin.getTriesRemaining()));
            }
            return;
        }
        if (!pin.check(buf, off, len > PIN_MAX ? (byte) 0 : (byte) len)) {
            byte left = pin.getTriesRemaining();
            ISOException.throwIt(left == 0 ? Sw.PIN_BLOCKED : (short) (Sw.PIN_TRIES_LEFT_00 | left));
        }
    }

    // ---- personalisation: each update checks first, then writes in a transaction --------------

    /** PUT DATA name: 1 to NAME_MAX bytes, not starting with '@' (6A80). */
    void setName(byte[] buf, short off, short len) {
        if (len == 0 || len > NAME_MAX || buf[off] == RESERVED_NAME_PREFIX) {
            ISOException.throwIt(Sw.WRONG_DATA);
        }
        JCSystem.beginTransaction();
        Util.arrayCopy(buf, off, name, (short) 0, len);
        nameLength = (byte) len;
        JCSystem.commitTransaction();
    }

    /** PUT DATA chain, first part: replaces the chain (6985 without a key, 6A84 too long). */
    void replaceChain(byte[] buf, short off, short len) {
        checkChainPart((short) 0, len);
        JCSystem.beginTransaction();
        Util.arrayCopy(buf, off, chain, (short) 0, len);
        chainLength = len;
        JCSystem.commitTransaction();
    }

    /** PUT DATA chain, next part: appended (6985 without a key, 6A84 when the chain is full). */
    void appendChain(byte[] buf, short off, short len) {
        checkChainPart(chainLength, len);
        JCSystem.beginTransaction();
        Util.arrayCopy(buf, off, chain, chainLength, len);
        chainLength += len;
        JCSystem.commitTransaction();
    }

    private void checkChainPart(short at, short len) {
        if (!keyReady) {
            ISOException.throwIt(Sw.CONDITIONS_NOT_SATISFIED); // a chain certifies a key
        }
        if (len > (short) (CHAIN_MAX - at)) {
            ISOException.throwIt(Sw.FILE_FULL);
        }
    }

    /** PUT DATA PIN: PIN_MIN to PIN_MAX bytes (6700); sets it and resets the tries. */
    void setPin(byte[] buf, short off, short len) {
        if (len < PIN_MIN || len > PIN_MAX) {
            ISOException.throwIt(Sw.WRONG_LENGTH);
        }
        JCSystem.beginTransaction();
        pin.update(buf, off, (byte) len);
        pinSet = true;
        JCSystem.commitTransaction();
    }

    /** PUT DATA policy: one byte (a single-field write, atomic without a transaction). */
    void setPolicy(byte value) {
        policy = value;
    }

    /** PUT DATA suites: 1 to SUITES_MAX of the card's suites, 2 bytes each (6700, 6A80). */
    void setSuites(byte[] buf, short off, short len) {
        if (len < 2 || len > (short) (2 * SUITES_MAX) || (len & 1) != 0) {
            ISOException.throwIt(Sw.WRONG_LENGTH);
        }
        for (short i = 0; i < len; i += 2) {
            short suite = Util.getShort(buf, (short) (off + i));
            if (suite != Tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                    && suite != Tls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM
                    && suite != Tls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8
                    && suite != Tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256) {
                ISOException.throwIt(Sw.WRONG_DATA);
            }
        }
        JCSystem.beginTransaction();
        for (short i = 0; i < len; i += 2) {
            suites[(short) (i >> 1)] = Util.getShort(buf, (short) (off + i));
        }
        suiteCount = (byte) (len >> 1);
        JCSystem.commitTransaction();
    }

    /**
     * GENERATE KEY: regenerates the key pair; the old certificate chain no longer matches and is
     * dropped first. Writes the new public point at scratch[off] and returns its length.
     */
    short generateKey(EcKeyGenerator generator, byte[] scratch, short off) {
        JCSystem.beginTransaction();
        keyReady = false;
        chainLength = 0;
        JCSystem.commitTransaction();
        generator.generate(keyPair, scratch, off);
        keyReady = true;
        return ((ECPublicKey) keyPair.getPublic()).getW(scratch, off);
    }
}
