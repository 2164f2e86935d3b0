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
 * in the card, whose private half no command can read; the certificate chain it presents; the CAs
 * its client certificates must chain to; its PIN; its policy, cipher suites and SNI names.
 *
 * <b>Two banks and one byte.</b> The key pair, the chain and the CA list each exist twice: the
 * bank that serves and a shadow beside it. Every change that takes more than one APDU (a chain or a
 * CA list in parts, a staged key waiting for its certificate) is written into the shadow while the
 * serving bank keeps serving, and becomes current when the single byte {@link #banks} changes: its
 * bits say which bank of each serves and which keys and chain are valid. A write of one byte field
 * is atomic on every Java Card platform (JCRE specification 7.7: a single field update of a
 * persistent object is never torn), so a reset at any point of an update leaves the old identity
 * or the new one, never a mix. This holds on jcardsim too, whose transactions never roll back
 * (Quirks: TRANSACTIONS): every APDU of an update before the commit writes only the shadow bank,
 * which nothing reads, and the commit's visible effect is that one byte. The transactions around
 * the multi-field writes below are for real cards, where they also cover a tear inside them.
 *
 * Only the methods here change the fields, each after checking its input, so a refused command
 * changes nothing.
 */
final class Identity {
    static final short NAME_MAX = 32;
    /** certificate_list of the TLS Certificate message (RFC 5246 7.4.2), 3-byte lengths included. */
    static final short CHAIN_MAX = 3072;
    static final byte PIN_TRIES = 3;
    static final byte PIN_MIN = 4;
    static final byte PIN_MAX = 16;
    static final short SUITES_MAX = 4;
    /**
     * A trusted CA: SHA-256 of its subject Name (DER), its P-256 public point, the length of its
     * subject Name's DER (0: not listed in the CertificateRequest) and the Name, zero-padded to
     * CA_NAME_MAX (the names the CertificateRequest's certificate_authorities lists).
     */
    static final short CA_NAME_MAX = 128;
    static final short CA_HASH = 0;
    static final short CA_POINT = 32;
    static final short CA_NAME_LENGTH = 32 + 65;
    static final short CA_NAME = 32 + 65 + 1;
    static final short CA_ENTRY = 32 + 65 + 1 + CA_NAME_MAX;
    static final short CA_MAX = 4;
    static final short CAS_MAX = CA_MAX * CA_ENTRY;
    /** SNI names: length (1) || name, repeated; lower-case host names. */
    static final short SNI_MAX = 64;
    /** Names starting with this byte are the card's own (the diagnostic "@echo"). */
    static final byte RESERVED_NAME_PREFIX = '@';

    // Bits of `banks`.
    private static final byte KEY_BANK = 0x01;      // which key pair serves (0: keys0)
    private static final byte CHAIN_BANK = 0x02;    // which chain serves (0: chain0)
    private static final byte CA_BANK = 0x04;       // which CA list is current (0: cas0)
    private static final byte SERVING_KEY = 0x08;   // the serving key pair was generated
    private static final byte STAGED_KEY = 0x10;    // the other key pair holds a staged key
    private static final byte CHAIN_VALID = 0x20;   // the serving chain certifies the serving key
    // Indices of `lengths`.
    private static final short CHAIN0 = 0;
    private static final short CAS0 = 2;

    private final byte[] name;
    private byte nameLength;
    private byte banks;
    private final KeyPair keys0;
    private final KeyPair keys1;
    private final byte[] chain0;
    private final byte[] chain1;
    private final byte[] cas0;
    private final byte[] cas1;
    /** Lengths of chain0, chain1, cas0, cas1. */
    private final short[] lengths;
    private final OwnerPIN pin;
    private boolean pinSet;
    private byte policy;
    private final short[] suites;
    private byte suiteCount;
    private final byte[] sni;
    private byte sniLength;

    /**
     * Allocated once, at install; the keys have their domain parameters before any generation.
     * The default suites need no transaction: an applet whose install did not finish is deleted.
     */
    Identity() {
        name = new byte[NAME_MAX];
        chain0 = new byte[CHAIN_MAX];
        chain1 = new byte[CHAIN_MAX];
        cas0 = new byte[CAS_MAX];
        cas1 = new byte[CAS_MAX];
        lengths = new short[4];
        pin = new OwnerPIN(PIN_TRIES, PIN_MAX);
        suites = new short[SUITES_MAX];
        sni = new byte[SNI_MAX];
        keys0 = P256.newKeyPair();
        keys1 = P256.newKeyPair();
        defaultSuites();
    }

    private void defaultSuites() {
        suites[0] = Tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256;
        suites[1] = Tls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8;
        suites[2] = Tls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM;
        suites[3] = Tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256;
        suiteCount = 4;
    }

    // ---- the banks ---------------------------------------------------------------------------

    private KeyPair servingKeys() {
        return (banks & KEY_BANK) == 0 ? keys0 : keys1;
    }

    private KeyPair otherKeys() {
        return (banks & KEY_BANK) == 0 ? keys1 : keys0;
    }

    private short chainBank() {
        return (short) ((banks & CHAIN_BANK) == 0 ? 0 : 1);
    }

    private byte[] chain(short bank) {
        return bank == 0 ? chain0 : chain1;
    }

    private short caBank() {
        return (short) ((banks & CA_BANK) == 0 ? 0 : 1);
    }

    private byte[] cas(short bank) {
        return bank == 0 ? cas0 : cas1;
    }

    private short servingChainLength() {
        return (banks & CHAIN_VALID) == 0 ? 0 : lengths[(short) (CHAIN0 + chainBank())];
    }

    // ---- reading -----------------------------------------------------------------------------

    ECPrivateKey privateKey() {
        return (ECPrivateKey) servingKeys().getPrivate();
    }

    boolean matches(byte[] buf, short off, short len) {
        return nameLength != 0 && len == nameLength
                && Util.arrayCompare(buf, off, name, (short) 0, len) == 0;
    }

    /**
     * Matches a host_name byte by byte (ASCII case ignored) as ClientHelloParser receives it.
     * {@code from} is the offset in the SNI list of the first name of {@code length} bytes whose
     * first {@code index} bytes equal the host_name's (0 before its first byte); returns the first
     * such name, from there on, whose byte {@code index} is also {@code b}, or -1 if none is.
     */
    short sniNext(short from, short length, short index, byte b) {
        if (b >= 'A' && b <= 'Z') {
            b += 32;
        }
        short p = from;
        while (p < sniLength) {
            short n = (short) (sni[p] & 0xFF);
            if (n == length && sni[(short) (p + 1 + index)] == b
                    && Util.arrayCompare(sni, (short) (from + 1), sni, (short) (p + 1), index) == 0) {
                return p;
            }
            p += (short) (n + 1);
        }
        return -1;
    }

    /** Ready to serve: a key generated and a chain that certifies it. */
    boolean isPersonalised() {
        return (banks & SERVING_KEY) != 0 && servingChainLength() > 0;
    }

    /** May serve handshakes: a PIN is set and was verified in this card session. */
    boolean isUnlocked() {
        return pinSet && pin.isValidated();
    }

    boolean isPinVerified() {
        return pin.isValidated();
    }

    /** The policy byte (Constants.POLICY_* bits). */
    byte policy() {
        return policy;
    }

    /** The current CA list (CA_ENTRY bytes each, casLength() bytes): ClientAuth reads it. */
    byte[] cas() {
        return cas(caBank());
    }

    short casLength() {
        return lengths[(short) (CAS0 + caBank())];
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

    /** Writes the serving chain's length (3 bytes) and the chain at buf[off]; returns the end. */
    short writeChain(byte[] buf, short off) {
        short len = servingChainLength();
        buf[off++] = 0;
        off = Util.setShort(buf, off, len);
        return Util.arrayCopyNonAtomic(chain(chainBank()), (short) 0, buf, off, len);
    }

    /** GET DATA name; returns the length. */
    short writeName(byte[] buf, short off) {
        Util.arrayCopyNonAtomic(name, (short) 0, buf, off, nameLength);
        return nameLength;
    }

    /** GET DATA public key (serving or staged): the point 04 || X || Y; 6A88 if there is none. */
    short writePublicKey(byte[] buf, short off, boolean staged) {
        if ((banks & (staged ? STAGED_KEY : SERVING_KEY)) == 0) {
            ISOException.throwIt(Sw.REFERENCED_DATA_NOT_FOUND);
        }
        return ((ECPublicKey) (staged ? otherKeys() : servingKeys()).getPublic()).getW(buf, off);
    }

    /** GET DATA chain: the serving chain, through the response stream (it exceeds one APDU). */
    void sendChain(APDU apdu, ResponseStream out) {
        out.send(apdu, chain(chainBank()), (short) 0, servingChainLength());
    }

    /** GET DATA CAs: the current CA list (CA_ENTRY bytes each). */
    void sendCas(APDU apdu, ResponseStream out) {
        out.send(apdu, cas(caBank()), (short) 0, lengths[(short) (CAS0 + caBank())]);
    }

    /** GET DATA SNI: the SNI list (length || name, repeated); returns its length. */
    short writeSni(byte[] buf, short off) {
        return (short) (Util.arrayCopyNonAtomic(sni, (short) 0, buf, off, sniLength) - off);
    }

    /**
     * GET DATA status: key ready, chain length, PIN set, tries left, PIN verified, policy, suite
     * count, suites, then staged key ready and the number of CAs. Returns the length.
     */
    short writeStatus(byte[] buf, short off) {
        short n = off;
        buf[n++] = (byte) ((banks & SERVING_KEY) != 0 ? 1 : 0);
        n = Util.setShort(buf, n, servingChainLength());
        buf[n++] = (byte) (pinSet ? 1 : 0);
        buf[n++] = pin.getTriesRemaining();
        buf[n++] = (byte) (pin.isValidated() ? 1 : 0);
        buf[n++] = policy;
        buf[n++] = suiteCount;
        for (short i = 0; i < suiteCount; i++) {
            n = Util.setShort(buf, n, suites[i]);
        }
        buf[n++] = (byte) ((banks & STAGED_KEY) != 0 ? 1 : 0);
        buf[n++] = (byte) (lengths[(short) (CAS0 + caBank())] / CA_ENTRY);
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
        checkPin(pin, buf, off, len);
    }

    /**
     * Checks a PIN or the PUK: returns if right, else 63Cx or 6983. Every failed check, whatever
     * its length, costs a try (OwnerPIN counts it atomically): a candidate shorter than 1 or longer
     * than PIN_MAX is checked as an empty one, which never matches, so that its bytes are never
     * compared.
     */
    static void checkPin(OwnerPIN owner, byte[] buf, short off, short len) {
        if (owner.getTriesRemaining() == 0) {
            ISOException.throwIt(Sw.PIN_BLOCKED);
        }
        if (!owner.check(buf, off, len < 1 || len > PIN_MAX ? (byte) 0 : (byte) len)) {
            byte left = owner.getTriesRemaining();
            ISOException.throwIt(left == 0 ? Sw.PIN_BLOCKED : (short) (Sw.PIN_TRIES_LEFT_00 | left));
        }
    }

    /** 6700 unless {@code len} is a valid PIN length. */
    static void checkPinLength(short len) {
        if (len < PIN_MIN || len > PIN_MAX) {
            ISOException.throwIt(Sw.WRONG_LENGTH);
        }
    }

    /** Sets the PIN (INITIALIZE, CHANGE PIN, UNBLOCK PIN, the operator's PIN reset); resets the tries. */
    void setPin(byte[] buf, short off, short len) {
        checkPinLength(len);
        JCSystem.beginTransaction();
        pin.update(buf, off, (byte) len);
        pinSet = true;
        JCSystem.commitTransaction();
    }

    /** CHANGE PIN: the current PIN first (it counts a try), then the new one. */
    void changePin(byte[] buf, short oldOff, short oldLen, short newOff, short newLen) {
        checkPinLength(newLen);
        verifyPin(buf, oldOff, oldLen == 0 ? (short) -1 : oldLen);
        setPin(buf, newOff, newLen);
    }

    // ---- the operator's changes: each checks first, then writes ---------------------------------

    /** Name: 1 to NAME_MAX bytes, not starting with '@' (6A80). */
    void setName(byte[] buf, short off, short len) {
        if (len == 0 || len > NAME_MAX || buf[off] == RESERVED_NAME_PREFIX) {
            ISOException.throwIt(Sw.WRONG_DATA);
        }
        JCSystem.beginTransaction();
        Util.arrayCopy(buf, off, name, (short) 0, len);
        nameLength = (byte) len;
        JCSystem.commitTransaction();
    }

    /** Policy: one byte of Constants.POLICY_* bits (a single-field write, atomic without a transaction). */
    void setPolicy(byte value) {
        byte known = Constants.POLICY_EXPORT_KEYS | Constants.POLICY_CLIENT_AUTH_OPTIONAL
                | Constants.POLICY_CLIENT_AUTH_REQUIRED | Constants.POLICY_CLIENT_DATES_REQUIRED;
        if ((value & ~known) != 0) {
            ISOException.throwIt(Sw.WRONG_DATA);
        }
        policy = value;
    }

    /** Suites: 1 to SUITES_MAX of the card's suites, 2 bytes each (6700, 6A80). */
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

    /** SNI names: length || name, repeated, lower-case printable ASCII, at most SNI_MAX bytes (6A80). */
    void setSni(byte[] buf, short off, short len) {
        if (len > SNI_MAX) {
            ISOException.throwIt(Sw.WRONG_DATA);
        }
        short p = 0;
        while (p < len) {
            short n = (short) (buf[(short) (off + p)] & 0xFF);
            if (n == 0 || n > (short) (len - p - 1)) {
                ISOException.throwIt(Sw.WRONG_DATA);
            }
            for (short i = 1; i <= n; i++) {
                byte c = buf[(short) (off + p + i)];
                if (c <= ' ' || (c >= 'A' && c <= 'Z')) {
                    ISOException.throwIt(Sw.WRONG_DATA); // controls, spaces, 8-bit or upper case
                }
            }
            p += (short) (n + 1);
        }
        JCSystem.beginTransaction();
        Util.arrayCopy(buf, off, sni, (short) 0, len);
        sniLength = (byte) len;
        JCSystem.commitTransaction();
    }

    // ---- uploads into the shadow bank, and the commit ----------------------------------------

    /**
     * Writes {@code len} bytes at buf[off] at offset {@code at} of the shadow chain or CA list
     * (what = Constants.COMMIT_*); returns the new uploaded length. 6A84 beyond the capacity.
     * Writes only the shadow bank: nothing reads it until the commit.
     */
    short upload(byte what, short at, byte[] buf, short off, short len) {
        byte[] shadow = what == Constants.COMMIT_CHAIN ? chain((short) (1 - chainBank())) : cas((short) (1 - caBank()));
        short cap = what == Constants.COMMIT_CHAIN ? CHAIN_MAX : CAS_MAX;
        if (len > (short) (cap - at)) {
            ISOException.throwIt(Sw.FILE_FULL);
        }
        Util.arrayCopyNonAtomic(buf, off, shadow, at, len);
        return (short) (at + len);
    }

    /**
     * Commits an uploaded chain of {@code total} bytes: its leaf's subjectPublicKeyInfo must be the
     * serving key or the staged one (6A80 otherwise). With the staged key, the key and the chain
     * become current together; the key pair they replace is cleared. {@code scratch} needs
     * P256.POINT_SIZE bytes at {@code off}.
     */
    void commitChain(short total, byte[] scratch, short off) {
        short shadow = (short) (1 - chainBank());
        byte[] c = chain(shadow);
        short spki = leafSpki(c, total);
        byte next;
        boolean staged = false;
        if ((banks & SERVING_KEY) != 0 && isSpkiOf(c, spki, servingKeys(), scratch, off)) {
            next = (byte) (banks ^ CHAIN_BANK | CHAIN_VALID);
        } else if ((banks & STAGED_KEY) != 0 && isSpkiOf(c, spki, otherKeys(), scratch, off)) {
            next = (byte) ((banks ^ (CHAIN_BANK | KEY_BANK) | CHAIN_VALID | SERVING_KEY) & ~STAGED_KEY);
            staged = true;
        } else {
            ISOException.throwIt(Sw.WRONG_DATA); // the leaf certifies neither of the card's keys
            return;
        }
        JCSystem.beginTransaction();
        lengths[(short) (CHAIN0 + shadow)] = total; // the shadow's length: nothing reads it yet
        banks = next;                               // the commit: one byte
        JCSystem.commitTransaction();
        if (staged) {
            otherKeys().getPrivate().clearKey(); // the key pair just replaced
        }
    }

    /** Commits an uploaded CA list of {@code total} bytes (whole entries with plausible points; 6A80). */
    void commitCas(short total) {
        short shadow = (short) (1 - caBank());
        byte[] c = cas(shadow);
        if (total > CAS_MAX || (short) (total % CA_ENTRY) != 0) {
            ISOException.throwIt(Sw.WRONG_DATA);
        }
        for (short p = 0; p < total; p += CA_ENTRY) {
            if (!P256.isPlausiblePoint(c, (short) (p + CA_POINT), P256.POINT_SIZE)
                    || (short) (c[(short) (p + CA_NAME_LENGTH)] & 0xFF) > CA_NAME_MAX) {
                ISOException.throwIt(Sw.WRONG_DATA);
            }
        }
        JCSystem.beginTransaction();
        lengths[(short) (CAS0 + shadow)] = total;
        banks = (byte) (banks ^ CA_BANK);
        JCSystem.commitTransaction();
    }

    /**
     * The offset of the subjectPublicKeyInfo of the first certificate of a certificate_list of
     * {@code total} bytes (3-byte length, DER Certificate, ...). Every certificate's length must
     * fit; 6A80 otherwise.
     */
    private static short leafSpki(byte[] c, short total) {
        if (total < 3) {
            ISOException.throwIt(Sw.WRONG_DATA);
        }
        short p = 0;
        while (p < total) { // the list's framing: whole certificates up to the end
            if ((short) (total - p) < 3 || c[p] != 0) {
                ISOException.throwIt(Sw.WRONG_DATA);
            }
            short n = Util.getShort(c, (short) (p + 1));
            if (n <= 0 || n > (short) (total - p - 3)) {
                ISOException.throwIt(Sw.WRONG_DATA);
            }
            p += (short) (3 + n);
        }
        short end = (short) (3 + Util.getShort(c, (short) 1));
        if (Der.skip(c, (short) 3, end, Der.SEQUENCE) != end) { // Certificate
            ISOException.throwIt(Sw.WRONG_DATA);
        }
        short tbs = Der.body(c, (short) 3, end, Der.SEQUENCE);
        short tbsEnd = Der.skip(c, tbs, end, Der.SEQUENCE);
        p = Der.body(c, tbs, end, Der.SEQUENCE);
        if (Der.tag(c, p, tbsEnd) == Der.CONTEXT_0) {
            p = Der.skip(c, p, tbsEnd, Der.CONTEXT_0); // version
        }
        p = Der.skip(c, p, tbsEnd, Der.INTEGER);       // serialNumber
        p = Der.skip(c, p, tbsEnd, Der.SEQUENCE);      // signature
        p = Der.skip(c, p, tbsEnd, Der.SEQUENCE);      // issuer
        p = Der.skip(c, p, tbsEnd, Der.SEQUENCE);      // validity
        p = Der.skip(c, p, tbsEnd, Der.SEQUENCE);      // subject
        return p;                                      // subjectPublicKeyInfo
    }

    /** True if the SubjectPublicKeyInfo at buf[off] is exactly the P-256 SPKI of the pair's public key. */
    static boolean isSpkiOf(byte[] buf, short off, KeyPair pair, byte[] scratch, short sOff) {
        if (Util.arrayCompare(buf, off, P256.SPKI_PREFIX, (short) 0, (short) P256.SPKI_PREFIX.length) != 0) {
            return false;
        }
        short n = ((ECPublicKey) pair.getPublic()).getW(scratch, sOff);
        boolean same = n == P256.POINT_SIZE
                && Util.arrayCompare(buf, (short) (off + P256.SPKI_PREFIX.length), scratch, sOff, n) == 0;
        Util.arrayFillNonAtomic(scratch, sOff, P256.POINT_SIZE, (byte) 0);
        return same;
    }

    /** The key pair SIGN CSR signs with: serving or staged (6A88 if it has no key). */
    KeyPair keyPair(boolean staged) {
        if ((banks & (staged ? STAGED_KEY : SERVING_KEY)) == 0) {
            ISOException.throwIt(Sw.REFERENCED_DATA_NOT_FOUND);
        }
        return staged ? otherKeys() : servingKeys();
    }

    /**
     * GENERATE KEY into the bank beside the serving one. Staged: the serving key and chain go on
     * serving, and the new pair waits for its chain (commitChain). Not staged: the new pair serves
     * at once and the chain, which certified the old key, is no longer valid. Writes the new point
     * at scratch[off] and returns its length.
     */
    short generateKey(EcKeyGenerator generator, boolean staged, byte[] scratch, short off) {
        banks &= ~STAGED_KEY; // a torn generation leaves no half key marked ready
        KeyPair next = otherKeys();
        generator.generate(next, scratch, off);
        if (staged) {
            banks |= STAGED_KEY;
        } else {
            banks = (byte) ((banks ^ KEY_BANK | SERVING_KEY) & ~CHAIN_VALID);
            otherKeys().getPrivate().clearKey(); // the old serving key
        }
        return ((ECPublicKey) next.getPublic()).getW(scratch, off);
    }

    /** WIPE: no key, no chain, no CA, no name, default policy and suites; the PIN stays. */
    void wipe() {
        banks = 0; // first: from here the identity serves nothing
        keys0.getPrivate().clearKey();
        keys1.getPrivate().clearKey();
        JCSystem.beginTransaction();
        nameLength = 0;
        policy = 0;
        sniLength = 0;
        lengths[0] = 0;
        lengths[1] = 0;
        lengths[2] = 0;
        lengths[3] = 0;
        defaultSuites();
        JCSystem.commitTransaction();
        Util.arrayFillNonAtomic(name, (short) 0, NAME_MAX, (byte) 0);
        Util.arrayFillNonAtomic(sni, (short) 0, SNI_MAX, (byte) 0);
    }
}
