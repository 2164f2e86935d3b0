package org.setls.applet;

import javacard.framework.Util;
import javacard.security.MessageDigest;

/**
 * HMAC-SHA256 (RFC 2104) on the card's SHA-256: real cards (NXP JCOP 3/4) have SHA-256 but no
 * HMAC-SHA256 Signature (Quirks: MISSING_ALGORITHMS).
 *
 * HMAC(K, m) = H((K0 xor opad) || H((K0 xor ipad) || m)), K0 = K zero-padded to a block, or H(K)
 * zero-padded when K is longer than a block (RFC 2104 section 2).
 *
 * RAM: the arena's Transients.HMAC_PAD, PAD_SIZE = 96 bytes of one-APDU scratch (the key is set
 * again for every MAC a command computes, and no MAC spans APDUs):
 *   KEY_PAD     BLOCK_SIZE (64)  K0, kept between calls so restart() needs no key
 *   INNER_HASH  HASH_SIZE (32)   H((K0 xor ipad) || m) while the outer hash runs
 * The inner hash has its own slot rather than going through the caller's output buffer: that
 * buffer is often the persistent I/O buffer (RecordCipher), and 32 bytes of RAM are cheaper than
 * a second EEPROM write per record.
 */
final class HmacSha256 {
    /** SHA-256's input block: the size of K0 and of the ipad/opad blocks. */
    static final short BLOCK_SIZE = 64;
    /** SHA-256's output, and so the MAC's. */
    static final short HASH_SIZE = 32;
    private static final byte IPAD = 0x36;
    private static final byte OPAD = 0x5C;

    // pad layout: bytes of the arena from Transients.HMAC_PAD.
    private static final short KEY_PAD = Transients.HMAC_PAD;
    private static final short INNER_HASH = (short) (KEY_PAD + BLOCK_SIZE);
    static final short PAD_SIZE = (short) (BLOCK_SIZE + HASH_SIZE);

    private final MessageDigest digest;
    private final byte[] pad;

    /** Allocated once, at install; the pad is the arena's. */
    HmacSha256(Transients ram) {
        digest = MessageDigest.getInstance(MessageDigest.ALG_SHA_256, false);
        pad = ram.bytes;
    }

    /**
     * The SHA-256 object, lent to ClientAuth (an issuer's hash, the transcript copy's): one object
     * less on the card (docs/resources.md); no HMAC runs while ClientAuth uses it.
     */
    MessageDigest digest() {
        return digest;
    }

    /**
     * Sets the key and starts a computation. Any length: a key longer than a block is hashed
     * first (RFC 2104), as RFC 4231 test cases 6 and 7 check.
     */
    void init(byte[] key, short off, short len) {
        Util.arrayFillNonAtomic(pad, KEY_PAD, BLOCK_SIZE, (byte) 0);
        if (len > BLOCK_SIZE) {
            digest.reset();
            digest.doFinal(key, off, len, pad, KEY_PAD);
        } else {
            Util.arrayCopyNonAtomic(key, off, pad, KEY_PAD, len);
        }
        restart();
    }

    /** Starts a new computation with the key of the last init() (the PRF's many HMACs). */
    void restart() {
        digest.reset();
        // K0 xor ipad is fed to the digest, then K0 restored: no second 64-byte buffer.
        xorPad(IPAD);
        digest.update(pad, KEY_PAD, BLOCK_SIZE);
        xorPad(IPAD);
    }

    void update(byte[] in, short off, short len) {
        digest.update(in, off, len);
    }

    /**
     * Finishes with the last {@code len} input bytes (0 is fine) and writes the 32-byte MAC at
     * outOff; returns HASH_SIZE. The output may overlap the input. The key stays set: restart()
     * begins the next MAC.
     */
    short doFinal(byte[] in, short off, short len, byte[] out, short outOff) {
        digest.doFinal(in, off, len, pad, INNER_HASH);
        xorPad(OPAD);
        digest.update(pad, KEY_PAD, BLOCK_SIZE);
        xorPad(OPAD);
        return digest.doFinal(pad, INNER_HASH, HASH_SIZE, out, outOff);
    }

    /**
     * Feeds {@code blocks} 64-byte blocks to the digest and drops them: the compression-function
     * calls a longer message would have cost (the CBC record check's Lucky Thirteen
     * countermeasure, RecordCipher.unprotectCbc). The key stays set; the digest is left reset.
     */
    void burn(short blocks) {
        digest.reset();
        for (short i = 0; i < blocks; i++) {
            digest.update(pad, KEY_PAD, BLOCK_SIZE);
        }
        digest.reset();
    }

    private void xorPad(byte value) {
        for (short i = KEY_PAD; i < (short) (KEY_PAD + BLOCK_SIZE); i++) {
            pad[i] ^= value;
        }
    }
}
