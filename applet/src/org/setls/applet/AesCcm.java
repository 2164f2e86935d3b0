package org.setls.applet;

import javacard.framework.Util;
import javacard.security.AESKey;
import javacard.security.CryptoException;
import javacardx.crypto.Cipher;

/**
 * AES-128-CCM (NIST SP 800-38C, the formatting of its appendix A = RFC 3610) on the card's
 * AES-ECB: real cards (JCOP 3/4) have no CCM (Quirks: MISSING_ALGORITHMS). CBC-MAC over B0 || encoded AAD || payload, and
 * CTR for the payload and the tag, both through one ECB cipher: the CBC-MAC XOR is done here
 * rather than by a second, CBC cipher, whose update() may hold back output on some cards.
 *
 * Nonces of 7 to 13 bytes (L = 15 - nonce length bytes of payload length: TLS uses 12, so L = 3,
 * RFC 6655), tags of 4, 6, ..., 16 bytes (TLS: 16 for CCM, 8 for CCM_8). The AAD is taken whole,
 * with the 2-byte length encoding (a < 2^16 - 2^8; TLS's is 13 bytes).
 *
 * Streaming: begin() (the payload length is part of B0, so it is known up front), update() with
 * any lengths, then finishTag() or verifyTag(); both refuse (ILLEGAL_USE) until exactly
 * payloadLen bytes went in. A record in pieces spans APDUs (RecordCipher): the state is the
 * arena's record scratch, untouched while the pieces of one record come in a row; resume() sets
 * the key again in each APDU.
 *
 * RAM, scratch of the arena (per-message state):
 *   Transients.CCM_STATE   STATE_SIZE = 64 bytes: the CBC-MAC value X, the counter block A_i,
 *                          S0 = E(K, A_0) that masks the tag, and a block of keystream / AAD scratch
 *   Transients.CCM_PARAMS  PARAMS_SIZE = 5 shorts = 10 bytes: tag length, direction, q, bytes still due, bytes of the current block
 * Total 74 bytes.
 */
final class AesCcm {
    private static final short BLOCK = 16;
    private static final short MIN_NONCE = 7;
    private static final short MAX_NONCE = 13;
    private static final short MIN_TAG = 4;
    private static final short MAX_TAG = 16;
    /** The flags byte's Adata bit: B0 is followed by encoded AAD. */
    private static final byte FLAG_ADATA = 0x40;

    // st layout: bytes of the arena from Transients.CCM_STATE.
    private static final short X = Transients.CCM_STATE;  // CBC-MAC chaining value
    private static final short CTR = (short) (X + 16);     // counter block A_i
    private static final short S0 = (short) (X + 32);      // E(K, A_0), masks the tag
    private static final short BUF = (short) (X + 48);     // keystream / AAD block being filled
    static final short STATE_SIZE = 64;

    // params layout: shorts of the arena from Transients.CCM_PARAMS.
    private static final short P_TAG = Transients.CCM_PARAMS;
    private static final short P_ENCRYPT = (short) (P_TAG + 1);
    private static final short P_Q = (short) (P_TAG + 2);         // bytes of the length field / counter
    private static final short P_REMAINING = (short) (P_TAG + 3); // payload bytes not yet through update()
    private static final short P_USED = (short) (P_TAG + 4);      // bytes of the current block so far
    static final short PARAMS_SIZE = 5;

    private final Cipher aes;
    private final byte[] st;
    private final short[] params;

    /** Allocated once, at install; the state is the arena's. */
    AesCcm(Transients ram) {
        aes = Cipher.getInstance(Cipher.ALG_AES_BLOCK_128_ECB_NOPAD, false);
        st = ram.bytes;
        params = ram.shorts;
    }

    void setKey(AESKey key) {
        aes.init(key, Cipher.MODE_ENCRYPT);
    }

    /**
     * Starts a message of {@code payloadLen} bytes: B0 and the AAD into the CBC-MAC, S0 computed.
     * Throws ILLEGAL_VALUE for a nonce length outside 7..13 or a tag length outside {4, 6, .., 16}.
     */
    void begin(boolean encrypt, byte[] nonce, short nOff, short nLen, byte[] aad, short aadOff,
               short aadLen, short payloadLen, short tagLen) {
        if (nLen < MIN_NONCE || nLen > MAX_NONCE || tagLen < MIN_TAG || tagLen > MAX_TAG
                || (tagLen & 1) != 0 || aadLen < 0 || payloadLen < 0) {
            CryptoException.throwIt(CryptoException.ILLEGAL_VALUE);
        }
        short q = (short) (15 - nLen);
        params[P_TAG] = tagLen;
        params[P_ENCRYPT] = (short) (encrypt ? 1 : 0);
        params[P_Q] = q;
        params[P_REMAINING] = payloadLen;
        params[P_USED] = 0;
        // B0 = flags || N || Q, flags = Adata || (t - 2) / 2 || q - 1 (SP 800-38C A.2.1). Q is
        // at least 2 bytes (q >= 2) and a short's worth of payload fits in its last two.
        st[X] = (byte) ((aadLen > 0 ? FLAG_ADATA : 0) | (short) ((short) ((short) (tagLen - 2) >> 1) << 3)
                | (short) (q - 1));
        Util.arrayCopyNonAtomic(nonce, nOff, st, (short) (X + 1), nLen);
        Util.arrayFillNonAtomic(st, (short) (X + 1 + nLen), q, (byte) 0);
        Util.setShort(st, (short) (X + BLOCK - 2), payloadLen);
        aes.doFinal(st, X, BLOCK, st, X);
        macAad(aad, aadOff, aadLen);
        // A_i = (q - 1) || N || i (A.3); S0 = E(K, A_0) masks the tag, the payload uses A_1, ...
        st[CTR] = (byte) (q - 1);
        Util.arrayCopyNonAtomic(nonce, nOff, st, (short) (CTR + 1), nLen);
        Util.arrayFillNonAtomic(st, (short) (CTR + 1 + nLen), q, (byte) 0);
        aes.doFinal(st, CTR, BLOCK, st, S0);
    }

    /** The AAD with its 2-byte length prefix, zero padded to whole blocks, into the CBC-MAC. */
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

    /**
     * Encrypts or decrypts {@code len} bytes; returns len. Any length on any call (a record in
     * pieces meets its 8-byte explicit nonce first): the keystream block in use stays in BUF, a
     * partial block's bytes in the CBC-MAC value X until the block is complete or the tag is
     * computed. The calls must add up to payloadLen (ILLEGAL_USE past it). In place is fine: each
     * byte is read before it is written, and the MAC takes the plaintext.
     */
    short update(byte[] in, short inOff, short len, byte[] out, short outOff) {
        short remaining = params[P_REMAINING];
        if (len < 0 || len > remaining) {
            CryptoException.throwIt(CryptoException.ILLEGAL_USE);
        }
        boolean encrypt = params[P_ENCRYPT] != 0;
        short used = params[P_USED];
        short done = 0;
        while (done < len) {
            if (used == 0) {
                incrementCounter();
                aes.doFinal(st, CTR, BLOCK, st, BUF);
            }
            short n = (short) (BLOCK - used);
            if (n > (short) (len - done)) {
                n = (short) (len - done);
            }
            short src = (short) (inOff + done);
            short dst = (short) (outOff + done);
            for (short k = 0; k < n; k++) {
                byte x = in[(short) (src + k)];
                byte o = (byte) (x ^ st[(short) (BUF + used + k)]);
                out[(short) (dst + k)] = o;
                st[(short) (X + used + k)] ^= encrypt ? x : o;
            }
            used += n;
            done += n;
            if (used == BLOCK) {
                aes.doFinal(st, X, BLOCK, st, X);
                used = 0;
            }
        }
        params[P_USED] = used;
        params[P_REMAINING] = (short) (remaining - len);
        return len;
    }

    /** Sets the key again for the next update() of a message that spans APDUs. */
    void resume(AESKey key) {
        aes.init(key, Cipher.MODE_ENCRYPT);
    }

    /** Writes the tag (T xor S0, tagLen of begin() bytes) after encrypting. */
    void finishTag(byte[] tag, short tagOff) {
        checkComplete();
        short t = params[P_TAG];
        for (short i = 0; i < t; i++) {
            tag[(short) (tagOff + i)] = (byte) (st[(short) (X + i)] ^ st[(short) (S0 + i)]);
        }
    }

    /**
     * After decrypting: whether the received tag matches, compared in constant time. The length
     * must be begin()'s (it is public, so that check may return early).
     */
    boolean verifyTag(byte[] tag, short tagOff, short tagLen) {
        checkComplete();
        short t = params[P_TAG];
        if (tagLen != t) {
            return false;
        }
        byte diff = 0;
        for (short i = 0; i < t; i++) {
            diff |= (byte) (tag[(short) (tagOff + i)] ^ st[(short) (X + i)] ^ st[(short) (S0 + i)]);
        }
        return diff == 0;
    }

    /** The MAC covers exactly the payload length announced in B0. */
    private void checkComplete() {
        if (params[P_REMAINING] != 0) {
            CryptoException.throwIt(CryptoException.ILLEGAL_USE);
        }
        if (params[P_USED] != 0) {
            aes.doFinal(st, X, BLOCK, st, X); // the last, partial block: zero padded
            params[P_USED] = 0;
        }
    }

    /** X = E(K, X xor block), the block being the n bytes at off padded with zeros. */
    private void macBlock(byte[] in, short off, short n) {
        for (short k = 0; k < n; k++) {
            st[(short) (X + k)] ^= in[(short) (off + k)];
        }
        aes.doFinal(st, X, BLOCK, st, X);
    }

    /** i + 1 in the last q bytes of the counter block. */
    private void incrementCounter() {
        short last = (short) (CTR + BLOCK - 1);
        short first = (short) (CTR + BLOCK - params[P_Q]);
        for (short i = last; i >= first; i--) {
            st[i]++;
            if (st[i] != 0) {
                return;
            }
        }
    }
}
