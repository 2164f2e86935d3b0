package org.setls.applet;

import javacard.framework.JCSystem;
import javacard.framework.Util;
import javacard.security.AESKey;
import javacardx.crypto.Cipher;

/**
 * AES-128-CCM (NIST SP 800-38C, RFC 3610 formatting) on the card's AES-ECB: CBC-MAC over
 * B0 || encoded AAD || payload, CTR for the payload and the tag. Nonces of 7 to 13 bytes
 * (TLS uses 12: q = 3), tags of 4 to 16 bytes (TLS: 16 for CCM, 8 for CCM_8, RFC 6655).
 * Streaming: begin() (the payload length is part of B0), update() in whole blocks except on
 * the last call, then the tag. RAM: STATE_SIZE bytes and 3 shorts, CLEAR_ON_DESELECT.
 */
final class AesCcm {
    private static final short BLOCK = 16;
    // STATE layout.
    private static final short X = 0;        // CBC-MAC chaining value
    private static final short CTR = 16;     // counter block A_i
    private static final short S0 = 32;      // E(K, A_0), masks the tag
    private static final short BUF = 48;     // keystream / scratch
    private static final short STATE_SIZE = 64;

    private static final short L_TAG = 0;
    private static final short L_ENCRYPT = 1;
    private static final short L_Q = 2;
    private static final short PARAMS_SIZE = 3;

    private final Cipher aes;
    private final byte[] st;
    private final short[] params;

    /** Allocated once, at install. */
    AesCcm() {
        aes = Cipher.getInstance(Cipher.ALG_AES_BLOCK_128_ECB_NOPAD, false);
        st = JCSystem.makeTransientByteArray(STATE_SIZE, JCSystem.CLEAR_ON_DESELECT);
        params = JCSystem.makeTransientShortArray(PARAMS_SIZE, JCSystem.CLEAR_ON_DESELECT);
    }

    void setKey(AESKey key) {
        aes.init(key, Cipher.MODE_ENCRYPT);
    }

    void begin(boolean encrypt, byte[] nonce, short nOff, short nLen, byte[] aad, short aadOff,
               short aadLen, short payloadLen, short tagLen) {
        short q = (short) (15 - nLen);
        params[L_TAG] = tagLen;
        params[L_ENCRYPT] = (short) (encrypt ? 1 : 0);
        params[L_Q] = q;
        // B0 = flags || N || Q (SP 800-38C A.2.1).
        short m = (short) ((short) (tagLen - 2) >> 1);
        byte flags = (byte) ((aadLen > 0 ? 0x40 : 0) | (m << 3) | (q - 1));
        st[X] = flags;
        Util.arrayCopyNonAtomic(nonce, nOff, st, (short) (X + 1), nLen);
        Util.arrayFillNonAtomic(st, (short) (X + 1 + nLen), q, (byte) 0);
        Util.setShort(st, (short) (X + BLOCK - 2), payloadLen);
        aes.doFinal(st, X, BLOCK, st, X);
        macAad(aad, aadOff, aadLen);
        // A_i = (q - 1) || N || i; S0 = E(K, A_0) masks the tag, the payload uses A_1, A_2, ...
        st[CTR] = (byte) (q - 1);
        Util.arrayCopyNonAtomic(nonce, nOff, st, (short) (CTR + 1), nLen);
        Util.arrayFillNonAtomic(st, (short) (CTR + 1 + nLen), q, (byte) 0);
        aes.doFinal(st, CTR, BLOCK, st, S0);
    }

    /** The AAD with its 2-byte length prefix (a < 2^16 - 2^8), zero padded, into the CBC-MAC. */
    private void macAad(byte[] aad, short aadOff, short aadLen) {
        if (aadLen == 0) {
            return;
        }
        Util.arrayFillNonAtomic(st, BUF, BLOCK, (byte) 0);
        Util.setShort(st, BUF, aadLen);
        short used = 2;
        short i = 0;
        while (i < aadLen) {
            short n = (short) (BLOCK - used);
            if (n > (short) (aadLen - i)) {
                n = (short) (aadLen - i);
            }
            Util.arrayCopyNonAtomic(aad, (short) (aadOff + i), st, (short) (BUF + used), n);
            i += n;
            used += n;
            if (used == BLOCK || i == aadLen) {
                macBlock(st, BUF, used);
                Util.arrayFillNonAtomic(st, BUF, BLOCK, (byte) 0);
                used = 0;
            }
        }
    }

    /** X = E(K, X xor block), the block being n bytes padded with zeros. */
    private void macBlock(byte[] in, short off, short n) {
        for (short k = 0; k < n; k++) {
            st[(short) (X + k)] ^= in[(short) (off + k)];
        }
        aes.doFinal(st, X, BLOCK, st, X);
    }

    short update(byte[] in, short inOff, short len, byte[] out, short outOff) {
        boolean encrypt = params[L_ENCRYPT] != 0;
        for (short i = 0; i < len; i += BLOCK) {
            short n = (short) (len - i) < BLOCK ? (short) (len - i) : BLOCK;
            short src = (short) (inOff + i);
            short dst = (short) (outOff + i);
            if (encrypt) {
                macBlock(in, src, n);
            }
            incrementCounter();
            aes.doFinal(st, CTR, BLOCK, st, BUF);
            for (short k = 0; k < n; k++) {
                out[(short) (dst + k)] = (byte) (in[(short) (src + k)] ^ st[(short) (BUF + k)]);
            }
            if (!encrypt) {
                macBlock(out, dst, n);
            }
        }
        return len;
    }

    private void incrementCounter() {
        short last = (short) (CTR + BLOCK - 1);
        short first = (short) (CTR + BLOCK - params[L_Q]);
        for (short i = last; i >= first; i--) {
            st[i]++;
            if (st[i] != 0) {
                return;
            }
        }
    }

    void finishTag(byte[] tag, short tagOff) {
        short t = params[L_TAG];
        for (short i = 0; i < t; i++) {
            tag[(short) (tagOff + i)] = (byte) (st[(short) (X + i)] ^ st[(short) (S0 + i)]);
        }
    }

    boolean verifyTag(byte[] tag, short tagOff, short tagLen) {
        short t = params[L_TAG];
        byte diff = (byte) (tagLen == t ? 0 : 1);
        for (short i = 0; i < t; i++) {
            diff |= (byte) (tag[(short) (tagOff + (i < tagLen ? i : 0))] ^ st[(short) (X + i)] ^ st[(short) (S0 + i)]);
        }
        return diff == 0;
    }
}
