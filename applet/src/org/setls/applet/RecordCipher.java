package org.setls.applet;

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
 * RAM, from the arena: session state Transients.RECORD_KEYS (SECRETS_SIZE: MAC keys and implicit
 * IVs), RECORD_SEQ (SEQ_SIZE) and RECORD_KIND; one-APDU scratch Transients.RECORD_SCRATCH
 * (SCRATCH_SIZE); plus two transient AES keys: deselecting the applet forgets the session's keys.
 */
final class RecordCipher {
    private static final short MAC_KEY_SIZE = 32;
    private static final short AES_KEY_SIZE = 16;
    private static final short FIXED_IV_SIZE = 4;      // RFC 5288 3: salt
    private static final short EXPLICIT_NONCE_SIZE = 8; // RFC 5288 3: nonce_explicit
    private static final short CBC_IV_SIZE = 16;
    private static final short AEAD_TAG_SIZE = 16;     // GCM and CCM; CCM_8's is 8
    private static final short MAC_SIZE = 32;
    private static final short SEQ_NUM_SIZE = 8;
    private static final short AAD_SIZE = 13;          // seq_num + type + version + length
    /** The bytes that can be CBC padding: the length byte's 255 and itself. */
    private static final short PAD_WINDOW = 256;

    // Secrets of the active session: bytes of the arena from Transients.RECORD_KEYS. The MAC keys
    // (CBC) and the implicit IVs (AEAD) share the first bytes: a suite has one or the other.
    private static final short CLIENT_MAC = Transients.RECORD_KEYS;
    private static final short SERVER_MAC = (short) (CLIENT_MAC + 32);
    private static final short CLIENT_IV = CLIENT_MAC;
    private static final short SERVER_IV = (short) (CLIENT_MAC + 4);
    /** The AES keys, set into the two key objects for each record (the objects serve every session). */
    private static final short CLIENT_KEY = (short) (CLIENT_MAC + 64);
    private static final short SERVER_KEY = (short) (CLIENT_KEY + AES_KEY_SIZE);
    static final short SECRETS_SIZE = 96;
    // Sequence numbers: bytes of the arena from Transients.RECORD_SEQ.
    private static final short READ_SEQ = Transients.RECORD_SEQ;
    private static final short WRITE_SEQ = (short) (READ_SEQ + 8);
    static final short SEQ_SIZE = 16;
    // Scratch: AAD / MAC header, the nonce, the MAC computed over a received record; bytes of the
    // arena from Transients.RECORD_SCRATCH.
    private static final short AAD = Transients.RECORD_SCRATCH;
    private static final short NONCE = (short) (AAD + 16);
    private static final short MAC_OUT = (short) (AAD + 28);
    static final short SCRATCH_SIZE = 28 + MAC_SIZE;

    private static final short KIND_GCM = 1;
    private static final short KIND_CCM = 2;
    private static final short KIND_CCM_8 = 3;
    private static final short KIND_CBC = 4;
    /** The kind of protection in use (0: none): a short of the arena at Transients.RECORD_KIND. */
    private static final short KIND = Transients.RECORD_KIND;
    static final short KIND_SIZE = 1;

    /** The arena's bytes: the secrets, sequence numbers and scratch above. */
    private final byte[] ram;
    private final short[] kind;
    private final AESKey clientKey;
    private final AESKey serverKey;
    private final AesGcm gcm;
    private final AesCcm ccm;
    private final Cipher cbc;
    private final HmacSha256 hmac;
    private final RandomData random;
    private final OpCounters counters;

    /** Allocated once, at install; the state is the arena's, the two keys transient key objects. */
    RecordCipher(AesGcm gcm, AesCcm ccm, HmacSha256 hmac, RandomData random, OpCounters counters,
                 Transients arena) {
        this.counters = counters;
        this.gcm = gcm;
        this.ccm = ccm;
        this.hmac = hmac;
        this.random = random;
        ram = arena.bytes;
        kind = arena.shorts;
        clientKey = (AESKey) KeyBuilder.buildKey(KeyBuilder.TYPE_AES_TRANSIENT_DESELECT,
                KeyBuilder.LENGTH_AES_128, false);
        serverKey = (AESKey) KeyBuilder.buildKey(KeyBuilder.TYPE_AES_TRANSIENT_DESELECT,
                KeyBuilder.LENGTH_AES_128, false);
        cbc = Cipher.getInstance(Cipher.ALG_AES_BLOCK_128_CBC_NOPAD, false);
    }

    /** The suites with CBC and HMAC-SHA256 records (RFC 5246 6.2.3.2). */
    static boolean isCbc(short suite) {
        return suite == Tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256
                || suite == Tls.TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256;
    }

    /** Size of the key block (RFC 5246 6.3) the suite needs. */
    static short keyBlockSize(short suite) {
        return isCbc(suite)
                ? (short) (2 * MAC_KEY_SIZE + 2 * AES_KEY_SIZE)
                : (short) (2 * AES_KEY_SIZE + 2 * FIXED_IV_SIZE);
    }

    /** Takes the keys from the key block and starts both sequence numbers at 0. */
    void start(short suite, byte[] keyBlock, short off) {
        Util.arrayFillNonAtomic(ram, READ_SEQ, SEQ_SIZE, (byte) 0);
        if (isCbc(suite)) {
            kind[KIND] = KIND_CBC;
            Util.arrayCopyNonAtomic(keyBlock, off, ram, CLIENT_MAC, (short) (2 * MAC_KEY_SIZE));
            off += 2 * MAC_KEY_SIZE;
            Util.arrayCopyNonAtomic(keyBlock, off, ram, CLIENT_KEY, (short) (2 * AES_KEY_SIZE));
            return;
        }
        kind[KIND] = suite == Tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 ? KIND_GCM
                : suite == Tls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM ? KIND_CCM : KIND_CCM_8; // CCM_8: C0AE, C0A8
        Util.arrayCopyNonAtomic(keyBlock, off, ram, CLIENT_KEY, (short) (2 * AES_KEY_SIZE));
        Util.arrayCopyNonAtomic(keyBlock, (short) (off + 2 * AES_KEY_SIZE), ram, CLIENT_IV,
                (short) (2 * FIXED_IV_SIZE));
    }

    /** Sets the active session's AES keys into the key objects, before its record is processed. */
    private void loadKeys() {
        clientKey.setKey(ram, CLIENT_KEY);
        serverKey.setKey(ram, SERVER_KEY);
    }

    void clear() {
        kind[KIND] = 0;
        clientKey.clearKey();
        serverKey.clearKey();
        Util.arrayFillNonAtomic(ram, CLIENT_MAC, SECRETS_SIZE, (byte) 0);
    }

    /** Bytes between the record header's start and the plaintext. */
    short prefixLength() {
        return (short) (Tls.RECORD_HEADER_SIZE + (kind[KIND] == KIND_CBC ? CBC_IV_SIZE : EXPLICIT_NONCE_SIZE));
    }

    private short tagLength() {
        return kind[KIND] == KIND_CCM_8 ? (short) 8 : AEAD_TAG_SIZE;
    }

    /** Protects the {@code len} plaintext bytes at off + prefixLength(); returns the record's length. */
    short protect(byte type, byte[] buf, short off, short len) {
        loadKeys();
        short p = (short) (off + prefixLength());
        short fragment;
        if (kind[KIND] == KIND_CBC) {
            fragment = protectCbc(type, buf, off, p, len);
        } else {
            Util.arrayCopyNonAtomic(ram, WRITE_SEQ, buf, (short) (off + Tls.RECORD_HEADER_SIZE), EXPLICIT_NONCE_SIZE);
            setAad(WRITE_SEQ, type, len);
            setNonce(SERVER_IV, ram, WRITE_SEQ);
            short tag = tagLength();
            if (kind[KIND] == KIND_GCM) {
                gcm.setKey(serverKey);
                gcm.begin(true, ram, NONCE, ram, AAD, AAD_SIZE);
                gcm.update(buf, p, len, buf, p);
                gcm.finishTag(buf, (short) (p + len));
            } else {
                ccm.setKey(serverKey);
                ccm.begin(true, ram, NONCE, (short) 12, ram, AAD, AAD_SIZE, len, tag);
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
        loadKeys();
        byte type = buf[off];
        short fragment = Util.getShort(buf, (short) (off + 3));
        short p = (short) (off + prefixLength());
        short len;
        if (kind[KIND] == KIND_CBC) {
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
            if (kind[KIND] == KIND_GCM) {
                gcm.setKey(clientKey);
                gcm.begin(false, ram, NONCE, ram, AAD, AAD_SIZE);
                gcm.update(buf, p, len, buf, p);
                ok = gcm.verifyTag(buf, (short) (p + len), tag);
            } else {
                ccm.setKey(clientKey);
                ccm.begin(false, ram, NONCE, (short) 12, ram, AAD, AAD_SIZE, len, tag);
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
        hmac.init(ram, SERVER_MAC, MAC_KEY_SIZE);
        hmac.update(ram, AAD, AAD_SIZE);
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

    /**
     * RFC 5246 6.2.3.2 with the Lucky Thirteen countermeasure (AlFardan and Paterson, 2013): the
     * padding and the MAC are both checked, without a branch on either before the MAC, and the
     * MAC costs as many SHA-256 blocks whatever the padding length, so neither the answer nor
     * the time tells a padding error from a MAC error. The padding's length byte is read as is;
     * when it is too long for the record, the record is bad and the MAC is taken over the
     * longest plaintext instead. Every byte that could be padding (the last min(n, 256)) is
     * read, masked in or out by arithmetic. The only branch is on the result.
     */
    private short unprotectCbc(byte type, byte[] buf, short off, short p, short fragment) {
        short n = (short) (fragment - CBC_IV_SIZE);
        if (n < (short) (MAC_SIZE + 16) || (short) (n % 16) != 0) {
            return -1; // the length is public: no secret is involved yet
        }
        cbc.init(clientKey, Cipher.MODE_DECRYPT, buf, (short) (off + Tls.RECORD_HEADER_SIZE), CBC_IV_SIZE);
        cbc.doFinal(buf, p, n, buf, p);
        short padLength = (short) (buf[(short) (p + n - 1)] & 0xFF);
        // tooLong: all ones if padLength + 1 + MAC_SIZE > n, else 0 (n - MAC_SIZE - 1 >= 47).
        short tooLong = (short) ((short) (n - MAC_SIZE - 1 - padLength) >> 15);
        byte bad = (byte) (tooLong & 1);
        padLength = (short) (padLength & (short) ~tooLong);
        short window = n < PAD_WINDOW ? n : PAD_WINDOW;
        for (short i = 0; i < window; i++) {
            // inPadding: all ones if i <= padLength, else 0.
            short inPadding = (short) ~((short) (padLength - i) >> 15);
            bad |= (byte) ((buf[(short) (p + n - 1 - i)] ^ padLength) & inPadding);
        }
        short len = (short) (n - padLength - 1 - MAC_SIZE);
        setAad(READ_SEQ, type, len);
        hmac.init(ram, CLIENT_MAC, MAC_KEY_SIZE);
        hmac.update(ram, AAD, AAD_SIZE);
        hmac.doFinal(buf, p, len, ram, MAC_OUT);
        // As many compression-function calls as the longest plaintext (no padding) would take.
        short longest = (short) (n - 1 - MAC_SIZE);
        short extra = (short) (innerBlocks(longest) - innerBlocks(len));
        hmac.burn(extra);
        counters.count(OpCounters.SHA256_BLOCKS, extra);
        for (short i = 0; i < MAC_SIZE; i++) {
            bad |= (byte) (ram[(short) (MAC_OUT + i)] ^ buf[(short) (p + len + i)]);
        }
        countCbc(len, n);
        return bad == 0 ? len : -1;
    }

    /** SHA-256 blocks of the inner hash of HMAC over the MAC header and len bytes. */
    private static short innerBlocks(short len) {
        short bytes = (short) (HmacSha256.BLOCK_SIZE + AAD_SIZE + len);
        return (short) ((short) (bytes >> 6) + 1 + (short) (((short) ((short) (bytes & 63) + 8)) >> 6));
    }

    /** Exact primitive counts of one AEAD record operation (see OpCounters). */
    private void countAead(short len) {
        if (kind[KIND] == KIND_GCM) {
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
        Util.arrayCopyNonAtomic(ram, seqOff, ram, AAD, SEQ_NUM_SIZE);
        ram[(short) (AAD + 8)] = type;
        Util.setShort(ram, (short) (AAD + 9), Tls.VERSION_TLS12);
        Util.setShort(ram, (short) (AAD + 11), len);
    }

    /** nonce = salt (implicit, 4 bytes) + nonce_explicit (8 bytes) (RFC 5288 3, RFC 6655 3). */
    private void setNonce(short saltOff, byte[] explicit, short explicitOff) {
        Util.arrayCopyNonAtomic(ram, saltOff, ram, NONCE, FIXED_IV_SIZE);
        Util.arrayCopyNonAtomic(explicit, explicitOff, ram, (short) (NONCE + FIXED_IV_SIZE), EXPLICIT_NONCE_SIZE);
    }

    private void increment(short seqOff) {
        for (short i = (short) (seqOff + SEQ_NUM_SIZE - 1); i >= seqOff; i--) {
            ram[i]++;
            if (ram[i] != 0) {
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
        out[off++] = (byte) kind[KIND];
        if (kind[KIND] == KIND_CBC) {
            off = Util.arrayCopyNonAtomic(ram, CLIENT_MAC, out, off, (short) (2 * MAC_KEY_SIZE));
        }
        off = Util.arrayCopyNonAtomic(ram, CLIENT_KEY, out, off, (short) (2 * AES_KEY_SIZE));
        if (kind[KIND] != KIND_CBC) {
            off = Util.arrayCopyNonAtomic(ram, CLIENT_IV, out, off, (short) (2 * FIXED_IV_SIZE));
        }
        off = Util.arrayCopyNonAtomic(ram, READ_SEQ, out, off, SEQ_SIZE);
        return (short) (off - start);
    }
}
