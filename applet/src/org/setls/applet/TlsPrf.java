package org.setls.applet;

import javacard.framework.Util;

/**
 * The TLS 1.2 PRF with P_SHA256 (RFC 5246 section 5):
 *   PRF(secret, label, seed) = P_SHA256(secret, label + seed)
 *   P_SHA256(secret, s) = HMAC(secret, A(1) + s) + HMAC(secret, A(2) + s) + ...
 *   A(0) = s, A(i) = HMAC(secret, A(i-1))
 * label + seed is never assembled: its pieces go to the HMAC one after the other, so the caller's
 * seed can be two separate randoms (key expansion: server_random + client_random).
 *
 * RAM: the arena's Transients.PRF_A, A_SIZE = 32 bytes of one-APDU scratch (A(i) is derived from
 * the secret and wiped at the end), plus the HMAC's own. Whole output blocks are written straight
 * to {@code out}; only a last partial block passes through A, once A(i) is no longer needed.
 */
final class TlsPrf {
    /** A(i), and at the end the last (partial) output block: bytes of the arena from Transients.PRF_A. */
    private static final short A = Transients.PRF_A;
    static final short A_SIZE = HmacSha256.HASH_SIZE;

    private final HmacSha256 hmac;
    private final byte[] a;
    private OpCounters counters;

    /** Allocated once, at install; A is the arena's. */
    TlsPrf(HmacSha256 hmac, Transients ram) {
        this.hmac = hmac;
        a = ram.bytes;
    }

    /** Counts the HMACs (and their SHA-256 blocks) this PRF computes. */
    void setCounters(OpCounters counters) {
        this.counters = counters;
    }

    /**
     * out = PRF(secret, label, seed1 + seed2)[0..outLen); seed2 may be null (or of length 0).
     * {@code out} must not overlap the secret, the label or the seeds: they are read again
     * after each output block is written. Leaves the HMAC keyed with the secret.
     */
    void derive(byte[] secret, short sOff, short sLen, byte[] label, short lOff, short lLen,
                byte[] seed1, short s1Off, short s1Len, byte[] seed2, short s2Off, short s2Len,
                byte[] out, short outOff, short outLen) {
        if (seed2 == null) {
            // HMAC's doFinal needs an array: an empty piece of seed1 stands in.
            seed2 = seed1;
            s2Off = s1Off;
            s2Len = 0;
        }
        short seedLen = (short) ((short) (lLen + s1Len) + s2Len);
        // A(1) = HMAC(secret, label + seed)
        hmac.init(secret, sOff, sLen);
        hmac.update(label, lOff, lLen);
        hmac.update(seed1, s1Off, s1Len);
        hmac.doFinal(seed2, s2Off, s2Len, a, A);
        count(seedLen);
        while (outLen > 0) {
            // HMAC(secret, A(i) + label + seed)
            hmac.restart();
            hmac.update(a, A, A_SIZE);
            hmac.update(label, lOff, lLen);
            hmac.update(seed1, s1Off, s1Len);
            count((short) (A_SIZE + seedLen));
            if (outLen < HmacSha256.HASH_SIZE) {
                // The last block, partial: A(i) has been consumed, its slot takes the block.
                hmac.doFinal(seed2, s2Off, s2Len, a, A);
                Util.arrayCopyNonAtomic(a, A, out, outOff, outLen);
                break;
            }
            hmac.doFinal(seed2, s2Off, s2Len, out, outOff);
            outOff += HmacSha256.HASH_SIZE;
            outLen -= HmacSha256.HASH_SIZE;
            if (outLen > 0) {
                // A(i+1) = HMAC(secret, A(i)), in place.
                hmac.restart();
                hmac.doFinal(a, A, A_SIZE, a, A);
                count(A_SIZE);
            }
        }
        Util.arrayFillNonAtomic(a, A, A_SIZE, (byte) 0);
    }

    /** One HMAC over a message of {@code len} bytes: inner hash of 64 + len, outer of 64 + 32. */
    private void count(short len) {
        if (counters != null) {
            counters.count(OpCounters.HMAC, (short) 1);
            counters.countDigest((short) (HmacSha256.BLOCK_SIZE + len));
            counters.countDigest((short) (HmacSha256.BLOCK_SIZE + HmacSha256.HASH_SIZE));
        }
    }
}
