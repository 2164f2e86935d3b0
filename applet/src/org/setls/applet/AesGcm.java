package org.setls.applet;

import javacard.framework.Util;
import javacard.security.AESKey;
import javacard.security.CryptoException;
import javacardx.crypto.Cipher;

/**
 * AES-128-GCM (NIST SP 800-38D) with a 96-bit IV and a 128-bit tag, built on the card's AES-ECB:
 * real cards (JCOP 3/4) have no GCM (Quirks: MISSING_ALGORITHMS). The counter mode uses the card's AES engine; GHASH is done
 * in software.
 *
 * GHASH: Shoup's 4-bit table method (as in mbed TLS and OpenSSL's gcm_gmult_4bit). setKey()
 * precomputes M[n] = n * H for the 16 nibbles n (3 shifts and 11 XORs, cheap enough to redo for
 * every record, since the record layer switches between the client's and the server's key); a
 * multiplication is then 32 steps of "Z = Z * x^4 xor M[nibble]", the 4 bits shifted out folded
 * back with REDUCE_4. 128-bit values are 8 shorts: half the array accesses of bytes. Against
 * the bit-serial algorithm 1 of SP 800-38D (128 steps of a 16-byte conditional XOR and a 16-byte
 * shift: ~9000 array accesses per block) this is ~1100, about 8 times fewer, for 256 bytes of RAM
 * (roughly 8000 bytecodes per block instead of 70000). No step branches on the key or the data
 * (table lookups take the same time on a card without cache).
 *
 * Bit order (SP 800-38D 6.3): the first bit of a block is the coefficient of x^0, so "times x"
 * is a right shift and the reduction constant R = 11100001 || 0^120 enters at the left.
 *
 * Streaming: begin(), update() as often as needed (any lengths), then finishTag() or verifyTag().
 * A record in pieces spans APDUs (RecordCipher): the state is the arena's record scratch, which
 * nothing else touches while the pieces of one record come in a row (any other command abandons
 * them); resume() sets the key again in each APDU.
 *
 * RAM, scratch of the arena (key-derived and per-record state):
 *   Transients.GCM_STATE    STATE_SIZE = 64 bytes: J0, the counter block, the GHASH accumulator Y,
 *                           and a block of keystream / padding / tag scratch
 *   Transients.GHASH        GHASH_SIZE = 136 shorts = 272 bytes: the table M (16 x 8 shorts) and Z
 *   Transients.GCM_LENGTHS  LENGTHS_SIZE = 3 shorts = 6 bytes: AAD and text lengths, the direction
 * Total 342 bytes. Lengths are shorts: up to 32767 bytes of AAD and of text per message.
 * REDUCE_4 (16 constant shorts) is a static array: persistent memory, read only.
 */
final class AesGcm {
    private static final short BLOCK = 16;
    private static final short IV_SIZE = 12;
    private static final short TAG_SIZE = 16;

    // st layout: bytes of the arena from Transients.GCM_STATE.
    private static final short J0 = Transients.GCM_STATE;  // pre-counter block IV || 0^31 || 1, masks the tag
    private static final short COUNTER = (short) (J0 + 16); // current counter block
    private static final short Y = (short) (J0 + 32);       // GHASH accumulator
    private static final short BUF = (short) (J0 + 48);     // keystream, padded block, H, or the tag
    static final short STATE_SIZE = 64;

    // ghash layout: shorts of the arena from Transients.GHASH; a 128-bit value is 8 big-endian shorts.
    private static final short WORDS = 8;
    /** M[n] = n * H at n * WORDS, n being a nibble whose high bit is the coefficient of x^0. */
    private static final short TABLE = Transients.GHASH;
    private static final short TABLE_ENTRIES = 16;
    private static final short Z = (short) (TABLE + TABLE_ENTRIES * WORDS);   // product being built
    private static final short Z_LAST = (short) (Z + WORDS - 1);
    static final short GHASH_SIZE = (short) (TABLE_ENTRIES * WORDS + WORDS);

    // lengths layout: shorts of the arena from Transients.GCM_LENGTHS.
    private static final short L_AAD = Transients.GCM_LENGTHS;
    private static final short L_TEXT = (short) (L_AAD + 1);
    private static final short L_ENCRYPT = (short) (L_AAD + 2);
    static final short LENGTHS_SIZE = 3;

    /** R's top 16 bits: x^128 = 1 + x + x^2 + x^7 (SP 800-38D 6.3), bits in GCM order. */
    private static final short R_HIGH = (short) 0xE100;
    /**
     * REDUCE_4[r]: what the 4 bits r shifted out by "times x^4" (coefficients of x^124..x^127, high
     * bit first) become, xored into the top 16 bits: the XOR of R_HIGH >> k for each bit of r.
     */
    private static final short[] REDUCE_4 = {
        (short) 0x0000, (short) 0x1C20, (short) 0x3840, (short) 0x2460,
        (short) 0x7080, (short) 0x6CA0, (short) 0x48C0, (short) 0x54E0,
        (short) 0xE100, (short) 0xFD20, (short) 0xD940, (short) 0xC560,
        (short) 0x9180, (short) 0x8DA0, (short) 0xA9C0, (short) 0xB5E0,
    };

    private final Cipher aes;
    private final byte[] st;
    private final short[] ghash;
    private final short[] lengths;

    /** Allocated once, at install; the state is the arena's. */
    AesGcm(Transients ram) {
        aes = Cipher.getInstance(Cipher.ALG_AES_BLOCK_128_ECB_NOPAD, false);
        st = ram.bytes;
        ghash = ram.shorts;
        lengths = ram.shorts;
    }

    /** Keys the cipher, computes H = E(K, 0^128) and the table M. */
    void setKey(AESKey key) {
        aes.init(key, Cipher.MODE_ENCRYPT);
        Util.arrayFillNonAtomic(st, BUF, BLOCK, (byte) 0);
        aes.doFinal(st, BUF, BLOCK, st, BUF);
        short m8 = (short) (TABLE + 8 * WORDS);
        for (short k = 0; k < WORDS; k++) {
            ghash[(short) (m8 + k)] = Util.getShort(st, (short) (BUF + 2 * k));
        }
        Util.arrayFillNonAtomic(st, BUF, BLOCK, (byte) 0);
        // The nibble 1000 is x^0, so M[8] = H, M[4] = H * x, M[2] = H * x^2, M[1] = H * x^3 ...
        timesX((short) 8, (short) 4);
        timesX((short) 4, (short) 2);
        timesX((short) 2, (short) 1);
        for (short k = 0; k < WORDS; k++) {
            ghash[(short) (TABLE + k)] = 0;
        }
        // ... and multiplication distributes over XOR: M[i + j] = M[i] xor M[j] for j < i = 2^k.
        for (short i = 2; i < TABLE_ENTRIES; i = (short) (i << 1)) {
            for (short j = 1; j < i; j++) {
                short dst = (short) (TABLE + (short) ((short) (i + j) * WORDS));
                short mi = (short) (TABLE + (short) (i * WORDS));
                short mj = (short) (TABLE + (short) (j * WORDS));
                for (short k = 0; k < WORDS; k++) {
                    ghash[(short) (dst + k)] = (short) (ghash[(short) (mi + k)] ^ ghash[(short) (mj + k)]);
                }
            }
        }
    }

    /** M[to] = M[from] * x: a right shift by one bit, R folded in when a bit falls off. */
    private void timesX(short from, short to) {
        short src = (short) (TABLE + (short) (from * WORDS));
        short dst = (short) (TABLE + (short) (to * WORDS));
        // All ones if the last bit (the coefficient of x^127) is set, without a branch on H.
        short carry = (short) -(ghash[(short) (src + WORDS - 1)] & 1);
        for (short k = (short) (WORDS - 1); k > 0; k--) {
            ghash[(short) (dst + k)] = (short) (((ghash[(short) (src + k)] >> 1) & 0x7FFF)
                    | (ghash[(short) (src + k - 1)] << 15));
        }
        ghash[dst] = (short) (((ghash[src] >> 1) & 0x7FFF) ^ (carry & R_HIGH));
    }

    /**
     * Starts a message: J0 = IV || 0^31 || 1 (the 96-bit IV case of SP 800-38D 7.1) and the AAD
     * into GHASH. The AAD is taken whole: TLS's is 13 bytes.
     */
    void begin(boolean encrypt, byte[] iv, short ivOff, byte[] aad, short aadOff, short aadLen) {
        if (aadLen < 0) {
            CryptoException.throwIt(CryptoException.ILLEGAL_VALUE);
        }
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

    /**
     * Encrypts or decrypts {@code len} bytes; returns len. Any length on any call (a record
     * processed in pieces across APDUs meets its 8-byte explicit nonce first, so the pieces do not
     * fall on block boundaries): the keystream block in use stays in BUF and a partial block's
     * bytes in the GHASH accumulator Y until the block is complete or the tag is computed. More
     * than 32767 bytes in all throws ILLEGAL_USE. In place (in == out, same offset) is fine: each
     * byte is read before it is written, and GHASH takes the ciphertext (the input when
     * decrypting, the output when encrypting).
     */
    short update(byte[] in, short inOff, short len, byte[] out, short outOff) {
        short total = (short) (lengths[L_TEXT] + len);
        if (len < 0 || total < 0) {
            CryptoException.throwIt(CryptoException.ILLEGAL_USE);
        }
        boolean encrypt = lengths[L_ENCRYPT] != 0;
        short used = (short) (lengths[L_TEXT] & (BLOCK - 1));
        short done = 0;
        while (done < len) {
            if (used == 0) {
                increment32();
                aes.doFinal(st, COUNTER, BLOCK, st, BUF);
            }
            short n = (short) (BLOCK - used);
            if (n > (short) (len - done)) {
                n = (short) (len - done);
            }
            short src = (short) (inOff + done);
            short dst = (short) (outOff + done);
            for (short k = 0; k < n; k++) {
                byte c = in[(short) (src + k)];
                byte o = (byte) (c ^ st[(short) (BUF + used + k)]);
                out[(short) (dst + k)] = o;
                st[(short) (Y + used + k)] ^= encrypt ? o : c;
            }
            used += n;
            done += n;
            if (used == BLOCK) {
                multiplyYbyH();
                used = 0;
            }
        }
        lengths[L_TEXT] = total;
        return len;
    }

    /** Sets the key again for the next update() of a message that spans APDUs (the table stays). */
    void resume(AESKey key) {
        aes.init(key, Cipher.MODE_ENCRYPT);
    }

    /** Writes the 16-byte tag (after encrypting). */
    void finishTag(byte[] tag, short tagOff) {
        computeTag();
        Util.arrayCopyNonAtomic(st, BUF, tag, tagOff, TAG_SIZE);
    }

    /**
     * After decrypting: whether the received tag matches, compared in constant time. Only full
     * 16-byte tags are accepted (the length is public, so that check may return early).
     */
    boolean verifyTag(byte[] tag, short tagOff, short tagLen) {
        computeTag();
        if (tagLen != TAG_SIZE) {
            return false;
        }
        byte diff = 0;
        for (short i = 0; i < TAG_SIZE; i++) {
            diff |= (byte) (st[(short) (BUF + i)] ^ tag[(short) (tagOff + i)]);
        }
        return diff == 0;
    }

    /** S = GHASH(... || len(A)_64 || len(C)_64), T = E(K, J0) xor S: the tag ends up in BUF. */
    private void computeTag() {
        if ((lengths[L_TEXT] & (BLOCK - 1)) != 0) {
            multiplyYbyH(); // the last, partial block: its bytes are in Y, the rest zeros
        }
        Util.arrayFillNonAtomic(st, BUF, BLOCK, (byte) 0);
        writeBitLength(lengths[L_AAD], (short) (BUF + 5));
        writeBitLength(lengths[L_TEXT], (short) (BUF + 13));
        ghashBlock(st, BUF, BLOCK);
        aes.doFinal(st, J0, BLOCK, st, BUF);
        for (short i = 0; i < BLOCK; i++) {
            st[(short) (BUF + i)] ^= st[(short) (Y + i)];
        }
    }

    /** Writes 8 * len, len < 2^15, as the 3 low bytes of a big-endian 64-bit bit count at off. */
    private void writeBitLength(short len, short off) {
        st[off] = (byte) ((len >> 13) & 0x07);
        st[(short) (off + 1)] = (byte) (len >> 5);
        st[(short) (off + 2)] = (byte) (len << 3);
    }

    /** inc32 (SP 800-38D 6.2): the last 32 bits of the counter block, plus one, modulo 2^32. */
    private void increment32() {
        for (short i = (short) (COUNTER + BLOCK - 1); i >= (short) (COUNTER + 12); i--) {
            st[i]++;
            if (st[i] != 0) {
                return;
            }
        }
    }

    /** Y = (Y xor X) * H, X being the n bytes at off padded with zeros. */
    private void ghashBlock(byte[] x, short off, short n) {
        for (short i = 0; i < n; i++) {
            st[(short) (Y + i)] ^= x[(short) (off + i)];
        }
        multiplyYbyH();
    }

    /**
     * Y = Y * H by Horner's rule on Y's 32 nibbles, from the highest-degree one (the low nibble of
     * the last byte) down: Z = Z * x^4 xor M[nibble].
     */
    private void multiplyYbyH() {
        for (short k = 0; k < WORDS; k++) {
            ghash[(short) (Z + k)] = 0;
        }
        for (short i = (short) (Y + BLOCK - 1); i >= Y; i--) {
            byte b = st[i];
            shiftZAddM((short) (b & 0x0F));
            shiftZAddM((short) ((b >> 4) & 0x0F));
        }
        for (short k = 0; k < WORDS; k++) {
            Util.setShort(st, (short) (Y + 2 * k), ghash[(short) (Z + k)]);
        }
    }

    /** Z = Z * x^4 xor M[nibble]: Z shifted right 4 bits, the bits that fall off reduced. */
    private void shiftZAddM(short nibble) {
        short[] g = ghash; // a local: cheaper than a field access on a card's interpreter
        short m = (short) (TABLE + (short) ((short) (nibble * WORDS) + WORDS - 1));
        short fallen = (short) (g[Z_LAST] & 0x0F);
        // From the last word back, so that word z - 1 is still the old one when z takes its bits.
        for (short z = Z_LAST; z > Z; z--) {
            g[z] = (short) ((((g[z] >> 4) & 0x0FFF) | (g[(short) (z - 1)] << 12)) ^ g[m]);
            m--;
        }
        g[Z] = (short) (((g[Z] >> 4) & 0x0FFF) ^ REDUCE_4[fallen] ^ g[m]);
    }
}
