package org.setls.applet;

import javacard.framework.JCSystem;
import javacard.framework.Util;
import javacard.security.AESKey;
import javacardx.crypto.Cipher;

/**
 * AES-128-GCM (NIST SP 800-38D) with a 96-bit IV and a 128-bit tag, built on the card's AES-ECB:
 * real cards have no native GCM. CTR mode uses the card's AES; GHASH is computed in software,
 * bit by bit (SP 800-38D algorithm 1): slow but small and obviously right. Streaming: begin(),
 * update() as often as needed (whole blocks except on the last call), then the tag.
 * RAM: STATE_SIZE bytes and 2 shorts, CLEAR_ON_DESELECT.
 */
final class AesGcm {
    private static final short BLOCK = 16;
    private static final short IV_SIZE = 12;
    private static final short TAG_SIZE = 16;
    // STATE layout.
    private static final short H = 0;          // hash subkey E(K, 0^128)
    private static final short J0 = 16;        // pre-counter block
    private static final short COUNTER = 32;   // current counter block
    private static final short Y = 48;         // GHASH accumulator
    private static final short BUF = 64;       // keystream, padded block, or tag scratch
    private static final short Z = 80;         // multiplication result
    private static final short V = 96;         // multiplication operand
    private static final short STATE_SIZE = 112;
    /** R = 11100001 || 0^120: the reduction constant of GF(2^128) (SP 800-38D 6.3). */
    private static final byte R_HIGH = (byte) 0xE1;

    private static final short L_AAD = 0;
    private static final short L_TEXT = 1;
    private static final short L_ENCRYPT = 2;
    private static final short LENGTHS_SIZE = 3;

    private final Cipher aes;
    private final byte[] st;
    private final short[] lengths;

    /** Allocated once, at install. */
    AesGcm() {
        aes = Cipher.getInstance(Cipher.ALG_AES_BLOCK_128_ECB_NOPAD, false);
        st = JCSystem.makeTransientByteArray(STATE_SIZE, JCSystem.CLEAR_ON_DESELECT);
        lengths = JCSystem.makeTransientShortArray(LENGTHS_SIZE, JCSystem.CLEAR_ON_DESELECT);
    }

    void setKey(AESKey key) {
        aes.init(key, Cipher.MODE_ENCRYPT);
        Util.arrayFillNonAtomic(st, H, BLOCK, (byte) 0);
        aes.doFinal(st, H, BLOCK, st, H);
    }

    /** J0 = IV || 0^31 || 1; the AAD goes into GHASH now. */
    void begin(boolean encrypt, byte[] iv, short ivOff, byte[] aad, short aadOff, short aadLen) {
        Util.arrayCopyNonAtomic(iv, ivOff, st, J0, IV_SIZE);
        Util.setShort(st, (short) (J0 + 12), (short) 0);
        Util.setShort(st, (short) (J0 + 14), (short) 1);
        Util.arrayCopyNonAtomic(st, J0, st, COUNTER, BLOCK);
        Util.arrayFillNonAtomic(st, Y, BLOCK, (byte) 0);
        lengths[L_AAD] = aadLen;
        lengths[L_TEXT] = 0;
        lengths[L_ENCRYPT] = (short) (encrypt ? 1 : 0);
        for (short i = 0; i < aadLen; i += BLOCK) {
            short n = (short) (aadLen - i) < BLOCK ? (short) (aadLen - i) : BLOCK;
            ghashBlock(aad, (short) (aadOff + i), n);
        }
    }

    /** Encrypts or decrypts; len is a multiple of 16 except on the last call; in place is fine. */
    short update(byte[] in, short inOff, short len, byte[] out, short outOff) {
        boolean encrypt = lengths[L_ENCRYPT] != 0;
        for (short i = 0; i < len; i += BLOCK) {
            short n = (short) (len - i) < BLOCK ? (short) (len - i) : BLOCK;
            short src = (short) (inOff + i);
            short dst = (short) (outOff + i);
            if (!encrypt) {
                ghashBlock(in, src, n);
            }
            increment32();
            aes.doFinal(st, COUNTER, BLOCK, st, BUF);
            for (short k = 0; k < n; k++) {
                out[(short) (dst + k)] = (byte) (in[(short) (src + k)] ^ st[(short) (BUF + k)]);
            }
            if (encrypt) {
                ghashBlock(out, dst, n);
            }
        }
        lengths[L_TEXT] += len;
        return len;
    }

    /** Writes the 16-byte tag. */
    void finishTag(byte[] tag, short tagOff) {
        computeTag();
        Util.arrayCopyNonAtomic(st, BUF, tag, tagOff, TAG_SIZE);
    }

    /** Compares the received tag with the computed one in constant time. */
    boolean verifyTag(byte[] tag, short tagOff, short tagLen) {
        computeTag();
        byte diff = (byte) (tagLen == TAG_SIZE ? 0 : 1);
        for (short i = 0; i < TAG_SIZE; i++) {
            diff |= (byte) (st[(short) (BUF + i)] ^ tag[(short) (tagOff + (i < tagLen ? i : 0))]);
        }
        return diff == 0;
    }

    /** S = GHASH(... || len(A)_64 || len(C)_64), T = E(K, J0) xor S; the tag ends up in BUF. */
    private void computeTag() {
        Util.arrayFillNonAtomic(st, BUF, BLOCK, (byte) 0);
        writeBitLength(lengths[L_AAD], (short) (BUF + 5));
        writeBitLength(lengths[L_TEXT], (short) (BUF + 13));
        ghashBlock(st, BUF, BLOCK);
        aes.doFinal(st, J0, BLOCK, st, BUF);
        for (short i = 0; i < BLOCK; i++) {
            st[(short) (BUF + i)] ^= st[(short) (Y + i)];
        }
    }

    /** Writes 8 * len as 3 big-endian bytes at off (the low bytes of a 64-bit length). */
    private void writeBitLength(short len, short off) {
        st[off] = (byte) ((len >> 13) & 0x07);
        st[(short) (off + 1)] = (byte) (len >> 5);
        st[(short) (off + 2)] = (byte) (len << 3);
    }

    /** inc32: the last 32 bits of the counter block, plus one. */
    private void increment32() {
        for (short i = (short) (COUNTER + BLOCK - 1); i >= (short) (COUNTER + 12); i--) {
            st[i]++;
            if (st[i] != 0) {
                return;
            }
        }
    }

    /** Y = (Y xor X) * H, X being n bytes padded with zeros. */
    private void ghashBlock(byte[] x, short off, short n) {
        for (short i = 0; i < n; i++) {
            st[(short) (Y + i)] ^= x[(short) (off + i)];
        }
        multiplyYbyH();
    }

    /** SP 800-38D algorithm 1, bit by bit: Z = Y * H in GF(2^128). */
    private void multiplyYbyH() {
        Util.arrayFillNonAtomic(st, Z, BLOCK, (byte) 0);
        Util.arrayCopyNonAtomic(st, H, st, V, BLOCK);
        for (short i = 0; i < BLOCK; i++) {
            byte yi = st[(short) (Y + i)];
            for (short bit = 7; bit >= 0; bit--) {
                if (((yi >> bit) & 1) != 0) {
                    for (short k = 0; k < BLOCK; k++) {
                        st[(short) (Z + k)] ^= st[(short) (V + k)];
                    }
                }
                shiftVRight();
            }
        }
        Util.arrayCopyNonAtomic(st, Z, st, Y, BLOCK);
    }

    /** V = V >> 1, xor R if the bit shifted out was 1. */
    private void shiftVRight() {
        boolean lsb = (st[(short) (V + BLOCK - 1)] & 1) != 0;
        for (short k = (short) (V + BLOCK - 1); k > V; k--) {
            st[k] = (byte) (((st[k] & 0xFF) >> 1) | ((st[(short) (k - 1)] & 1) << 7));
        }
        st[V] = (byte) ((st[V] & 0xFF) >> 1);
        if (lsb) {
            st[V] ^= R_HIGH;
        }
    }
}
