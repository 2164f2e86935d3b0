package org.setls.applet;

import javacard.framework.APDU;
import javacard.framework.ISO7816;
import javacard.framework.ISOException;
import javacard.framework.Util;
import javacard.security.AESKey;
import javacard.security.CryptoException;
import javacard.security.ECPublicKey;
import javacard.security.KeyAgreement;
import javacard.security.KeyBuilder;
import javacard.security.KeyPair;
import javacard.security.RandomData;
import javacard.security.Signature;
import javacardx.crypto.Cipher;

/**
 * The operator's session (docs/apdu.md, "Operator session"): the operator proves it holds the
 * private half of the P-256 key stored at INITIALIZE by signing a card challenge, and both sides
 * derive session keys by ECDH; every operator command then carries a MAC and its secret values
 * travel encrypted.
 * <ol>
 * <li>OPERATOR CHALLENGE: the card draws a nonce and an ephemeral key pair; answers
 *     nonce (16) || card point (65).</li>
 * <li>OPERATOR AUTHENTICATE: data = operator ephemeral point (65) || ECDSA-SHA256 signature (DER)
 *     by the operator key over LABEL || nonce || card point || operator point. The card verifies
 *     it with {@code Signature.verify} (Java Card 3.0.4), computes Z = ECDH(card ephemeral,
 *     operator point), and derives with HKDF-SHA256 (RFC 5869: salt = nonce, IKM = Z,
 *     info = INFO) 48 bytes: the MAC key (32) and the AES-128 encryption key (16). Answers
 *     HMAC(MAC key, CONFIRM || nonce)[0..16], so the operator knows the card derived the same keys.
 *     A challenge serves one attempt, successful or not.</li>
 * <li>Each operator command: data = payload || MAC, MAC = HMAC-SHA256(MAC key, counter (2) ||
 *     CLA without the chaining bit || INS || P1 || P2 || payload length (2) || payload)[0..16];
 *     the counter counts the session's accepted commands from 0. A wrong or missing MAC ends the
 *     session (6982); a command without a session is refused with 6F04.</li>
 * <li>Secret values (PINs, PSKs) in a payload: IV (16) || AES-128-CBC(encryption key, IV,
 *     length (1) || value || zeros), a fixed block size per kind, so the length does not show.</li>
 * </ol>
 * The card's ephemeral private key is cleared as soon as Z is computed; Z, the HKDF PRK and every
 * decrypted secret live in one-APDU scratch (Transients.OPERATOR_WORK) and are wiped before the
 * command answers; the MAC key and the nonce are session state (Transients.OPERATOR_SECRETS), the
 * encryption key a transient AES key: a deselect or a reset ends the session.
 *
 * The operator session also owns the shadow-area upload in progress (a chain or a CA list sent in
 * several APDUs): it is forgotten with the session, so an upload a reset cut short can never be
 * committed by a later session.
 */
final class OperatorSession {
    static final short NONCE_SIZE = 16;
    static final short MAC_SIZE = 16;
    static final short MAC_KEY_SIZE = 32;
    static final short IV_SIZE = 16;
    /** Size of the encrypted block that carries a PIN or PUK (length byte, up to 16 bytes, zeros). */
    static final short PIN_BLOCK = 32;
    /** Largest signature OPERATOR AUTHENTICATE takes: an ECDSA P-256 DER signature is at most 72 bytes. */
    static final short SIGNATURE_MAX = 72;

    private static final byte[] LABEL = {'S', 'E', '-', 'T', 'L', 'S', ' ', 'o', 'p', 'e', 'r', 'a', 't', 'o', 'r',
        ' ', 'v', '1'};
    private static final byte[] INFO = {'S', 'E', '-', 'T', 'L', 'S', ' ', 'o', 'p', 'e', 'r', 'a', 't', 'o', 'r',
        ' ', 's', 'e', 's', 's', 'i', 'o', 'n'};
    private static final byte[] CONFIRM = {'c', 'a', 'r', 'd', ' ', 'c', 'o', 'n', 'f', 'i', 'r', 'm'};
    private static final byte[] BLOCK_INDEX = {1, 2};

    // Session state: bytes of the arena from Transients.OPERATOR_SECRETS.
    private static final short NONCE = Transients.OPERATOR_SECRETS;
    private static final short MAC_KEY = (short) (NONCE + NONCE_SIZE);
    static final short SECRETS_SIZE = NONCE_SIZE + MAC_KEY_SIZE;
    // Session state: shorts of the arena from Transients.OPERATOR_STATE.
    private static final short ST_PHASE = Transients.OPERATOR_STATE;
    private static final short ST_COUNTER = (short) (ST_PHASE + 1);
    private static final short ST_UPLOAD = (short) (ST_PHASE + 2);      // COMMIT_* being uploaded, 0 none
    private static final short ST_UPLOAD_SLOT = (short) (ST_PHASE + 3);
    private static final short ST_UPLOAD_LENGTH = (short) (ST_PHASE + 4); // bytes uploaded so far
    static final short STATE_SIZE = 5;
    // Scratch: bytes of the arena from Transients.OPERATOR_WORK.
    /** A point, a decrypted secret block (up to 80 bytes), the card's SPKI. */
    static final short WORK = Transients.OPERATOR_WORK;
    static final short WORK_BLOCK_SIZE = 96;
    /** Z, a MAC being checked. */
    private static final short WORK_MAC = (short) (WORK + WORK_BLOCK_SIZE);
    /** HKDF's PRK. */
    private static final short WORK_PRK = (short) (WORK_MAC + HmacSha256.HASH_SIZE);
    static final short WORK_SIZE = (short) (WORK_BLOCK_SIZE + 2 * HmacSha256.HASH_SIZE);

    private static final short PHASE_NONE = 0;
    private static final short PHASE_CHALLENGED = 1;
    private static final short PHASE_OPEN = 2;
    private static final short COUNTER_MAX = 0x7FFF;

    private final Persistent persistent;
    private final Transients ram;
    private final byte[] bytes;
    private final short[] st;
    private final HmacSha256 hmac;
    private final RandomData random;
    private final EcKeyGenerator keys;
    private final Signature verifier;
    private final KeyAgreement ecdh;
    private final KeyPair ephemeral;
    private final AESKey encKey;
    private final Cipher cbc;
    private final OpCounters counters;

    /** Allocated once, at install; the state is the arena's. */
    OperatorSession(Persistent persistent, HmacSha256 hmac, RandomData random, EcKeyGenerator keys,
                    Signature signature, Cipher cbc, OpCounters counters, Transients ram) {
        this.persistent = persistent;
        this.hmac = hmac;
        this.random = random;
        this.keys = keys;
        this.verifier = signature;
        this.cbc = cbc;
        this.counters = counters;
        this.ram = ram;
        bytes = ram.bytes;
        st = ram.shorts;
        ecdh = KeyAgreement.getInstance(KeyAgreement.ALG_EC_SVDP_DH_PLAIN, false);
        ephemeral = P256.newKeyPair();
        encKey = (AESKey) KeyBuilder.buildKey(KeyBuilder.TYPE_AES_TRANSIENT_DESELECT, KeyBuilder.LENGTH_AES_128, false);
    }

    /** Ends the session: forgets its keys, its counter and any upload in progress. */
    void end() {
        st[ST_PHASE] = PHASE_NONE;
        st[ST_COUNTER] = 0;
        endUpload();
        ram.clearBytes(NONCE, SECRETS_SIZE);
        encKey.clearKey();
        ephemeral.getPrivate().clearKey();
    }

    boolean isOpen() {
        return st[ST_PHASE] == PHASE_OPEN;
    }

    // ---- opening ------------------------------------------------------------------------------

    /** OPERATOR CHALLENGE: answers nonce || card ephemeral point; ends any open session. */
    void challenge(APDU apdu) {
        if (!persistent.isInitialised()) {
            ISOException.throwIt(Sw.NOT_INITIALISED);
        }
        end();
        byte[] buf = apdu.getBuffer();
        random.generateData(bytes, NONCE, NONCE_SIZE);
        counters.count(OpCounters.RANDOM_BYTES, NONCE_SIZE);
        keys.generate(ephemeral, bytes, WORK);
        counters.count(OpCounters.EC_KEYGEN, (short) 1);
        Util.arrayCopyNonAtomic(bytes, NONCE, buf, (short) 0, NONCE_SIZE);
        short n = ((ECPublicKey) ephemeral.getPublic()).getW(buf, NONCE_SIZE);
        st[ST_PHASE] = PHASE_CHALLENGED;
        apdu.setOutgoingAndSend((short) 0, (short) (NONCE_SIZE + n));
    }

    /** OPERATOR AUTHENTICATE: data = operator point || signature; answers the confirmation MAC. */
    void authenticate(APDU apdu) {
        byte[] buf = apdu.getBuffer();
        short len = apdu.setIncomingAndReceive();
        short off = apdu.getOffsetCdata();
        if (st[ST_PHASE] != PHASE_CHALLENGED) {
            ISOException.throwIt(Sw.CONDITIONS_NOT_SATISFIED); // OPERATOR CHALLENGE first
        }
        st[ST_PHASE] = PHASE_NONE; // one attempt per challenge
        short sigLen = (short) (len - P256.POINT_SIZE);
        if (len != apdu.getIncomingLength() || sigLen < 8 || sigLen > SIGNATURE_MAX
                || !P256.isPlausiblePoint(buf, off, P256.POINT_SIZE)) {
            end();
            ISOException.throwIt(Sw.WRONG_DATA);
        }
        // The signature covers the challenge and both points: it binds this session to the operator key.
        verifier.init(persistent.operatorKey(), Signature.MODE_VERIFY);
        verifier.update(LABEL, (short) 0, (short) LABEL.length);
        verifier.update(bytes, NONCE, NONCE_SIZE);
        short n = ((ECPublicKey) ephemeral.getPublic()).getW(bytes, WORK);
        verifier.update(bytes, WORK, n);
        boolean good = false;
        try {
            good = verifier.verify(buf, off, P256.POINT_SIZE, buf, (short) (off + P256.POINT_SIZE), sigLen);
        } catch (CryptoException e) {
            good = false; // a malformed signature is a wrong signature
        }
        counters.count(OpCounters.ECDSA_VERIFY, (short) 1);
        if (!good) {
            end();
            ISOException.throwIt(Sw.SECURITY_NOT_SATISFIED);
        }
        short z = 0;
        try {
            ecdh.init(ephemeral.getPrivate());
            z = ecdh.generateSecret(buf, off, P256.POINT_SIZE, bytes, WORK_MAC);
            counters.count(OpCounters.ECDH, (short) 1);
        } finally {
            ephemeral.getPrivate().clearKey();
        }
        deriveKeys(z);
        // Confirmation: HMAC(MAC key, CONFIRM || nonce), truncated.
        hmac.init(bytes, MAC_KEY, MAC_KEY_SIZE);
        hmac.update(CONFIRM, (short) 0, (short) CONFIRM.length);
        hmac.doFinal(bytes, NONCE, NONCE_SIZE, bytes, WORK_MAC);
        Util.arrayCopyNonAtomic(bytes, WORK_MAC, buf, (short) 0, MAC_SIZE);
        ram.clearBytes(WORK, WORK_SIZE);
        st[ST_PHASE] = PHASE_OPEN;
        st[ST_COUNTER] = 0;
        apdu.setOutgoingAndSend((short) 0, MAC_SIZE);
    }

    /** HKDF-SHA256 (RFC 5869) from Z at WORK_MAC: MAC key = T(1), encryption key = T(2)[0..16]. */
    private void deriveKeys(short zLength) {
        hmac.init(bytes, NONCE, NONCE_SIZE); // extract: PRK = HMAC(salt = nonce, Z)
        hmac.doFinal(bytes, WORK_MAC, zLength, bytes, WORK_PRK);
        hmac.init(bytes, WORK_PRK, HmacSha256.HASH_SIZE); // expand: T(1) = HMAC(PRK, info || 01)
        hmac.update(INFO, (short) 0, (short) INFO.length);
        hmac.doFinal(BLOCK_INDEX, (short) 0, (short) 1, bytes, MAC_KEY);
        hmac.restart(); // T(2) = HMAC(PRK, T(1) || info || 02)
        hmac.update(bytes, MAC_KEY, MAC_KEY_SIZE);
        hmac.update(INFO, (short) 0, (short) INFO.length);
        hmac.doFinal(BLOCK_INDEX, (short) 1, (short) 1, bytes, WORK);
        encKey.setKey(bytes, WORK);
        ram.clearBytes(WORK, WORK_SIZE);
    }

    // ---- operator commands ------------------------------------------------------------------

    /**
     * Checks the MAC that ends an operator command's data ({@code len} bytes at data[off]; the
     * header from {@code header}) and returns the payload's length. 6F04 without a session; a
     * wrong or missing MAC ends the session (6982). Accepted commands advance the counter.
     */
    short unwrap(byte[] header, byte[] data, short off, short len) {
        if (st[ST_PHASE] != PHASE_OPEN) {
            ISOException.throwIt(Sw.OPERATOR_REQUIRED);
        }
        short counter = st[ST_COUNTER];
        if (len < MAC_SIZE || counter == COUNTER_MAX) {
            end();
            ISOException.throwIt(Sw.SECURITY_NOT_SATISFIED);
        }
        short payload = (short) (len - MAC_SIZE);
        short m = WORK_MAC;
        Util.setShort(bytes, m, counter);
        bytes[(short) (m + 2)] = (byte) (header[ISO7816.OFFSET_CLA] & ~Constants.CLA_CHAINING);
        Util.arrayCopyNonAtomic(header, ISO7816.OFFSET_INS, bytes, (short) (m + 3), (short) 3);
        Util.setShort(bytes, (short) (m + 6), payload);
        hmac.init(bytes, MAC_KEY, MAC_KEY_SIZE);
        hmac.update(bytes, m, (short) 8);
        hmac.doFinal(data, off, payload, bytes, m);
        counters.count(OpCounters.HMAC, (short) 1);
        byte diff = 0;
        for (short i = 0; i < MAC_SIZE; i++) {
            diff |= (byte) (bytes[(short) (m + i)] ^ data[(short) (off + payload + i)]);
        }
        ram.clearBytes(m, HmacSha256.HASH_SIZE);
        if (diff != 0) {
            end();
            ISOException.throwIt(Sw.SECURITY_NOT_SATISFIED);
        }
        st[ST_COUNTER] = (short) (counter + 1);
        return payload;
    }

    /**
     * Decrypts a secret value: {@code len} bytes at buf[off] = IV || CBC ciphertext of
     * {@code block} bytes. The plaintext (length byte, value, zeros) lands at {@link #WORK} in
     * the arena's bytes; returns the value's length (the value is at WORK + 1). 6700 for a wrong
     * size, 6A80 for a malformed plaintext (which is wiped). The caller wipes WORK when done.
     */
    short decryptSecret(byte[] buf, short off, short len, short block) {
        if (len != (short) (IV_SIZE + block) || block > WORK_BLOCK_SIZE) {
            ISOException.throwIt(Sw.WRONG_LENGTH);
        }
        cbc.init(encKey, Cipher.MODE_DECRYPT, buf, off, IV_SIZE);
        cbc.doFinal(buf, (short) (off + IV_SIZE), block, bytes, WORK);
        counters.countBlocks(OpCounters.AES_BLOCKS, block);
        short n = (short) (bytes[WORK] & 0xFF);
        byte pad = 0;
        for (short i = (short) (n + 1); i < block; i++) {
            pad |= bytes[(short) (WORK + i)];
        }
        if (n >= block || pad != 0) {
            wipeWork();
            ISOException.throwIt(Sw.WRONG_DATA);
        }
        return n;
    }

    /** The array that holds WORK (the arena's bytes). */
    byte[] work() {
        return bytes;
    }

    void wipeWork() {
        ram.clearBytes(WORK, WORK_SIZE);
    }

    // ---- the shadow-area upload of this session ----------------------------------------------

    void beginUpload(byte what, byte slot, short length) {
        st[ST_UPLOAD] = what;
        st[ST_UPLOAD_SLOT] = slot;
        st[ST_UPLOAD_LENGTH] = length;
    }

    /** Bytes uploaded so far into the slot's shadow area for {@code what}, or -1 if no such upload. */
    short uploaded(byte what, byte slot) {
        if (st[ST_UPLOAD] != what || st[ST_UPLOAD_SLOT] != slot) {
            return -1;
        }
        return st[ST_UPLOAD_LENGTH];
    }

    void endUpload() {
        st[ST_UPLOAD] = 0;
        st[ST_UPLOAD_SLOT] = 0;
        st[ST_UPLOAD_LENGTH] = 0;
    }
}
