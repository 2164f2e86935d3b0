package org.setls.applet;

import javacard.framework.JCSystem;
import javacard.framework.Util;
import javacard.security.AESKey;
import javacard.security.KeyBuilder;
import javacard.security.RandomData;
import javacardx.crypto.Cipher;

/**
 * TLS 1.2 record protection for the negotiated suite (RFC 5246 6.2.3): AES-128-GCM (RFC 5288),
 * AES-128-CCM and CCM_8 (RFC 6655), AES-128-CBC with HMAC-SHA256 (RFC 5246 6.2.3.2). The server
 * writes with the server keys and reads with the client keys. Records are processed in place:
 * a record starts at {@code off} and its plaintext at {@code off + prefixLength()}.
 *
 * RAM: SECRETS_SIZE (MAC keys and implicit IVs) + SEQ_SIZE + SCRATCH_SIZE bytes, CLEAR_ON_DESELECT,
 * plus two transient AES keys: deselecting the applet forgets the session's keys.
 */
final class RecordCipher {
    private static final short MAC_KEY_SIZE = 32;
    private static final short AES_KEY_SIZE = 16;
    private static final short FIXED_IV_SIZE = 4;      // RFC 5288 3: salt
    private static final short EXPLICIT_NONCE_SIZE = 8; // RFC 5288 3: nonce_explicit
    private static final short CBC_IV_SIZE = 16;
    private static final short GCM_TAG_SIZE = 16;
    private static final short MAC_SIZE = 32;
    private static final short SEQ_NUM_SIZE = 8;
    private static final short AAD_SIZE = 13;          // seq_num + type + version + length

    // SECRETS layout.
    private static final short CLIENT_MAC = 0;
    private static final short SERVER_MAC = 32;
    private static final short CLIENT_IV = 64;
    private static final short SERVER_IV = 68;
    private static final short SECRETS_SIZE = 72;
    // SEQ layout.
    private static final short READ_SEQ = 0;
    private static final short WRITE_SEQ = 8;
    private static final short SEQ_SIZE = 16;
    // SCRATCH layout: AAD / MAC header, the nonce, the MAC computed over a received record.
    private static final short AAD = 0;
    private static final short NONCE = 16;
    private static final short MAC_OUT = 28;
    private static final short SCRATCH_SIZE = MAC_OUT + MAC_SIZE;

    private static final short KIND_GCM = 1;
    private static final short KIND_CCM = 2;
    private static final short KIND_CCM_8 = 3;
    private static final short KIND_CBC = 4;
    private static final short KIND_SIZE = 1;

    private final byte[] secrets;
    private final byte[] seq;
    private final byte[] scratch;
    private final short[] kind;
    private final AESKey clientKey;
    private final AESKey serverKey;
    private final AesGcm gcm;
    private final AesCcm ccm;
    private final Cipher cbc;
    private final HmacSha256 hmac;
    private final RandomData random;
    private final OpCounters counters;

    /** Allocated once, at install. */
    RecordCipher(AesGcm gcm, AesCcm ccm, HmacSha256 hmac, RandomData random, OpCounters counters) {
        this.counters = counters;
        this.gcm = gcm;
        this.ccm = ccm;
        this.hmac = hmac;
        this.random = random;
        secrets = JCSystem.makeTransientByteArray(SECRETS_SIZE, JCSystem.CLEAR_ON_DESELECT);
        seq = JCSystem.makeTransientByteArray(SEQ_SIZE, JCSystem.CLEAR_ON_DESELECT);
        scratch = JCSystem.makeTransientByteArray(SCRATCH_SIZE, JCSystem.CLEAR_ON_DESELECT);
        kind = JCSystem.makeTransientShortArray(KIND_SIZE, JCSystem.CLEAR_ON_DESELECT);
        clientKey = (AESKey) KeyBuilder.buildKey(KeyBuilder.TYPE_AES_TRANSIENT_DESELECT,
                KeyBuilder.LENGTH_AES_128, false);
        serverKey = (AESKey) KeyBuilder.buildKey(KeyBuilder.TYPE_AES_TRANSIENT_DESELECT,
                KeyBuilder.LENGTH_AES_128, false);
        cbc = Cipher.getInstance(Cipher.ALG_AES_BLOCK_128_CBC_NOPAD, false);
    }

    /** Size of the key block (RFC 5246 6.3) the suite needs. */
    static short keyBlockSize(short suite) {
        return suite == Tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256
                ? (short) (2 * MAC_KEY_SIZE + 2 * AES_KEY_SIZE)
                : (short) (2 * AES_KEY_SIZE + 2 * FIXED_IV_SIZE);
    }

    /** Takes the keys from the key block and starts both sequence numbers at 0. */
    void start(short suite, byte[] keyBlock, short off) {
        Util.arrayFillNonAtomic(seq, (short) 0, SEQ_SIZE, (byte) 0);
        if (suite == Tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256) {
            kind[0] = KIND_CBC;
            Util.arrayCopyNonAtomic(keyBlock, off, secrets, CLIENT_MAC, (short) (2 * MAC_KEY_SIZE));
            off += 2 * MAC_KEY_SIZE;
            clientKey.setKey(keyBlock, off);
            serverKey.setKey(keyBlock, (short) (off + AES_KEY_SIZE));
            return;
        }
        kind[0] = suite == Tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 ? KIND_GCM
                : suite == Tls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM ? KIND_CCM : KIND_CCM_8;
        clientKey.setKey(keyBlock, off);
        serverKey.setKey(keyBlock, (short) (off + AES_KEY_SIZE));
        Util.arrayCopyNonAtomic(keyBlock, (short) (off + 2 * AES_KEY_SIZE), secrets, CLIENT_IV,
                (short) (2 * FIXED_IV_SIZE));
    }

    boolean active() {
        return kind[0] != 0;
    }

    void clear() {
        kind[0] = 0;
        clientKey.clearKey();
        serverKey.clearKey();
        Util.arrayFillNonAtomic(secrets, (short) 0, SECRETS_SIZE, (byte) 0);
    }

    /** Bytes between the record header's start and the plaintext. */
    short prefixLength() {
        return (short) (Tls.RECORD_HEADER_SIZE + (kind[0] == KIND_CBC ? CBC_IV_SIZE : EXPLICIT_NONCE_SIZE));
    }

    /** Most bytes protection adds after the plaintext. */
    short maxExpansion() {
        return kind[0] == KIND_CBC ? (short) (MAC_SIZE + CBC_IV_SIZE) : GCM_TAG_SIZE;
    }

    private short tagLength() {
        return kind[0] == KIND_CCM_8 ? (short) 8 : GCM_TAG_SIZE;
    }

    /** Protects the {@code len} plaintext bytes at off + prefixLength(); returns the record's length. */
    short protect(byte type, byte[] buf, short off, short len) {
        short p = (short) (off + prefixLength());
        short fragment;
        if (kind[0] == KIND_CBC) {
            fragment = protectCbc(type, buf, off, p, len);
        } else {
            Util.arrayCopyNonAtomic(seq, WRITE_SEQ, buf, (short) (off + Tls.RECORD_HEADER_SIZE), EXPLICIT_NONCE_SIZE);
            setAad(WRITE_SEQ, type, len);
            setNonce(SERVER_IV, seq, WRITE_SEQ);
            short tag = tagLength();
            if (kind[0] == KIND_GCM) {
                gcm.setKey(serverKey);
                gcm.begin(true, scratch, NONCE, scratch, AAD, AAD_SIZE);
                gcm.update(buf, p, len, buf, p);
                gcm.finishTag(buf, (short) (p + len));
            } else {
                ccm.setKey(serverKey);
                ccm.begin(true, scratch, NONCE, (short) 12, scratch, AAD, AAD_SIZE, len, tag);
                ccm.update(buf, p, len, buf, p);
                ccm.finishTag(buf, (short) (p + len));
            }
            fragment = (short) (EXPLICIT_NONCE_SIZE + len + tag);
            countAead(len);
        }
        buf[off] = type;
        Util.setShort(buf, (short) (off + 1), Tls.VERSION_TLS12);
        Util.setShort(buf, (short) (off + 3), fragment);
        increment(WRITE_SEQ);
        return (short) (Tls.RECORD_HEADER_SIZE + fragment);
    }

    /**
     * Checks and decrypts the record at {@code off} (its header already validated by the caller);
     * returns the plaintext length, the plaintext at off + prefixLength(), or -1 if the record
     * does not authenticate (bad_record_mac).
     */
    short unprotect(byte[] buf, short off) {
        byte type = buf[off];
        short fragment = Util.getShort(buf, (short) (off + 3));
        short p = (short) (off + prefixLength());
        short len;
        if (kind[0] == KIND_CBC) {
            len = unprotectCbc(type, buf, off, p, fragment);
        } else {
            short tag = tagLength();
            len = (short) (fragment - EXPLICIT_NONCE_SIZE - tag);
            if (len < 0) {
                return -1;
            }
            setAad(READ_SEQ, type, len);
            setNonce(CLIENT_IV, buf, (short) (off + Tls.RECORD_HEADER_SIZE));
            boolean ok;
            if (kind[0] == KIND_GCM) {
                gcm.setKey(clientKey);
                gcm.begin(false, scratch, NONCE, scratch, AAD, AAD_SIZE);
                gcm.update(buf, p, len, buf, p);
                ok = gcm.verifyTag(buf, (short) (p + len), tag);
            } else {
                ccm.setKey(clientKey);
                ccm.begin(false, scratch, NONCE, (short) 12, scratch, AAD, AAD_SIZE, len, tag);
                ccm.update(buf, p, len, buf, p);
                ok = ccm.verifyTag(buf, (short) (p + len), tag);
            }
            countAead(len);
            if (!ok) {
                return -1;
            }
        }
        if (len >= 0) {
            increment(READ_SEQ);
        }
        return len;
    }

    private short protectCbc(byte type, byte[] buf, short off, short p, short len) {
        setAad(WRITE_SEQ, type, len);
        hmac.init(secrets, SERVER_MAC, MAC_KEY_SIZE);
        hmac.update(scratch, AAD, AAD_SIZE);
        short end = (short) (p + len);
        end += hmac.doFinal(buf, p, len, buf, end);
        // Padding: padLength + 1 bytes of value padLength, to a whole number of blocks.
        short padLength = (short) (15 - (short) ((short) (end - p) % 16));
        Util.arrayFillNonAtomic(buf, end, (short) (padLength + 1), (byte) padLength);
        end += (short) (padLength + 1);
        short iv = (short) (off + Tls.RECORD_HEADER_SIZE);
        random.generateData(buf, iv, CBC_IV_SIZE);
        counters.count(OpCounters.RANDOM_BYTES, CBC_IV_SIZE);
        countCbc(len, (short) (end - p));
        cbc.init(serverKey, Cipher.MODE_ENCRYPT, buf, iv, CBC_IV_SIZE);
        cbc.doFinal(buf, p, (short) (end - p), buf, p);
        return (short) (end - iv);
    }

    private short unprotectCbc(byte type, byte[] buf, short off, short p, short fragment) {
        short n = (short) (fragment - CBC_IV_SIZE);
        if (n < (short) (MAC_SIZE + 16) || (short) (n % 16) != 0) {
            return -1;
        }
        cbc.init(clientKey, Cipher.MODE_DECRYPT, buf, (short) (off + Tls.RECORD_HEADER_SIZE), CBC_IV_SIZE);
        cbc.doFinal(buf, p, n, buf, p);
        short padLength = (short) (buf[(short) (p + n - 1)] & 0xFF);
        // Check padding and MAC without branching on which failed (RFC 5246 6.2.3.2 note).
        byte bad = 0;
        if ((short) (padLength + 1 + MAC_SIZE) > n) {
            bad = 1;
            padLength = 0;
        }
        for (short i = 0; i <= padLength; i++) {
            bad |= (byte) (buf[(short) (p + n - 1 - i)] ^ padLength);
        }
        short len = (short) (n - padLength - 1 - MAC_SIZE);
        setAad(READ_SEQ, type, len);
        hmac.init(secrets, CLIENT_MAC, MAC_KEY_SIZE);
        hmac.update(scratch, AAD, AAD_SIZE);
        hmac.doFinal(buf, p, len, scratch, MAC_OUT);
        for (short i = 0; i < MAC_SIZE; i++) {
            bad |= (byte) (scratch[(short) (MAC_OUT + i)] ^ buf[(short) (p + len + i)]);
        }
        countCbc(len, n);
        return bad == 0 ? len : -1;
    }

    /** Exact primitive counts of one AEAD record operation (see OpCounters). */
    private void countAead(short len) {
        if (kind[0] == KIND_GCM) {
            counters.count(OpCounters.AES_BLOCKS, (short) 2);   // H = E(K, 0) and E(K, J0)
            counters.countBlocks(OpCounters.AES_BLOCKS, len);
            counters.count(OpCounters.GHASH_BLOCKS, (short) 2); // the AAD block and the lengths block
            counters.countBlocks(OpCounters.GHASH_BLOCKS, len);
        } else {
            counters.count(OpCounters.AES_BLOCKS, (short) 3);   // B0, the AAD block, S0
            counters.countBlocks(OpCounters.AES_BLOCKS, len);   // CBC-MAC
            counters.countBlocks(OpCounters.AES_BLOCKS, len);   // CTR
        }
    }

    /** Exact primitive counts of HMAC-SHA256 over 13 + len bytes, and AES-CBC over cbcBytes. */
    private void countCbc(short len, short cbcBytes) {
        counters.count(OpCounters.HMAC, (short) 1);
        counters.countDigest((short) (64 + AAD_SIZE + len));
        counters.countDigest((short) (64 + MAC_SIZE));
        counters.countBlocks(OpCounters.AES_BLOCKS, cbcBytes);
    }

    /** additional_data = seq_num + type + version + length (RFC 5246 6.2.3.3). */
    private void setAad(short seqOff, byte type, short len) {
        Util.arrayCopyNonAtomic(seq, seqOff, scratch, AAD, SEQ_NUM_SIZE);
        scratch[(short) (AAD + 8)] = type;
        Util.setShort(scratch, (short) (AAD + 9), Tls.VERSION_TLS12);
        Util.setShort(scratch, (short) (AAD + 11), len);
    }

    /** nonce = salt (implicit, 4 bytes) + nonce_explicit (8 bytes) (RFC 5288 3, RFC 6655 3). */
    private void setNonce(short saltOff, byte[] explicit, short explicitOff) {
        Util.arrayCopyNonAtomic(secrets, saltOff, scratch, NONCE, FIXED_IV_SIZE);
        Util.arrayCopyNonAtomic(explicit, explicitOff, scratch, (short) (NONCE + FIXED_IV_SIZE), EXPLICIT_NONCE_SIZE);
    }

    private void increment(short seqOff) {
        for (short i = (short) (seqOff + SEQ_NUM_SIZE - 1); i >= seqOff; i--) {
            seq[i]++;
            if (seq[i] != 0) {
                return;
            }
        }
    }

    /**
     * Writes the session's record state for the host's record layer (tandem mode): suite kind,
     * then client and server keys, MAC keys or IVs, and both sequence numbers. Returns the length.
     */
    short export(byte[] out, short off) {
        short start = off;
        out[off++] = (byte) kind[0];
        if (kind[0] == KIND_CBC) {
            off = Util.arrayCopyNonAtomic(secrets, CLIENT_MAC, out, off, (short) (2 * MAC_KEY_SIZE));
        }
        clientKey.getKey(out, off);
        off += AES_KEY_SIZE;
        serverKey.getKey(out, off);
        off += AES_KEY_SIZE;
        if (kind[0] != KIND_CBC) {
            off = Util.arrayCopyNonAtomic(secrets, CLIENT_IV, out, off, (short) (2 * FIXED_IV_SIZE));
        }
        off = Util.arrayCopyNonAtomic(seq, READ_SEQ, out, off, SEQ_SIZE);
        return (short) (off - start);
    }
}
