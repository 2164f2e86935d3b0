package org.setls.applet;

import javacard.framework.JCSystem;
import javacard.framework.Util;
import javacard.security.MessageDigest;

/**
 * HMAC-SHA256 (RFC 2104) on the card's SHA-256: real cards (NXP JCOP 3/4) have no native HMAC.
 * RAM: PAD_SIZE bytes, CLEAR_ON_DESELECT: the key block K0 (64) and the inner hash (32).
 */
final class HmacSha256 {
    static final short BLOCK_SIZE = 64;
    static final short HASH_SIZE = 32;
    private static final byte IPAD = 0x36;
    private static final byte OPAD = 0x5C;
    private static final short INNER_HASH = BLOCK_SIZE;
    private static final short PAD_SIZE = BLOCK_SIZE + HASH_SIZE;

    private final MessageDigest digest;
    private final byte[] pad;

    /** Allocated once, at install. */
    HmacSha256() {
        digest = MessageDigest.getInstance(MessageDigest.ALG_SHA_256, false);
        pad = JCSystem.makeTransientByteArray(PAD_SIZE, JCSystem.CLEAR_ON_DESELECT);
    }

    /** Sets the key (a key longer than a block is hashed first) and starts a computation. */
    void init(byte[] key, short off, short len) {
        Util.arrayFillNonAtomic(pad, (short) 0, BLOCK_SIZE, (byte) 0);
        if (len > BLOCK_SIZE) {
            digest.reset();
            digest.doFinal(key, off, len, pad, (short) 0);
        } else {
            Util.arrayCopyNonAtomic(key, off, pad, (short) 0, len);
        }
        restart();
    }

    /** Starts a new computation with the same key. */
    void restart() {
        digest.reset();
        xorPad(IPAD);
        digest.update(pad, (short) 0, BLOCK_SIZE);
        xorPad(IPAD);
    }

    void update(byte[] in, short off, short len) {
        digest.update(in, off, len);
    }

    /** Finishes with the last input bytes; writes the 32-byte MAC (out may be the input). */
    short doFinal(byte[] in, short off, short len, byte[] out, short outOff) {
        digest.doFinal(in, off, len, pad, INNER_HASH);
        xorPad(OPAD);
        digest.update(pad, (short) 0, BLOCK_SIZE);
        xorPad(OPAD);
        return digest.doFinal(pad, INNER_HASH, HASH_SIZE, out, outOff);
    }

    private void xorPad(byte value) {
        for (short i = 0; i < BLOCK_SIZE; i++) {
            pad[i] ^= value;
        }
    }
}
